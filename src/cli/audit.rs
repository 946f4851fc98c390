//! `csr-warden audit --cluster`: every CSR in the cluster, decided ones included, against the
//! current policies. For security teams: approvals the policies would refuse now, break-glass
//! approvals, and pending requests with their age.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use serde::Serialize;

use super::CliError;
use crate::csr::Limits;
use crate::policy::{Decision, PolicySet, Verdict};
use crate::request::ReviewInput;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuditOutput {
    Table,
    Json,
    /// A wgpolicyk8s.io/v1alpha2 ClusterPolicyReport.
    Report,
    /// Decision records (JSON lines, source `audit`).
    Record,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Audit the cluster of the current kubeconfig (the only source so far).
    #[arg(long, required = true)]
    pub cluster: bool,
    /// kubeconfig context.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Policy directory (or a single policy file).
    #[arg(long, default_value_os_t = super::default_policies())]
    pub policies: PathBuf,
    #[arg(long, value_enum, default_value_t = AuditOutput::Table)]
    pub output: AuditOutput,
}

/// What the audit found about one CSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Finding {
    /// Approved by csr-warden and still approved by the policies.
    Consistent,
    /// Approved by csr-warden (PolicyApproved), denied by the policies now: they changed since.
    ApprovedDeniedNow,
    /// Approved by someone else although the policies deny it: a break-glass (or pre-csr-warden)
    /// approval.
    BreakGlass,
    /// Denied, but the policies approve it now.
    DeniedApprovedNow,
    /// In scope and not decided yet.
    Pending,
    /// No policy governs or decides it.
    OutOfScope,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    name: String,
    uid: String,
    signer: String,
    requester: String,
    /// Approved, Denied, Failed, Issued or Pending.
    status: String,
    /// Reason and message of the Approved or Denied condition: who decided.
    decided_by: Option<String>,
    now: Verdict,
    policy: Option<String>,
    reasons: Vec<String>,
    finding: Finding,
    age_seconds: i64,
}

fn condition<'a>(
    c: &'a CertificateSigningRequest,
    kind: &str,
) -> Option<&'a k8s_openapi::api::certificates::v1::CertificateSigningRequestCondition> {
    c.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|x| x.type_ == kind && x.status == "True")
}

fn audit_one(
    policies: &PolicySet,
    c: &CertificateSigningRequest,
    decision: &Decision,
    now: jiff::Timestamp,
) -> Row {
    let approved = condition(c, "Approved");
    let denied = condition(c, "Denied");
    let failed = condition(c, "Failed");
    let issued = c
        .status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|x| !x.0.is_empty());
    let status = match (approved, denied, failed, issued) {
        (_, _, Some(_), _) => "Failed",
        (Some(_), _, _, true) => "Approved,Issued",
        (Some(_), _, _, false) => "Approved",
        (_, Some(_), _, _) => "Denied",
        _ => "Pending",
    };
    let by = |x: &k8s_openapi::api::certificates::v1::CertificateSigningRequestCondition| {
        format!(
            "{}: {}",
            x.reason.as_deref().unwrap_or("-"),
            x.message.as_deref().unwrap_or("")
        )
    };
    let finding = match (approved, denied, decision.verdict()) {
        (Some(a), _, Verdict::Deny)
            if a.reason.as_deref() == Some(crate::approver::plan::REASON_APPROVED) =>
        {
            Finding::ApprovedDeniedNow
        }
        (Some(_), _, Verdict::Deny) => Finding::BreakGlass,
        (Some(_), _, _) => Finding::Consistent,
        (None, Some(_), Verdict::Approve) => Finding::DeniedApprovedNow,
        (None, Some(_), _) => Finding::Consistent,
        (None, None, _) if failed.is_some() => Finding::Consistent,
        (None, None, _) if policies.governs_signer(&c.spec.signer_name) => Finding::Pending,
        _ => Finding::OutOfScope,
    };
    let age_seconds = c
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| now.as_second() - t.0.as_second())
        .unwrap_or(0);
    Row {
        name: c.metadata.name.clone().unwrap_or_default(),
        uid: c.metadata.uid.clone().unwrap_or_default(),
        signer: c.spec.signer_name.clone(),
        requester: c.spec.username.clone().unwrap_or_default(),
        status: status.into(),
        decided_by: approved.or(denied).map(by),
        now: decision.verdict(),
        policy: decision.policy().map(str::to_string),
        reasons: decision.reason_strings(),
        finding,
        age_seconds,
    }
}

pub async fn run(args: &AuditArgs, out: &mut dyn Write) -> Result<u8, CliError> {
    let policies = crate::policy_dir::load(&args.policies)?;
    let client = super::diff::cluster_client(args.context.as_deref()).await?;
    let api: kube::Api<CertificateSigningRequest> = kube::Api::all(client);
    let list = api.list(&Default::default()).await.map_err(|e| {
        CliError::Usage(format!(
            "--cluster: listing CertificateSigningRequests: {e}"
        ))
    })?;
    let now = jiff::Timestamp::now();
    // Each stored request decided once; rows and records come from the same decision.
    let decided: Vec<(&CertificateSigningRequest, ReviewInput, Decision)> = list
        .items
        .iter()
        .map(|c| {
            let input = ReviewInput::from_stored(c, &Limits::default());
            let decision = policies.evaluate(&input);
            (c, input, decision)
        })
        .collect();
    let rows: Vec<Row> = decided
        .iter()
        .map(|(c, _, d)| audit_one(&policies, c, d, now))
        .collect();
    let failing = rows
        .iter()
        .filter(|r| matches!(r.finding, Finding::ApprovedDeniedNow | Finding::BreakGlass))
        .count();
    match args.output {
        AuditOutput::Json => {
            let doc = serde_json::json!({"policyDigest": policies.digest(), "requests": rows});
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&doc).map_err(std::io::Error::other)?
            )?;
        }
        AuditOutput::Record => {
            let timestamp = crate::record::now_rfc3339();
            for (c, input, decision) in &decided {
                let record = crate::record::DecisionRecord::new(
                    crate::record::RecordContext {
                        source: crate::record::RecordSource::Audit,
                        timestamp: timestamp.clone(),
                        name: c.metadata.name.as_deref().unwrap_or(""),
                        uid: c.metadata.uid.as_deref().unwrap_or(""),
                        policy_digest: policies.digest(),
                    },
                    &c.spec.request.0,
                    input,
                    decision,
                );
                let line = serde_json::to_string(&record).map_err(std::io::Error::other)?;
                writeln!(out, "{line}")?;
            }
        }
        AuditOutput::Report => {
            let report = policy_report(&rows, now);
            writeln!(
                out,
                "{}",
                serde_saphyr::to_string(&report).map_err(std::io::Error::other)?
            )?;
        }
        AuditOutput::Table => {
            writeln!(
                out,
                "{:<32} {:<16} {:<22} {:<20} DECIDED BY",
                "NAME", "STATUS", "NOW", "FINDING"
            )?;
            for r in &rows {
                let now = match &r.policy {
                    Some(p) => format!("{} ({p})", r.now),
                    None => r.now.to_string(),
                };
                let finding = serde_json::to_value(r.finding)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{:<32} {:<16} {:<22} {:<20} {}",
                    r.name,
                    r.status,
                    now,
                    finding,
                    r.decided_by.as_deref().unwrap_or("-")
                )?;
            }
            let pending: Vec<&Row> = rows
                .iter()
                .filter(|r| r.finding == Finding::Pending)
                .collect();
            let oldest = pending.iter().map(|r| r.age_seconds).max().unwrap_or(0);
            writeln!(
                out,
                "{} requests: {failing} approved although the policies deny them, {} pending in scope (oldest {oldest} s)",
                rows.len(),
                pending.len()
            )?;
        }
    }
    Ok(u8::from(failing > 0))
}

/// `wgpolicyk8s.io/v1alpha2` ClusterPolicyReport, one result per CSR, `source: csr-warden`.
fn policy_report(rows: &[Row], now: jiff::Timestamp) -> serde_json::Value {
    let mut summary = std::collections::BTreeMap::from([
        ("pass", 0),
        ("fail", 0),
        ("warn", 0),
        ("error", 0),
        ("skip", 0),
    ]);
    let results: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let result = match r.finding {
                Finding::Consistent => "pass",
                Finding::ApprovedDeniedNow | Finding::BreakGlass => "fail",
                Finding::DeniedApprovedNow | Finding::Pending => "warn",
                Finding::OutOfScope => "skip",
            };
            *summary.entry(result).or_default() += 1;
            let finding = serde_json::to_value(r.finding).unwrap_or_default();
            let message = match r.finding {
                Finding::BreakGlass => format!(
                    "approved ({}) although the policies deny it: {}",
                    r.decided_by.as_deref().unwrap_or("-"),
                    r.reasons.join("; ")
                ),
                Finding::ApprovedDeniedNow => format!(
                    "approved by csr-warden, denied by the current policies: {}",
                    r.reasons.join("; ")
                ),
                Finding::DeniedApprovedNow => {
                    "denied, but the current policies approve it".to_string()
                }
                Finding::Pending => format!("pending for {} s", r.age_seconds),
                Finding::Consistent => format!("{}, as the policies decide", r.status),
                Finding::OutOfScope => "no policy decides this request".to_string(),
            };
            serde_json::json!({
                "source": "csr-warden",
                "policy": r.policy.clone().unwrap_or_else(|| "none".into()),
                "rule": finding,
                "result": result,
                "message": message,
                "category": "CertificateSigningRequest",
                "severity": if result == "fail" { "high" } else { "info" },
                "timestamp": {"seconds": now.as_second(), "nanos": 0},
                "resources": [{
                    "apiVersion": "certificates.k8s.io/v1",
                    "kind": "CertificateSigningRequest",
                    "name": r.name,
                    "uid": r.uid,
                }],
            })
        })
        .collect();
    serde_json::json!({
        "apiVersion": "wgpolicyk8s.io/v1alpha2",
        "kind": "ClusterPolicyReport",
        "metadata": {"name": "csr-warden"},
        "summary": summary,
        "results": results,
    })
}
