//! `csr-warden check` as a user runs it: the binary, the shipped policies, OpenSSL requests.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_csr-warden"))
        .current_dir(ROOT)
        .arg("check")
        .args(args)
        .output()
        .expect("run csr-warden")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Decide one input with JSON output; returns the record.
fn decide(args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let o = check(&all);
    let text = stdout(&o);
    assert_eq!(
        text.lines().count(),
        1,
        "one record expected: {text}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_str(text.trim()).expect("json record")
}

const NODE: &[&str] = &[
    "--signer",
    "kubernetes.io/kubelet-serving",
    "--username",
    "system:node:worker-1",
    "--group",
    "system:nodes",
    "--usage",
    "digital signature",
    "--usage",
    "server auth",
];
const TERRAFORM: &[&str] = &[
    "--signer",
    "kubernetes.io/kube-apiserver-client",
    "--username",
    "terraform",
    "--group",
    "terraform",
    "--usage",
    "client auth",
];
const SPIFFE: &[&str] = &[
    "--signer",
    "example.com/spiffe",
    "--username",
    "system:serviceaccount:payments:api",
    "--usage",
    "client auth",
    "--expiration-seconds",
    "3600",
];

fn with(base: &[&'static str], extra: &[&'static str], file: &'static str) -> Vec<&'static str> {
    let mut v = base.to_vec();
    v.extend_from_slice(extra);
    v.push(file);
    v
}

/// (arguments, decision, policy, text every matching reason list must contain)
type Case = (
    Vec<&'static str>,
    &'static str,
    Option<&'static str>,
    &'static str,
);

fn run_cases(cases: Vec<Case>) {
    for (args, decision, policy, reason) in cases {
        let r = decide(&args);
        let reasons = r["reasons"].to_string();
        assert_eq!(r["decision"], decision, "{args:?}: {r}");
        assert_eq!(r["policy"].as_str(), policy, "{args:?}: {r}");
        assert!(
            reasons.contains(reason),
            "{args:?}: {reason:?} not in {reasons}"
        );
    }
}

#[test]
fn kubelet_serving_policy() {
    run_cases(vec![
        (
            with(NODE, &[], "examples/requests/kubelet-worker-1.pem"),
            "approve",
            Some("kubelet-serving"),
            "",
        ),
        (
            with(NODE, &[], "examples/requests/kubelet-worker-1-rsa.pem"),
            "approve",
            Some("kubelet-serving"),
            "",
        ),
        (
            with(NODE, &[], "examples/requests/kubelet-other-node-dns.pem"),
            "deny",
            Some("kubelet-serving"),
            r#"dnsNames[0] \"worker-2\" is not allowed: expected \"${node}\" or \"${node}.cluster.local\" (node = worker-1)"#,
        ),
        (
            with(NODE, &[], "examples/requests/kubelet-public-ip.pem"),
            "deny",
            Some("kubelet-serving"),
            "ipAddresses[0] 8.8.8.8 is not allowed",
        ),
        (
            with(NODE, &[], "examples/requests/kubelet-no-san.pem"),
            "deny",
            Some("kubelet-serving"),
            "at least 1 required",
        ),
        (
            with(NODE, &[], "examples/requests/kubelet-email-san.pem"),
            "deny",
            Some("kubelet-serving"),
            "the policy allows no emailAddresses",
        ),
        (
            with(NODE, &[], "examples/requests/kubelet-p521.pem"),
            "deny",
            Some("kubelet-serving"),
            "ECDSA curve P-521 is not allowed",
        ),
        (
            with(NODE, &[], "examples/requests/kubelet-wildcard.pem"),
            "deny",
            Some("no-wildcards"),
            "wildcard names are never issued",
        ),
        // Another node's identity, the CN check.
        (
            with(
                &[
                    "--signer",
                    "kubernetes.io/kubelet-serving",
                    "--username",
                    "system:node:worker-2",
                    "--group",
                    "system:nodes",
                    "--usage",
                    "digital signature",
                    "--usage",
                    "server auth",
                ],
                &[],
                "examples/requests/kubelet-worker-1.pem",
            ),
            "deny",
            Some("kubelet-serving"),
            r#"CN \"system:node:worker-1\" is not allowed"#,
        ),
        // A dotted node name binds literally: node.1 may not claim nodex1.
        (
            with(
                &[
                    "--signer",
                    "kubernetes.io/kubelet-serving",
                    "--username",
                    "system:node:node.1",
                    "--group",
                    "system:nodes",
                    "--usage",
                    "digital signature",
                    "--usage",
                    "server auth",
                ],
                &[],
                "examples/requests/kubelet-dotted-node.pem",
            ),
            "approve",
            Some("kubelet-serving"),
            "",
        ),
        (
            with(
                &[
                    "--signer",
                    "kubernetes.io/kubelet-serving",
                    "--username",
                    "system:node:node.1",
                    "--group",
                    "system:nodes",
                    "--usage",
                    "digital signature",
                    "--usage",
                    "server auth",
                ],
                &[],
                "examples/requests/kubelet-dot-wildcard.pem",
            ),
            "deny",
            Some("kubelet-serving"),
            r#"dnsNames[0] \"nodex1\" is not allowed"#,
        ),
        // Not in group system:nodes: no policy governs, so no opinion.
        (
            with(
                &[
                    "--signer",
                    "kubernetes.io/kubelet-serving",
                    "--username",
                    "system:node:worker-1",
                    "--usage",
                    "digital signature",
                    "--usage",
                    "server auth",
                ],
                &[],
                "examples/requests/kubelet-worker-1.pem",
            ),
            "ignore",
            None,
            "is in none of the groups",
        ),
        // Usages: server auth required; client auth not allowed.
        (
            with(
                &[
                    "--signer",
                    "kubernetes.io/kubelet-serving",
                    "--username",
                    "system:node:worker-1",
                    "--group",
                    "system:nodes",
                    "--usage",
                    "digital signature",
                    "--usage",
                    "client auth",
                ],
                &[],
                "examples/requests/kubelet-worker-1.pem",
            ),
            "deny",
            Some("kubelet-serving"),
            r#"usage \"server auth\" is required"#,
        ),
    ]);
}

#[test]
fn terraform_client_policy() {
    run_cases(vec![
        (
            with(TERRAFORM, &[], "examples/requests/rsa-2048.pem"),
            "approve",
            Some("terraform-client"),
            "",
        ),
        (
            with(TERRAFORM, &[], "examples/requests/rsa-4096-sha512.pem"),
            "approve",
            Some("terraform-client"),
            "",
        ),
        (
            with(TERRAFORM, &[], "examples/requests/rsa-pss-sha256.pem"),
            "approve",
            Some("terraform-client"),
            "",
        ),
        (
            with(TERRAFORM, &[], "examples/requests/p256.pem"),
            "approve",
            Some("terraform-client"),
            "",
        ),
        (
            with(TERRAFORM, &[], "examples/requests/p384.pem"),
            "approve",
            Some("terraform-client"),
            "",
        ),
        (
            with(TERRAFORM, &[], "examples/requests/ed25519.pem"),
            "approve",
            Some("terraform-client"),
            "",
        ),
        (
            with(TERRAFORM, &[], "examples/requests/no-org.pem"),
            "approve",
            Some("terraform-client"),
            "",
        ),
        (
            with(TERRAFORM, &[], "examples/requests/bmpstring.pem"),
            "approve",
            Some("terraform-client"),
            "",
        ),
        (
            with(
                TERRAFORM,
                &["--expiration-seconds", "2592000"],
                "examples/requests/p256.pem",
            ),
            "approve",
            Some("terraform-client"),
            "",
        ),
        (
            with(
                TERRAFORM,
                &["--expiration-seconds", "2592001"],
                "examples/requests/p256.pem",
            ),
            "deny",
            Some("terraform-client"),
            "more than the maximum of 2592000",
        ),
        (
            with(TERRAFORM, &[], "examples/requests/rsa-1024.pem"),
            "deny",
            Some("terraform-client"),
            "RSA key of 1024 bits is below the minimum of 2048 bits",
        ),
        (
            with(TERRAFORM, &[], "examples/requests/p224.pem"),
            "deny",
            Some("terraform-client"),
            "ECDSA curve P-224 is not allowed",
        ),
        (
            with(TERRAFORM, &[], "examples/requests/p521.pem"),
            "deny",
            Some("terraform-client"),
            "ECDSA curve P-521 is not allowed",
        ),
        (
            with(TERRAFORM, &[], "examples/requests/bad-cn.pem"),
            "deny",
            Some("terraform-client"),
            r#"CN \"Alice Smith\" is not allowed"#,
        ),
        (
            with(TERRAFORM, &[], "examples/requests/unknown-org.pem"),
            "deny",
            Some("terraform-client"),
            r#"O \"finance\" is not allowed"#,
        ),
        (
            with(TERRAFORM, &[], "examples/requests/duplicate-cn.pem"),
            "deny",
            Some("terraform-client"),
            r#"2 CN values [\"alice\", \"admin\"]"#,
        ),
        (
            with(TERRAFORM, &[], "examples/requests/client-with-san.pem"),
            "deny",
            Some("terraform-client"),
            "the policy allows no dnsNames",
        ),
        (
            with(TERRAFORM, &[], "examples/requests/admin-group.pem"),
            "deny",
            Some("terraform-client"),
            "guard adminGroups",
        ),
        (
            with(TERRAFORM, &[], "examples/requests/kubeadm-admins.pem"),
            "deny",
            Some("terraform-client"),
            "kubeadm:cluster-admins",
        ),
        (
            with(TERRAFORM, &[], "examples/requests/ca-request.pem"),
            "deny",
            Some("terraform-client"),
            "guard certificateAuthority",
        ),
        (
            with(TERRAFORM, &[], "examples/requests/rsa-sha1.pem"),
            "deny",
            Some("terraform-client"),
            "guard sha1Signature",
        ),
        (
            with(TERRAFORM, &[], "examples/requests/ecdsa-sha1.pem"),
            "deny",
            Some("terraform-client"),
            "ECDSA-SHA1 uses SHA-1",
        ),
        (
            with(TERRAFORM, &[], "examples/requests/tampered.pem"),
            "deny",
            Some("terraform-client"),
            "guard signature: ECDSA-SHA256 signature is invalid",
        ),
        (
            with(TERRAFORM, &[], "examples/requests/dsa.pem"),
            "deny",
            Some("terraform-client"),
            "signature cannot be verified: signature algorithm 2.16.840.1.101.3.4.3.2",
        ),
        (
            with(TERRAFORM, &[], "examples/requests/many-sans.pem"),
            "deny",
            Some("terraform-client"),
            "2000 subject alternative names, more than the limit of 256",
        ),
        (
            with(TERRAFORM, &[], "examples/requests/wildcard-cn.pem"),
            "deny",
            Some("no-wildcards"),
            "wildcard names are never issued",
        ),
        (
            with(
                TERRAFORM,
                &["--usage", "server auth"],
                "examples/requests/p256.pem",
            ),
            "deny",
            Some("terraform-client"),
            "guard signerRules",
        ),
        // Not in group terraform: no opinion.
        (
            with(
                &[
                    "--signer",
                    "kubernetes.io/kube-apiserver-client",
                    "--username",
                    "alice",
                    "--group",
                    "dev",
                    "--usage",
                    "client auth",
                ],
                &[],
                "examples/requests/p256.pem",
            ),
            "ignore",
            None,
            "is in none of the groups",
        ),
    ]);
}

#[test]
fn spiffe_workload_policy() {
    run_cases(vec![
        (
            with(SPIFFE, &[], "examples/requests/spiffe-api.pem"),
            "approve",
            Some("spiffe-workload"),
            "",
        ),
        (
            with(SPIFFE, &[], "examples/requests/spiffe-no-cn.pem"),
            "approve",
            Some("spiffe-workload"),
            "",
        ),
        (
            with(SPIFFE, &[], "examples/requests/spiffe-other-sa.pem"),
            "deny",
            Some("spiffe-workload"),
            r#"(ns = payments, sa = api)"#,
        ),
        (
            with(SPIFFE, &[], "examples/requests/spiffe-extra-dns.pem"),
            "deny",
            Some("spiffe-workload"),
            "the policy allows no dnsNames",
        ),
        (
            with(SPIFFE, &[], "examples/requests/p256.pem"),
            "deny",
            Some("spiffe-workload"),
            "0 uris: at least 1 required",
        ),
        (
            with(
                &[
                    "--signer",
                    "example.com/spiffe",
                    "--username",
                    "system:serviceaccount:payments:api",
                    "--usage",
                    "client auth",
                ],
                &[],
                "examples/requests/spiffe-api.pem",
            ),
            "deny",
            Some("spiffe-workload"),
            "expirationSeconds is required but not set",
        ),
        (
            with(
                &[
                    "--signer",
                    "example.com/spiffe",
                    "--username",
                    "system:serviceaccount:payments:api",
                    "--usage",
                    "client auth",
                    "--expiration-seconds",
                    "86401",
                ],
                &[],
                "examples/requests/spiffe-api.pem",
            ),
            "deny",
            Some("spiffe-workload"),
            "more than the maximum of 86400",
        ),
        (
            with(
                &[
                    "--signer",
                    "example.com/spiffe",
                    "--username",
                    "alice",
                    "--usage",
                    "client auth",
                ],
                &[],
                "examples/requests/spiffe-api.pem",
            ),
            "ignore",
            None,
            "matches none of the username patterns",
        ),
    ]);
}

#[test]
fn manifests_supply_signer_usages_and_identity() {
    let o = check(&[
        "--output",
        "json",
        "examples/csr/terraform-alice.yaml",
        "examples/csr/kubelet-worker-1.yaml",
        "examples/csr/spiffe-payments-api.yaml",
        "examples/csr/kubelet-steals-worker-2.yaml",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let records: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["decision"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("terraform-alice", "approve"),
            ("kubelet-worker-1", "approve"),
            ("spiffe-payments-api", "approve"),
            ("kubelet-steals-worker-2", "deny"),
        ]
    );
    // The manifest's fields win over flags.
    let r = decide(&[
        "--username",
        "mallory",
        "--group",
        "nobody",
        "examples/csr/terraform-alice.yaml",
    ]);
    assert_eq!(r["decision"], "approve");
    assert_eq!(r["username"], "terraform");
}

#[test]
fn json_records_have_the_documented_fields() {
    let r = decide(&with(TERRAFORM, &[], "examples/requests/rsa-1024.pem"));
    for key in ["input", "decision", "policy", "mode", "reasons"] {
        assert!(r.get(key).is_some(), "{key} missing from {r}");
    }
    assert_eq!(r["input"], "examples/requests/rsa-1024.pem");
    assert_eq!(r["mode"], "enforce");
    assert!(r["reasons"].is_array());
}

#[test]
fn exit_codes() {
    assert_eq!(
        check(&with(TERRAFORM, &[], "examples/requests/p256.pem"))
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        check(&with(TERRAFORM, &[], "examples/requests/p224.pem"))
            .status
            .code(),
        Some(1)
    );
    // Ignored requests are not denials.
    assert_eq!(
        check(&["examples/requests/p256.pem"]).status.code(),
        Some(0)
    );
    let missing = check(&["examples/requests/no-such-file.pem"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no-such-file.pem"));
    let bad_dir = tempfile::tempdir().unwrap();
    std::fs::write(bad_dir.path().join("p.yaml"), "apiVersion: x\n").unwrap();
    let bad = check(&[
        "--policies",
        bad_dir.path().to_str().unwrap(),
        "examples/requests/p256.pem",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("p.yaml"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    assert_eq!(
        check(&["--output", "xml", "examples/requests/p256.pem"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn garbage_is_a_denial_with_the_parse_error() {
    let r = decide(&["examples/requests/garbage.pem"]);
    assert_eq!(r["decision"], "deny");
    assert!(
        r["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("input: not a PEM request"),
        "{r}"
    );
}

#[test]
fn reads_standard_input_and_admission_reviews() {
    let pem =
        std::fs::read_to_string(format!("{ROOT}/examples/requests/kubelet-worker-1.pem")).unwrap();
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "certificates.k8s.io", "version": "v1", "kind": "CertificateSigningRequest"},
            "resource": {"group": "certificates.k8s.io", "version": "v1", "resource": "certificatesigningrequests"},
            "name": "csr-abc",
            "operation": "CREATE",
            "userInfo": {"username": "system:node:worker-1", "groups": ["system:nodes", "system:authenticated"]},
            "object": {
                "apiVersion": "certificates.k8s.io/v1",
                "kind": "CertificateSigningRequest",
                "metadata": {"generateName": "csr-"},
                "spec": {
                    "request": base64(&pem),
                    "signerName": "kubernetes.io/kubelet-serving",
                    "usages": ["digital signature", "server auth"]
                }
            }
        }
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_csr-warden"))
        .current_dir(ROOT)
        .args(["check", "--output", "json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(review.to_string().as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let r: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(r["decision"], "approve", "{r}");
    assert_eq!(r["policy"], "kubelet-serving");
    assert_eq!(r["name"], "csr-abc");
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn text_output_reads_well() {
    let o = check(&with(
        NODE,
        &[],
        "examples/requests/kubelet-other-node-dns.pem",
    ));
    assert_eq!(
        stdout(&o),
        "examples/requests/kubelet-other-node-dns.pem: deny by policy kubelet-serving (enforce)\n  \
         - kubelet-serving: subjectAltNames.dnsNames: dnsNames[0] \"worker-2\" is not allowed: \
         expected \"${node}\" or \"${node}.cluster.local\" (node = worker-1)\n"
    );
}

fn base64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn approval_review_is_checked_for_the_recorded_requester_not_the_approver() {
    // The approver (kubernetes-admin) is in no terraform group; the requester recorded in spec is.
    let record = decide(&["examples/admission/approve-terraform-alice.json"]);
    assert_eq!(record["username"], "terraform");
    assert_eq!(record["decision"], "approve");
    let record = decide(&["examples/admission/create-terraform-alice.json"]);
    assert_eq!(record["username"], "terraform");
    assert_eq!(record["decision"], "approve");
}

fn check_in(dir: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_csr-warden"))
        .current_dir(dir)
        .arg("check")
        .args(args)
        .output()
        .expect("run csr-warden")
}

#[test]
fn decision_records_reproduce_with_check() {
    let manifests: Vec<String> = std::fs::read_dir(format!("{ROOT}/examples/csr"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| p.display().to_string())
        .collect();
    let mut args = vec!["--output", "record"];
    args.extend(manifests.iter().map(String::as_str));
    let o = check(&args);
    let records = stdout(&o);
    assert_eq!(records.lines().count(), manifests.len());
    let first: Value = serde_json::from_str(records.lines().next().unwrap()).unwrap();
    assert_eq!(first["apiVersion"], "csr-warden.io/v1alpha1");
    assert_eq!(first["kind"], "DecisionRecord");
    assert_eq!(first["source"], "check");
    assert!(
        first["policyDigest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(first["request"]["data"].as_str().is_some());

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("records.jsonl");
    std::fs::write(&file, &records).unwrap();
    let o = check(&["--output", "json", file.to_str().unwrap()]);
    let text = stdout(&o);
    assert_eq!(text.lines().count(), manifests.len());
    for (line, record) in text.lines().zip(records.lines()) {
        let now: Value = serde_json::from_str(line).unwrap();
        let then: Value = serde_json::from_str(record).unwrap();
        assert_eq!(now["reproduced"], true, "{line}");
        assert_eq!(now["decision"], then["decision"]);
        assert_eq!(now["policy"], then["policy"]);
        assert_eq!(now["username"], then["requester"]["username"]);
    }
}

#[test]
fn a_webhook_record_reproduces_and_a_policy_change_is_reported() {
    // The record the webhook writes for a review, as `serve` logs it.
    let policies = csr_warden::policy_dir::load(format!("{ROOT}/policies").as_ref()).unwrap();
    let body = std::fs::read(format!(
        "{ROOT}/examples/admission/create-terraform-admin.json"
    ))
    .unwrap();
    let req = csr_warden::admission::parse_review(&body).unwrap();
    let reviewed = csr_warden::admission::review(
        &policies,
        &Default::default(),
        &req,
        "2026-12-04T12:00:00Z".into(),
    );
    let record = serde_json::to_string(&reviewed.record.unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("webhook.jsonl");
    std::fs::write(&file, format!("{record}\n")).unwrap();

    let o = check(&[file.to_str().unwrap()]);
    let text = stdout(&o);
    assert!(text.contains("deny by policy terraform-client"), "{text}");
    assert!(
        text.contains(
            "recorded: deny by policy terraform-client (webhook, 2026-12-04T12:00:00Z): reproduced"
        ),
        "{text}"
    );
    assert!(!text.contains("policies differ"), "{text}");

    // Other policies than the recorded ones: the digest differs and check says so.
    let policy_dir = dir.path().join("policies");
    std::fs::create_dir(&policy_dir).unwrap();
    let tf = std::fs::read_to_string(format!("{ROOT}/policies/terraform-client.yaml")).unwrap();
    std::fs::write(
        policy_dir.join("terraform-client.yaml"),
        tf.replace("mode: enforce", "mode: audit"),
    )
    .unwrap();
    let o = check_in(
        dir.path().to_str().unwrap(),
        &["--policies", "policies", "webhook.jsonl"],
    );
    let text = stdout(&o);
    assert!(
        text.contains("the policies differ from the recorded ones"),
        "{text}"
    );
    assert_eq!(o.status.code(), Some(1));
}
