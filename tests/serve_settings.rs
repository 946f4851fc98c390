//! `serve` settings: defaults < file < environment < flags; and `certs dev`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use csr_warden::cli::certs::{CertsArgs, CertsCommand, DevArgs};
use csr_warden::server::{ServeArgs, Settings};

fn env(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn file(text: &str, ext: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("settings.{ext}"));
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn defaults_without_file_environment_or_flags() {
    let s = Settings::load(&ServeArgs::default(), env(&[])).unwrap();
    assert_eq!(s, Settings::default());
    assert_eq!(s.listen.to_string(), "0.0.0.0:8443");
    assert_eq!(s.metrics_listen.to_string(), "0.0.0.0:9090");
    assert_eq!(s.policies, PathBuf::from("policies"));
    assert_eq!(s.max_body_bytes, 1024 * 1024);
    assert_eq!(s.evaluation_deadline, Duration::from_secs(2));
}

#[test]
fn file_then_environment_then_flags() {
    let (_dir, path) = file(
        "listen: 127.0.0.1:1001\nmetrics_listen: 127.0.0.1:2001\npolicies: /etc/csr-warden/policies\nbreak_glass_users: [alice]\nevaluation_deadline: 250ms\nshutdown_timeout: 3\n",
        "yaml",
    );
    let args = ServeArgs {
        config: Some(path.clone()),
        ..Default::default()
    };
    let from_file = Settings::load(&args, env(&[])).unwrap();
    assert_eq!(from_file.listen.to_string(), "127.0.0.1:1001");
    assert_eq!(
        from_file.policies,
        PathBuf::from("/etc/csr-warden/policies")
    );
    assert_eq!(from_file.break_glass_users, vec!["alice"]);
    assert_eq!(from_file.evaluation_deadline, Duration::from_millis(250));
    assert_eq!(from_file.shutdown_timeout, Duration::from_secs(3));

    let environment = env(&[
        ("CSR_WARDEN_LISTEN", "127.0.0.1:1002"),
        ("CSR_WARDEN_BREAK_GLASS_USERS", "bob,carol"),
        ("CSR_WARDEN_MAX_BODY_BYTES", "2048"),
        ("CSR_WARDEN_HEADER_READ_TIMEOUT", "1m"),
    ]);
    let from_env = Settings::load(&args, environment.clone()).unwrap();
    assert_eq!(from_env.listen.to_string(), "127.0.0.1:1002");
    assert_eq!(from_env.metrics_listen.to_string(), "127.0.0.1:2001");
    assert_eq!(from_env.break_glass_users, vec!["bob", "carol"]);
    assert_eq!(from_env.max_body_bytes, 2048);
    assert_eq!(from_env.header_read_timeout, Duration::from_secs(60));

    let flags = ServeArgs {
        config: Some(path),
        listen: Some("127.0.0.1:1003".into()),
        break_glass_users: vec!["dave".into()],
        policies: Some("mine".into()),
        ..Default::default()
    };
    let from_flags = Settings::load(&flags, environment).unwrap();
    assert_eq!(from_flags.listen.to_string(), "127.0.0.1:1003");
    assert_eq!(from_flags.break_glass_users, vec!["dave"]);
    assert_eq!(from_flags.policies, PathBuf::from("mine"));
    assert_eq!(from_flags.max_body_bytes, 2048);
}

#[test]
fn json_settings_file() {
    let (_dir, path) = file(
        r#"{"listen": "127.0.0.1:7443", "break_glass_groups": ["sre"]}"#,
        "json",
    );
    let args = ServeArgs {
        config: Some(path),
        ..Default::default()
    };
    let s = Settings::load(&args, env(&[])).unwrap();
    assert_eq!(s.listen.to_string(), "127.0.0.1:7443");
    assert_eq!(s.break_glass_groups, vec!["sre"]);
}

#[test]
fn bad_settings_name_the_key_or_the_file() {
    let load_file = |text: &str| {
        let (_dir, path) = file(text, "yaml");
        let args = ServeArgs {
            config: Some(path),
            ..Default::default()
        };
        Settings::load(&args, env(&[])).unwrap_err().to_string()
    };
    let e = load_file("lisen: 127.0.0.1:1\n");
    assert!(e.contains("lisen"), "{e}");
    let e = load_file("evaluation_deadline: soon\n");
    assert!(e.contains("\"soon\""), "{e}");
    let e = load_file("listen: nowhere\n");
    assert!(e.contains("listen") || e.contains("socket address"), "{e}");
    let e = load_file("- a list\n");
    assert!(e.contains("expected a mapping"), "{e}");
    let e = load_file("cert_file: /tls/tls.crt\n");
    assert!(e.contains("cert_file and key_file go together"), "{e}");
    let e = load_file("max_body_bytes: 0\n");
    assert!(e.contains("max_body_bytes must be above 0"), "{e}");

    let missing = ServeArgs {
        config: Some("/nonexistent/settings.yaml".into()),
        ..Default::default()
    };
    let e = Settings::load(&missing, env(&[])).unwrap_err().to_string();
    assert!(e.starts_with("/nonexistent/settings.yaml: "), "{e}");

    let e = Settings::load(&ServeArgs::default(), env(&[("CSR_WARDEN_LISTN", "x")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("listn"), "{e}");
}

#[test]
fn certs_dev_writes_a_ca_and_a_serving_pair_and_prints_the_ca_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("certs");
    let args = CertsArgs {
        command: CertsCommand::Dev(DevArgs {
            out: out_dir.clone(),
            service: "warden".into(),
            namespace: "security".into(),
        }),
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(
        csr_warden::cli::certs::run(&args, &mut out, &mut err).unwrap(),
        0
    );
    let bundle = String::from_utf8(out).unwrap();
    let ca_pem = base64::engine::general_purpose::STANDARD
        .decode(bundle.trim())
        .unwrap();
    assert_eq!(ca_pem, std::fs::read(out_dir.join("ca.crt")).unwrap());
    let err = String::from_utf8(err).unwrap();
    assert!(err.contains("DEVELOPMENT"), "{err}");
    assert!(err.contains("warden.security.svc"), "{err}");
    assert!(!err.contains("PRIVATE KEY") && !bundle.contains("PRIVATE KEY"));

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out_dir.join("tls.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // The pair loads as the server loads it, and names the Service.
    let files = csr_warden::server::tls::TlsFiles {
        cert: out_dir.join("tls.crt"),
        key: out_dir.join("tls.key"),
        client_ca: None,
    };
    let loaded = csr_warden::server::tls::load(&files).unwrap();
    for name in [
        "localhost",
        "127.0.0.1",
        "warden",
        "warden.security.svc",
        "warden.security.svc.cluster.local",
    ] {
        assert!(
            loaded.names.iter().any(|n| n == name),
            "{name} missing from {:?}",
            loaded.names
        );
    }
}

#[test]
fn unusable_certificate_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    std::fs::write(&cert, "not a certificate").unwrap();
    std::fs::write(&key, "not a key").unwrap();
    let files = csr_warden::server::tls::TlsFiles {
        cert: cert.clone(),
        key,
        client_ca: None,
    };
    let e = csr_warden::server::tls::load(&files)
        .err()
        .unwrap()
        .to_string();
    assert!(e.starts_with(&cert.display().to_string()), "{e}");
    assert!(e.contains("no CERTIFICATE block"), "{e}");
}

#[test]
fn record_file_gets_every_record_appended() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.jsonl");
    std::fs::write(&path, "{\"earlier\":true}\n").unwrap();
    let sink = csr_warden::server::RecordSink::stdout(Some(&path)).unwrap();
    let policies = csr_warden::policy_dir::load("policies".as_ref()).unwrap();
    let body = std::fs::read("examples/admission/create-terraform-alice.json").unwrap();
    let req = csr_warden::admission::parse_review(&body).unwrap();
    let reviewed = csr_warden::admission::review(&policies, &Default::default(), &req, "t".into());
    let record = reviewed.record.unwrap();
    sink.write(&record);
    sink.write(&record);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "appended, not truncated: {text}");
    let v: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
    assert_eq!(v["kind"], "DecisionRecord");
    assert!(
        csr_warden::server::RecordSink::stdout(Some(std::path::Path::new(
            "/nonexistent/dir/r.jsonl"
        )))
        .is_err()
    );
}
