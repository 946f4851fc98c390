//! Admission: an `admission.k8s.io/v1` AdmissionReview in, the response and the decision record
//! out. Pure: no I/O, no clock (the caller passes the time), so the webhook server is a thin
//! HTTP shell around [`parse_review`] and [`review`].
//!
//! What is decided (the API server's side is in `../shared/reference/kubernetes-csr.md`):
//! - CREATE of a `certificates.k8s.io` CertificateSigningRequest: the request is evaluated with
//!   the caller (`userInfo`) as requester. An enforce-mode deny refuses the create (403) with
//!   every reason; an audit-mode deny lets it through with the reasons as warnings.
//! - UPDATE of the `approval` subresource that adds `Approved`: the stored request is evaluated
//!   with the identity the API server recorded for its creator (`spec.username`, ...). An
//!   enforce-mode deny refuses the approval unless the approver is on the break-glass list.
//!   Adding `Denied` is always allowed.
//! - Anything else is allowed untouched.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, Status};

use crate::csr::Limits;
use crate::policy::{Decision, Mode, PolicySet, Verdict};
use crate::record::{DecisionRecord, RecordApprover, RecordContext, RecordSource};
use crate::request::{Requester, ReviewInput};

/// The only AdmissionReview version the webhook speaks.
pub const ADMISSION_API_VERSION: &str = "admission.k8s.io/v1";
/// Reasons listed in a refusal message before "... and N more".
pub const MAX_MESSAGE_REASONS: usize = 20;
/// Longest value of an audit annotation, in bytes.
pub const MAX_ANNOTATION_BYTES: usize = 1024;

/// Settings of the admission decision that are not policies.
#[derive(Debug, Clone, Default)]
pub struct AdmissionSettings {
    /// Users whose approvals are let through even when policy denies the request.
    pub break_glass_users: Vec<String>,
    /// Groups whose members' approvals are let through even when policy denies the request.
    pub break_glass_groups: Vec<String>,
    pub limits: Limits,
}

/// What kind of review this was, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewKind {
    /// CREATE of a CertificateSigningRequest.
    Create,
    /// UPDATE of `certificatesigningrequests/approval`.
    Approval,
    /// Anything else: allowed without evaluation.
    Other,
}

impl ReviewKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewKind::Create => "create",
            ReviewKind::Approval => "approval",
            ReviewKind::Other => "other",
        }
    }
}

/// The answer to one review.
#[derive(Debug, Clone)]
pub struct Reviewed {
    pub kind: ReviewKind,
    pub response: AdmissionResponse,
    /// The policy decision, when policies were evaluated.
    pub decision: Option<Decision>,
    /// The record to log, when policies were evaluated.
    pub record: Option<DecisionRecord>,
    /// True when an approval was allowed only through the break-glass list.
    pub break_glass: bool,
}

/// Read an AdmissionReview body, or say (for a 400 answer) why it is not one.
pub fn parse_review(body: &[u8]) -> Result<AdmissionRequest<DynamicObject>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("empty body: expected an admission.k8s.io/v1 AdmissionReview".into());
    }
    let unsupported = |kind: &str, api_version: &str| {
        format!(
            "unsupported {kind:?} of apiVersion {api_version:?}: csr-warden speaks AdmissionReview {ADMISSION_API_VERSION}"
        )
    };
    // One parse on the happy path. Only a body that does not parse is read again for its type,
    // so another version's review is named as such rather than by a missing field.
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct Head {
                #[serde(default)]
                api_version: String,
                #[serde(default)]
                kind: String,
            }
            return Err(match serde_json::from_slice::<Head>(body) {
                Ok(h) if h.api_version != ADMISSION_API_VERSION || h.kind != "AdmissionReview" => {
                    unsupported(&h.kind, &h.api_version)
                }
                _ => format!("body is not an AdmissionReview: {e}"),
            });
        }
    };
    if review.types.api_version != ADMISSION_API_VERSION || review.types.kind != "AdmissionReview" {
        return Err(unsupported(&review.types.kind, &review.types.api_version));
    }
    review
        .try_into()
        .map_err(|_| "AdmissionReview has no request".to_string())
}

/// The response for a body [`parse_review`] refused, serialized as an AdmissionReview.
pub fn invalid_response(message: &str) -> AdmissionReview<DynamicObject> {
    let mut response = AdmissionResponse::invalid(message);
    response.result.code = 400;
    response.into_review()
}

/// Decide one review. `timestamp` goes into the record.
pub fn review(
    policies: &PolicySet,
    settings: &AdmissionSettings,
    req: &AdmissionRequest<DynamicObject>,
    timestamp: String,
) -> Reviewed {
    let is_csr = req.kind.group == "certificates.k8s.io"
        && req.kind.kind == "CertificateSigningRequest"
        && req.resource.resource == "certificatesigningrequests";
    match (is_csr, &req.operation, req.sub_resource.as_deref()) {
        (true, Operation::Create, None | Some("")) => {
            review_create(policies, settings, req, timestamp)
        }
        (true, Operation::Update, Some("approval")) => {
            review_approval(policies, settings, req, timestamp)
        }
        _ => Reviewed {
            kind: ReviewKind::Other,
            response: AdmissionResponse::from(req),
            decision: None,
            record: None,
            break_glass: false,
        },
    }
}

fn review_create(
    policies: &PolicySet,
    settings: &AdmissionSettings,
    req: &AdmissionRequest<DynamicObject>,
    timestamp: String,
) -> Reviewed {
    let csr = match object_as_csr(req.object.as_ref(), "object") {
        Ok(csr) => csr,
        Err(message) => return malformed(req, ReviewKind::Create, &message),
    };
    // At CREATE the caller is the requester (the API server copies it into spec as well).
    let user = &req.user_info;
    let mut input = ReviewInput::from_stored(&csr, &settings.limits);
    input.requester = Requester {
        username: user.username.clone().unwrap_or_default(),
        uid: user.uid.clone().unwrap_or_default(),
        groups: user.groups.clone().unwrap_or_default(),
        extra: user.extra.clone().unwrap_or_default(),
    };
    let decision = policies.evaluate(&input);
    let name = display_name(&csr, req);

    let mut response = AdmissionResponse::from(req);
    match (decision.verdict(), decision.mode()) {
        (Verdict::Deny, Some(Mode::Enforce)) => {
            let message = refusal_message(
                &format!("CertificateSigningRequest {name} denied"),
                &decision,
            );
            response = forbidden(response, message);
        }
        _ => response.warnings = warnings(&decision),
    }
    annotate(&mut response, &decision, false);

    let mut record = make_record(
        RecordSource::Webhook,
        timestamp,
        &csr,
        req,
        policies,
        &input,
        &decision,
    );
    record.allowed = Some(response.allowed);
    Reviewed {
        kind: ReviewKind::Create,
        response,
        decision: Some(decision),
        record: Some(record),
        break_glass: false,
    }
}

fn review_approval(
    policies: &PolicySet,
    settings: &AdmissionSettings,
    req: &AdmissionRequest<DynamicObject>,
    timestamp: String,
) -> Reviewed {
    let new = match object_as_csr(req.object.as_ref(), "object") {
        Ok(csr) => csr,
        Err(message) => return malformed(req, ReviewKind::Approval, &message),
    };
    // The stored object carries the request and the recorded requester; the new object's spec
    // is the same (the approval subresource only takes status.conditions).
    let stored = match req.old_object.as_ref() {
        Some(_) => match object_as_csr(req.old_object.as_ref(), "oldObject") {
            Ok(csr) => csr,
            Err(message) => return malformed(req, ReviewKind::Approval, &message),
        },
        None => new.clone(),
    };
    let allowed_untouched = || Reviewed {
        kind: ReviewKind::Approval,
        response: AdmissionResponse::from(req),
        decision: None,
        record: None,
        break_glass: false,
    };
    if !has_true_condition(&new, "Approved") || has_true_condition(&stored, "Approved") {
        // Denying, failing, or re-sending an existing approval: never refused.
        return allowed_untouched();
    }

    let input = ReviewInput::from_stored(&stored, &settings.limits);
    let decision = policies.evaluate(&input);
    let name = display_name(&stored, req);
    let approver = &req.user_info;
    let approver_name = approver.username.clone().unwrap_or_default();
    let approver_groups = approver.groups.clone().unwrap_or_default();
    let break_glass_member = settings.break_glass_users.contains(&approver_name)
        || approver_groups
            .iter()
            .any(|g| settings.break_glass_groups.contains(g));

    let mut response = AdmissionResponse::from(req);
    let mut break_glass = false;
    match (decision.verdict(), decision.mode()) {
        (Verdict::Deny, Some(Mode::Enforce)) if break_glass_member => {
            break_glass = true;
            let mut w = vec![format!(
                "break-glass approval by {approver_name:?}: csr-warden policy would deny CertificateSigningRequest {name}"
            )];
            w.extend(decision.reason_strings().into_iter().map(bounded_warning));
            response.warnings = Some(w);
        }
        (Verdict::Deny, Some(Mode::Enforce)) => {
            let message = refusal_message(
                &format!(
                    "approval of CertificateSigningRequest {name} by {approver_name:?} refused"
                ),
                &decision,
            );
            response = forbidden(response, message);
        }
        _ => response.warnings = warnings(&decision),
    }
    annotate(&mut response, &decision, break_glass);

    let mut record = make_record(
        RecordSource::ApprovalGuard,
        timestamp,
        &stored,
        req,
        policies,
        &input,
        &decision,
    );
    record.allowed = Some(response.allowed);
    record.approver = Some(RecordApprover {
        username: approver_name,
        groups: approver_groups,
        break_glass,
    });
    Reviewed {
        kind: ReviewKind::Approval,
        response,
        decision: Some(decision),
        record: Some(record),
        break_glass,
    }
}

#[allow(clippy::too_many_arguments)]
fn make_record(
    source: RecordSource,
    timestamp: String,
    csr: &CertificateSigningRequest,
    req: &AdmissionRequest<DynamicObject>,
    policies: &PolicySet,
    input: &ReviewInput,
    decision: &Decision,
) -> DecisionRecord {
    let name = csr
        .metadata
        .name
        .clone()
        .unwrap_or_else(|| req.name.clone());
    let uid = csr.metadata.uid.clone().unwrap_or_default();
    let ctx = RecordContext {
        source,
        timestamp,
        name: &name,
        uid: &uid,
        policy_digest: policies.digest(),
    };
    let mut record = DecisionRecord::new(ctx, &csr.spec.request.0, input, decision);
    record.review_uid = Some(req.uid.clone());
    record.dry_run = Some(req.dry_run);
    record
}

fn object_as_csr(
    object: Option<&DynamicObject>,
    field: &str,
) -> Result<CertificateSigningRequest, String> {
    let object = object.ok_or_else(|| format!("request.{field} is missing"))?;
    let value = serde_json::to_value(object).map_err(|e| format!("request.{field}: {e}"))?;
    serde_json::from_value(value)
        .map_err(|e| format!("request.{field} is not a CertificateSigningRequest: {e}"))
}

fn has_true_condition(csr: &CertificateSigningRequest, kind: &str) -> bool {
    let conditions: &[CertificateSigningRequestCondition] = csr
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    conditions
        .iter()
        .any(|c| c.type_ == kind && c.status == "True")
}

/// `"name"`, or `"prefix*"` for a generateName create whose name is not filled yet.
fn display_name(csr: &CertificateSigningRequest, req: &AdmissionRequest<DynamicObject>) -> String {
    match (&csr.metadata.name, &csr.metadata.generate_name) {
        (Some(n), _) if !n.is_empty() => format!("{n:?}"),
        _ if !req.name.is_empty() => format!("{:?}", req.name),
        (_, Some(g)) => format!("{:?}", format!("{g}*")),
        _ => "(unnamed)".to_string(),
    }
}

/// A refusal: every reason on its own line, so kubectl and Terraform print a readable list.
fn refusal_message(headline: &str, decision: &Decision) -> String {
    let mut message = match decision.policy() {
        Some(p) => format!("{headline} by csr-warden policy {p:?}:"),
        None => format!("{headline} by csr-warden:"),
    };
    let reasons = decision.reason_strings();
    for r in reasons.iter().take(MAX_MESSAGE_REASONS) {
        message.push_str("\n  - ");
        message.push_str(r);
    }
    if reasons.len() > MAX_MESSAGE_REASONS {
        message.push_str(&format!(
            "\n  ... and {} more",
            reasons.len() - MAX_MESSAGE_REASONS
        ));
    }
    message
}

fn forbidden(response: AdmissionResponse, message: String) -> AdmissionResponse {
    let mut response = response.deny("");
    response.result = Status::failure(&message, "Forbidden").with_code(403);
    response
}

/// Audit-mode denials, as warnings for the client.
fn warnings(decision: &Decision) -> Option<Vec<String>> {
    let audit = match (decision.verdict(), decision.mode(), &decision.audit) {
        (Verdict::Deny, Some(Mode::Audit), _) => &decision.outcome,
        (_, _, Some(a)) if a.verdict == Verdict::Deny => a,
        _ => return None,
    };
    let policy = audit.policy.as_deref().unwrap_or("-");
    let mut w = vec![format!(
        "csr-warden audit mode: policy {policy:?} would deny this request"
    )];
    w.extend(
        audit
            .reasons
            .iter()
            .take(MAX_MESSAGE_REASONS)
            .map(|r| bounded_warning(r.to_string())),
    );
    Some(w)
}

/// Warnings over 256 characters may be truncated by the API server: cut them ourselves.
fn bounded_warning(mut w: String) -> String {
    truncate(&mut w, 256);
    w
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max - 3;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
}

/// Annotations the API server writes into its audit log, under the webhook's name.
fn annotate(response: &mut AdmissionResponse, decision: &Decision, break_glass: bool) {
    let mut a: BTreeMap<&str, String> = BTreeMap::new();
    a.insert("decision", decision.verdict().to_string());
    a.insert("policy", decision.policy().unwrap_or_default().to_string());
    if let Some(mode) = decision.mode() {
        a.insert("mode", mode.to_string());
    }
    if decision.verdict() == Verdict::Deny {
        let mut reasons = decision.reason_strings().join("; ");
        truncate(&mut reasons, MAX_ANNOTATION_BYTES);
        a.insert("reasons", reasons);
    }
    if break_glass {
        a.insert("break-glass", "true".into());
    }
    response.audit_annotations = a
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect::<HashMap<_, _>>();
}

/// A review about a CSR whose object cannot be read: refused with 400, so the API server
/// reports it rather than letting an unreadable request through.
fn malformed(req: &AdmissionRequest<DynamicObject>, kind: ReviewKind, message: &str) -> Reviewed {
    let mut response = AdmissionResponse::from(req).deny("");
    response.result = Status::failure(message, "BadRequest").with_code(400);
    Reviewed {
        kind,
        response,
        decision: None,
        record: None,
        break_glass: false,
    }
}
