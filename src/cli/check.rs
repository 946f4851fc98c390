//! `csr-warden check`: decide requests from files, print the decisions and their reasons.

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::{CliError, OutputFormat};
use crate::csr::Limits;
use crate::input::{CsrDocument, read_documents};
use crate::policy::{Decision, Outcome, PolicySet, Reason, Verdict};
use crate::request::{CsrSpec, Requester, ReviewInput};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Policy directory (or a single policy file).
    #[arg(long, default_value_os_t = super::default_policies(), env = "CSR_WARDEN_POLICIES")]
    pub policies: PathBuf,
    /// Requester username, where the input does not record one.
    #[arg(long)]
    pub username: Option<String>,
    /// Requester uid, where the input does not record one.
    #[arg(long)]
    pub uid: Option<String>,
    /// Requester group (repeatable), where the input records none.
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// signerName, where the input does not give one.
    #[arg(long = "signer", value_name = "NAME")]
    pub signer: Option<String>,
    /// Key usage (repeatable), where the input gives none, e.g. --usage "client auth".
    #[arg(long = "usage", value_name = "USAGE")]
    pub usages: Vec<String>,
    /// expirationSeconds, where the input does not give it.
    #[arg(long)]
    pub expiration_seconds: Option<i64>,
    /// Output format: text for people, json for one object per input per line, record for
    /// decision records (JSON lines, source `check`).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// PEM requests, CertificateSigningRequest manifests (YAML or JSON) or AdmissionReviews;
    /// `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<String>,
}

/// One decided input, as `--output json` prints it.
#[derive(Debug, Serialize)]
struct Record<'a> {
    input: &'a str,
    name: Option<&'a str>,
    signer: &'a str,
    username: &'a str,
    decision: Verdict,
    policy: Option<&'a str>,
    mode: Option<crate::policy::Mode>,
    reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    audit: Option<AuditRecord<'a>>,
    /// For a decision record input: whether the new decision is the recorded one.
    #[serde(skip_serializing_if = "Option::is_none")]
    reproduced: Option<bool>,
}

#[derive(Debug, Serialize)]
struct AuditRecord<'a> {
    decision: Verdict,
    policy: Option<&'a str>,
    reasons: Vec<String>,
}

/// Run `check`; the exit code is 0 when nothing is denied, 1 when anything is.
pub fn run(args: &CheckArgs, out: &mut dyn Write) -> Result<u8, CliError> {
    let policies = crate::policy_dir::load(&args.policies)?;
    let mut inputs = Vec::new();
    let mut stdin_used = false;
    for file in &args.files {
        let bytes = if file == "-" {
            if stdin_used {
                return Err(CliError::Usage("`-` (standard input) given twice".into()));
            }
            stdin_used = true;
            let mut buf = Vec::new();
            std::io::stdin()
                .take(Limits::default().max_request_bytes as u64 * 16)
                .read_to_end(&mut buf)
                .map_err(|e| CliError::Usage(format!("reading standard input: {e}")))?;
            buf
        } else {
            std::fs::read(file).map_err(|e| CliError::Usage(format!("{file}: {e}")))?
        };
        inputs.push((file.as_str(), bytes));
    }

    let mut any_denied = false;
    for (file, bytes) in &inputs {
        let label = if *file == "-" { "<stdin>" } else { file };
        match read_documents(label, bytes) {
            Ok(docs) => {
                for doc in docs {
                    let (input, decision) = decide(&policies, args, &doc);
                    any_denied |= decision.verdict() == Verdict::Deny;
                    let reproduced = doc.recorded.as_ref().map(|r| {
                        r.decision == decision.verdict() && r.policy.as_deref() == decision.policy()
                    });
                    any_denied |= reproduced == Some(false);
                    let shown = Shown {
                        label: &doc.label,
                        doc: Some(&doc),
                        input: Some(&input),
                        decision: &decision,
                        reproduced,
                    };
                    print(out, args.output, &policies, &shown)?;
                }
            }
            Err(why) => {
                any_denied = true;
                let decision = unreadable(Reason::new(None, "input", why));
                let shown = Shown {
                    label,
                    doc: None,
                    input: None,
                    decision: &decision,
                    reproduced: None,
                };
                print(out, args.output, &policies, &shown)?;
            }
        }
    }
    Ok(u8::from(any_denied))
}

/// One decided input, as printed.
struct Shown<'a> {
    label: &'a str,
    doc: Option<&'a CsrDocument>,
    input: Option<&'a ReviewInput>,
    decision: &'a Decision,
    reproduced: Option<bool>,
}

/// A decision for an input that is not a request at all.
fn unreadable(reason: Reason) -> Decision {
    Decision {
        outcome: Outcome {
            verdict: Verdict::Deny,
            policy: None,
            mode: None,
            reasons: vec![reason],
        },
        audit: None,
    }
}

/// Decide one document: what the input records wins, the flags fill what it lacks.
fn decide(policies: &PolicySet, args: &CheckArgs, doc: &CsrDocument) -> (ReviewInput, Decision) {
    let filled = CsrDocument {
        signer_name: doc.signer_name.clone().or_else(|| args.signer.clone()),
        usages: doc.usages.clone().or_else(|| Some(args.usages.clone())),
        expiration_seconds: doc.expiration_seconds.or(args.expiration_seconds),
        username: doc.username.clone().or_else(|| args.username.clone()),
        requester_uid: doc.requester_uid.clone().or_else(|| args.uid.clone()),
        groups: doc.groups.clone().or_else(|| Some(args.groups.clone())),
        ..doc.clone()
    };
    let input = filled.review_input(&Limits::default());
    let mut decision = policies.evaluate(&input);
    // A file that does not parse as a request is a denial, even where no policy governs it.
    if let (Err(e), Verdict::Ignore) = (&input.facts, decision.verdict()) {
        decision = unreadable(Reason::new(None, "request", e.to_string()));
    }
    (input, decision)
}

fn print(
    out: &mut dyn Write,
    format: OutputFormat,
    policies: &PolicySet,
    shown: &Shown<'_>,
) -> Result<(), CliError> {
    let default_spec = CsrSpec::default();
    let default_requester = Requester::default();
    let spec = shown.input.map_or(&default_spec, |i| &i.spec);
    let requester = shown.input.map_or(&default_requester, |i| &i.requester);
    let decision = shown.decision;
    let name = shown.doc.and_then(|d| d.name.as_deref());
    match format {
        OutputFormat::Record => {
            // Unreadable inputs have no request to record: they are reported on stderr.
            let (Some(doc), Some(input)) = (shown.doc, shown.input) else {
                eprintln!("{}: {}", shown.label, decision.reason_strings().join("; "));
                return Ok(());
            };
            let record = crate::record::DecisionRecord::new(
                crate::record::RecordContext {
                    source: crate::record::RecordSource::Check,
                    timestamp: crate::record::now_rfc3339(),
                    name: name.unwrap_or(""),
                    uid: doc.uid.as_deref().unwrap_or(""),
                    policy_digest: policies.digest(),
                },
                &doc.request,
                input,
                decision,
            );
            let line = serde_json::to_string(&record)
                .map_err(|e| CliError::Output(std::io::Error::other(e)))?;
            writeln!(out, "{line}")?;
        }
        OutputFormat::Json => {
            let record = Record {
                input: shown.label,
                name,
                signer: &spec.signer_name,
                username: &requester.username,
                decision: decision.verdict(),
                policy: decision.policy(),
                mode: decision.mode(),
                reasons: decision.reason_strings(),
                audit: decision.audit.as_ref().map(|a| AuditRecord {
                    decision: a.verdict,
                    policy: a.policy.as_deref(),
                    reasons: a.reasons.iter().map(ToString::to_string).collect(),
                }),
                reproduced: shown.reproduced,
            };
            let line = serde_json::to_string(&record)
                .map_err(|e| CliError::Output(std::io::Error::other(e)))?;
            writeln!(out, "{line}")?;
        }
        OutputFormat::Text => {
            write!(out, "{}: {}", shown.label, decision.verdict())?;
            match (decision.policy(), decision.mode()) {
                (Some(p), Some(m)) => writeln!(out, " by policy {p} ({m})")?,
                _ => writeln!(out)?,
            }
            for r in decision.reasons() {
                writeln!(out, "  - {r}")?;
            }
            if let Some(a) = &decision.audit {
                let policy = a.policy.as_deref().unwrap_or("-");
                writeln!(out, "  audit mode: policy {policy} would {}", a.verdict)?;
                for r in &a.reasons {
                    writeln!(out, "    - {r}")?;
                }
            }
            if let (Some(r), Some(same)) = (
                shown.doc.and_then(|d| d.recorded.as_ref()),
                shown.reproduced,
            ) {
                let by = r
                    .policy
                    .as_deref()
                    .map(|p| format!(" by policy {p}"))
                    .unwrap_or_default();
                let verdict = if same { "reproduced" } else { "NOT reproduced" };
                writeln!(
                    out,
                    "  recorded: {}{by} ({}, {}): {verdict}",
                    r.decision, r.source, r.timestamp
                )?;
                if r.policy_digest != policies.digest() {
                    writeln!(
                        out,
                        "  the policies differ from the recorded ones ({} then, {} now): check out the policies at that digest to reproduce exactly",
                        r.policy_digest,
                        policies.digest()
                    )?;
                }
            }
        }
    }
    Ok(())
}
