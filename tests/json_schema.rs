//! `schemas/` is generated from the Rust types: this test fails when it is out of date.
//! Regenerate with `UPDATE_SCHEMAS=1 cargo test --test json_schema`.

#[test]
fn schemas_are_up_to_date() {
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    for (name, text) in csr_warden::json_schema::files() {
        let path = format!("{}/schemas/{name}", env!("CARGO_MANIFEST_DIR"));
        if update {
            std::fs::create_dir_all(format!("{}/schemas", env!("CARGO_MANIFEST_DIR"))).unwrap();
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == text,
            "schemas/{name} is out of date: run `UPDATE_SCHEMAS=1 cargo test --test json_schema` and commit it"
        );
    }
}

#[test]
fn the_schemas_describe_the_files() {
    let policy = csr_warden::json_schema::policy();
    assert_eq!(
        policy["required"],
        serde_json::json!(["apiVersion", "kind", "metadata", "spec"])
    );
    assert_eq!(
        policy["additionalProperties"], false,
        "unknown fields are refused"
    );
    let text = policy.to_string();
    for field in [
        "signerNames",
        "subjectAltNames",
        "denyWhen",
        "maxSeconds",
        "waiveGuards",
        "rsaMinBits",
    ] {
        assert!(
            text.contains(field),
            "{field} missing from the policy schema"
        );
    }
    let suite = csr_warden::json_schema::suite().to_string();
    for field in ["cases", "expect", "requester", "inline", "reasons"] {
        assert!(
            suite.contains(field),
            "{field} missing from the suite schema"
        );
    }
}
