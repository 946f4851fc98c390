//! `csr-warden lint`: findings with file, line and a sentence; errors exit 1, warnings only with
//! --strict.

use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn lint(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_csr-warden"))
        .current_dir(ROOT)
        .arg("lint")
        .args(args)
        .output()
        .expect("run csr-warden lint")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_shipped_policies_are_clean() {
    let o = lint(&["--strict"]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert_eq!(text.trim(), "0 errors, 0 warnings");
}

#[test]
fn findings_name_file_line_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let policy = |name: &str, body: &str| {
        std::fs::write(
            dir.path().join(format!("{name}.yaml")),
            format!("apiVersion: csr-warden.io/v1alpha1\nkind: CSRPolicy\nmetadata:\n  name: {name}\nspec:\n  action: approve\n{body}"),
        )
        .unwrap();
    };
    policy(
        "a-open",
        "  match:\n    signerNames: [example.com/open]\n  subject:\n    commonName:\n      patterns: ['.*']\n    organization:\n      values: [system:masters, developers]\n",
    );
    policy(
        "b-same",
        "  match:\n    signerNames: [example.com/open]\n  key:\n    algorithms: [ECDSA]\n",
    );
    let rbac_dir = tempfile::tempdir().unwrap();
    let rbac = rbac_dir.path().join("rbac.yaml");
    std::fs::write(
        &rbac,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: x}\nrules:\n  - apiGroups: [certificates.k8s.io]\n    resources: [signers]\n    resourceNames: [example.com/other]\n    verbs: [approve]\n",
    )
    .unwrap();
    let policies = dir.path().to_str().unwrap();
    let o = lint(&["--policies", policies, "--rbac", rbac.to_str().unwrap()]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    let a = format!("{policies}/a-open.yaml:4: ");
    let b = format!("{policies}/b-same.yaml:4: ");
    for expected in [
        format!(
            "{a}error: rbac-signer: policy \"a-open\" governs signer \"example.com/open\", which the RBAC does not grant `approve` for"
        ),
        format!(
            "{a}warning: no-requester-constraint: approve policy \"a-open\" has no requester constraint"
        ),
        format!("{a}warning: no-key-constraint: approve policy \"a-open\" has no key rules"),
        format!("{a}warning: any-subject-value: subject.commonName: CN allows any value"),
        format!(
            "{a}error: never-approved: subject.organization: value \"system:masters\" can never be approved"
        ),
        format!("{b}warning: shadowed: approve policy \"b-same\" has the same match as \"a-open\""),
    ] {
        assert!(text.contains(&expected), "missing {expected:?} in:\n{text}");
    }
    assert!(text.trim_end().ends_with("3 errors, 5 warnings"), "{text}");

    // Warnings alone: 0, or 1 with --strict.
    let o = lint(&[
        "--policies",
        policies,
        "--rbac",
        rbac.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 8);
    assert!(
        lines
            .iter()
            .all(|f| f["line"] == 4 && f["file"].as_str().unwrap().starts_with(policies))
    );
    std::fs::remove_file(dir.path().join("a-open.yaml")).unwrap();
    // `<domain>/*` grants every signer of the domain.
    std::fs::write(
        &rbac,
        std::fs::read_to_string(&rbac)
            .unwrap()
            .replace("example.com/other", "example.com/*"),
    )
    .unwrap();
    let rbac = rbac.to_str().unwrap();
    let o = lint(&["--policies", policies, "--rbac", rbac]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("warning: no-requester-constraint"));
    let o = lint(&["--policies", policies, "--rbac", rbac, "--strict"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn broken_policies_are_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.yaml"), "apiVersion: csr-warden.io/v1alpha1\nkind: CSRPolicy\nmetadata: {name: bad}\nspec: {action: maybe}\n").unwrap();
    let o = lint(&["--policies", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad.yaml"));
}

#[test]
fn patterns_that_can_never_match() {
    for (pattern, can) in [
        ("[a-z0-9-]{1,63}", true),
        (".*", true),
        ("a^b", false),
        ("[^\\s\\S]", false),
        ("x$y", false),
        ("system:node:(?P<node>[a-z]+)", true),
    ] {
        assert_eq!(
            csr_warden::policy::lint::pattern_can_match(pattern),
            Some(can),
            "{pattern}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "apiVersion: csr-warden.io/v1alpha1\nkind: CSRPolicy\nmetadata:\n  name: p\nspec:\n  action: approve\n  match:\n    signerNames: [kubernetes.io/kube-apiserver-client]\n    groups: [g]\n  subject:\n    commonName:\n      patterns: ['bot-$x']\n  key:\n    algorithms: [ECDSA]\n",
    )
    .unwrap();
    let o = lint(&["--policies", dir.path().to_str().unwrap()]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "error: never-matches: subject.commonName: pattern \"bot-$x\" can never match any value"
        ),
        "{text}"
    );
}
