//! Policies: loading (strict, atomic) and evaluation (pure).
//!
//! A [`PolicySet`] is built from YAML sources with [`PolicySet::from_sources`]; it either holds
//! every policy of the sources or none. [`PolicySet::evaluate`] decides one request.

mod compile;
mod decision;
mod evaluate;
pub mod guards;
pub mod lint;
mod matcher;
pub mod schema;

use std::collections::HashMap;

pub use compile::{LoadError, LoadErrors, SignerSelector, Source};
pub use decision::{Decision, Outcome, Reason, Verdict};
pub use guards::Guard;
pub use schema::{Action, Mode};

use compile::{ApproveRules, Condition, Selector};

/// One compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    /// Where it was defined (file and line of `metadata.name`).
    pub file: String,
    pub line: u64,
    pub action: Action,
    pub mode: Mode,
    pub description: Option<String>,
    selector: Selector,
    rules: ApproveRules,
    deny_when: Vec<Condition>,
    waived: Vec<Guard>,
}

impl Policy {
    /// The signers this policy governs.
    pub fn signers(&self) -> &[SignerSelector] {
        &self.selector.signers
    }

    /// Guards this policy waives.
    pub fn waived_guards(&self) -> &[Guard] {
        &self.waived
    }

    pub(crate) fn selector(&self) -> &Selector {
        &self.selector
    }

    pub(crate) fn rules(&self) -> &ApproveRules {
        &self.rules
    }
}

/// Every policy, sorted by name, indexed by the signer names they govern.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    policies: Vec<Policy>,
    by_signer: HashMap<String, Vec<usize>>,
    by_domain: HashMap<String, Vec<usize>>,
    digest: String,
}

impl PolicySet {
    /// Parse and compile policy files. Either every policy loads or the set is refused with
    /// every problem found (file, line, field, message).
    pub fn from_sources(sources: &[Source]) -> Result<PolicySet, LoadErrors> {
        compile::compile(sources)
    }

    fn new(policies: Vec<Policy>, digest: String) -> PolicySet {
        let mut by_signer: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_domain: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, p) in policies.iter().enumerate() {
            for s in &p.selector.signers {
                let list = match s {
                    SignerSelector::Exact(name) => by_signer.entry(name.clone()).or_default(),
                    SignerSelector::Domain(d) => by_domain.entry(d.clone()).or_default(),
                };
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        PolicySet {
            policies,
            by_signer,
            by_domain,
            digest,
        }
    }

    /// The policies, sorted by name.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// `sha256:<hex>` over the source files: identifies this policy set.
    /// The digest `sources` would have as a set, without compiling them (to tell whether files
    /// changed).
    pub fn digest_of(sources: &[Source]) -> String {
        compile::digest(sources)
    }

    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Whether any policy's signer selector names this signer.
    /// Every signer selector of every policy (`name` or `domain/*`), sorted, without repeats:
    /// what RBAC `resourceNames` and the webhook's matchConditions must name.
    pub fn governed_signers(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .policies
            .iter()
            .flat_map(|p| p.signers().iter().map(ToString::to_string))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    pub fn governs_signer(&self, signer_name: &str) -> bool {
        !self.candidate_indexes(signer_name).is_empty()
    }

    fn candidate_indexes(&self, signer_name: &str) -> Vec<usize> {
        let mut idx: Vec<usize> = Vec::new();
        if let Some(list) = self.by_signer.get(signer_name) {
            idx.extend(list);
        }
        if let Some((domain, _)) = signer_name.split_once('/')
            && let Some(list) = self.by_domain.get(&domain.to_ascii_lowercase())
        {
            idx.extend(list);
        }
        idx.sort_unstable();
        idx.dedup();
        idx
    }

    /// Policies whose signer selector names this signer, by name.
    fn candidates(&self, signer_name: &str) -> Vec<&Policy> {
        self.candidate_indexes(signer_name)
            .into_iter()
            .map(|i| &self.policies[i])
            .collect()
    }
}
