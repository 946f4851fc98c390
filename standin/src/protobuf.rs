//! Kubernetes' protobuf wire format for the one request body that needs it: client-go's typed
//! clients (kubectl certificate approve / deny) PUT CertificateSigningRequests as
//! `application/vnd.kubernetes.protobuf`. The envelope (`k8s\0` + `runtime.Unknown`) and the
//! message types come from `k8s-pb`; the result is the same JSON object a JSON client sends.

use base64::Engine;
use k8s_pb::api::certificates::v1 as pb;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use prost::Message;
use serde_json::{Map, Value, json};

use crate::status::ApiError;

pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

fn time(t: &Option<meta::Time>) -> Value {
    match t.as_ref().and_then(|t| t.seconds) {
        Some(s) => jiff::Timestamp::from_second(s)
            .map(|ts| json!(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()))
            .unwrap_or(Value::Null),
        None => Value::Null,
    }
}

fn b64(bytes: &[u8]) -> Value {
    json!(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn insert(map: &mut Map<String, Value>, key: &str, value: Value) {
    let empty = value.is_null()
        || value.as_str() == Some("")
        || value.as_array().is_some_and(Vec::is_empty)
        || value.as_object().is_some_and(Map::is_empty);
    if !empty {
        map.insert(key.into(), value);
    }
}

fn object_meta(m: &meta::ObjectMeta) -> Value {
    let mut out = Map::new();
    insert(&mut out, "name", json!(m.name));
    insert(&mut out, "generateName", json!(m.generate_name));
    insert(&mut out, "uid", json!(m.uid));
    insert(&mut out, "resourceVersion", json!(m.resource_version));
    insert(&mut out, "creationTimestamp", time(&m.creation_timestamp));
    insert(&mut out, "labels", json!(m.labels));
    insert(&mut out, "annotations", json!(m.annotations));
    insert(&mut out, "finalizers", json!(m.finalizers));
    Value::Object(out)
}

/// Decode a protobuf CertificateSigningRequest body into its JSON form.
pub fn decode_csr(body: &[u8]) -> Result<Value, ApiError> {
    let bad = |m: String| ApiError::bad_request(format!("invalid protobuf body: {m}"));
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing the k8s\\0 prefix".into()))?;
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(rest)
        .map_err(|e| bad(e.to_string()))?;
    let kind = unknown
        .type_meta
        .as_ref()
        .and_then(|t| t.kind.clone())
        .unwrap_or_default();
    if kind != "CertificateSigningRequest" {
        return Err(ApiError::unsupported_media_type(&format!(
            "{CONTENT_TYPE} for kind {kind:?}"
        )));
    }
    let csr = pb::CertificateSigningRequest::decode(unknown.raw.unwrap_or_default().as_slice())
        .map_err(|e| bad(e.to_string()))?;
    let spec = csr.spec.unwrap_or_default();
    let mut s = Map::new();
    insert(
        &mut s,
        "request",
        b64(spec.request.as_deref().unwrap_or_default()),
    );
    insert(&mut s, "signerName", json!(spec.signer_name));
    if let Some(e) = spec.expiration_seconds {
        s.insert("expirationSeconds".into(), json!(e));
    }
    insert(&mut s, "usages", json!(spec.usages));
    insert(&mut s, "username", json!(spec.username));
    insert(&mut s, "uid", json!(spec.uid));
    insert(&mut s, "groups", json!(spec.groups));
    let extra: Map<String, Value> = spec
        .extra
        .iter()
        .map(|(k, v)| (k.clone(), json!(v.items)))
        .collect();
    insert(&mut s, "extra", Value::Object(extra));
    let status = csr.status.unwrap_or_default();
    let conditions: Vec<Value> = status
        .conditions
        .iter()
        .map(|c| {
            let mut m = Map::new();
            insert(&mut m, "type", json!(c.r#type));
            insert(&mut m, "status", json!(c.status));
            insert(&mut m, "reason", json!(c.reason));
            insert(&mut m, "message", json!(c.message));
            insert(&mut m, "lastUpdateTime", time(&c.last_update_time));
            insert(&mut m, "lastTransitionTime", time(&c.last_transition_time));
            Value::Object(m)
        })
        .collect();
    let mut st = Map::new();
    insert(&mut st, "conditions", json!(conditions));
    if let Some(c) = status.certificate.filter(|c| !c.is_empty()) {
        st.insert("certificate".into(), b64(&c));
    }
    Ok(json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": object_meta(&csr.metadata.unwrap_or_default()),
        "spec": s,
        "status": st,
    }))
}
