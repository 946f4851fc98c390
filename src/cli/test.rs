//! `csr-warden test`: run policy test suites; one line per case, then `N passed, M failed`.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use regex::Regex;

use super::CliError;
use crate::suite::{self, CaseResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TestOutput {
    Text,
    Json,
    Junit,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Only cases whose `suite/case` name matches this regular expression.
    #[arg(long, value_name = "PATTERN")]
    pub run: Option<String>,
    /// text for people, json or junit (XML) for CI systems.
    #[arg(long, value_enum, default_value_t = TestOutput::Text)]
    pub output: TestOutput,
    /// Suite files, or directories searched recursively for `*.test.yaml` [default: policies].
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// Exit code 0 when every case passed, 1 when any failed; a broken suite is an error (2).
pub fn run(args: &TestArgs, out: &mut dyn Write) -> Result<u8, CliError> {
    let filter = args
        .run
        .as_deref()
        .map(Regex::new)
        .transpose()
        .map_err(|e| CliError::Usage(format!("--run: {e}")))?;
    let paths = if args.paths.is_empty() {
        vec![super::default_policies()]
    } else {
        args.paths.clone()
    };
    let files = suite::find(&paths).map_err(|e| CliError::Usage(e.to_string()))?;
    if files.is_empty() {
        return Err(CliError::Usage(format!(
            "no test suites (*.test.yaml) under {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut results: Vec<CaseResult> = Vec::new();
    for file in &files {
        let s = suite::load(file).map_err(|e| CliError::Usage(e.to_string()))?;
        results
            .extend(suite::run(&s, filter.as_ref()).map_err(|e| CliError::Usage(e.to_string()))?);
    }
    let passed = results.iter().filter(|r| r.passed).count();
    let failed = results.len() - passed;
    match args.output {
        TestOutput::Text => {
            for r in &results {
                let status = if r.passed { "PASS" } else { "FAIL" };
                writeln!(out, "{status} {}: {} / {}", r.file, r.suite, r.case)?;
                for f in &r.failures {
                    writeln!(out, "     {f}")?;
                }
                if !r.passed {
                    for reason in &r.reasons {
                        writeln!(out, "     reason: {reason}")?;
                    }
                }
            }
            writeln!(out, "{passed} passed, {failed} failed")?;
        }
        TestOutput::Json => {
            let doc = serde_json::json!({"passed": passed, "failed": failed, "cases": results});
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&doc).map_err(std::io::Error::other)?
            )?;
        }
        TestOutput::Junit => write_junit(out, &results)?,
    }
    Ok(u8::from(failed > 0))
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn write_junit(out: &mut dyn Write, results: &[CaseResult]) -> std::io::Result<()> {
    let failed = results.iter().filter(|r| !r.passed).count();
    writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(
        out,
        r#"<testsuites name="csr-warden" tests="{}" failures="{failed}">"#,
        results.len()
    )?;
    let mut files: Vec<&str> = results.iter().map(|r| r.file.as_str()).collect();
    files.dedup();
    for file in files {
        let cases: Vec<&CaseResult> = results.iter().filter(|r| r.file == file).collect();
        let name = cases.first().map(|c| c.suite.as_str()).unwrap_or_default();
        let f = cases.iter().filter(|r| !r.passed).count();
        writeln!(
            out,
            r#"  <testsuite name="{}" file="{}" tests="{}" failures="{f}">"#,
            xml(name),
            xml(file),
            cases.len()
        )?;
        for c in cases {
            write!(
                out,
                r#"    <testcase classname="{}" name="{}""#,
                xml(&c.suite),
                xml(&c.case)
            )?;
            if c.passed {
                writeln!(out, "/>")?;
            } else {
                writeln!(out, ">")?;
                let message = c.failures.join("; ");
                writeln!(
                    out,
                    r#"      <failure message="{}">{}</failure>"#,
                    xml(&message),
                    xml(&c.reasons.join("\n"))
                )?;
                writeln!(out, "    </testcase>")?;
            }
        }
        writeln!(out, "  </testsuite>")?;
    }
    writeln!(out, "</testsuites>")
}
