//! Loading is strict and atomic: every problem names file, line and field; nothing half-loaded.

use std::path::Path;

use csr_warden::policy::{LoadErrors, PolicySet, Source};
use csr_warden::policy_dir;

fn load(files: &[(&str, &str)]) -> Result<PolicySet, LoadErrors> {
    let sources: Vec<Source> = files
        .iter()
        .map(|(p, t)| Source {
            path: p.to_string(),
            text: t.to_string(),
        })
        .collect();
    PolicySet::from_sources(&sources)
}

fn errors(files: &[(&str, &str)]) -> String {
    load(files).expect_err("should be refused").to_string()
}

const HEAD: &str = "apiVersion: csr-warden.io/v1alpha1\nkind: CSRPolicy\nmetadata:\n  name: p\nspec:\n  action: approve\n  match:\n    signerNames: [example.com/x]\n";

#[test]
fn shipped_policies_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let set = policy_dir::load(&dir).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = set.policies().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "kubelet-serving",
            "no-wildcards",
            "spiffe-workload",
            "terraform-client"
        ]
    );
    assert!(set.digest().starts_with("sha256:"));
}

#[test]
fn unknown_field_names_file_and_line() {
    let text = format!("{HEAD}  colour: blue\n");
    let e = errors(&[("policies/a.yaml", &text)]);
    assert!(
        e.starts_with("policies/a.yaml:9: unknown field `colour`"),
        "{e}"
    );
}

#[test]
fn wrong_type_is_an_error() {
    let text = HEAD.replace("[example.com/x]", "7");
    let e = errors(&[("a.yaml", &text)]);
    assert!(e.starts_with("a.yaml:8: "), "{e}");
    assert!(
        e.ends_with("in `signerNames: 7`"),
        "the field and value are quoted: {e}"
    );
    let text = HEAD.replace("approve", "maybe");
    let e = errors(&[("a.yaml", &text)]);
    assert!(e.contains("a.yaml:6"), "{e}");
    assert!(e.contains("`action: maybe`"), "{e}");
    let text = HEAD.replace("  action: approve\n", "");
    let e = errors(&[("a.yaml", &text)]);
    assert!(e.contains("missing field `action`"), "{e}");
}

#[test]
fn semantic_errors_name_line_and_field() {
    let text = format!(
        "{HEAD}    usernames: ['system:node:(?P<node>.+)']\n  subject:\n    commonName:\n      patterns: ['(']\n      values: ['${{nod}}']\n  subjectAltNames:\n    ipAddresses:\n      cidrs: [10.0.0.0/33]\n  usages:\n    allowed: [flying]\n  key:\n    ecdsaCurves: [P-192]\n  waiveGuards: [signature]\n"
    );
    let e = errors(&[("a.yaml", &text)]);
    for expected in [
        "a.yaml:13: spec.subject.commonName.values[0]: \"${nod}\" uses ${nod}, but every match.usernames pattern captures only node",
        "a.yaml:12: spec.subject.commonName.patterns[0]: invalid regular expression \"(\"",
        "a.yaml:16: spec.subjectAltNames.ipAddresses.cidrs[0]: \"10.0.0.0/33\" is not a CIDR",
        "a.yaml:18: spec.usages.allowed[0]: \"flying\" is not a Kubernetes key usage",
        "a.yaml:20: spec.key.ecdsaCurves[0]: \"P-192\" is not one of P-224, P-256, P-384, P-521",
        "a.yaml:21: spec.waiveGuards[0]: guard \"signature\" cannot be waived",
    ] {
        assert!(e.contains(expected), "missing {expected:?} in:\n{e}");
    }
}

#[test]
fn duplicate_names_across_files() {
    let e = errors(&[("a.yaml", HEAD), ("b.yaml", HEAD)]);
    assert_eq!(
        e,
        "b.yaml:4: metadata.name: duplicate policy name \"p\": also defined at a.yaml:4"
    );
}

#[test]
fn one_broken_file_refuses_the_whole_set() {
    let good = HEAD.replace("name: p", "name: good");
    let bad = format!("{HEAD}  mode: sometimes\n");
    assert!(load(&[("good.yaml", &good), ("bad.yaml", &bad)]).is_err());
}

#[test]
fn wrong_api_version_kind_signer_and_rule_mixups() {
    let text = HEAD
        .replace("csr-warden.io/v1alpha1", "csr-warden.io/v2")
        .replace("CSRPolicy", "Policy")
        .replace("example.com/x", "nodomain");
    let e = errors(&[("a.yaml", &text)]);
    assert!(
        e.contains("a.yaml:1: apiVersion: \"csr-warden.io/v2\" is not supported"),
        "{e}"
    );
    assert!(
        e.contains("a.yaml:2: kind: \"Policy\" is not supported"),
        "{e}"
    );
    assert!(
        e.contains("spec.match.signerNames[0]: \"nodomain\" is not a signer name"),
        "{e}"
    );

    let deny_with_rules =
        HEAD.replace("approve", "deny") + "  subject:\n    commonName:\n      values: [a]\n";
    let e = errors(&[("a.yaml", &deny_with_rules)]);
    assert!(
        e.contains("spec.subject: deny policies take denyWhen conditions"),
        "{e}"
    );

    let approve_with_deny_when =
        format!("{HEAD}  denyWhen:\n    - field: dnsNames\n      patterns: ['x']\n");
    let e = errors(&[("a.yaml", &approve_with_deny_when)]);
    assert!(
        e.contains("spec.denyWhen: only deny policies have denyWhen"),
        "{e}"
    );

    let empty_rule = format!("{HEAD}  subject:\n    commonName:\n      required: true\n");
    let e = errors(&[("a.yaml", &empty_rule)]);
    assert!(
        e.contains("a.yaml:11: spec.subject.commonName: allows no value"),
        "{e}"
    );
}

#[test]
fn several_documents_per_file() {
    let two = format!("{HEAD}---\n{}", HEAD.replace("name: p", "name: q"));
    assert_eq!(load(&[("a.yaml", &two)]).unwrap().policies().len(), 2);
}

#[test]
fn directory_skips_hidden_entries_and_test_suites() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), HEAD).unwrap();
    std::fs::write(dir.path().join("a.test.yaml"), "not a policy").unwrap();
    std::fs::write(dir.path().join(".hidden.yaml"), "not a policy").unwrap();
    std::fs::write(dir.path().join("README.md"), "# notes").unwrap();
    let set = policy_dir::load(dir.path()).unwrap();
    assert_eq!(set.policies().len(), 1);
    let missing = policy_dir::load(&dir.path().join("nope"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("nope"), "{missing}");
}

/// The README's reference policy (every field) loads, as an approve and as a deny policy.
#[test]
fn readme_reference_loads() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let block = readme
        .split("### Reference")
        .nth(1)
        .and_then(|s| s.split("```yaml\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("reference block in README");
    let (approve, deny_part) = block.split_once("  # Deny policies").unwrap();
    let head = approve.split("  # Approve policies").next().unwrap();
    let deny = format!(
        "{}  denyWhen:{}",
        head.replace("action: approve", "action: deny")
            .replace("name: kubelet-serving", "name: deny-reference"),
        deny_part.split_once("  denyWhen:").unwrap().1
    );
    let set =
        load(&[("approve.yaml", approve), ("deny.yaml", &deny)]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(set.policies().len(), 2);
}
