//! Admission decisions from AdmissionReviews shaped as the API server sends them
//! (`examples/admission/`, made by its make.sh), without a server.

use csr_warden::admission::{self, AdmissionSettings, ReviewKind, Reviewed};
use csr_warden::policy::{PolicySet, Source};
use csr_warden::record::RecordSource;
use serde_json::{Value, json};

fn shipped() -> PolicySet {
    csr_warden::policy_dir::load("policies".as_ref()).unwrap_or_else(|e| panic!("{e}"))
}

/// The shipped policies with terraform-client switched to audit mode.
fn terraform_in_audit_mode() -> PolicySet {
    let mut sources = csr_warden::policy_dir::read_sources("policies".as_ref()).unwrap();
    for s in &mut sources {
        if s.path.ends_with("terraform-client.yaml") {
            assert!(s.text.contains("mode: enforce"));
            s.text = s.text.replace("mode: enforce", "mode: audit");
        }
    }
    PolicySet::from_sources(&sources).unwrap()
}

fn example(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("examples/admission/{name}.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn decide_with(policies: &PolicySet, settings: &AdmissionSettings, review: &Value) -> Reviewed {
    let body = serde_json::to_vec(review).unwrap();
    let req = admission::parse_review(&body).unwrap_or_else(|e| panic!("{e}"));
    admission::review(policies, settings, &req, "2026-12-04T12:00:00Z".into())
}

fn decide(review: &Value) -> Reviewed {
    decide_with(&shipped(), &AdmissionSettings::default(), review)
}

/// The response as the API server reads it.
fn response_json(r: &Reviewed) -> Value {
    serde_json::to_value(r.response.clone().into_review()).unwrap()["response"].clone()
}

#[test]
fn create_that_policy_approves_is_allowed_with_audit_annotations() {
    let review = example("create-terraform-alice");
    let r = decide(&review);
    assert_eq!(r.kind, ReviewKind::Create);
    let resp = response_json(&r);
    assert_eq!(resp["uid"], review["request"]["uid"]);
    assert_eq!(resp["allowed"], true);
    assert_eq!(resp["auditAnnotations"]["decision"], "approve");
    assert_eq!(resp["auditAnnotations"]["policy"], "terraform-client");
    assert!(resp.get("warnings").is_none());
    let record = r.record.unwrap();
    assert_eq!(record.source, RecordSource::Webhook);
    assert_eq!(record.name, "terraform-alice");
    assert_eq!(record.requester.username, "terraform");
    assert_eq!(record.request.subject, "CN=alice, O=developers");
    assert_eq!(
        record.review_uid.as_deref(),
        review["request"]["uid"].as_str()
    );
    assert_eq!(record.allowed, Some(true));
    assert!(record.policy_digest.starts_with("sha256:"));
}

#[test]
fn create_that_policy_denies_is_refused_with_every_reason_on_its_own_line() {
    let r = decide(&example("create-terraform-admin"));
    let resp = response_json(&r);
    assert_eq!(resp["allowed"], false);
    assert_eq!(resp["status"]["code"], 403);
    assert_eq!(resp["status"]["reason"], "Forbidden");
    let message = resp["status"]["message"].as_str().unwrap();
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(
        lines[0],
        "CertificateSigningRequest \"terraform-admin\" denied by csr-warden policy \"terraform-client\":"
    );
    assert!(
        lines[1].starts_with("  - guard adminGroups: O \"system:masters\""),
        "{message}"
    );
    assert!(
        lines[2].starts_with("  - terraform-client: subject.organization"),
        "{message}"
    );
    assert_eq!(resp["auditAnnotations"]["decision"], "deny");
    assert!(
        resp["auditAnnotations"]["reasons"]
            .as_str()
            .unwrap()
            .contains("system:masters")
    );
    assert_eq!(r.record.unwrap().allowed, Some(false));
}

#[test]
fn create_is_decided_with_the_caller_as_requester() {
    // A node asking for another node's serving certificate name.
    let r = decide(&example("create-kubelet-steals-worker-2"));
    let message = response_json(&r)["status"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("\"worker-2\" is not allowed"), "{message}");
    // The same request from worker-2's own identity is fine.
    let mut review = example("create-kubelet-steals-worker-2");
    review["request"]["userInfo"]["username"] = json!("system:node:worker-2");
    let r = decide(&review);
    // worker-2 asking with CN system:node:worker-1 is refused for the CN instead.
    let message = response_json(&r)["status"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(message.contains("commonName"), "{message}");
}

#[test]
fn audit_mode_denial_is_allowed_with_the_reasons_as_warnings() {
    // 90 days, over terraform-client's 30: no guard is involved, only the policy.
    let mut review = example("create-terraform-alice");
    review["request"]["object"]["spec"]["expirationSeconds"] = json!(90 * 24 * 3600);
    let enforced = decide(&review);
    assert_eq!(response_json(&enforced)["allowed"], false);
    let r = decide_with(
        &terraform_in_audit_mode(),
        &AdmissionSettings::default(),
        &review,
    );
    let resp = response_json(&r);
    assert_eq!(resp["allowed"], true);
    let warnings: Vec<&str> = resp["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(
        warnings[0],
        "csr-warden audit mode: policy \"terraform-client\" would deny this request"
    );
    assert!(
        warnings.iter().any(|w| w.contains("expirationSeconds")),
        "{warnings:?}"
    );
    assert!(warnings.iter().all(|w| w.len() <= 256));
    assert_eq!(resp["auditAnnotations"]["mode"], "audit");
    assert_eq!(resp["auditAnnotations"]["decision"], "deny");
}

#[test]
fn request_no_policy_governs_is_allowed_as_ignore() {
    let mut review = example("create-terraform-alice");
    review["request"]["object"]["spec"]["signerName"] = json!("example.com/unknown");
    let r = decide(&review);
    let resp = response_json(&r);
    assert_eq!(resp["allowed"], true);
    assert_eq!(resp["auditAnnotations"]["decision"], "ignore");
}

#[test]
fn dry_run_is_decided_the_same_way() {
    let mut review = example("create-terraform-admin");
    review["request"]["dryRun"] = json!(true);
    let r = decide(&review);
    assert_eq!(response_json(&r)["allowed"], false);
    assert_eq!(r.record.unwrap().dry_run, Some(true));
}

#[test]
fn approval_of_a_request_policy_denies_is_refused() {
    let r = decide(&example("approve-terraform-admin"));
    assert_eq!(r.kind, ReviewKind::Approval);
    let resp = response_json(&r);
    assert_eq!(resp["allowed"], false);
    assert_eq!(resp["status"]["code"], 403);
    let message = resp["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "approval of CertificateSigningRequest \"terraform-admin\" by \"kubernetes-admin\" refused by csr-warden policy \"terraform-client\":"
        ),
        "{message}"
    );
    let record = r.record.unwrap();
    assert_eq!(record.source, RecordSource::ApprovalGuard);
    // Decided for the recorded requester, not for the approver.
    assert_eq!(record.requester.username, "terraform");
    let approver = record.approver.unwrap();
    assert_eq!(approver.username, "kubernetes-admin");
    assert!(!approver.break_glass);
}

#[test]
fn approval_of_a_request_policy_approves_is_allowed() {
    let r = decide(&example("approve-terraform-alice"));
    let resp = response_json(&r);
    assert_eq!(resp["allowed"], true);
    assert_eq!(resp["auditAnnotations"]["decision"], "approve");
}

#[test]
fn break_glass_user_or_group_may_approve_what_policy_denies() {
    let review = example("approve-terraform-admin");
    for settings in [
        AdmissionSettings {
            break_glass_users: vec!["kubernetes-admin".into()],
            ..Default::default()
        },
        AdmissionSettings {
            break_glass_groups: vec!["kubeadm:cluster-admins".into()],
            ..Default::default()
        },
    ] {
        let r = decide_with(&shipped(), &settings, &review);
        assert!(r.break_glass);
        let resp = response_json(&r);
        assert_eq!(resp["allowed"], true);
        assert_eq!(resp["auditAnnotations"]["break-glass"], "true");
        let warnings = resp["warnings"].as_array().unwrap();
        assert!(
            warnings[0]
                .as_str()
                .unwrap()
                .starts_with("break-glass approval by \"kubernetes-admin\"")
        );
        assert!(r.record.unwrap().approver.unwrap().break_glass);
    }
    // Someone else is still refused.
    let settings = AdmissionSettings {
        break_glass_users: vec!["someone-else".into()],
        break_glass_groups: vec!["other-group".into()],
        ..Default::default()
    };
    let r = decide_with(&shipped(), &settings, &review);
    assert_eq!(response_json(&r)["allowed"], false);
}

#[test]
fn adding_denied_or_failed_is_always_allowed_without_evaluation() {
    for kind in ["Denied", "Failed"] {
        let mut review = example("approve-terraform-admin");
        review["request"]["object"]["status"]["conditions"][0]["type"] = json!(kind);
        let r = decide(&review);
        assert_eq!(response_json(&r)["allowed"], true, "{kind}");
        assert!(r.decision.is_none(), "{kind}");
    }
}

#[test]
fn approval_already_present_before_is_not_re_decided() {
    let mut review = example("approve-terraform-admin");
    let conditions = review["request"]["object"]["status"].clone();
    review["request"]["oldObject"]["status"] = conditions;
    let r = decide(&review);
    assert_eq!(response_json(&r)["allowed"], true);
    assert!(r.decision.is_none());
}

#[test]
fn other_kinds_and_operations_are_allowed_untouched() {
    let mut delete = example("create-terraform-admin");
    delete["request"]["operation"] = json!("DELETE");
    let mut status = example("approve-terraform-admin");
    status["request"]["subResource"] = json!("status");
    let mut pod = example("create-terraform-admin");
    pod["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Pod"});
    pod["request"]["resource"] = json!({"group": "", "version": "v1", "resource": "pods"});
    pod["request"]["object"] =
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
    for review in [delete, status, pod] {
        let r = decide(&review);
        assert_eq!(r.kind, ReviewKind::Other);
        let resp = response_json(&r);
        assert_eq!(resp["allowed"], true);
        assert_eq!(resp["uid"], review["request"]["uid"]);
    }
}

#[test]
fn unreadable_bodies_are_refused_with_the_reason() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "empty body"),
        (b"  \n", "empty body"),
        (b"{not json", "not an AdmissionReview"),
        (
            br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}"#,
            "admission.k8s.io/v1beta1",
        ),
        (
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod"}"#,
            "\"Pod\"",
        ),
        (
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
            "has no request",
        ),
        (b"[1,2,3]", "not an AdmissionReview"),
    ];
    for (body, expected) in cases {
        let err = admission::parse_review(body).unwrap_err();
        assert!(
            err.contains(expected),
            "{:?}: {err}",
            String::from_utf8_lossy(body)
        );
    }
    let invalid = serde_json::to_value(admission::invalid_response("x")).unwrap();
    assert_eq!(invalid["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(invalid["response"]["allowed"], false);
    assert_eq!(invalid["response"]["status"]["code"], 400);
}

#[test]
fn csr_review_without_a_usable_object_is_a_400_answer_not_a_panic() {
    let mut missing = example("create-terraform-admin");
    missing["request"]["object"] = Value::Null;
    let mut broken = example("create-terraform-admin");
    broken["request"]["object"]["spec"] = json!({"request": 42});
    let mut garbage_pem = example("create-terraform-admin");
    garbage_pem["request"]["object"]["spec"]["request"] = json!("bm90IGEgcmVxdWVzdA==");
    for (review, expected) in [
        (missing, "request.object is missing"),
        (broken, "not a CertificateSigningRequest"),
    ] {
        let r = decide(&review);
        let resp = response_json(&r);
        assert_eq!(resp["allowed"], false);
        assert_eq!(resp["status"]["code"], 400);
        assert!(
            resp["status"]["message"]
                .as_str()
                .unwrap()
                .contains(expected)
        );
    }
    // A request that is not PKCS#10 at all, for a governed signer: denied with the parse error.
    let r = decide(&garbage_pem);
    let resp = response_json(&r);
    assert_eq!(resp["allowed"], false);
    assert_eq!(resp["status"]["code"], 403);
}

#[test]
fn refusal_message_is_bounded() {
    let mut sources = csr_warden::policy_dir::read_sources("policies".as_ref()).unwrap();
    // Thirty deny policies that all hold for every terraform request.
    for i in 0..30 {
        sources.push(Source {
            path: format!("deny-{i}.yaml"),
            text: format!(
                "apiVersion: csr-warden.io/v1alpha1\nkind: CSRPolicy\nmetadata:\n  name: deny-{i}\nspec:\n  action: deny\n  match:\n    signerNames: [kubernetes.io/kube-apiserver-client]\n"
            ),
        });
    }
    let policies = PolicySet::from_sources(&sources).unwrap();
    let r = decide_with(
        &policies,
        &AdmissionSettings::default(),
        &example("create-terraform-alice"),
    );
    let message = response_json(&r)["status"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    let listed = message.lines().filter(|l| l.starts_with("  - ")).count();
    assert_eq!(listed, admission::MAX_MESSAGE_REASONS, "{message}");
    assert!(
        message.lines().last().unwrap().contains("more"),
        "{message}"
    );
}
