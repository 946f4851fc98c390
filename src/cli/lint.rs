//! `csr-warden lint`: findings a reviewer wants before merging, each with file, line and a
//! sentence. Errors exit 1; warnings exit 0 unless `--strict`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use super::{CliError, OutputFormat};
use crate::policy::lint::{self, Severity};

#[derive(Debug, Args)]
pub struct LintArgs {
    /// Policy directory (or a single policy file).
    #[arg(long, default_value_os_t = super::default_policies())]
    pub policies: PathBuf,
    /// RBAC manifest whose `approve` resourceNames the signers must be in
    /// [default: deploy/base/rbac.yaml when it exists].
    #[arg(long, value_name = "FILE")]
    pub rbac: Option<PathBuf>,
    /// Exit 1 on warnings too.
    #[arg(long)]
    pub strict: bool,
    /// text for people, json for one object per finding per line.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Signer names (or `<domain>/*`) the `approve` rules of the RBAC manifest grant.
pub fn granted_signers(path: &Path) -> Result<Vec<String>, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
        .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
    let mut out = Vec::new();
    for d in docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
    {
        for rule in d["rules"].as_array().into_iter().flatten() {
            let approves = rule["verbs"]
                .as_array()
                .is_some_and(|v| v.iter().any(|x| x == "approve" || x == "*"));
            let signers = rule["resources"]
                .as_array()
                .is_some_and(|v| v.iter().any(|x| x == "signers" || x == "*"));
            if approves && signers {
                match rule["resourceNames"].as_array() {
                    Some(names) => {
                        out.extend(names.iter().filter_map(|n| n.as_str().map(str::to_string)))
                    }
                    // No resourceNames: every signer.
                    None => return Ok(vec!["*".into()]),
                }
            }
        }
    }
    Ok(out)
}

pub fn run(args: &LintArgs, out: &mut dyn Write) -> Result<u8, CliError> {
    let policies = crate::policy_dir::load(&args.policies)?;
    let rbac = args.rbac.clone().or_else(|| {
        let default = PathBuf::from("deploy/base/rbac.yaml");
        default.exists().then_some(default)
    });
    let granted = rbac.as_deref().map(granted_signers).transpose()?;
    let granted = granted.filter(|g| g.as_slice() != ["*"]);
    let findings = lint::lint(&policies, granted.as_deref());
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = findings.len() - errors;
    match args.output {
        OutputFormat::Json | OutputFormat::Record => {
            for f in &findings {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string(f).map_err(std::io::Error::other)?
                )?;
            }
        }
        OutputFormat::Text => {
            for f in &findings {
                writeln!(
                    out,
                    "{}:{}: {}: {}: {}",
                    f.file, f.line, f.severity, f.check, f.message
                )?;
            }
            if rbac.is_none() {
                writeln!(
                    out,
                    "note: no RBAC manifest (--rbac): signer grants not checked"
                )?;
            }
            writeln!(out, "{errors} errors, {warnings} warnings")?;
        }
    }
    Ok(u8::from(errors > 0 || (args.strict && warnings > 0)))
}
