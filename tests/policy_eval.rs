//! Every policy rule, both ways, on facts built in memory (no crypto, no files).

use csr_warden::csr::{
    CsrError, CsrFacts, Curve, Hash, KeyFacts, RequestedExtension, San, SignatureAlgorithm,
    SignatureFacts, SignatureStatus, StringType, SubjectAttribute,
};
use csr_warden::policy::{Mode, PolicySet, Source, Verdict};
use csr_warden::request::{CsrSpec, Requester, ReviewInput};

const SIGNER: &str = "example.com/test";

fn policies(yaml: &str) -> PolicySet {
    PolicySet::from_sources(&[Source {
        path: "test.yaml".into(),
        text: yaml.into(),
    }])
    .unwrap_or_else(|e| panic!("{e}"))
}

/// An approve policy for SIGNER with the given spec lines (indented under spec).
fn approve(name: &str, rules: &str) -> String {
    format!(
        "apiVersion: csr-warden.io/v1alpha1\nkind: CSRPolicy\nmetadata:\n  name: {name}\nspec:\n  action: approve\n  match:\n    signerNames: [{SIGNER}]\n{rules}\n---\n"
    )
}

fn attr(oid: &str, name: &'static str, value: &str) -> SubjectAttribute {
    SubjectAttribute {
        oid: oid.into(),
        name: Some(name),
        value: value.into(),
        string_type: StringType::Utf8,
        rdn: 0,
    }
}

fn cn(v: &str) -> SubjectAttribute {
    attr("2.5.4.3", "CN", v)
}
fn o(v: &str) -> SubjectAttribute {
    attr("2.5.4.10", "O", v)
}

fn facts(subject: Vec<SubjectAttribute>, sans: Vec<San>) -> CsrFacts {
    CsrFacts {
        sha256: "00".into(),
        subject,
        key: KeyFacts::Ecdsa { curve: Curve::P256 },
        signature: SignatureFacts {
            algorithm: SignatureAlgorithm::Ecdsa(Hash::Sha256),
            status: SignatureStatus::Valid,
        },
        sans,
        extensions: Vec::new(),
        basic_constraints_ca: None,
        key_usage: Vec::new(),
        ext_key_usage: Vec::new(),
    }
}

fn review(facts: CsrFacts, username: &str, groups: &[&str], usages: &[&str]) -> ReviewInput {
    ReviewInput {
        facts: Ok(facts),
        spec: CsrSpec {
            signer_name: SIGNER.into(),
            usages: usages.iter().map(|s| s.to_string()).collect(),
            expiration_seconds: None,
        },
        requester: Requester {
            username: username.into(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            ..Requester::default()
        },
    }
}

fn simple(f: CsrFacts) -> ReviewInput {
    review(f, "alice", &["dev"], &["client auth"])
}

/// The decision's reasons joined, for assertions.
fn reasons(set: &PolicySet, input: &ReviewInput) -> (Verdict, String) {
    let d = set.evaluate(input);
    (d.verdict(), d.reason_strings().join("\n"))
}

const CN_ANY: &str = "  subject:\n    commonName:\n      patterns: ['[a-z]+']";

#[test]
fn no_policy_for_the_signer_means_ignore() {
    let set = policies(&approve("p", CN_ANY));
    let mut input = simple(facts(vec![cn("alice")], vec![]));
    input.spec.signer_name = "other.example/x".into();
    let (v, why) = reasons(&set, &input);
    assert_eq!(v, Verdict::Ignore);
    assert!(
        why.contains("no policy governs signer \"other.example/x\""),
        "{why}"
    );
}

#[test]
fn domain_wildcard_signer_matches_every_path() {
    let yaml = approve("p", CN_ANY).replace(SIGNER, "example.com/*");
    let set = policies(&yaml);
    assert_eq!(
        set.evaluate(&simple(facts(vec![cn("a")], vec![])))
            .verdict(),
        Verdict::Approve
    );
    let mut other = simple(facts(vec![cn("a")], vec![]));
    other.spec.signer_name = "example.org/test".into();
    assert_eq!(set.evaluate(&other).verdict(), Verdict::Ignore);
}

#[test]
fn requester_selector_groups_and_usernames_explain_non_matches() {
    let rules = format!("    groups: [admins]\n{CN_ANY}");
    let set = policies(&approve("p", &rules));
    let (v, why) = reasons(&set, &simple(facts(vec![cn("a")], vec![])));
    assert_eq!(v, Verdict::Ignore);
    assert!(
        why.contains("p: match: requester \"alice\" is in none of the groups"),
        "{why}"
    );

    let rules = format!("    usernames: ['bob', 'carol']\n{CN_ANY}");
    let set = policies(&approve("p", &rules));
    let (v, why) = reasons(&set, &simple(facts(vec![cn("a")], vec![])));
    assert_eq!(v, Verdict::Ignore);
    assert!(
        why.contains("matches none of the username patterns \"bob\", \"carol\""),
        "{why}"
    );
}

#[test]
fn subject_attribute_not_in_policy_must_be_absent() {
    let set = policies(&approve("p", CN_ANY));
    let (v, why) = reasons(&set, &simple(facts(vec![cn("alice"), o("devs")], vec![])));
    assert_eq!(v, Verdict::Deny);
    assert!(
        why.contains("p: subject: O \"devs\" is not allowed: the policy allows no O attribute"),
        "{why}"
    );
}

#[test]
fn duplicate_cn_refused_unless_max_count_allows() {
    let set = policies(&approve("p", CN_ANY));
    let (v, why) = reasons(&set, &simple(facts(vec![cn("alice"), cn("admin")], vec![])));
    assert_eq!(v, Verdict::Deny);
    assert!(
        why.contains("2 CN values [\"alice\", \"admin\"]: at most 1 allowed"),
        "{why}"
    );
    let set = policies(&approve("p", &format!("{CN_ANY}\n      maxCount: 2")));
    assert_eq!(
        set.evaluate(&simple(facts(vec![cn("alice"), cn("admin")], vec![])))
            .verdict(),
        Verdict::Approve
    );
}

#[test]
fn required_and_required_values() {
    let set = policies(&approve(
        "p",
        "  subject:\n    commonName:\n      patterns: ['.+']\n      required: true\n    organization:\n      values: [a, b]\n      requiredValues: [b]\n      maxCount: 2",
    ));
    let (v, why) = reasons(&set, &simple(facts(vec![o("a")], vec![])));
    assert_eq!(v, Verdict::Deny);
    assert!(why.contains("CN is required but absent"), "{why}");
    assert!(why.contains("O \"b\" is required but absent"), "{why}");
    assert_eq!(
        set.evaluate(&simple(facts(vec![cn("x"), o("a"), o("b")], vec![])))
            .verdict(),
        Verdict::Approve
    );
}

#[test]
fn patterns_match_the_whole_value() {
    let set = policies(&approve("p", CN_ANY));
    let (v, why) = reasons(&set, &simple(facts(vec![cn("alice1")], vec![])));
    assert_eq!(v, Verdict::Deny);
    assert!(
        why.contains("CN \"alice1\" is not allowed: expected pattern \"[a-z]+\""),
        "{why}"
    );
}

const NODE_POLICY: &str = "    usernames: ['system:node:(?P<node>[^:]+)']\n  subject:\n    commonName:\n      values: ['system:node:${node}']\n  subjectAltNames:\n    dnsNames:\n      values: ['${node}', '${node}.cluster.local']\n    ipAddresses:\n      cidrs: [10.0.0.0/8, fd00::/8]";

#[test]
fn templates_bind_names_to_the_requester_literally() {
    let set = policies(&approve("node", NODE_POLICY));
    let ok = review(
        facts(
            vec![cn("system:node:node.1")],
            vec![
                San::Dns("NODE.1.cluster.local".into()),
                San::Ip("10.1.2.3".parse().unwrap()),
            ],
        ),
        "system:node:node.1",
        &[],
        &[],
    );
    assert_eq!(
        set.evaluate(&ok).verdict(),
        Verdict::Approve,
        "DNS compares case-insensitively"
    );

    let dot = review(
        facts(
            vec![cn("system:node:node.1")],
            vec![San::Dns("nodex1".into())],
        ),
        "system:node:node.1",
        &[],
        &[],
    );
    let (v, why) = reasons(&set, &dot);
    assert_eq!(v, Verdict::Deny, "a dot in the node name is not a wildcard");
    assert!(
        why.contains(r#"dnsNames[0] "nodex1" is not allowed: expected "${node}" or "${node}.cluster.local" (node = node.1)"#),
        "{why}"
    );

    let other = review(
        facts(
            vec![cn("system:node:worker-2")],
            vec![San::Dns("worker-2".into())],
        ),
        "system:node:worker-1",
        &[],
        &[],
    );
    let (v, why) = reasons(&set, &other);
    assert_eq!(v, Verdict::Deny);
    assert!(why.contains(r#"CN "system:node:worker-2" is not allowed: expected "system:node:${node}" (node = worker-1)"#), "{why}");
}

#[test]
fn ip_sans_must_be_within_the_cidrs() {
    let set = policies(&approve("node", NODE_POLICY));
    let input = review(
        facts(
            vec![cn("system:node:w")],
            vec![
                San::Ip("8.8.8.8".parse().unwrap()),
                San::Ip("fd00::1".parse().unwrap()),
            ],
        ),
        "system:node:w",
        &[],
        &[],
    );
    let (v, why) = reasons(&set, &input);
    assert_eq!(v, Verdict::Deny);
    assert!(
        why.contains(
            "ipAddresses[0] 8.8.8.8 is not allowed: expected within 10.0.0.0/8 or fd00::/8"
        ),
        "{why}"
    );
    assert!(!why.contains("fd00::1"), "{why}");
}

#[test]
fn san_types_not_allowed_must_be_absent_and_counts_hold() {
    let set = policies(&approve(
        "p",
        &format!(
            "{CN_ANY}\n  subjectAltNames:\n    minCount: 1\n    maxCount: 2\n    uris:\n      patterns: ['spiffe://.*']\n      maxCount: 1"
        ),
    ));
    let (v, why) = reasons(&set, &simple(facts(vec![cn("a")], vec![])));
    assert_eq!(v, Verdict::Deny);
    assert!(
        why.contains("0 subject alternative names: at least 1 required"),
        "{why}"
    );

    let input = simple(facts(
        vec![cn("a")],
        vec![
            San::Uri("spiffe://a".into()),
            San::Uri("spiffe://b".into()),
            San::Email("a@b".into()),
        ],
    ));
    let (v, why) = reasons(&set, &input);
    assert_eq!(v, Verdict::Deny);
    assert!(
        why.contains("3 subject alternative names: at most 2 allowed"),
        "{why}"
    );
    assert!(why.contains("2 uris: at most 1 allowed"), "{why}");
    assert!(
        why.contains(
            "emailAddresses[0] \"a@b\" is not allowed: the policy allows no emailAddresses"
        ),
        "{why}"
    );

    let other = simple(facts(
        vec![cn("a")],
        vec![San::Other {
            kind: "registeredID".into(),
            detail: "1.2.3".into(),
        }],
    ));
    let (_, why) = reasons(&set, &other);
    assert!(why.contains("never allow registeredID names"), "{why}");
}

#[test]
fn other_names_are_allowed_by_type() {
    let set = policies(&approve(
        "p",
        &format!(
            "{CN_ANY}\n  subjectAltNames:\n    otherNames:\n      oids: [1.3.6.1.4.1.311.20.2.3]"
        ),
    ));
    let upn = San::OtherName {
        oid: "1.3.6.1.4.1.311.20.2.3".into(),
        value_hex: "00".into(),
    };
    assert_eq!(
        set.evaluate(&simple(facts(vec![cn("a")], vec![upn])))
            .verdict(),
        Verdict::Approve
    );
    let other = San::OtherName {
        oid: "1.2.3".into(),
        value_hex: "00".into(),
    };
    let (v, why) = reasons(&set, &simple(facts(vec![cn("a")], vec![other])));
    assert_eq!(v, Verdict::Deny);
    assert!(
        why.contains(
            "otherNames[0] of type 1.2.3 is not allowed: expected type 1.3.6.1.4.1.311.20.2.3"
        ),
        "{why}"
    );
}

#[test]
fn usages_allowed_and_required_in_any_order() {
    let set = policies(&approve(
        "p",
        &format!(
            "{CN_ANY}\n  usages:\n    allowed: [digital signature, client auth]\n    required: [client auth]"
        ),
    ));
    let ok = review(
        facts(vec![cn("a")], vec![]),
        "a",
        &[],
        &["client auth", "digital signature"],
    );
    assert_eq!(set.evaluate(&ok).verdict(), Verdict::Approve);
    let bad = review(facts(vec![cn("a")], vec![]), "a", &[], &["server auth"]);
    let (v, why) = reasons(&set, &bad);
    assert_eq!(v, Verdict::Deny);
    assert!(why.contains("usage \"server auth\" is not allowed: expected within \"digital signature\" or \"client auth\""), "{why}");
    assert!(
        why.contains("usage \"client auth\" is required but not requested"),
        "{why}"
    );
}

#[test]
fn key_algorithm_size_and_curve() {
    let set = policies(&approve(
        "p",
        &format!(
            "{CN_ANY}\n  key:\n    algorithms: [RSA, ECDSA]\n    rsaMinBits: 2048\n    rsaMaxBits: 4096\n    ecdsaCurves: [P-256]"
        ),
    ));
    let with_key = |key| {
        let mut f = facts(vec![cn("a")], vec![]);
        f.key = key;
        simple(f)
    };
    assert_eq!(
        set.evaluate(&with_key(KeyFacts::Rsa { bits: 2048 }))
            .verdict(),
        Verdict::Approve
    );
    let (_, why) = reasons(&set, &with_key(KeyFacts::Rsa { bits: 1024 }));
    assert!(
        why.contains("RSA key of 1024 bits is below the minimum of 2048 bits"),
        "{why}"
    );
    let (_, why) = reasons(&set, &with_key(KeyFacts::Rsa { bits: 8192 }));
    assert!(
        why.contains("RSA key of 8192 bits is above the maximum of 4096 bits"),
        "{why}"
    );
    let (_, why) = reasons(&set, &with_key(KeyFacts::Ecdsa { curve: Curve::P384 }));
    assert!(
        why.contains("ECDSA curve P-384 is not allowed: expected P-256"),
        "{why}"
    );
    let (_, why) = reasons(&set, &with_key(KeyFacts::Ed25519));
    assert!(
        why.contains("key algorithm Ed25519 is not allowed: expected RSA or ECDSA"),
        "{why}"
    );
}

#[test]
fn expiration_maximum_and_required() {
    let set = policies(&approve(
        "p",
        &format!("{CN_ANY}\n  expiration:\n    maxSeconds: 3600\n    required: true"),
    ));
    let mut input = simple(facts(vec![cn("a")], vec![]));
    let (_, why) = reasons(&set, &input);
    assert!(
        why.contains("expirationSeconds is required but not set"),
        "{why}"
    );
    input.spec.expiration_seconds = Some(7200);
    let (_, why) = reasons(&set, &input);
    assert!(
        why.contains("expirationSeconds 7200 is more than the maximum of 3600"),
        "{why}"
    );
    input.spec.expiration_seconds = Some(3600);
    assert_eq!(set.evaluate(&input).verdict(), Verdict::Approve);
}

#[test]
fn unknown_extensions_are_refused_unless_listed() {
    let mut f = facts(vec![cn("a")], vec![]);
    f.extensions.push(RequestedExtension {
        oid: "1.2.3.6".into(),
        name: None,
        critical: true,
    });
    let set = policies(&approve("p", CN_ANY));
    let (_, why) = reasons(&set, &simple(f.clone()));
    assert!(
        why.contains("critical extension 1.2.3.6 is not allowed"),
        "{why}"
    );
    let set = policies(&approve(
        "p",
        &format!("{CN_ANY}\n  extensions:\n    allowedOIDs: [1.2.3.6]"),
    ));
    assert_eq!(set.evaluate(&simple(f)).verdict(), Verdict::Approve);
}

#[test]
fn guards_hold_whatever_the_policy_allows() {
    let set = policies(&approve(
        "p",
        "  subject:\n    commonName:\n      patterns: ['.*']\n    organization:\n      patterns: ['.*']",
    ));
    let cases: Vec<(CsrFacts, &str)> = vec![
        (
            facts(vec![cn("a"), o("system:masters")], vec![]),
            "guard adminGroups: O \"system:masters\"",
        ),
        (
            facts(vec![cn("a"), o("kubeadm:cluster-admins")], vec![]),
            "guard adminGroups",
        ),
        (
            {
                let mut f = facts(vec![cn("a")], vec![]);
                f.basic_constraints_ca = Some(true);
                f
            },
            "guard certificateAuthority: basicConstraints asks for a CA certificate",
        ),
        (
            {
                let mut f = facts(vec![cn("a")], vec![]);
                f.signature.algorithm = SignatureAlgorithm::RsaPkcs1(Hash::Sha1);
                f.key = KeyFacts::Rsa { bits: 2048 };
                f
            },
            "guard sha1Signature: signature algorithm SHA1-RSA uses SHA-1",
        ),
        (
            {
                let mut f = facts(vec![cn("a")], vec![]);
                f.signature.status = SignatureStatus::Invalid("bad".into());
                f
            },
            "guard signature: ECDSA-SHA256 signature is invalid: bad",
        ),
        (
            {
                let mut f = facts(vec![cn("a")], vec![]);
                f.signature.status = SignatureStatus::Unsupported("alg 1.2.3".into());
                f
            },
            "guard signature: signature cannot be verified: alg 1.2.3",
        ),
    ];
    for (f, expected) in cases {
        let (v, why) = reasons(&set, &simple(f));
        assert_eq!(v, Verdict::Deny, "{expected}");
        assert!(why.contains(expected), "{expected} not in {why}");
    }
    let mut cert_sign = simple(facts(vec![cn("a")], vec![]));
    cert_sign.spec.usages.push("cert sign".into());
    let (v, why) = reasons(&set, &cert_sign);
    assert_eq!(v, Verdict::Deny);
    assert!(
        why.contains("usage \"cert sign\" asks for a CA certificate"),
        "{why}"
    );
}

#[test]
fn a_waiver_is_named_and_shown_in_the_decision() {
    let set = policies(&approve(
        "break-glass",
        "  subject:\n    commonName:\n      patterns: ['.*']\n    organization:\n      values: [system:masters]\n  waiveGuards: [adminGroups]",
    ));
    let d = set.evaluate(&simple(facts(vec![cn("a"), o("system:masters")], vec![])));
    assert_eq!(d.verdict(), Verdict::Approve);
    assert_eq!(
        d.reason_strings(),
        vec![
            "break-glass: waiveGuards adminGroups: guard waived by this policy: O \"system:masters\" is an administrator group and is never approved"
        ]
    );
    // The waiver covers only the guard it names.
    let mut ca = facts(vec![cn("a"), o("system:masters")], vec![]);
    ca.basic_constraints_ca = Some(true);
    assert_eq!(set.evaluate(&simple(ca)).verdict(), Verdict::Deny);
}

#[test]
fn built_in_signer_rules_refuse_what_the_signer_would_fail() {
    let yaml = approve("p", "  subject:\n    commonName:\n      patterns: ['.*']")
        .replace(SIGNER, "kubernetes.io/kube-apiserver-client");
    let set = policies(&yaml);
    let mut input = review(
        facts(vec![cn("a")], vec![]),
        "a",
        &[],
        &["client auth", "server auth"],
    );
    input.spec.signer_name = "kubernetes.io/kube-apiserver-client".into();
    let (v, why) = reasons(&set, &input);
    assert_eq!(v, Verdict::Deny);
    assert!(why.contains("guard signerRules: signer kubernetes.io/kube-apiserver-client refuses usage \"server auth\""), "{why}");
    input.spec.usages = vec!["digital signature".into()];
    let (_, why) = reasons(&set, &input);
    assert!(why.contains("requires usage \"client auth\""), "{why}");
    input.spec.usages = vec!["key encipherment".into(), "client auth".into()];
    assert_eq!(set.evaluate(&input).verdict(), Verdict::Approve);
}

#[test]
fn unparseable_request_is_denied_where_a_policy_governs() {
    let set = policies(&approve("p", CN_ANY));
    let mut input = simple(facts(vec![], vec![]));
    input.facts = Err(CsrError::Pem("no CERTIFICATE REQUEST block found".into()));
    let (v, why) = reasons(&set, &input);
    assert_eq!(v, Verdict::Deny);
    assert!(why.contains("guard request: request is not a PEM"), "{why}");
}

const DENY_WILDCARDS: &str = "apiVersion: csr-warden.io/v1alpha1\nkind: CSRPolicy\nmetadata:\n  name: zz-no-wildcards\nspec:\n  action: deny\n  match:\n    signerNames: [example.com/test]\n  denyWhen:\n    - field: dnsNames\n      patterns: ['.*\\*.*']\n      message: no wildcards\n---\n";

#[test]
fn a_matching_deny_policy_wins_over_a_passing_approve_policy() {
    let yaml = format!(
        "{}{DENY_WILDCARDS}",
        approve(
            "a-open",
            &format!("{CN_ANY}\n  subjectAltNames:\n    dnsNames:\n      patterns: ['.*']")
        )
    );
    let set = policies(&yaml);
    let d = set.evaluate(&simple(facts(
        vec![cn("a")],
        vec![San::Dns("*.example.com".into())],
    )));
    assert_eq!(d.verdict(), Verdict::Deny);
    assert_eq!(d.policy(), Some("zz-no-wildcards"));
    assert_eq!(
        d.reason_strings(),
        vec![
            "zz-no-wildcards: denyWhen[0]: dnsNames[0] \"*.example.com\" matches pattern \".*\\*.*\": no wildcards"
        ]
    );
    let d = set.evaluate(&simple(facts(
        vec![cn("a")],
        vec![San::Dns("a.example.com".into())],
    )));
    assert_eq!(
        (d.verdict(), d.policy()),
        (Verdict::Approve, Some("a-open"))
    );
}

#[test]
fn deny_policy_alone_without_hit_has_no_opinion() {
    let set = policies(DENY_WILDCARDS);
    let d = set.evaluate(&simple(facts(vec![cn("a")], vec![])));
    assert_eq!(d.verdict(), Verdict::Ignore);
    assert!(d.reason_strings()[0].contains("only deny policies govern this request"));
}

#[test]
fn first_passing_approve_policy_by_name_decides() {
    let yaml = format!(
        "{}{}",
        approve("b-second", CN_ANY),
        approve("a-first", CN_ANY)
    );
    let set = policies(&yaml);
    assert_eq!(
        set.evaluate(&simple(facts(vec![cn("a")], vec![]))).policy(),
        Some("a-first")
    );
}

#[test]
fn all_failing_approve_policies_deny_with_every_reason() {
    let yaml = format!(
        "{}{}",
        approve("b", "  subject:\n    commonName:\n      values: [bob]"),
        approve("a", "  subject:\n    commonName:\n      values: [ann]")
    );
    let set = policies(&yaml);
    let d = set.evaluate(&simple(facts(vec![cn("carl")], vec![])));
    assert_eq!(d.verdict(), Verdict::Deny);
    assert_eq!(d.policy(), Some("a"));
    assert_eq!(
        d.reason_strings(),
        vec![
            "a: subject.commonName: CN \"carl\" is not allowed: expected \"ann\"",
            "b: subject.commonName: CN \"carl\" is not allowed: expected \"bob\"",
        ]
    );
}

#[test]
fn audit_mode_decides_only_what_enforce_leaves_and_is_reported() {
    let audit_deny = "apiVersion: csr-warden.io/v1alpha1\nkind: CSRPolicy\nmetadata:\n  name: trial\nspec:\n  action: deny\n  mode: audit\n  match:\n    signerNames: [example.com/test]\n  denyWhen:\n    - field: commonName\n      values: [a]\n---\n";
    // Alone, the audit policy decides, in audit mode.
    let set = policies(audit_deny);
    let d = set.evaluate(&simple(facts(vec![cn("a")], vec![])));
    assert_eq!((d.verdict(), d.mode()), (Verdict::Deny, Some(Mode::Audit)));
    // Beside an enforce approve policy, enforce decides and the audit verdict is kept aside.
    let set = policies(&format!("{}{audit_deny}", approve("p", CN_ANY)));
    let d = set.evaluate(&simple(facts(vec![cn("a")], vec![])));
    assert_eq!(
        (d.verdict(), d.mode()),
        (Verdict::Approve, Some(Mode::Enforce))
    );
    let audit = d.audit.expect("audit outcome");
    assert_eq!(
        (audit.verdict, audit.policy.as_deref()),
        (Verdict::Deny, Some("trial"))
    );
}

#[test]
fn evaluation_only_looks_at_policies_for_the_signer() {
    let mut yaml = String::new();
    for i in 0..200 {
        yaml.push_str(
            &approve(&format!("p{i:03}"), CN_ANY).replace(SIGNER, &format!("s{i}.example/x")),
        );
    }
    yaml.push_str(&approve("target", CN_ANY));
    let set = policies(&yaml);
    assert_eq!(set.policies().len(), 201);
    let d = set.evaluate(&simple(facts(vec![cn("a")], vec![])));
    assert_eq!(d.policy(), Some("target"));
    assert!(set.governs_signer("s7.example/x"));
    assert!(!set.governs_signer("s7.example/y"));
}

#[test]
fn kubelet_signer_rules_match_kube_controller_manager() {
    let open = "  subject:\n    commonName:\n      patterns: ['.*']\n    organization:\n      patterns: ['.*']\n  subjectAltNames:\n    dnsNames:\n      patterns: ['.*']";
    for (signer, purpose) in [
        ("kubernetes.io/kubelet-serving", "server auth"),
        ("kubernetes.io/kube-apiserver-client-kubelet", "client auth"),
    ] {
        let set = policies(&approve("p", open).replace(SIGNER, signer));
        let input = |subject, sans, usages: &[&str]| {
            let mut i = review(facts(subject, sans), "system:node:w", &[], usages);
            i.spec.signer_name = signer.into();
            i
        };
        let node = || vec![cn("system:node:w"), o("system:nodes")];
        let dns = || {
            if purpose == "server auth" {
                vec![San::Dns("w".into())]
            } else {
                vec![]
            }
        };
        // Both usage sets are accepted, in any order.
        for usages in [
            &[purpose, "digital signature"][..],
            &["key encipherment", purpose, "digital signature"][..],
        ] {
            let d = set.evaluate(&input(node(), dns(), usages));
            assert_eq!(
                d.verdict(),
                Verdict::Approve,
                "{signer} {usages:?}: {:?}",
                d.reason_strings()
            );
        }
        let (v, why) = reasons(&set, &input(node(), dns(), &[purpose]));
        assert_eq!(v, Verdict::Deny);
        assert!(
            why.contains(&format!("signer {signer} requires usages exactly")),
            "{why}"
        );
        let (_, why) = reasons(
            &set,
            &input(
                vec![cn("w"), o("devs")],
                dns(),
                &[purpose, "digital signature"],
            ),
        );
        assert!(why.contains("requires O exactly \"system:nodes\""), "{why}");
        assert!(
            why.contains("requires CN to start with \"system:node:\""),
            "{why}"
        );
    }
    // Client certificates for kubelets carry no SANs.
    let set = policies(
        &approve("p", open).replace(SIGNER, "kubernetes.io/kube-apiserver-client-kubelet"),
    );
    let mut i = review(
        facts(
            vec![cn("system:node:w"), o("system:nodes")],
            vec![San::Dns("w".into())],
        ),
        "system:node:w",
        &[],
        &["client auth", "digital signature"],
    );
    i.spec.signer_name = "kubernetes.io/kube-apiserver-client-kubelet".into();
    let (_, why) = reasons(&set, &i);
    assert!(
        why.contains("refuses DNS, email, IP and URI subject alternative names"),
        "{why}"
    );
}
