//! JSON Schemas of the files people write, generated from the Rust types that read them, for
//! editors (yaml-language-server). `schemas/` holds them; a test fails when they are stale.

/// The schema of a policy file (`kind: CSRPolicy`).
pub fn policy() -> serde_json::Value {
    let mut s = serde_json::to_value(schemars::schema_for!(crate::policy::schema::PolicyDocument))
        .unwrap_or_default();
    s["title"] = "csr-warden CSRPolicy (csr-warden.io/v1alpha1)".into();
    s
}

/// The schema of a policy test suite (`kind: CSRPolicyTest`).
pub fn suite() -> serde_json::Value {
    let mut s = serde_json::to_value(schemars::schema_for!(crate::suite::SuiteDocument))
        .unwrap_or_default();
    s["title"] = "csr-warden CSRPolicyTest (csr-warden.io/v1alpha1)".into();
    s
}

/// `(file name under schemas/, pretty JSON)` for every schema.
pub fn files() -> Vec<(&'static str, String)> {
    let pretty = |v: serde_json::Value| serde_json::to_string_pretty(&v).unwrap_or_default() + "\n";
    vec![
        ("csr-policy.json", pretty(policy())),
        ("csr-policy-test.json", pretty(suite())),
    ]
}
