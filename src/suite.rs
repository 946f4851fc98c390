//! Policy test suites (`kind: CSRPolicyTest`): cases that pin what the policies decide, run by
//! `csr-warden test` in CI. Files named `*.test.yaml` (or `*.test.yml`), found recursively.

use std::path::{Path, PathBuf};

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::csr::Limits;
use crate::input::{CsrDocument, read_documents};
use crate::policy::{Decision, Mode, PolicySet, Source, Verdict};

pub const API_VERSION: &str = "csr-warden.io/v1alpha1";
pub const KIND: &str = "CSRPolicyTest";

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SuiteDocument {
    pub api_version: String,
    pub kind: String,
    pub metadata: SuiteMetadata,
    pub spec: SuiteSpec,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SuiteMetadata {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SuiteSpec {
    /// Policy files or directories, relative to the suite file; default: the suite's directory.
    #[serde(default)]
    pub policies: Vec<String>,
    pub cases: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Case {
    pub name: String,
    /// A PEM request, CSR manifest or AdmissionReview, relative to the suite file.
    #[serde(default)]
    pub input: Option<String>,
    /// The same, written in the suite.
    #[serde(default)]
    pub inline: Option<String>,
    /// Who asks; replaces what the input records.
    #[serde(default)]
    pub requester: Option<RequesterOverride>,
    /// Kubernetes fields; replace what the input records.
    #[serde(default)]
    pub spec: Option<SpecOverride>,
    pub expect: Expectation,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequesterOverride {
    pub username: Option<String>,
    pub uid: Option<String>,
    pub groups: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SpecOverride {
    pub signer_name: Option<String>,
    pub usages: Option<Vec<String>>,
    pub expiration_seconds: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Expectation {
    pub decision: Verdict,
    /// The deciding policy, when it matters.
    #[serde(default)]
    pub policy: Option<String>,
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Regular expressions; each must match at least one reason (`policy: rule: message`).
    #[serde(default)]
    pub reasons: Vec<String>,
}

/// A suite that cannot run: the file, and what is wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}: {message}")]
pub struct SuiteError {
    pub file: String,
    pub message: String,
}

/// One case's result.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub suite: String,
    pub file: String,
    pub case: String,
    pub passed: bool,
    /// Why it failed, one sentence per difference.
    pub failures: Vec<String>,
    pub decision: Verdict,
    pub policy: Option<String>,
    pub mode: Option<Mode>,
    pub reasons: Vec<String>,
}

/// Suite files under `paths` (files as they are, directories recursively), in name order.
pub fn find(paths: &[PathBuf]) -> Result<Vec<PathBuf>, SuiteError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| SuiteError {
            file: p.display().to_string(),
            message: e.to_string(),
        })?;
        if meta.is_dir() {
            walk(p, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

pub fn is_suite_file(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".test.yaml") || n.ends_with(".test.yml"))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), SuiteError> {
    let entries = std::fs::read_dir(dir).map_err(|e| SuiteError {
        file: dir.display().to_string(),
        message: e.to_string(),
    })?;
    for entry in entries.flatten() {
        let p = entry.path();
        let hidden = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if p.is_dir() {
            walk(&p, out)?;
        } else if is_suite_file(&p) {
            out.push(p);
        }
    }
    Ok(())
}

/// A loaded suite, ready to run.
pub struct Suite {
    pub file: PathBuf,
    pub doc: SuiteDocument,
    pub policies: PolicySet,
}

/// Read a suite and the policies it names.
pub fn load(file: &Path) -> Result<Suite, SuiteError> {
    let err = |message: String| SuiteError {
        file: file.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(file).map_err(|e| err(e.to_string()))?;
    let doc: SuiteDocument = serde_saphyr::from_str(&text).map_err(|e| err(e.to_string()))?;
    if doc.api_version != API_VERSION || doc.kind != KIND {
        return Err(err(format!(
            "expected apiVersion {API_VERSION} and kind {KIND}, found {:?} and {:?}",
            doc.api_version, doc.kind
        )));
    }
    if doc.spec.cases.is_empty() {
        return Err(err("spec.cases is empty".into()));
    }
    let dir = file.parent().unwrap_or(Path::new("."));
    let paths: Vec<PathBuf> = if doc.spec.policies.is_empty() {
        vec![dir.to_path_buf()]
    } else {
        doc.spec.policies.iter().map(|p| dir.join(p)).collect()
    };
    let mut sources: Vec<Source> = Vec::new();
    for p in &paths {
        let found = crate::policy_dir::read_sources(p)
            .map_err(|e| err(format!("spec.policies: {p:?}: {e}", p = p.display())))?;
        sources.extend(found);
    }
    let policies =
        PolicySet::from_sources(&sources).map_err(|e| err(format!("invalid policies:\n{e}")))?;
    for (i, c) in doc.spec.cases.iter().enumerate() {
        if c.input.is_some() == c.inline.is_some() {
            return Err(err(format!(
                "spec.cases[{i}] ({:?}): give exactly one of input and inline",
                c.name
            )));
        }
        for p in &c.expect.reasons {
            Regex::new(p)
                .map_err(|e| err(format!("spec.cases[{i}].expect.reasons: {p:?}: {e}")))?;
        }
    }
    Ok(Suite {
        file: file.to_path_buf(),
        doc,
        policies,
    })
}

/// Run the cases whose `suite/case` name matches `filter` (all when `None`).
pub fn run(suite: &Suite, filter: Option<&Regex>) -> Result<Vec<CaseResult>, SuiteError> {
    let dir = suite.file.parent().unwrap_or(Path::new("."));
    let mut results = Vec::new();
    for (i, case) in suite.doc.spec.cases.iter().enumerate() {
        let full = format!("{}/{}", suite.doc.metadata.name, case.name);
        if filter.is_some_and(|f| !f.is_match(&full)) {
            continue;
        }
        let err = |message: String| SuiteError {
            file: suite.file.display().to_string(),
            message: format!("spec.cases[{i}] ({:?}): {message}", case.name),
        };
        let (label, bytes) = match (&case.input, &case.inline) {
            (Some(p), _) => {
                let path = dir.join(p);
                let bytes = std::fs::read(&path)
                    .map_err(|e| err(format!("input {}: {e}", path.display())))?;
                (path.display().to_string(), bytes)
            }
            (None, Some(text)) => ("inline".to_string(), text.as_bytes().to_vec()),
            (None, None) => return Err(err("no input".into())),
        };
        let docs = read_documents(&label, &bytes).map_err(|e| err(format!("input: {e}")))?;
        let [doc] = docs.as_slice() else {
            return Err(err(format!(
                "input holds {} requests; a case decides one",
                docs.len()
            )));
        };
        let r = case.requester.clone().unwrap_or_default();
        let s = case.spec.clone().unwrap_or_default();
        // The case's overrides replace what the input records.
        let input = CsrDocument {
            signer_name: s.signer_name.or(doc.signer_name.clone()),
            usages: s.usages.or(doc.usages.clone()),
            expiration_seconds: s.expiration_seconds.or(doc.expiration_seconds),
            username: r.username.or(doc.username.clone()),
            requester_uid: r.uid.or(doc.requester_uid.clone()),
            groups: r.groups.or(doc.groups.clone()),
            ..doc.clone()
        }
        .review_input(&Limits::default());
        let decision = suite.policies.evaluate(&input);
        let failures = compare(&case.expect, &decision);
        results.push(CaseResult {
            suite: suite.doc.metadata.name.clone(),
            file: suite.file.display().to_string(),
            case: case.name.clone(),
            passed: failures.is_empty(),
            failures,
            decision: decision.verdict(),
            policy: decision.policy().map(str::to_string),
            mode: decision.mode(),
            reasons: decision.reason_strings(),
        });
    }
    Ok(results)
}

fn compare(expect: &Expectation, d: &Decision) -> Vec<String> {
    let mut f = Vec::new();
    if expect.decision != d.verdict() {
        let by = d
            .policy()
            .map(|p| format!(" by policy {p}"))
            .unwrap_or_default();
        f.push(format!(
            "expected {}, got {}{by}",
            expect.decision,
            d.verdict()
        ));
    }
    if let Some(p) = &expect.policy
        && d.policy() != Some(p.as_str())
    {
        f.push(format!(
            "expected policy {p}, got {}",
            d.policy().unwrap_or("none")
        ));
    }
    if let Some(m) = expect.mode
        && d.mode() != Some(m)
    {
        f.push(format!(
            "expected mode {m}, got {}",
            d.mode().map_or("none".to_string(), |m| m.to_string())
        ));
    }
    let reasons = d.reason_strings();
    for pattern in &expect.reasons {
        let re = Regex::new(pattern).expect("checked when the suite was loaded");
        if !reasons.iter().any(|r| re.is_match(r)) {
            f.push(format!("no reason matches {pattern:?}"));
        }
    }
    f
}
