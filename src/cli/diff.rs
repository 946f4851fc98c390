//! `csr-warden diff`: what a policy change does. Decides a corpus (files, or every CSR in a
//! cluster) under the base and the head policies, and lists each request whose decision changes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::{Args, ValueEnum};
use serde::Serialize;

use super::CliError;
use crate::csr::Limits;
use crate::input::read_documents;
use crate::policy::{Decision, PolicySet, Source, Verdict};
use crate::request::ReviewInput;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiffOutput {
    /// A Markdown table, to paste into a pull request review.
    Markdown,
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The policies before: a directory or file, or a git revision of the repository the command
    /// runs in (its `--head` path at that revision).
    #[arg(long, value_name = "DIR_OR_GIT_REV")]
    pub base: String,
    /// The policies after [default: policies].
    #[arg(long, value_name = "DIR")]
    pub head: Option<PathBuf>,
    /// Decide every CSR in the cluster (kubeconfig as kubectl finds it) instead of files.
    #[arg(long, conflicts_with = "inputs")]
    pub cluster: bool,
    /// kubeconfig context, with --cluster.
    #[arg(long, value_name = "NAME", requires = "cluster")]
    pub context: Option<String>,
    #[arg(long, value_enum, default_value_t = DiffOutput::Markdown)]
    pub output: DiffOutput,
    /// Requests to decide: manifests, AdmissionReviews, decision records (PEM files record no
    /// requester or signer, so they are decided as they are).
    #[arg(value_name = "INPUT", required_unless_present = "cluster")]
    pub inputs: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Side {
    decision: Verdict,
    policy: Option<String>,
    reasons: Vec<String>,
}

impl From<&Decision> for Side {
    fn from(d: &Decision) -> Side {
        Side {
            decision: d.verdict(),
            policy: d.policy().map(str::to_string),
            reasons: d.reason_strings(),
        }
    }
}

#[derive(Debug, Serialize)]
struct Change {
    input: String,
    before: Side,
    after: Side,
}

/// Exit 0 whether or not anything changes; errors (unreadable policies, a bad revision) are 2.
pub async fn run(args: &DiffArgs, out: &mut dyn Write) -> Result<u8, CliError> {
    let head_path = args.head.clone().unwrap_or_else(super::default_policies);
    let head = crate::policy_dir::load(&head_path)?;
    let base = load_base(&args.base, &head_path)?;
    let corpus = if args.cluster {
        cluster_corpus(args.context.as_deref()).await?
    } else {
        file_corpus(&args.inputs)?
    };
    let total = corpus.len();
    let mut changes = Vec::new();
    for (label, input) in corpus {
        let before = base.evaluate(&input);
        let after = head.evaluate(&input);
        if before.verdict() != after.verdict() || before.policy() != after.policy() {
            changes.push(Change {
                input: label,
                before: Side::from(&before),
                after: Side::from(&after),
            });
        }
    }
    match args.output {
        DiffOutput::Json => {
            let doc = serde_json::json!({
                "base": base.digest(), "head": head.digest(), "decided": total, "changed": changes,
            });
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&doc).map_err(std::io::Error::other)?
            )?;
        }
        DiffOutput::Text => {
            for c in &changes {
                writeln!(
                    out,
                    "{}: {} -> {}",
                    c.input,
                    side(&c.before),
                    side(&c.after)
                )?;
                for r in &c.after.reasons {
                    writeln!(out, "  - {r}")?;
                }
            }
            writeln!(out, "{} of {total} requests change", changes.len())?;
        }
        DiffOutput::Markdown => {
            writeln!(
                out,
                "#### csr-warden: {} of {total} requests change",
                changes.len()
            )?;
            writeln!(out)?;
            if !changes.is_empty() {
                writeln!(out, "| request | before | after | reasons after |")?;
                writeln!(out, "|---|---|---|---|")?;
                for c in &changes {
                    let reasons = c
                        .after
                        .reasons
                        .iter()
                        .map(|r| md(r))
                        .collect::<Vec<_>>()
                        .join("<br>");
                    writeln!(
                        out,
                        "| `{}` | {} | **{}** | {} |",
                        c.input.replace('`', "'"),
                        side(&c.before),
                        side(&c.after),
                        if reasons.is_empty() {
                            "-".into()
                        } else {
                            reasons
                        }
                    )?;
                }
                writeln!(out)?;
            }
            writeln!(
                out,
                "Policies: base `{}`, head `{}`.",
                short(base.digest()),
                short(head.digest())
            )?;
        }
    }
    Ok(0)
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(19)]
}

fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn side(s: &Side) -> String {
    match &s.policy {
        Some(p) => format!("{} ({p})", s.decision),
        None => s.decision.to_string(),
    }
}

/// Base policies: a path when it exists, otherwise a git revision.
fn load_base(base: &str, head_path: &Path) -> Result<PolicySet, CliError> {
    if Path::new(base).exists() {
        return Ok(crate::policy_dir::load(Path::new(base))?);
    }
    let git = |args: &[&str]| -> Result<String, CliError> {
        let o = Command::new("git").args(args).output().map_err(|e| {
            CliError::Usage(format!(
                "--base {base:?} is not a path, and git cannot run: {e}"
            ))
        })?;
        if !o.status.success() {
            return Err(CliError::Usage(format!(
                "--base {base:?} is not a path, nor a revision git knows: git {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let prefix = git(&["rev-parse", "--show-prefix"])?.trim().to_string();
    let dir = format!("{prefix}{}", head_path.display())
        .trim_end_matches('/')
        .to_string();
    let listing = git(&["ls-tree", "--name-only", &format!("{base}:{dir}")])?;
    let mut sources = Vec::new();
    for name in listing
        .lines()
        .filter(|n| crate::policy_dir::is_policy_file_name(Path::new(n)))
    {
        let text = git(&["show", &format!("{base}:{dir}/{name}")])?;
        sources.push(Source {
            path: format!("{base}:{dir}/{name}"),
            text,
        });
    }
    Ok(PolicySet::from_sources(&sources)?)
}

fn file_corpus(files: &[String]) -> Result<Vec<(String, ReviewInput)>, CliError> {
    let mut out = Vec::new();
    for f in files {
        let bytes = std::fs::read(f).map_err(|e| CliError::Usage(format!("{f}: {e}")))?;
        let docs = read_documents(f, &bytes).map_err(|e| CliError::Usage(format!("{f}: {e}")))?;
        out.extend(
            docs.iter()
                .map(|d| (d.label.clone(), d.review_input(&Limits::default()))),
        );
    }
    Ok(out)
}

/// A client for the cluster of the kubeconfig kubectl would use, or `context` of it.
pub async fn cluster_client(context: Option<&str>) -> Result<kube::Client, CliError> {
    let options = kube::config::KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let config = match kube::Config::from_kubeconfig(&options).await {
        Ok(c) => c,
        Err(_) if context.is_none() => kube::Config::infer()
            .await
            .map_err(|e| CliError::Usage(format!("--cluster: {e}")))?,
        Err(e) => return Err(CliError::Usage(format!("--cluster: {e}"))),
    };
    kube::Client::try_from(config).map_err(|e| CliError::Usage(format!("--cluster: {e}")))
}

async fn cluster_corpus(context: Option<&str>) -> Result<Vec<(String, ReviewInput)>, CliError> {
    use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
    let client = cluster_client(context).await?;
    let api: kube::Api<CertificateSigningRequest> = kube::Api::all(client);
    let list = api.list(&Default::default()).await.map_err(|e| {
        CliError::Usage(format!(
            "--cluster: listing CertificateSigningRequests: {e}"
        ))
    })?;
    Ok(list
        .items
        .iter()
        .map(|c| {
            let name = c.metadata.name.clone().unwrap_or_default();
            (
                format!("csr/{name}"),
                crate::request::ReviewInput::from_stored(c, &Limits::default()),
            )
        })
        .collect())
}
