//! The approver's plan for one stored CSR: pure, from the object and the policies.

use csr_warden::approver::plan::{self, Plan};
use csr_warden::csr::Limits;
use csr_warden::policy::PolicySet;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestSpec,
    CertificateSigningRequestStatus,
};

fn shipped() -> PolicySet {
    csr_warden::policy_dir::load("policies".as_ref()).unwrap()
}

fn stored(
    file: &str,
    signer: &str,
    username: &str,
    groups: &[&str],
    expiration: Option<i32>,
) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: Default::default(),
        spec: CertificateSigningRequestSpec {
            request: ByteString(std::fs::read(format!("examples/requests/{file}")).unwrap()),
            signer_name: signer.into(),
            usages: Some(vec!["client auth".into()]),
            expiration_seconds: expiration,
            username: Some(username.into()),
            groups: Some(groups.iter().map(|g| g.to_string()).collect()),
            ..Default::default()
        },
        status: None,
    }
}

const CLIENT: &str = "kubernetes.io/kube-apiserver-client";

fn terraform(file: &str, expiration: Option<i32>) -> CertificateSigningRequest {
    stored(
        file,
        CLIENT,
        "terraform",
        &["terraform", "system:authenticated"],
        expiration,
    )
}

fn with_condition(mut c: CertificateSigningRequest, kind: &str) -> CertificateSigningRequest {
    c.status = Some(CertificateSigningRequestStatus {
        conditions: Some(vec![CertificateSigningRequestCondition {
            type_: kind.into(),
            status: "True".into(),
            ..Default::default()
        }]),
        certificate: None,
    });
    c
}

fn plan_of(c: &CertificateSigningRequest, dry_run: bool) -> Plan {
    plan::plan(&shipped(), c, dry_run, &Limits::default())
}

#[test]
fn approves_what_policy_approves_with_a_camel_case_reason() {
    match plan_of(&terraform("rsa-2048.pem", None), false) {
        Plan::Write { condition, .. } => {
            assert_eq!(condition.type_, "Approved");
            assert_eq!(condition.status, "True");
            assert_eq!(condition.reason.as_deref(), Some("PolicyApproved"));
            assert_eq!(
                condition.message.as_deref(),
                Some("csr-warden: approved by policy \"terraform-client\"")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn denies_with_every_reason_in_a_bounded_message() {
    match plan_of(&terraform("admin-group.pem", None), false) {
        Plan::Write { condition, .. } => {
            assert_eq!(condition.type_, "Denied");
            assert_eq!(condition.reason.as_deref(), Some("PolicyDenied"));
            let m = condition.message.unwrap();
            assert!(
                m.starts_with(
                    "csr-warden: denied by policy \"terraform-client\": guard adminGroups:"
                ),
                "{m}"
            );
            assert!(
                m.contains("; terraform-client: subject.organization"),
                "{m}"
            );
            assert!(m.len() <= plan::MAX_MESSAGE_BYTES);
        }
        other => panic!("{other:?}"),
    }
    let many = stored(
        "many-sans.pem",
        "example.com/spiffe",
        "system:serviceaccount:payments:api",
        &["system:serviceaccounts"],
        Some(3600),
    );
    if let Plan::Write { condition, .. } = plan_of(&many, false) {
        assert!(condition.message.unwrap().len() <= plan::MAX_MESSAGE_BYTES);
    }
}

#[test]
fn decides_for_the_recorded_requester() {
    // The same request recorded for a requester outside the terraform group: not approved.
    let c = stored(
        "rsa-2048.pem",
        CLIENT,
        "mallory",
        &["system:authenticated"],
        None,
    );
    assert!(matches!(
        plan_of(&c, false),
        Plan::Observe {
            why: "no policy decides it",
            ..
        }
    ));
}

#[test]
fn out_of_scope_and_decided_requests_are_never_touched() {
    let other = stored(
        "rsa-2048.pem",
        "example.com/ungoverned",
        "terraform",
        &["terraform"],
        None,
    );
    assert!(matches!(plan_of(&other, false), Plan::OutOfScope));
    for kind in ["Approved", "Denied", "Failed"] {
        let c = with_condition(terraform("rsa-2048.pem", None), kind);
        assert!(
            matches!(plan_of(&c, false), Plan::AlreadyDecided(k) if k == kind),
            "{kind}"
        );
    }
    let mut issued = terraform("rsa-2048.pem", None);
    issued.status = Some(CertificateSigningRequestStatus {
        conditions: None,
        certificate: Some(ByteString(b"-----BEGIN CERTIFICATE-----".to_vec())),
    });
    assert!(matches!(
        plan_of(&issued, false),
        Plan::AlreadyDecided("Issued")
    ));
    // A condition of another type, or not "True", does not count as decided.
    let mut other_kind = with_condition(terraform("rsa-2048.pem", None), "SomethingElse");
    assert!(matches!(plan_of(&other_kind, false), Plan::Write { .. }));
    other_kind
        .status
        .as_mut()
        .unwrap()
        .conditions
        .as_mut()
        .unwrap()[0]
        .type_ = "Approved".into();
    other_kind
        .status
        .as_mut()
        .unwrap()
        .conditions
        .as_mut()
        .unwrap()[0]
        .status = "False".into();
    assert!(matches!(plan_of(&other_kind, false), Plan::Write { .. }));
}

#[test]
fn dry_run_and_audit_mode_only_observe() {
    assert!(matches!(
        plan_of(&terraform("rsa-2048.pem", None), true),
        Plan::Observe { why: "dry run", .. }
    ));
    let mut sources = csr_warden::policy_dir::read_sources("policies".as_ref()).unwrap();
    for s in &mut sources {
        s.text = s.text.replace("mode: enforce", "mode: audit");
    }
    let audit = PolicySet::from_sources(&sources).unwrap();
    let p = plan::plan(
        &audit,
        &terraform("rsa-2048.pem", Some(90 * 24 * 3600)),
        false,
        &Limits::default(),
    );
    assert!(
        matches!(
            p,
            Plan::Observe {
                why: "audit mode",
                ..
            }
        ),
        "{p:?}"
    );
}
