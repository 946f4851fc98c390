//! Evaluation of one request against the policy set.
//!
//! 1. Candidates are the policies whose signer selector names the request's signer (an index
//!    lookup: policies for other signers cost nothing).
//! 2. A candidate governs the request when its requester selector matches too.
//! 3. Enforce-mode policies decide first; audit-mode ones only where enforce-mode ones have no
//!    opinion. Within a mode: a deny policy whose conditions hold wins; otherwise the first approve
//!    policy by name that passes every rule and guard approves; otherwise, if approve policies
//!    governed and all failed, deny with every failure; otherwise a failed guard denies; otherwise
//!    no opinion (ignore).

use std::collections::HashSet;

use crate::csr::{CsrFacts, KeyFacts, San};
use crate::request::ReviewInput;

use super::compile::{ApproveRules, AttributeRule, Condition, ConditionField, SanTypeRule};
use super::decision::{Decision, Outcome, Reason, Verdict};
use super::guards::{self, GuardFailure};
use super::matcher::{Captures, join_or};
use super::schema::{Action, Mode};
use super::{Policy, PolicySet};

/// Extensions every approve policy accepts (their content is checked by other rules or guards).
const BASE_EXTENSIONS: &[&str] = &["2.5.29.17", "2.5.29.19", "2.5.29.15", "2.5.29.37"];

struct Governing<'a> {
    policy: &'a Policy,
    captures: Captures,
}

impl PolicySet {
    /// Decide one request.
    pub fn evaluate(&self, input: &ReviewInput) -> Decision {
        let candidates = self.candidates(&input.spec.signer_name);
        let mut governing = Vec::new();
        let mut not_governing = Vec::new();
        for policy in candidates {
            match selector_matches(policy, input) {
                Ok(captures) => governing.push(Governing { policy, captures }),
                Err(why) => not_governing.push(Reason::new(Some(&policy.name), "match", why)),
            }
        }
        if governing.is_empty() {
            let mut reasons = not_governing;
            if reasons.is_empty() {
                reasons.push(Reason::new(
                    None,
                    "match",
                    format!(
                        "no policy governs signer {:?}",
                        input.spec.signer_name.as_str()
                    ),
                ));
            }
            return ignore(reasons);
        }

        let guard_failures = guards::check(&input.facts, &input.spec);
        let tier = |mode: Mode| {
            let in_tier: Vec<&Governing<'_>> =
                governing.iter().filter(|g| g.policy.mode == mode).collect();
            decide_tier(&in_tier, input, &guard_failures, mode)
        };
        let enforce = tier(Mode::Enforce);
        let audit = tier(Mode::Audit);
        match (enforce, audit) {
            (Some(e), Some(a)) => {
                let audit = (a.verdict != e.verdict).then_some(a);
                Decision { outcome: e, audit }
            }
            (Some(e), None) => Decision {
                outcome: e,
                audit: None,
            },
            (None, Some(a)) => Decision {
                outcome: a,
                audit: None,
            },
            (None, None) => {
                let names: Vec<&str> = governing.iter().map(|g| g.policy.name.as_str()).collect();
                let mut reasons = vec![Reason::new(
                    None,
                    "match",
                    format!(
                        "only deny policies govern this request ({}) and none of their \
                         conditions hold; no approve policy governs it",
                        names.join(", ")
                    ),
                )];
                reasons.extend(not_governing);
                ignore(reasons)
            }
        }
    }
}

fn ignore(reasons: Vec<Reason>) -> Decision {
    Decision {
        outcome: Outcome {
            verdict: Verdict::Ignore,
            policy: None,
            mode: None,
            reasons,
        },
        audit: None,
    }
}

/// The captures of the first matching username pattern, or why the policy does not govern.
fn selector_matches(policy: &Policy, input: &ReviewInput) -> Result<Captures, String> {
    let sel = &policy.selector;
    let req = &input.requester;
    if !sel.groups.is_empty() && !req.groups.iter().any(|g| sel.groups.contains(g)) {
        return Err(format!(
            "requester {:?} is in none of the groups {:?}",
            req.username, sel.groups
        ));
    }
    if sel.usernames.is_empty() {
        return Ok(Captures::default());
    }
    sel.usernames
        .iter()
        .find_map(|p| p.captures(&req.username))
        .ok_or_else(|| {
            let pats: Vec<String> = sel
                .usernames
                .iter()
                .map(|p| format!("{:?}", p.source()))
                .collect();
            format!(
                "requester {:?} matches none of the username patterns {}",
                req.username,
                pats.join(", ")
            )
        })
}

fn decide_tier(
    governing: &[&Governing<'_>],
    input: &ReviewInput,
    guard_failures: &[GuardFailure],
    mode: Mode,
) -> Option<Outcome> {
    if governing.is_empty() {
        return None;
    }
    let guard_reasons = |waived: &[guards::Guard]| -> Vec<Reason> {
        guard_failures
            .iter()
            .filter(|f| !waived.contains(&f.guard))
            .map(|f| Reason::new(None, format!("guard {}", f.guard), &f.message))
            .collect()
    };
    let outcome = |verdict, policy: &Policy, reasons| Outcome {
        verdict,
        policy: Some(policy.name.clone()),
        mode: Some(mode),
        reasons,
    };

    // A deny policy whose conditions hold wins.
    let mut deny_hits: Vec<(&Policy, Vec<Reason>)> = Vec::new();
    for g in governing.iter().filter(|g| g.policy.action == Action::Deny) {
        let hits = deny_conditions(g.policy, &g.captures, input);
        if !hits.is_empty() {
            deny_hits.push((g.policy, hits));
        }
    }
    if let Some((first, _)) = deny_hits.first() {
        let first = *first;
        let mut reasons: Vec<Reason> = deny_hits.into_iter().flat_map(|(_, r)| r).collect();
        reasons.extend(guard_reasons(&[]));
        return Some(outcome(Verdict::Deny, first, reasons));
    }

    // The first approve policy that passes every rule approves.
    let approvers: Vec<&&Governing<'_>> = governing
        .iter()
        .filter(|g| g.policy.action == Action::Approve)
        .collect();
    let mut failures: Vec<Reason> = Vec::new();
    for g in &approvers {
        let p = g.policy;
        let mut fails = guard_reasons(&p.waived);
        if let Ok(facts) = &input.facts {
            fails.extend(approve_rules(p, &g.captures, facts, input));
        }
        if fails.is_empty() {
            let waivers = guard_failures
                .iter()
                .filter(|f| p.waived.contains(&f.guard))
                .map(|f| {
                    Reason::new(
                        Some(&p.name),
                        format!("waiveGuards {}", f.guard),
                        format!("guard waived by this policy: {}", f.message),
                    )
                })
                .collect();
            return Some(outcome(Verdict::Approve, p, waivers));
        }
        failures.extend(fails);
    }
    if let Some(first) = approvers.first() {
        // Guard reasons (no policy) first, each once; then every policy's failures by name.
        let mut seen = HashSet::new();
        failures.retain(|r| r.policy.is_some() || seen.insert(r.message.clone()));
        failures.sort_by_key(|r| r.policy.is_some());
        return Some(outcome(Verdict::Deny, first.policy, failures));
    }

    // Only deny policies govern, and none of their conditions hold: guards still apply.
    let reasons = guard_reasons(&[]);
    if reasons.is_empty() {
        None
    } else {
        Some(outcome(Verdict::Deny, governing[0].policy, reasons))
    }
}

fn deny_conditions(policy: &Policy, captures: &Captures, input: &ReviewInput) -> Vec<Reason> {
    let name = Some(policy.name.as_str());
    if policy.deny_when.is_empty() {
        let why = policy
            .description
            .as_deref()
            .unwrap_or("this policy denies every request it governs");
        return vec![Reason::new(name, "deny", why)];
    }
    let mut out = Vec::new();
    for (i, c) in policy.deny_when.iter().enumerate() {
        if let Some(hit) = condition_hit(c, captures, input) {
            let mut message = hit;
            if let Some(m) = &c.message {
                message = format!("{message}: {m}");
            }
            out.push(Reason::new(name, format!("denyWhen[{i}]"), message));
        }
    }
    out
}

/// The first value of the condition's field that the condition matches, described.
fn condition_hit(c: &Condition, captures: &Captures, input: &ReviewInput) -> Option<String> {
    let facts = input.facts.as_ref().ok();
    let label = c.field_name.as_str();
    let strings: Vec<String> = match c.field {
        ConditionField::Subject(oid, _) => facts
            .map(|f| f.subject_values(oid).map(str::to_string).collect())
            .unwrap_or_default(),
        ConditionField::DnsNames => san_strings(facts, |s| match s {
            San::Dns(v) => Some(v),
            _ => None,
        }),
        ConditionField::EmailAddresses => san_strings(facts, |s| match s {
            San::Email(v) => Some(v),
            _ => None,
        }),
        ConditionField::Uris => san_strings(facts, |s| match s {
            San::Uri(v) => Some(v),
            _ => None,
        }),
        ConditionField::Usages => input.spec.usages.clone(),
        ConditionField::Username => vec![input.requester.username.clone()],
        ConditionField::Groups => input.requester.groups.clone(),
        ConditionField::IpAddresses => {
            let ips = facts
                .into_iter()
                .flat_map(|f| &f.sans)
                .filter_map(|s| match s {
                    San::Ip(ip) => Some(*ip),
                    _ => None,
                });
            for (i, ip) in ips.enumerate() {
                if let Some(net) = c.cidrs.iter().find(|n| n.contains(&ip)) {
                    return Some(format!("{label}[{i}] {ip} is within {net}"));
                }
            }
            return None;
        }
    };
    strings.iter().enumerate().find_map(|(i, v)| {
        c.matcher.allows(v, captures).then(|| {
            format!(
                "{label}[{i}] {v:?} matches {}",
                c.matcher.describe(captures)
            )
        })
    })
}

fn san_strings(facts: Option<&CsrFacts>, pick: impl Fn(&San) -> Option<&String>) -> Vec<String> {
    facts
        .into_iter()
        .flat_map(|f| &f.sans)
        .filter_map(pick)
        .cloned()
        .collect()
}

/// Every failed rule of an approve policy.
fn approve_rules(
    policy: &Policy,
    captures: &Captures,
    facts: &CsrFacts,
    input: &ReviewInput,
) -> Vec<Reason> {
    let name = Some(policy.name.as_str());
    let rules: &ApproveRules = &policy.rules;
    let mut out = Vec::new();
    let mut fail = |rule: &str, message: String| out.push(Reason::new(name, rule, message));

    subject_rules(&rules.subject, captures, facts, &mut fail);
    san_rules(rules, captures, facts, &mut fail);

    if let Some(u) = &rules.usages {
        for usage in &input.spec.usages {
            if !u.allowed.is_empty() && !u.allowed.contains(usage) {
                fail(
                    "usages",
                    format!(
                        "usage {usage:?} is not allowed: expected within {}",
                        quoted_list(&u.allowed)
                    ),
                );
            }
        }
        for r in &u.required {
            if !input.spec.usages.contains(r) {
                fail(
                    "usages",
                    format!("usage {r:?} is required but not requested"),
                );
            }
        }
    }

    if let Some(k) = &rules.key {
        let alg = facts.key.algorithm();
        if !k.algorithms.is_empty() && !k.algorithms.iter().any(|a| a == alg) {
            fail(
                "key",
                format!(
                    "key algorithm {alg} is not allowed: expected {}",
                    join_or(&k.algorithms)
                ),
            );
        } else {
            match &facts.key {
                KeyFacts::Rsa { bits } => {
                    if let Some(min) = k.rsa_min_bits
                        && *bits < min
                    {
                        fail(
                            "key",
                            format!("RSA key of {bits} bits is below the minimum of {min} bits"),
                        );
                    }
                    if let Some(max) = k.rsa_max_bits
                        && *bits > max
                    {
                        fail(
                            "key",
                            format!("RSA key of {bits} bits is above the maximum of {max} bits"),
                        );
                    }
                }
                KeyFacts::Ecdsa { curve } => {
                    let curve = curve.to_string();
                    if !k.ecdsa_curves.is_empty() && !k.ecdsa_curves.contains(&curve) {
                        fail(
                            "key",
                            format!(
                                "ECDSA curve {curve} is not allowed: expected {}",
                                join_or(&k.ecdsa_curves)
                            ),
                        );
                    }
                }
                KeyFacts::Ed25519 | KeyFacts::Other { .. } => {}
            }
        }
    }

    if let Some(e) = &rules.expiration {
        match input.spec.expiration_seconds {
            None if e.required => fail(
                "expiration",
                "expirationSeconds is required but not set".to_string(),
            ),
            Some(secs) => {
                if let Some(max) = e.max_seconds
                    && secs > max
                {
                    fail(
                        "expiration",
                        format!("expirationSeconds {secs} is more than the maximum of {max}"),
                    );
                }
            }
            None => {}
        }
    }

    for ext in &facts.extensions {
        let oid = ext.oid.as_str();
        if !BASE_EXTENSIONS.contains(&oid) && !rules.allowed_extensions.iter().any(|a| a == oid) {
            let what = match ext.name {
                Some(n) => format!("{oid} ({n})"),
                None => oid.to_string(),
            };
            let critical = if ext.critical { "critical " } else { "" };
            fail(
                "extensions",
                format!(
                    "{critical}extension {what} is not allowed: list it in \
                     extensions.allowedOIDs to accept it"
                ),
            );
        }
    }
    out
}

fn subject_rules(
    rules: &[AttributeRule],
    captures: &Captures,
    facts: &CsrFacts,
    fail: &mut impl FnMut(&str, String),
) {
    for attr in &facts.subject {
        if !rules.iter().any(|r| r.oid == attr.oid) {
            fail(
                "subject",
                format!(
                    "{} {:?} is not allowed: the policy allows no {} attribute",
                    attr.label(),
                    attr.value,
                    attr.label()
                ),
            );
        }
    }
    for rule in rules {
        let values: Vec<&str> = facts.subject_values(&rule.oid).collect();
        let label = &rule.label;
        if values.len() > rule.max_count {
            fail(
                &rule.path,
                format!(
                    "{} {label} values {values:?}: at most {} allowed",
                    values.len(),
                    rule.max_count
                ),
            );
        }
        if rule.required && values.is_empty() {
            fail(&rule.path, format!("{label} is required but absent"));
        }
        for v in &values {
            if !rule.allowed.allows(v, captures) {
                fail(
                    &rule.path,
                    format!(
                        "{label} {v:?} is not allowed: expected {}",
                        rule.allowed.describe(captures)
                    ),
                );
            }
        }
        for t in &rule.required_values {
            let present = t
                .render(captures)
                .is_some_and(|want| values.iter().any(|v| *v == want));
            if !present {
                fail(
                    &rule.path,
                    format!("{label} {:?} is required but absent", t.source()),
                );
            }
        }
    }
}

fn san_rules(
    rules: &ApproveRules,
    captures: &Captures,
    facts: &CsrFacts,
    fail: &mut impl FnMut(&str, String),
) {
    let sans = &rules.sans;
    let total = facts.sans.len();
    if total < sans.min_count {
        fail(
            "subjectAltNames",
            format!(
                "{total} subject alternative names: at least {} required",
                sans.min_count
            ),
        );
    }
    if let Some(max) = sans.max_count
        && total > max
    {
        fail(
            "subjectAltNames",
            format!("{total} subject alternative names: at most {max} allowed"),
        );
    }

    let kinds: [(&str, Option<&SanTypeRule>); 5] = [
        ("dnsNames", sans.dns_names.as_ref()),
        ("ipAddresses", sans.ip_addresses.as_ref()),
        ("emailAddresses", sans.email_addresses.as_ref()),
        ("uris", sans.uris.as_ref()),
        ("otherNames", sans.other_names.as_ref()),
    ];
    for (kind, rule) in kinds {
        let path = format!("subjectAltNames.{kind}");
        let of_kind: Vec<&San> = facts.sans.iter().filter(|s| s.kind() == kind).collect();
        let Some(rule) = rule else {
            for (i, san) in of_kind.iter().enumerate() {
                fail(
                    &path,
                    format!(
                        "{kind}[{i}] {} is not allowed: the policy allows no {kind}",
                        san_value(san)
                    ),
                );
            }
            continue;
        };
        if of_kind.len() < rule.min_count {
            fail(
                &path,
                format!(
                    "{} {kind}: at least {} required",
                    of_kind.len(),
                    rule.min_count
                ),
            );
        }
        if let Some(max) = rule.max_count
            && of_kind.len() > max
        {
            fail(
                &path,
                format!("{} {kind}: at most {max} allowed", of_kind.len()),
            );
        }
        for (i, san) in of_kind.iter().enumerate() {
            let problem = match san {
                San::Dns(v) | San::Email(v) | San::Uri(v) => (!rule.allowed.allows(v, captures))
                    .then(|| format!("expected {}", rule.allowed.describe(captures))),
                San::Ip(ip) => (!rule.cidrs.iter().any(|n| n.contains(ip))).then(|| {
                    let nets: Vec<String> = rule.cidrs.iter().map(ToString::to_string).collect();
                    format!("expected within {}", join_or(&nets))
                }),
                San::OtherName { oid, .. } => (!rule.oids.contains(oid))
                    .then(|| format!("expected type {}", join_or(&rule.oids))),
                San::Other { .. } => None,
            };
            if let Some(problem) = problem {
                fail(
                    &path,
                    format!("{kind}[{i}] {} is not allowed: {problem}", san_value(san)),
                );
            }
        }
    }
    for san in facts.sans.iter().filter(|s| matches!(s, San::Other { .. })) {
        fail(
            "subjectAltNames",
            format!(
                "{} is not allowed: csr-warden policies never allow {} names",
                san,
                san.kind()
            ),
        );
    }
}

fn san_value(san: &San) -> String {
    match san {
        San::Dns(v) | San::Email(v) | San::Uri(v) => format!("{v:?}"),
        San::Ip(ip) => ip.to_string(),
        San::OtherName { oid, .. } => format!("of type {oid}"),
        San::Other { detail, .. } => format!("{detail:?}"),
    }
}

fn quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    join_or(&quoted)
}
