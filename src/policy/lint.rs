//! Findings a reviewer wants before merging a policy change. Pure: a compiled policy set (and the
//! signer names RBAC grants) in, findings out.

use serde::Serialize;

use super::guards::{ADMIN_GROUPS, Guard};
use super::{Action, PolicySet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub file: String,
    pub line: u64,
    pub policy: String,
    /// A stable name for the check (`no-requester-constraint`, ...).
    pub check: &'static str,
    pub message: String,
}

/// Strings no sensible rule allows all of: a pattern that matches every one allows anything.
const PROBES: &[&str] = &[
    "system:masters",
    "Anything At All, Inc. !",
    "*.example.com",
    "x",
];

/// Whether a pattern (matched against whole values, as policies use it) matches any string at
/// all: a search through its DFA for a reachable match state. `None` when the DFA would be too
/// big to tell.
pub fn pattern_can_match(source: &str) -> Option<bool> {
    use regex_automata::dfa::{Automaton, dense};
    use regex_automata::{Anchored, Input};
    let dfa = dense::Builder::new()
        .configure(
            dense::Config::new()
                .dfa_size_limit(Some(4 << 20))
                .determinize_size_limit(Some(4 << 20)),
        )
        .build(&format!("^(?:{source})$"))
        .ok()?;
    let start = dfa
        .start_state_forward(&Input::new("").anchored(Anchored::Yes))
        .ok()?;
    let mut seen = std::collections::HashSet::new();
    let mut queue = vec![start];
    while let Some(id) = queue.pop() {
        if !seen.insert(id) {
            continue;
        }
        if dfa.is_match_state(id) || dfa.is_match_state(dfa.next_eoi_state(id)) {
            return Some(true);
        }
        for b in 0..=255u8 {
            let next = dfa.next_state(id, b);
            if !dfa.is_dead_state(next) && !dfa.is_quit_state(next) {
                queue.push(next);
            }
        }
    }
    Some(false)
}

/// Lint `set`. `granted` is the list of signer names RBAC lets the approver approve for
/// (`resourceNames`, `<domain>/*` allowed); `None` skips that check.
pub fn lint(set: &PolicySet, granted: Option<&[String]>) -> Vec<Finding> {
    let mut out = Vec::new();
    let approve: Vec<_> = set
        .policies()
        .iter()
        .filter(|p| p.action == Action::Approve)
        .collect();
    for p in set.policies() {
        let finding = |severity, check, message: String| Finding {
            severity,
            file: p.file.clone(),
            line: p.line,
            policy: p.name.clone(),
            check,
            message,
        };
        if let Some(granted) = granted {
            for signer in p.signers() {
                let s = signer.to_string();
                let domain = s.split_once('/').map(|(d, _)| format!("{d}/*"));
                if !granted
                    .iter()
                    .any(|g| *g == s || Some(g) == domain.as_ref())
                {
                    out.push(finding(
                        Severity::Error,
                        "rbac-signer",
                        format!(
                            "policy {:?} governs signer {s:?}, which the RBAC does not grant `approve` for: the approver cannot write its decisions",
                            p.name
                        ),
                    ));
                }
            }
        }
        if p.action != Action::Approve {
            continue;
        }
        let sel = p.selector();
        if sel.usernames.is_empty() && sel.groups.is_empty() {
            out.push(finding(
                Severity::Warning,
                "no-requester-constraint",
                format!(
                    "approve policy {:?} has no requester constraint (match.usernames or match.groups): anyone who may create a CSR for its signers gets a certificate",
                    p.name
                ),
            ));
        }
        let rules = p.rules();
        if rules.key.is_none() {
            out.push(finding(
                Severity::Warning,
                "no-key-constraint",
                format!(
                    "approve policy {:?} has no key rules: any algorithm and size is approved",
                    p.name
                ),
            ));
        }
        let mut patterns: Vec<(String, &super::matcher::Pattern)> = Vec::new();
        for attr in &rules.subject {
            patterns.extend(attr.allowed.patterns.iter().map(|p| (attr.path.clone(), p)));
        }
        for (path, san) in [
            ("subjectAltNames.dnsNames", &rules.sans.dns_names),
            (
                "subjectAltNames.emailAddresses",
                &rules.sans.email_addresses,
            ),
            ("subjectAltNames.uris", &rules.sans.uris),
        ] {
            if let Some(r) = san {
                patterns.extend(r.allowed.patterns.iter().map(|p| (path.to_string(), p)));
            }
        }
        for (path, pattern) in patterns {
            if pattern_can_match(pattern.source()) == Some(false) {
                out.push(finding(
                    Severity::Error,
                    "never-matches",
                    format!(
                        "{path}: pattern {:?} can never match any value",
                        pattern.source()
                    ),
                ));
            }
        }
        for attr in &rules.subject {
            let any = attr
                .allowed
                .patterns
                .iter()
                .any(|pat| PROBES.iter().all(|probe| pat.is_match(probe)));
            if any && (attr.label == "CN" || attr.label == "O") {
                out.push(finding(
                    Severity::Warning,
                    "any-subject-value",
                    format!("{}: {} allows any value", attr.path, attr.label),
                ));
            }
            if attr.label == "O" && !p.waived_guards().contains(&Guard::AdminGroups) {
                for t in &attr.allowed.values {
                    if ADMIN_GROUPS.contains(&t.source()) {
                        out.push(finding(
                            Severity::Error,
                            "never-approved",
                            format!(
                                "{}: value {:?} can never be approved: the adminGroups guard refuses it",
                                attr.path,
                                t.source()
                            ),
                        ));
                    }
                }
            }
        }
        // An approve policy after another with the same match, same mode: when both pass, the
        // earlier one (by name) decides, so this one's name never shows.
        for earlier in approve.iter().take_while(|q| q.name != p.name) {
            let a = earlier.selector();
            let same_match = a.signers == sel.signers
                && a.groups == sel.groups
                && a.usernames
                    .iter()
                    .map(|u| u.source())
                    .eq(sel.usernames.iter().map(|u| u.source()));
            if same_match && earlier.mode == p.mode {
                out.push(finding(
                    Severity::Warning,
                    "shadowed",
                    format!(
                        "approve policy {:?} has the same match as {:?}, which comes first: when both pass, {:?} decides",
                        p.name, earlier.name, earlier.name
                    ),
                ));
            }
        }
    }
    out.sort_by(|a, b| (&a.file, a.line, a.severity).cmp(&(&b.file, b.line, b.severity)));
    out
}
