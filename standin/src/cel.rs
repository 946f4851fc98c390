//! `matchConditions` of validating webhooks: CEL expressions over `object`, `oldObject` and
//! `request`, evaluated with the `cel` crate. All true: the webhook is called; any false: it is
//! skipped; an error follows the webhook's failure policy (as upstream).

use k8s_openapi::api::admissionregistration::v1::MatchCondition;
use serde_json::{Value, json};

use crate::identity::Identity;

pub fn all_match(
    conditions: &[MatchCondition],
    object: &Value,
    old: Option<&Value>,
    user: &Identity,
    sub: Option<&str>,
) -> Result<bool, String> {
    let mut ctx = cel::Context::default();
    let request = json!({
        "kind": {"group": "certificates.k8s.io", "version": "v1", "kind": "CertificateSigningRequest"},
        "resource": {"group": "certificates.k8s.io", "version": "v1", "resource": "certificatesigningrequests"},
        "subResource": sub.unwrap_or(""),
        "name": object["metadata"]["name"],
        "operation": if old.is_some() { "UPDATE" } else { "CREATE" },
        "userInfo": {"username": user.username, "uid": user.uid, "groups": user.groups, "extra": user.extra},
    });
    ctx.add_variable("object", object.clone())
        .map_err(|e| e.to_string())?;
    ctx.add_variable("oldObject", old.cloned().unwrap_or(Value::Null))
        .map_err(|e| e.to_string())?;
    ctx.add_variable("request", request)
        .map_err(|e| e.to_string())?;
    for c in conditions {
        let program = cel::Program::compile(&c.expression)
            .map_err(|e| format!("matchCondition {:?}: compilation failed: {e}", c.name))?;
        match program.execute(&ctx) {
            Ok(cel::Value::Bool(true)) => {}
            Ok(cel::Value::Bool(false)) => return Ok(false),
            Ok(other) => {
                return Err(format!(
                    "matchCondition {:?} evaluated to {other:?}, not a bool",
                    c.name
                ));
            }
            Err(e) => return Err(format!("matchCondition {:?}: {e}", c.name)),
        }
    }
    Ok(true)
}
