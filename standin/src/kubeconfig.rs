//! A kubeconfig for the stand-in: one cluster, one user and one context per identity.

use serde_json::{Value, json};

use crate::identity::Identity;

pub fn kubeconfig(server: &str, ca_pem: &str, identities: &[Identity], current: &str) -> Value {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes());
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kube-standin", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": identities.iter().map(|i| json!({"name": i.context, "user": {"token": i.token}})).collect::<Vec<_>>(),
        "contexts": identities.iter().map(|i| json!({"name": i.context, "context": {"cluster": "kube-standin", "user": i.context}})).collect::<Vec<_>>(),
        "current-context": current,
        "preferences": {},
    })
}
