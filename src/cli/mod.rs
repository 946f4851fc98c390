//! The command line: argument definitions and the commands that are not servers.

pub mod audit;
pub mod certs;
pub mod check;
pub mod diff;
pub mod lint;
pub mod test;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// csr-warden decides Kubernetes CertificateSigningRequests by policy.
#[derive(Debug, Parser)]
#[command(name = "csr-warden", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTPS admission webhook and the approver (with metrics and health endpoints).
    Serve(crate::server::ServeArgs),
    /// Decide requests offline against the policies and explain each decision.
    Check(check::CheckArgs),
    /// What a policy change does: decisions that change between two policy sets.
    Diff(diff::DiffArgs),
    /// Findings a reviewer wants before merging a policy change.
    Lint(lint::LintArgs),
    /// Every CSR in the cluster against the current policies: drift, break-glass, pending.
    Audit(audit::AuditArgs),
    /// Run policy test suites (`*.test.yaml`): what the policies must decide.
    Test(test::TestArgs),
    /// Certificates for development.
    Certs(certs::CertsArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
    /// Decision records (`csr-warden.io/v1alpha1` DecisionRecord), one JSON object per line.
    Record,
}

/// A command-line problem: reported on stderr, exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("invalid policies:\n{0}")]
    Policies(#[from] crate::policy::LoadErrors),
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

/// Default policy directory, relative to the working directory.
pub fn default_policies() -> PathBuf {
    PathBuf::from("policies")
}
