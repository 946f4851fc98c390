//! The HTTP side: authentication, authorization, routing to resources, list and watch, patch.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};

use crate::State;
use crate::csr;
use crate::identity::{Attributes, Identity, forbidden_message};
use crate::status::ApiError;
use crate::store::{self, CSRS, ResourceType, WatchEvent};

pub type Body = BoxBody<Bytes, Infallible>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

pub fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut r = Response::new(full(serde_json::to_vec(value).unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.to_status(),
    );
    if let Some(s) = e.retry_after {
        r.headers_mut().insert(header::RETRY_AFTER, s.into());
    }
    r
}

/// A parsed resource path.
#[derive(Debug, Clone)]
struct Target {
    rt: ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn resource_type(group: &str, version: &str, plural: &str) -> Option<ResourceType> {
    store::ALL
        .iter()
        .copied()
        .find(|t| t.group == group && t.version == version && t.plural == plural)
}

fn parse_target(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return None,
    };
    let rt = resource_type(group, version, plural)?;
    if rt.namespaced != namespace.is_some() && (name.is_some() || !rt.namespaced) {
        return None;
    }
    Some(Target {
        rt,
        namespace,
        name,
        subresource: sub,
    })
}

fn query(req: &Request<hyper::body::Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .map(|q| {
            q.split('&')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    Some((decode(k)?, decode(v)?))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Bearer tokens only; no token or an unknown one is 401, as with anonymous auth disabled
/// (`--anonymous-auth=false`; `k8s.io/apiserver/pkg/authentication/request/bearertoken`).
fn authenticate(state: &State, req: &Request<hyper::body::Incoming>) -> Result<Identity, ApiError> {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(ApiError::unauthorized)?;
    state
        .identities()
        .into_iter()
        .find(|i| i.token == token)
        .ok_or_else(ApiError::unauthorized)
}

/// Serve one request.
pub async fn handle(
    state: Arc<State>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    if let Some(r) = crate::discovery::respond(&path) {
        return Ok(r);
    }
    let response = match serve_api(&state, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    Ok(response)
}

fn verb_of(method: &Method, target: &Target, q: &HashMap<String, String>) -> Option<&'static str> {
    let watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    Some(match (method, target.name.is_some()) {
        (&Method::GET, false) if watch => "watch",
        (&Method::GET, false) => "list",
        (&Method::GET, true) => "get",
        (&Method::POST, false) => "create",
        (&Method::PUT, true) => "update",
        (&Method::PATCH, true) => "patch",
        (&Method::DELETE, true) => "delete",
        _ => return None,
    })
}

async fn serve_api(
    state: &Arc<State>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_string();
    let target = parse_target(&path).ok_or_else(|| ApiError::path_not_found(&path))?;
    let user = authenticate(state, &req)?;
    let q = query(&req);
    let verb = verb_of(req.method(), &target, &q)
        .ok_or_else(|| ApiError::method_not_allowed(req.method().as_str()))?;
    let attrs = Attributes {
        verb,
        group: target.rt.group,
        resource: target.rt.plural,
        subresource: target.subresource.as_deref(),
        name: target.name.as_deref(),
        namespace: target.namespace.as_deref(),
    };
    if !user.allows(&attrs) {
        return Err(ApiError::forbidden(forbidden_message(&user, &attrs)));
    }
    if let Some(fault) = state.faults.take(verb, target.subresource.as_deref()) {
        return Err(fault.apply().await);
    }
    let delay = state.faults.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?
        .to_bytes();
    let dry_run = q.get("dryRun").is_some_and(|v| v == "All");
    let ns = target.namespace.clone().unwrap_or_default();
    let rt = target.rt;

    match (verb, target.subresource.as_deref()) {
        ("list", None) => list(state, &target, &q, &accept),
        ("watch", None) => watch(state, &target, &q),
        ("get", None | Some("approval") | Some("status")) => {
            let name = target.name.as_deref().unwrap_or_default();
            let obj = state.store().get(rt, &ns, name)?;
            if accept.contains("as=Table") && rt == CSRS {
                return Ok(json_response(
                    StatusCode::OK,
                    &crate::table::csr_table(&[obj], None),
                ));
            }
            Ok(json_response(StatusCode::OK, &obj))
        }
        ("create", None) => {
            let obj = parse_body(&body, &content_type)?;
            create(state, rt, &ns, obj, &user, dry_run).await
        }
        ("delete", None) => {
            let name = target.name.as_deref().unwrap_or_default();
            if dry_run {
                return Ok(json_response(
                    StatusCode::OK,
                    &state.store().get(rt, &ns, name)?,
                ));
            }
            let obj = state.store().delete(rt, &ns, name)?;
            Ok(json_response(StatusCode::OK, &obj))
        }
        ("update" | "patch", sub) => {
            let name = target.name.clone().unwrap_or_default();
            let stored = state.store().get(rt, &ns, &name)?;
            let (new, precondition) = if verb == "update" {
                let obj = parse_body(&body, &content_type)?;
                let rv = obj["metadata"]["resourceVersion"]
                    .as_str()
                    .map(str::to_string);
                (obj, rv)
            } else {
                let patched = apply_patch(&stored, &body, &content_type)?;
                // A patch carrying metadata.resourceVersion is a precondition, as upstream.
                let rv = patch_precondition(&body, &content_type);
                (patched, rv)
            };
            if new
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .is_some_and(|n| n != name)
            {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    new["metadata"]["name"].as_str().unwrap_or_default()
                )));
            }
            update(
                state,
                rt,
                &ns,
                &name,
                sub,
                &stored,
                new,
                precondition,
                &user,
                dry_run,
            )
            .await
        }
        _ => Err(ApiError::method_not_allowed(verb)),
    }
}

fn parse_body(body: &[u8], content_type: &str) -> Result<Value, ApiError> {
    if content_type.starts_with(crate::protobuf::CONTENT_TYPE) {
        return crate::protobuf::decode_csr(body);
    }
    if content_type.contains("yaml") {
        let text =
            std::str::from_utf8(body).map_err(|_| ApiError::bad_request("body is not UTF-8"))?;
        return serde_saphyr::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("invalid YAML: {e}")));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON in the body: {e}")))
}

fn apply_patch(stored: &Value, body: &[u8], content_type: &str) -> Result<Value, ApiError> {
    let mut doc = stored.clone();
    if content_type.starts_with("application/json-patch+json") {
        let patch: json_patch::Patch = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
        json_patch::patch(&mut doc, &patch).map_err(|e| {
            ApiError::invalid(
                CSRS,
                "",
                &format!("the JSON patch could not be applied: {e}"),
            )
        })?;
    } else if content_type.starts_with("application/merge-patch+json")
        || content_type.starts_with("application/strategic-merge-patch+json")
        || content_type.starts_with("application/apply-patch+yaml")
    {
        // Strategic merge and server-side apply are approximated by a JSON merge patch.
        let patch = parse_body(body, content_type)?;
        json_patch::merge(&mut doc, &patch);
    } else {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    Ok(doc)
}

fn patch_precondition(body: &[u8], content_type: &str) -> Option<String> {
    if content_type.starts_with("application/json-patch+json") {
        let ops: Vec<Value> = serde_json::from_slice(body).ok()?;
        return ops.iter().find_map(|op| {
            (op["op"] == "test" && op["path"] == "/metadata/resourceVersion")
                .then(|| op["value"].as_str().map(str::to_string))
                .flatten()
        });
    }
    let v = parse_body(body, content_type).ok()?;
    v["metadata"]["resourceVersion"]
        .as_str()
        .map(str::to_string)
}

/// Create, in the API server's order: generateName resolved (`rest.BeforeCreate`), the CSR
/// strategy (`PrepareForCreate`: requester from the caller, status cleared), validation, the
/// validating admission plugins (CertificateSubjectRestriction, then webhooks), storage.
async fn create(
    state: &Arc<State>,
    rt: ResourceType,
    ns: &str,
    mut obj: Value,
    user: &Identity,
    dry_run: bool,
) -> Result<Response<Body>, ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the body is not an object"));
    }
    if let Some(kind) = obj.get("kind").and_then(Value::as_str)
        && kind != rt.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind of the object ({kind}) does not match the resource ({})",
            rt.kind
        )));
    }
    // generateName is resolved before validation and validating admission, as upstream.
    if obj["metadata"]["name"].as_str().is_none_or(str::is_empty)
        && let Some(prefix) = obj["metadata"]["generateName"]
            .as_str()
            .filter(|p| !p.is_empty())
    {
        obj["metadata"]["name"] = json!(format!("{prefix}{}", store::name_suffix()));
    }
    let mut warnings = Vec::new();
    if rt == CSRS {
        csr::prepare_create(&mut obj, user);
        let name = csr::name_of(&obj);
        let parsed = csr::parse(&obj)?;
        csr::validate_create(&parsed, &name)?;
        warnings = crate::webhook::admit(state, "CREATE", None, &obj, None, user, dry_run).await?;
    }
    if dry_run {
        return Ok(with_warnings(
            json_response(StatusCode::CREATED, &obj),
            &warnings,
        ));
    }
    let created = state.store().create(rt, ns, obj)?;
    if rt == store::EVENTS {
        // events.k8s.io/v1 and core/v1 Events are one resource upstream: show the new event to
        // core clients too (`kubectl describe` lists core events of the object).
        let _ = state
            .store()
            .create(store::CORE_EVENTS, ns, core_event(&created));
    }
    Ok(with_warnings(
        json_response(StatusCode::CREATED, &created),
        &warnings,
    ))
}

#[allow(clippy::too_many_arguments)]
/// Update of the object or a subresource, in the API server's order: the resourceVersion
/// precondition (409), the subresource's strategy and validation, the CertificateApproval /
/// CertificateSigning admission plugins (`approve` / `sign` on the signer), webhooks, storage.
async fn update(
    state: &Arc<State>,
    rt: ResourceType,
    ns: &str,
    name: &str,
    sub: Option<&str>,
    stored: &Value,
    body: Value,
    precondition: Option<String>,
    user: &Identity,
    dry_run: bool,
) -> Result<Response<Body>, ApiError> {
    if let Some(expected) = precondition.as_deref().filter(|e| !e.is_empty())
        && stored["metadata"]["resourceVersion"].as_str() != Some(expected)
    {
        return Err(ApiError::conflict(rt, name));
    }
    let mut warnings = Vec::new();
    let new = if rt == CSRS {
        let signer = stored["spec"]["signerName"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match sub {
            Some("approval") => {
                let new = csr::apply_approval(stored, &body)?;
                // The CertificateApproval admission plugin: `approve` on the signer.
                if !may_act_on_signer(user, "approve", &signer) {
                    return Err(ApiError::forbidden(format!(
                        "{} \"{name}\" is forbidden: user not permitted to approve requests with signerName {signer:?}",
                        CSRS.qualified()
                    )));
                }
                warnings = crate::webhook::admit(
                    state,
                    "UPDATE",
                    Some("approval"),
                    &new,
                    Some(stored),
                    user,
                    dry_run,
                )
                .await?;
                new
            }
            Some("status") => {
                let new = csr::apply_status(stored, &body)?;
                // The CertificateSigning admission plugin: `sign` when the certificate changes.
                if new["status"]["certificate"] != stored["status"]["certificate"]
                    && !may_act_on_signer(user, "sign", &signer)
                {
                    return Err(ApiError::forbidden(format!(
                        "{} \"{name}\" is forbidden: user not permitted to sign requests with signerName {signer:?}",
                        CSRS.qualified()
                    )));
                }
                new
            }
            None => csr::apply_update(stored, &body),
            Some(other) => return Err(ApiError::path_not_found(other)),
        }
    } else if sub.is_some() {
        return Err(ApiError::path_not_found(sub.unwrap_or_default()));
    } else {
        body
    };
    if dry_run {
        return Ok(with_warnings(
            json_response(StatusCode::OK, &new),
            &warnings,
        ));
    }
    let expected = stored["metadata"]["resourceVersion"]
        .as_str()
        .map(str::to_string);
    let updated = state
        .store()
        .update(rt, ns, name, new, expected.as_deref())?;
    Ok(with_warnings(
        json_response(StatusCode::OK, &updated),
        &warnings,
    ))
}

/// The core/v1 form of an events.k8s.io/v1 Event (field names as the conversion upstream maps them).
fn core_event(e: &Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": e["metadata"]["name"], "namespace": e["metadata"]["namespace"]},
        "involvedObject": e["regarding"],
        "reason": e["reason"],
        "message": e["note"],
        "type": e["type"],
        "source": {"component": e["reportingController"]},
        "reportingComponent": e["reportingController"],
        "reportingInstance": e["reportingInstance"],
        "firstTimestamp": e["eventTime"],
        "lastTimestamp": e["eventTime"],
        "eventTime": e["eventTime"],
        "action": e["action"],
        "count": 1,
    })
}

/// Admission warnings as `Warning: 299 - "..."` headers, which kubectl and client-go print.
fn with_warnings(mut r: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        let text = format!("299 - {:?}", w.replace(['\n', '\r'], " "));
        if let Ok(v) = header::HeaderValue::from_str(&text) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
    r
}

/// `approve` / `sign` on `signers` for the signer name or `<domain>/*`
/// (`pkg/apis/certificates.IsAuthorizedForSignerName`).
fn may_act_on_signer(user: &Identity, verb: &str, signer: &str) -> bool {
    let check = |name: &str| {
        user.allows(&Attributes {
            verb,
            group: "certificates.k8s.io",
            resource: "signers",
            subresource: None,
            name: Some(name),
            namespace: None,
        })
    };
    check(signer)
        || signer
            .split_once('/')
            .is_some_and(|(domain, _)| check(&format!("{domain}/*")))
}

// ---- list and watch ----

/// `key=value`, `key==value`, `key!=value` (labels: also `key` and `!key`), comma-separated.
#[derive(Debug, Clone, Default)]
pub struct Selector(Vec<(String, Option<String>, bool)>);

impl Selector {
    fn parse(s: Option<&String>) -> Selector {
        let mut out = Vec::new();
        for part in s
            .map(String::as_str)
            .unwrap_or("")
            .split(',')
            .filter(|p| !p.is_empty())
        {
            if let Some((k, v)) = part.split_once("!=") {
                out.push((k.trim().into(), Some(v.trim().into()), false));
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                out.push((k.trim().into(), Some(v.trim().into()), true));
            } else if let Some(k) = part.strip_prefix('!') {
                out.push((k.trim().into(), None, false));
            } else {
                out.push((part.trim().into(), None, true));
            }
        }
        Selector(out)
    }

    fn matches(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        self.0.iter().all(|(k, v, eq)| {
            let actual = lookup(k);
            match v {
                Some(v) => (actual.as_deref().unwrap_or("") == v) == *eq,
                None => actual.is_some() == *eq,
            }
        })
    }
}

struct Filter {
    namespace: Option<String>,
    labels: Selector,
    fields: Selector,
}

impl Filter {
    fn new(target: &Target, q: &HashMap<String, String>) -> Filter {
        Filter {
            namespace: target.namespace.clone(),
            labels: Selector::parse(q.get("labelSelector")),
            fields: Selector::parse(q.get("fieldSelector")),
        }
    }

    fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace
            && obj["metadata"]["namespace"].as_str() != Some(ns)
        {
            return false;
        }
        self.labels
            .matches(|k| obj["metadata"]["labels"][k].as_str().map(str::to_string))
            && self.fields.matches(|path| {
                let mut v = obj;
                for part in path.split('.') {
                    v = v.get(part)?;
                }
                match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Null => None,
                    other => Some(other.to_string()),
                }
            })
    }
}

/// `metav1.ListOptions` `limit` and `continue`: a page and a token for the rest; a token older
/// than the compaction horizon is 410 Expired (the etcd3 store's `ErrCompacted`, mapped in
/// `k8s.io/apiserver/pkg/storage/etcd3`). Label and field selectors filter.
fn list(
    state: &Arc<State>,
    target: &Target,
    q: &HashMap<String, String>,
    accept: &str,
) -> Result<Response<Body>, ApiError> {
    let filter = Filter::new(target, q);
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let (items, rv, horizon) = {
        let mut store = state.store();
        let items = store.list(target.rt, target.namespace.as_deref());
        (items, store.resource_version(), store.horizon())
    };
    let start_after = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let (token_rv, key) = decode_continue(token)?;
            if token_rv < horizon {
                return Err(ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ));
            }
            Some(key)
        }
        None => None,
    };
    let key_of = |o: &Value| {
        format!(
            "{}/{}",
            o["metadata"]["namespace"].as_str().unwrap_or(""),
            o["metadata"]["name"].as_str().unwrap_or("")
        )
    };
    let mut selected: Vec<Value> = items
        .into_iter()
        .filter(|o| start_after.as_ref().is_none_or(|s| key_of(o) > *s))
        .filter(|o| filter.matches(o))
        .collect();
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if selected.len() > limit {
        selected.truncate(limit);
        let last = key_of(selected.last().unwrap_or(&Value::Null));
        meta["continue"] = json!(encode_continue(rv, &last));
        meta["remainingItemCount"] = Value::Null;
    }
    if accept.contains("as=Table") && target.rt == CSRS {
        return Ok(json_response(
            StatusCode::OK,
            &crate::table::csr_table(&selected, Some(meta)),
        ));
    }
    let list = json!({
        "kind": format!("{}List", target.rt.kind),
        "apiVersion": target.rt.api_version(),
        "metadata": meta,
        "items": selected,
    });
    Ok(json_response(StatusCode::OK, &list))
}

fn encode_continue(rv: u64, key: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(json!({"rv": rv, "start": key}).to_string())
}

fn decode_continue(token: &str) -> Result<(u64, String), ApiError> {
    let bad = || ApiError::bad_request(format!("invalid continue token {token:?}"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    Ok((
        v["rv"].as_u64().ok_or_else(bad)?,
        v["start"].as_str().ok_or_else(bad)?.to_string(),
    ))
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// A watch as the API server streams it: resourceVersion unset or "0" starts with synthetic
/// ADDED events for the current state; a given one replays what followed; a compacted one is a
/// 200 with one ERROR event carrying a 410 Status (`apierrors.NewResourceExpired`); bookmarks
/// when `allowWatchBookmarks`; the stream ends at `timeoutSeconds`.
fn watch(
    state: &Arc<State>,
    target: &Target,
    q: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let filter = Filter::new(target, q);
    let bookmarks = q
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true" || v == "1");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let rt = target.rt;
    let requested = q
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0");
    let (initial, mut rx, start_rv, gone) = {
        let mut store = state.store();
        match requested {
            Some(rv) => {
                let rv: u64 = rv.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))
                })?;
                match store.watch_from(rt, rv) {
                    Ok((past, rx)) => (past, rx, rv, None),
                    // Upstream answers 200 and an ERROR event carrying the 410 Status.
                    Err(e) => (vec![], store.watch_current(rt).1, rv, Some(e)),
                }
            }
            None => {
                let (events, rx, rv) = store.watch_current(rt);
                (events, rx, rv, None)
            }
        }
    };
    let (tx, out) = tokio::sync::mpsc::channel::<Bytes>(256);
    let mut dropped = state.watch_generation.subscribe();
    let bookmark_every = state.bookmark_interval;
    let state = state.clone();
    tokio::spawn(async move {
        if let Some(e) = gone {
            let _ = tx.send(event_line("ERROR", &e.to_status())).await;
            return;
        }
        let mut last = start_rv;
        for e in initial {
            if filter.matches(&e.object) {
                last = last.max(e.rv);
                if tx
                    .send(event_line(e.kind.as_str(), &e.object))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(bookmark_every);
        tick.tick().await;
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(WatchEvent { rv, kind, object }) => {
                        if rv <= last || !filter.matches(&object) {
                            continue;
                        }
                        last = rv;
                        if tx.send(event_line(kind.as_str(), &object)).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let e = ApiError::gone("too old resource version: the watch fell behind");
                        let _ = tx.send(event_line("ERROR", &e.to_status())).await;
                        return;
                    }
                    Err(_) => return,
                },
                _ = tick.tick(), if bookmarks => {
                    let rv = state.store().resource_version();
                    let obj = json!({
                        "kind": rt.kind,
                        "apiVersion": rt.api_version(),
                        "metadata": {"resourceVersion": rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}},
                    });
                    if tx.send(event_line("BOOKMARK", &obj)).await.is_err() {
                        return;
                    }
                }
                _ = &mut deadline => return,
                _ = dropped.changed() => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(out, |mut out| async move {
        out.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), out))
    });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}
