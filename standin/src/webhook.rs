//! Validating admission webhooks, called as the API server calls them
//! (`k8s.io/apiserver/pkg/admission/plugin/webhook`): AdmissionReview v1 over HTTPS verified
//! against `caBundle`, rules matched by operation, group, version, resource and subresource,
//! `timeoutSeconds` (default 10) and `failurePolicy` (default Fail) honoured, a denial returned
//! as `admission webhook "<name>" denied the request: <message>`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingWebhook, ValidatingWebhookConfiguration,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};

use crate::State;
use crate::identity::Identity;
use crate::status::ApiError;

/// Read ValidatingWebhookConfigurations from YAML or JSON (several documents, or a List).
pub fn load(text: &str) -> Result<Vec<ValidatingWebhookConfiguration>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for doc in docs {
        match doc["kind"].as_str() {
            Some("ValidatingWebhookConfiguration") => out.push(
                serde_json::from_value(doc)
                    .map_err(|e| format!("invalid ValidatingWebhookConfiguration: {e}"))?,
            ),
            Some("List") | Some("ValidatingWebhookConfigurationList") => {
                for item in doc["items"].as_array().cloned().unwrap_or_default() {
                    out.push(serde_json::from_value(item).map_err(|e| e.to_string())?);
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

fn listed(list: &Option<Vec<String>>, want: &str) -> bool {
    list.as_ref()
        .is_some_and(|l| l.iter().any(|x| x == "*" || x == want))
}

/// Whether a webhook's rules select this request (`rules.Matcher`). Resources: `name` matches
/// the resource only, `name/sub` one subresource, `name/*` every subresource, `*` every
/// resource, `*/*` everything, `*/sub` that subresource of every resource.
fn rules_match(w: &ValidatingWebhook, operation: &str, sub: Option<&str>) -> bool {
    let resource = "certificatesigningrequests";
    w.rules.as_ref().is_some_and(|rules| {
        rules.iter().any(|r| {
            let ops = r
                .operations
                .as_ref()
                .is_some_and(|o| o.iter().any(|x| x == "*" || x == operation));
            let scope = r
                .scope
                .as_deref()
                .is_none_or(|s| s == "*" || s == "Cluster");
            let res = r.resources.as_ref().is_some_and(|rs| {
                rs.iter().any(|x| {
                    let (xr, xs) = x
                        .split_once('/')
                        .map_or((x.as_str(), None), |(a, b)| (a, Some(b)));
                    let r_ok = xr == "*" || xr == resource;
                    let s_ok = match (xs, sub) {
                        (None, None) => true,
                        (Some("*"), _) => true,
                        (Some(a), Some(b)) => a == b,
                        _ => false,
                    };
                    r_ok && s_ok
                })
            });
            ops && scope
                && res
                && listed(&r.api_groups, "certificates.k8s.io")
                && listed(&r.api_versions, "v1")
        })
    })
}

fn object_selector_matches(w: &ValidatingWebhook, object: &Value, old: Option<&Value>) -> bool {
    let Some(sel) = &w.object_selector else {
        return true;
    };
    let labels_match = |o: &Value| {
        sel.match_labels.as_ref().is_none_or(|ml| {
            ml.iter()
                .all(|(k, v)| o["metadata"]["labels"][k].as_str() == Some(v.as_str()))
        })
    };
    labels_match(object) || old.is_some_and(labels_match)
}

/// Call every matching webhook; the warnings they returned, or the error the caller gets.
pub async fn admit(
    state: &Arc<State>,
    operation: &str,
    sub: Option<&str>,
    object: &Value,
    old: Option<&Value>,
    user: &Identity,
    dry_run: bool,
) -> Result<Vec<String>, ApiError> {
    let configs = state.webhooks();
    let mut warnings = Vec::new();
    for config in &configs {
        for w in config.webhooks.iter().flatten() {
            if !rules_match(w, operation, sub) || !object_selector_matches(w, object, old) {
                continue;
            }
            if w.match_conditions.as_ref().is_some_and(|m| !m.is_empty()) {
                match crate::cel::all_match(
                    w.match_conditions.as_deref().unwrap_or_default(),
                    object,
                    old,
                    user,
                    sub,
                ) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        // An error evaluating a match condition follows the failure policy.
                        if w.failure_policy.as_deref() == Some("Ignore") {
                            continue;
                        }
                        return Err(ApiError::internal(format!(
                            "Internal error occurred: failed calling webhook {:?}: {e}",
                            w.name
                        )));
                    }
                }
            }
            let review = review_request(operation, sub, object, old, user, dry_run);
            let timeout = Duration::from_secs(w.timeout_seconds.unwrap_or(10).clamp(1, 30) as u64);
            let called = tokio::time::timeout(timeout, call(state, w, &review)).await;
            let result = match called {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "context deadline exceeded (timeoutSeconds {})",
                    timeout.as_secs()
                )),
            };
            match result {
                Ok(response) => {
                    if response["uid"] != review["request"]["uid"] {
                        let e = format!(
                            "expected response.uid={}, got {}",
                            review["request"]["uid"], response["uid"]
                        );
                        if w.failure_policy.as_deref() == Some("Ignore") {
                            continue;
                        }
                        return Err(ApiError::internal(format!(
                            "Internal error occurred: failed calling webhook {:?}: {e}",
                            w.name
                        )));
                    }
                    for warning in response["warnings"].as_array().into_iter().flatten() {
                        if let Some(s) = warning.as_str() {
                            warnings.push(s.to_string());
                        }
                    }
                    if response["allowed"] != true {
                        let message = response["status"]["message"].as_str().unwrap_or("");
                        let text = if message.is_empty() {
                            format!(
                                "admission webhook {:?} denied the request without explanation",
                                w.name
                            )
                        } else {
                            format!(
                                "admission webhook {:?} denied the request: {message}",
                                w.name
                            )
                        };
                        let code = response["status"]["code"]
                            .as_u64()
                            .filter(|c| *c >= 400)
                            .unwrap_or(403);
                        let mut e = ApiError::forbidden(text);
                        e.code = code as u16;
                        return Err(e);
                    }
                }
                Err(e) => {
                    if w.failure_policy.as_deref() == Some("Ignore") {
                        continue;
                    }
                    return Err(ApiError::internal(format!(
                        "Internal error occurred: failed calling webhook {:?}: failed to call webhook: {e}",
                        w.name
                    )));
                }
            }
        }
    }
    Ok(warnings)
}

fn review_request(
    operation: &str,
    sub: Option<&str>,
    object: &Value,
    old: Option<&Value>,
    user: &Identity,
    dry_run: bool,
) -> Value {
    let gvk = json!({"group": "certificates.k8s.io", "version": "v1", "kind": "CertificateSigningRequest"});
    let gvr = json!({"group": "certificates.k8s.io", "version": "v1", "resource": "certificatesigningrequests"});
    let mut request = json!({
        "uid": crate::store::new_uid(),
        "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
        "name": object["metadata"]["name"],
        "operation": operation,
        "userInfo": {"username": user.username, "uid": user.uid, "groups": user.groups, "extra": user.extra},
        "object": object,
        "oldObject": old.cloned().unwrap_or(Value::Null),
        "dryRun": dry_run,
        "options": {
            "apiVersion": "meta.k8s.io/v1",
            "kind": if operation == "CREATE" { "CreateOptions" } else { "UpdateOptions" },
        },
    });
    if let Some(s) = sub {
        request["subResource"] = json!(s);
        request["requestSubResource"] = json!(s);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

/// POST the review; the `response` of the AdmissionReview that came back.
async fn call(state: &Arc<State>, w: &ValidatingWebhook, review: &Value) -> Result<Value, String> {
    let cc = &w.client_config;
    let (addr, server_name, path, url) = if let Some(url) = &cc.url {
        let rest = url
            .strip_prefix("https://")
            .ok_or("webhook URL must be https")?;
        let (hostport, path) = rest
            .split_once('/')
            .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
        let (host, port) = hostport
            .rsplit_once(':')
            .map_or((hostport, 443), |(h, p)| (h, p.parse().unwrap_or(443)));
        let addr = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| e.to_string())?
            .next()
            .ok_or("no address")?;
        (addr, host.to_string(), path, url.clone())
    } else if let Some(svc) = &cc.service {
        let port = svc.port.unwrap_or(443);
        let addr: SocketAddr = state
            .service_address(&svc.namespace, &svc.name, port)
            .ok_or_else(|| {
                format!(
                    "service \"{}/{}\" has no endpoints",
                    svc.namespace, svc.name
                )
            })?;
        let path = svc.path.clone().unwrap_or_else(|| "/".into());
        let host = format!("{}.{}.svc", svc.name, svc.namespace);
        let url = format!("https://{host}:{port}{path}");
        (addr, host, path, url)
    } else {
        return Err("webhook has neither url nor service".into());
    };
    let fail = |e: String| format!("Post {url:?}: {e}");

    let mut roots = rustls::RootCertStore::empty();
    if let Some(bundle) = &cc.ca_bundle {
        for c in CertificateDer::pem_slice_iter(&bundle.0) {
            let c = c.map_err(|e| fail(format!("caBundle: {e}")))?;
            roots.add(c).map_err(|e| fail(format!("caBundle: {e}")))?;
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| fail(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| fail(format!("dial tcp {addr}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(server_name).map_err(|e| fail(e.to_string()))?;
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| fail(format!("tls: {e}")))?;
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let body = Full::new(Bytes::from(serde_json::to_vec(review).unwrap_or_default()));
    let req = http::Request::post(if h2 { url.clone() } else { path })
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header(
            "host",
            url.trim_start_matches("https://")
                .split('/')
                .next()
                .unwrap_or(""),
        )
        .body(body)
        .map_err(|e| fail(e.to_string()))?;
    let io = TokioIo::new(tls);
    let resp = if h2 {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| fail(e.to_string()))?;
        tokio::spawn(conn);
        send.send_request(req).await
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| fail(e.to_string()))?;
        tokio::spawn(conn);
        send.send_request(req).await
    }
    .map_err(|e| fail(e.to_string()))?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| fail(e.to_string()))?
        .to_bytes();
    if !status.is_success() {
        return Err(fail(format!(
            "the server responded with {status}: {}",
            String::from_utf8_lossy(&bytes)
        )));
    }
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| fail(format!("invalid AdmissionReview response: {e}")))?;
    if v["response"].is_null() {
        return Err(fail("webhook response was absent".into()));
    }
    Ok(v["response"].clone())
}
