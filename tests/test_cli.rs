//! `csr-warden test`: policy test suites as a CI system runs them.

use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn test(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_csr-warden"))
        .current_dir(ROOT)
        .arg("test")
        .args(args)
        .output()
        .expect("run csr-warden test")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A suite in a temporary directory next to a copy of the shipped policies.
fn suite(body: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    for f in ["terraform-client.yaml", "no-wildcards.yaml"] {
        std::fs::copy(format!("{ROOT}/policies/{f}"), policies.join(f)).unwrap();
    }
    let req = format!("{ROOT}/examples/requests");
    std::fs::write(
        policies.join("mine.test.yaml"),
        body.replace("REQUESTS", &req),
    )
    .unwrap();
    dir
}

const HEADER: &str = "apiVersion: csr-warden.io/v1alpha1\nkind: CSRPolicyTest\nmetadata:\n  name: mine\nspec:\n  cases:\n";
const TF: &str = "      requester: {username: terraform, groups: [terraform]}\n      spec: {signerName: kubernetes.io/kube-apiserver-client, usages: [client auth]}\n";

#[test]
fn shipped_policies_pass_their_suites() {
    let o = test(&["policies/"]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    let last = text.lines().last().unwrap();
    assert!(last.ends_with(" passed, 0 failed"), "{last}");
    let passed: usize = last.split(' ').next().unwrap().parse().unwrap();
    assert!(passed >= 40, "{last}");
    // Every shipped policy has a suite.
    for p in [
        "terraform-client",
        "kubelet-serving",
        "spiffe-workload",
        "no-wildcards",
    ] {
        assert!(
            text.contains(&format!("policies/{p}.test.yaml")),
            "no suite for {p}"
        );
    }
    // Without a path, policies/ is searched.
    assert_eq!(stdout(&test(&[])).lines().last(), Some(last));
}

#[test]
fn a_failing_case_says_what_differs_and_exits_1() {
    let dir = suite(&format!(
        "{HEADER}    - name: wrong on purpose\n      input: REQUESTS/rsa-1024.pem\n{TF}      expect:\n        decision: approve\n        policy: someone-else\n        reasons: ['this text appears nowhere']\n    - name: right\n      input: REQUESTS/rsa-2048.pem\n{TF}      expect: {{decision: approve, policy: terraform-client}}\n"
    ));
    let o = test(&[dir.path().to_str().unwrap()]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL "), "{text}");
    assert!(text.contains("mine / wrong on purpose"), "{text}");
    assert!(
        text.contains("expected approve, got deny by policy terraform-client"),
        "{text}"
    );
    assert!(
        text.contains("expected policy someone-else, got terraform-client"),
        "{text}"
    );
    assert!(
        text.contains("no reason matches \"this text appears nowhere\""),
        "{text}"
    );
    assert!(
        text.contains("reason: terraform-client: key: RSA key of 1024 bits"),
        "{text}"
    );
    assert_eq!(text.lines().last(), Some("1 passed, 1 failed"));

    // --run selects cases by `suite/case`.
    let o = test(&["--run", "mine/right", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o).lines().last(), Some("1 passed, 0 failed"));

    // JSON and JUnit for CI systems.
    let o = test(&["--output", "json", dir.path().to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["passed"].as_u64(), v["failed"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(v["cases"][0]["passed"], false);
    assert_eq!(v["cases"][0]["decision"], "deny");
    let o = test(&["--output", "junit", dir.path().to_str().unwrap()]);
    let xml = stdout(&o);
    assert!(
        xml.contains(r#"<testsuites name="csr-warden" tests="2" failures="1">"#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<testcase classname="mine" name="wrong on purpose">"#),
        "{xml}"
    );
    assert!(
        xml.contains("<failure message=\"expected approve, got deny by policy terraform-client;"),
        "{xml}"
    );
}

#[test]
fn inline_inputs_and_manifests_with_overrides() {
    let pem = std::fs::read_to_string(format!("{ROOT}/examples/requests/wildcard-cn.pem")).unwrap();
    let inline: String = pem.lines().map(|l| format!("        {l}\n")).collect();
    let dir = suite(&format!(
        "{HEADER}    - name: inline wildcard\n      inline: |\n{inline}{TF}      expect: {{decision: deny, policy: no-wildcards, reasons: ['wildcard']}}\n    - name: manifest, requester replaced\n      input: {ROOT}/examples/csr/terraform-alice.yaml\n      requester: {{username: mallory, groups: [mallory]}}\n      expect: {{decision: ignore}}\n"
    ));
    let o = test(&[dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn a_broken_suite_is_an_error_naming_the_file() {
    let cases = [
        (
            format!(
                "{HEADER}    - name: x\n      input: REQUESTS/rsa-2048.pem\n      expect: {{decision: approve}}\n      surprise: 1\n"
            ),
            "surprise",
        ),
        (
            format!(
                "{HEADER}    - name: x\n      input: REQUESTS/missing.pem\n      expect: {{decision: approve}}\n"
            ),
            "missing.pem",
        ),
        (
            format!(
                "{HEADER}    - name: x\n      input: REQUESTS/rsa-2048.pem\n      expect: {{decision: approve, reasons: ['(']}}\n"
            ),
            "expect.reasons",
        ),
        (
            format!("{HEADER}    - name: x\n      expect: {{decision: approve}}\n"),
            "exactly one of input and inline",
        ),
        (
            format!(
                "{HEADER}    - name: x\n      input: REQUESTS/rsa-2048.pem\n      expect: {{decision: maybe}}\n"
            ),
            "maybe",
        ),
        (
            HEADER.replace("CSRPolicyTest", "CSRPolicy")
                + "    - name: x\n      input: a\n      expect: {decision: approve}\n",
            "kind",
        ),
    ];
    for (body, expected) in cases {
        let dir = suite(&body);
        let o = test(&[dir.path().to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{expected}: {err}");
        assert!(err.contains("mine.test.yaml"), "{err}");
        assert!(err.contains(expected), "expected {expected:?} in {err}");
    }
    let o = test(&["/nonexistent/suites"]);
    assert_eq!(o.status.code(), Some(2));
}
