//! The outcome of an evaluation: verdict, deciding policy, mode, and one sentence per reason.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::schema::Mode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    Approve,
    Deny,
    /// No policy has an opinion: leave the request to others.
    Ignore,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Approve => "approve",
            Verdict::Deny => "deny",
            Verdict::Ignore => "ignore",
        })
    }
}

/// One reason: which policy (if any), which rule, and a sentence naming the field and value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub policy: Option<String>,
    pub rule: String,
    pub message: String,
}

impl Reason {
    pub fn new(policy: Option<&str>, rule: impl Into<String>, message: impl Into<String>) -> Self {
        Reason {
            policy: policy.map(str::to_string),
            rule: rule.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.policy {
            write!(f, "{p}: ")?;
        }
        write!(f, "{}: {}", self.rule, self.message)
    }
}

/// What one tier of policies (enforce or audit) decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub verdict: Verdict,
    pub policy: Option<String>,
    pub mode: Option<Mode>,
    pub reasons: Vec<Reason>,
}

/// The decision for one request.
///
/// `verdict`, `policy`, `mode` and `reasons` are what to act on. Enforce-mode policies decide
/// first; audit-mode policies decide only what enforce-mode policies leave alone. When both had
/// an opinion and the audit-mode one differs, it is kept in `audit` (to log, or to warn with).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    #[serde(flatten)]
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<Outcome>,
}

impl Decision {
    pub fn verdict(&self) -> Verdict {
        self.outcome.verdict
    }

    pub fn policy(&self) -> Option<&str> {
        self.outcome.policy.as_deref()
    }

    pub fn mode(&self) -> Option<Mode> {
        self.outcome.mode
    }

    pub fn reasons(&self) -> &[Reason] {
        &self.outcome.reasons
    }

    /// The reasons as sentences.
    pub fn reason_strings(&self) -> Vec<String> {
        self.outcome
            .reasons
            .iter()
            .map(ToString::to_string)
            .collect()
    }
}
