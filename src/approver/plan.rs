//! What the approver does with one stored CSR. Pure: the object and the policies in, a plan out.

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};

use crate::csr::Limits;
use crate::policy::{Decision, Mode, PolicySet, Verdict};
use crate::request::ReviewInput;

/// Longest condition message written, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// Reasons written on conditions (CamelCase, as the API convention asks).
pub const REASON_APPROVED: &str = "PolicyApproved";
pub const REASON_DENIED: &str = "PolicyDenied";

#[derive(Debug, Clone)]
pub enum Plan {
    /// No policy's signer selector matches: never touched.
    OutOfScope,
    /// Already Approved, Denied or Failed, or issued: never touched.
    AlreadyDecided(&'static str),
    /// In scope, decided, but nothing to write: policies ignore it, the deciding policy is in
    /// audit mode, or the approver runs dry. Logged only.
    Observe {
        decision: Decision,
        input: Box<ReviewInput>,
        why: &'static str,
    },
    /// Write this condition through the approval subresource.
    Write {
        condition: CertificateSigningRequestCondition,
        decision: Decision,
        input: Box<ReviewInput>,
    },
}

/// `Approved`, `Denied` or `Failed` when that condition is set, `Issued` when a certificate is
/// there: requests the approver never touches.
fn already_decided(csr: &CertificateSigningRequest) -> Option<&'static str> {
    let status = csr.status.as_ref()?;
    let conditions = status.conditions.as_deref().unwrap_or_default();
    ["Approved", "Denied", "Failed"]
        .into_iter()
        .find(|kind| {
            conditions
                .iter()
                .any(|c| c.type_ == *kind && c.status == "True")
        })
        .or_else(|| {
            status
                .certificate
                .as_ref()
                .is_some_and(|c| !c.0.is_empty())
                .then_some("Issued")
        })
}

/// In scope and not decided yet: what the pending-requests gauges count. Cheap: no evaluation.
pub fn is_pending(policies: &PolicySet, csr: &CertificateSigningRequest) -> bool {
    policies.governs_signer(&csr.spec.signer_name) && already_decided(csr).is_none()
}

pub fn plan(
    policies: &PolicySet,
    csr: &CertificateSigningRequest,
    dry_run: bool,
    limits: &Limits,
) -> Plan {
    if !policies.governs_signer(&csr.spec.signer_name) {
        return Plan::OutOfScope;
    }
    if let Some(kind) = already_decided(csr) {
        return Plan::AlreadyDecided(kind);
    }
    // From what the API server stored, never from anything a webhook saw.
    let input = ReviewInput::from_stored(csr, limits);
    let decision = policies.evaluate(&input);
    let observe = |decision: Decision, input: ReviewInput, why| Plan::Observe {
        decision,
        input: Box::new(input),
        why,
    };
    let (kind, reason) = match (decision.verdict(), decision.mode()) {
        (Verdict::Ignore, _) => return observe(decision, input, "no policy decides it"),
        (_, Some(Mode::Audit)) => return observe(decision, input, "audit mode"),
        _ if dry_run => return observe(decision, input, "dry run"),
        (Verdict::Approve, _) => ("Approved", REASON_APPROVED),
        (Verdict::Deny, _) => ("Denied", REASON_DENIED),
    };
    let condition = CertificateSigningRequestCondition {
        type_: kind.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(condition_message(&decision)),
        last_transition_time: None,
        last_update_time: None,
    };
    Plan::Write {
        condition,
        decision,
        input: Box::new(input),
    }
}

/// `csr-warden: approved by policy "p"` or `csr-warden: denied by policy "p": r1; r2`, bounded.
pub fn condition_message(decision: &Decision) -> String {
    let policy = decision
        .policy()
        .map(|p| format!(" by policy {p:?}"))
        .unwrap_or_default();
    let mut m = match decision.verdict() {
        Verdict::Approve => format!("csr-warden: approved{policy}"),
        _ => format!("csr-warden: denied{policy}"),
    };
    let reasons = decision.reason_strings();
    if decision.verdict() == Verdict::Deny && !reasons.is_empty() {
        m.push_str(": ");
        m.push_str(&reasons.join("; "));
    }
    if m.len() > MAX_MESSAGE_BYTES {
        let mut cut = MAX_MESSAGE_BYTES - 3;
        while !m.is_char_boundary(cut) {
            cut -= 1;
        }
        m.truncate(cut);
        m.push_str("...");
    }
    m
}
