//! Discovery, enough for kubectl and kube-rs: `/version`, `/api`, `/apis`, group and resource
//! lists (the legacy format; clients that ask for aggregated discovery fall back to it, as they
//! do with older servers). OpenAPI is not served.

use http::StatusCode;
use hyper::Response;
use serde_json::{Value, json};

use crate::server::{Body, json_response};
use crate::store::{self, ResourceType};

fn resource(t: &ResourceType) -> Vec<Value> {
    let verbs = json!([
        "create", "delete", "get", "list", "patch", "update", "watch"
    ]);
    let singular = t.kind.to_lowercase();
    let mut out = vec![json!({
        "name": t.plural,
        "singularName": singular,
        "namespaced": t.namespaced,
        "kind": t.kind,
        "verbs": verbs,
    })];
    if *t == store::CSRS {
        out[0]["shortNames"] = json!(["csr"]);
        for sub in ["approval", "status"] {
            out.push(json!({
                "name": format!("{}/{sub}", t.plural),
                "singularName": "",
                "namespaced": false,
                "kind": t.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    if *t == store::LEASES {
        out[0]["singularName"] = json!("lease");
    }
    if t.kind == "Event" {
        out[0]["shortNames"] = json!(["ev"]);
        out[0]["singularName"] = json!("event");
    }
    out
}

fn groups() -> Vec<&'static str> {
    let mut g: Vec<&str> = store::ALL
        .iter()
        .map(|t| t.group)
        .filter(|g| !g.is_empty())
        .collect();
    g.dedup();
    g
}

fn group(name: &str) -> Value {
    let gv = json!({"groupVersion": format!("{name}/v1"), "version": "v1"});
    json!({"name": name, "versions": [gv.clone()], "preferredVersion": gv})
}

fn resource_list(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = store::ALL
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .flat_map(resource)
        .collect();
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// Just enough OpenAPI v3 for kubectl to learn that the server validates fields itself
/// (`fieldValidation` on the PATCH operation of the kind, which kubectl's query-parameter
/// verifier looks for), so `kubectl create -f` needs no client-side schema.
fn openapi_certificates() -> Value {
    let gvk = json!({"group": "certificates.k8s.io", "version": "v1", "kind": "CertificateSigningRequest"});
    let params = json!([
        {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
        {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
    ]);
    let op = |action: &str| {
        json!({
            "operationId": format!("{action}CertificatesV1CertificateSigningRequest"),
            "parameters": params,
            "responses": {"200": {"description": "OK"}},
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
        })
    };
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.34.0-standin"},
        "paths": {
            "/apis/certificates.k8s.io/v1/certificatesigningrequests": {"post": op("post")},
            "/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}": {
                "patch": op("patch"), "put": op("put"), "get": op("get"), "delete": op("delete"),
            },
        },
        "components": {"schemas": {}},
    })
}

/// The discovery answer for `path`, if it is a discovery path.
pub fn respond(path: &str) -> Option<Response<Body>> {
    let path = path.trim_end_matches('/');
    let body = match path {
        "/version" => json!({
            "major": "1", "minor": "34", "gitVersion": "v1.34.0-standin", "gitCommit": "standin",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24",
            "compiler": "gc", "platform": "linux/amd64"
        }),
        "/api" => {
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        }
        "/apis" => json!({
            "kind": "APIGroupList", "apiVersion": "v1",
            "groups": groups().into_iter().map(group).collect::<Vec<_>>(),
        }),
        "/api/v1" => resource_list("", "v1")?,
        "/openapi/v3" => json!({"paths": {
            "apis/certificates.k8s.io/v1": {"serverRelativeURL": "/openapi/v3/apis/certificates.k8s.io/v1?hash=standin"},
        }}),
        "/openapi/v3/apis/certificates.k8s.io/v1" => openapi_certificates(),
        _ => {
            let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            match parts.as_slice() {
                ["apis", g] if groups().contains(g) => {
                    let mut v = group(g);
                    v["kind"] = json!("APIGroup");
                    v["apiVersion"] = json!("v1");
                    v
                }
                ["apis", g, v] => resource_list(g, v)?,
                _ => return None,
            }
        }
    };
    Some(json_response(StatusCode::OK, &body))
}
