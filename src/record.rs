//! The decision record: one JSON object for every decision csr-warden makes, whoever made it
//! (webhook, approver, CLI). Versioned by `apiVersion`/`kind`; fields are only ever added.
//!
//! A record carries what is needed to reproduce the decision later: the request's SHA-256,
//! the Kubernetes fields, the requester, and the digest of the policy set that decided.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::policy::{Decision, Mode, Verdict};
use crate::request::ReviewInput;

pub const API_VERSION: &str = "csr-warden.io/v1alpha1";
pub const KIND: &str = "DecisionRecord";

/// Which part of csr-warden decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RecordSource {
    /// The admission webhook, at CREATE.
    Webhook,
    /// The admission webhook, guarding an approval (UPDATE of `approval`).
    ApprovalGuard,
    /// The approver, deciding a stored request.
    Approver,
    /// The CLI (`check`).
    Check,
    /// `audit --cluster`, deciding a stored request again.
    Audit,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordRequester {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// What was asked: a summary of the request, enough for a person reading a log.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordRequest {
    /// Hex SHA-256 of the DER request (of the bytes as given when they do not parse).
    pub sha256: String,
    /// The request exactly as stored (`spec.request`, usually PEM), base64: with the policies at
    /// `policyDigest`, enough for `csr-warden check` to decide it again.
    pub data: String,
    /// `CN=..., O=...`, in request order; empty when the request does not parse.
    pub subject: String,
    /// `DNS:a`, `IP:b`, ... in request order.
    pub sans: Vec<String>,
    pub signer_name: String,
    pub usages: Vec<String>,
    pub expiration_seconds: Option<i64>,
}

/// Who else acted, for approval-guard records: the person or controller approving.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordApprover {
    pub username: String,
    pub groups: Vec<String>,
    /// True when the approval was allowed only because the approver is on the break-glass list.
    pub break_glass: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionRecord {
    pub api_version: &'static str,
    pub kind: &'static str,
    /// RFC 3339, UTC.
    pub timestamp: String,
    pub source: RecordSource,
    /// CSR `metadata.name` (may be empty at CREATE with generateName).
    pub name: String,
    /// CSR `metadata.uid` where known.
    pub uid: String,
    /// The AdmissionReview's `request.uid`, for webhook records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    pub requester: RecordRequester,
    pub request: RecordRequest,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approver: Option<RecordApprover>,
    pub decision: Verdict,
    pub policy: Option<String>,
    pub mode: Option<Mode>,
    pub reasons: Vec<String>,
    /// What audit-mode policies would have decided, when it differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditOutcome>,
    /// Whether the webhook let the operation through (webhook records only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed: Option<bool>,
    /// Approver records: whether the condition was written (false for audit mode, dry run,
    /// or requests no policy decides).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written: Option<bool>,
    /// Time spent deciding, in milliseconds (webhook records only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    pub policy_digest: String,
    pub version: &'static str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditOutcome {
    pub decision: Verdict,
    pub policy: Option<String>,
    pub reasons: Vec<String>,
}

/// The request-independent parts of a record.
#[derive(Debug, Clone)]
pub struct RecordContext<'a> {
    pub source: RecordSource,
    pub timestamp: String,
    pub name: &'a str,
    pub uid: &'a str,
    pub policy_digest: &'a str,
}

impl DecisionRecord {
    /// The record of `decision`, made for `input` (whose raw request bytes were `raw`).
    pub fn new(
        ctx: RecordContext<'_>,
        raw: &[u8],
        input: &ReviewInput,
        decision: &Decision,
    ) -> Self {
        let (sha256, subject, sans) = match &input.facts {
            Ok(facts) => (
                facts.sha256.clone(),
                facts.subject_summary(),
                facts.sans.iter().map(ToString::to_string).collect(),
            ),
            Err(_) => (crate::csr::hex(&Sha256::digest(raw)), String::new(), vec![]),
        };
        let data = base64::engine::general_purpose::STANDARD.encode(raw);
        DecisionRecord {
            api_version: API_VERSION,
            kind: KIND,
            timestamp: ctx.timestamp,
            source: ctx.source,
            name: ctx.name.to_string(),
            uid: ctx.uid.to_string(),
            review_uid: None,
            dry_run: None,
            requester: RecordRequester {
                username: input.requester.username.clone(),
                uid: input.requester.uid.clone(),
                groups: input.requester.groups.clone(),
                extra: input.requester.extra.clone(),
            },
            request: RecordRequest {
                sha256,
                data,
                subject,
                sans,
                signer_name: input.spec.signer_name.clone(),
                usages: input.spec.usages.clone(),
                expiration_seconds: input.spec.expiration_seconds,
            },
            approver: None,
            decision: decision.verdict(),
            policy: decision.policy().map(str::to_string),
            mode: decision.mode(),
            reasons: decision.reason_strings(),
            audit: decision.audit.as_ref().map(|a| AuditOutcome {
                decision: a.verdict,
                policy: a.policy.clone(),
                reasons: a.reasons.iter().map(ToString::to_string).collect(),
            }),
            allowed: None,
            written: None,
            duration_ms: None,
            policy_digest: ctx.policy_digest.to_string(),
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// Current time, RFC 3339 in UTC, for records made by the adapters.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}
