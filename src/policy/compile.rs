//! Loading: YAML text -> checked, compiled policies. Strict and atomic: every problem is
//! collected with file, line and field, and a set with any problem is never returned.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use ipnet::IpNet;
use serde_saphyr::Spanned;
use sha2::{Digest, Sha256};

use super::guards::Guard;
use super::matcher::{Pattern, Template, ValueMatcher};
use super::schema::{self, Action};
use super::{Policy, PolicySet};
use crate::request::KNOWN_USAGES;

/// One policy file's text and the path to name in errors.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: String,
    pub text: String,
}

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// Dotted path of the field (`spec.subject.commonName.patterns[0]`), when known.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found while loading a policy set; nothing from it was kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

/// A signer a policy governs: exact, or every signer of a domain (`example.com/*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignerSelector {
    Exact(String),
    Domain(String),
}

impl fmt::Display for SignerSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignerSelector::Exact(s) => f.write_str(s),
            SignerSelector::Domain(d) => write!(f, "{d}/*"),
        }
    }
}

/// Which requests a policy governs.
#[derive(Debug, Clone)]
pub struct Selector {
    pub signers: Vec<SignerSelector>,
    pub usernames: Vec<Pattern>,
    pub groups: Vec<String>,
}

/// Rules for one subject attribute.
#[derive(Debug, Clone)]
pub struct AttributeRule {
    pub oid: String,
    /// Short name shown in reasons (`CN`, `O`, or the OID).
    pub label: String,
    /// The rule's path in the policy (`subject.commonName`).
    pub path: String,
    pub allowed: ValueMatcher,
    pub required: bool,
    pub required_values: Vec<Template>,
    pub max_count: usize,
}

/// Rules for one SAN type.
#[derive(Debug, Clone, Default)]
pub struct SanTypeRule {
    pub allowed: ValueMatcher,
    pub cidrs: Vec<IpNet>,
    pub oids: Vec<String>,
    pub min_count: usize,
    pub max_count: Option<usize>,
}

#[derive(Debug, Clone, Default)]
pub struct SanRules {
    pub min_count: usize,
    pub max_count: Option<usize>,
    pub dns_names: Option<SanTypeRule>,
    pub ip_addresses: Option<SanTypeRule>,
    pub email_addresses: Option<SanTypeRule>,
    pub uris: Option<SanTypeRule>,
    pub other_names: Option<SanTypeRule>,
}

#[derive(Debug, Clone, Default)]
pub struct UsageRules {
    /// Empty: any usage.
    pub allowed: Vec<String>,
    pub required: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct KeyRules {
    /// Empty: any algorithm.
    pub algorithms: Vec<String>,
    pub rsa_min_bits: Option<usize>,
    pub rsa_max_bits: Option<usize>,
    /// Empty: any curve.
    pub ecdsa_curves: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ExpirationRules {
    pub max_seconds: Option<i64>,
    pub required: bool,
}

/// What an approve policy checks. Absent subject attributes and SAN types must be absent.
#[derive(Debug, Clone, Default)]
pub struct ApproveRules {
    pub subject: Vec<AttributeRule>,
    pub sans: SanRules,
    pub usages: Option<UsageRules>,
    pub key: Option<KeyRules>,
    pub expiration: Option<ExpirationRules>,
    pub allowed_extensions: Vec<String>,
}

/// A field a deny condition looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionField {
    Subject(&'static str, &'static str),
    DnsNames,
    IpAddresses,
    EmailAddresses,
    Uris,
    Usages,
    Username,
    Groups,
}

/// One `denyWhen` entry: it holds when any value of `field` is allowed by the matcher.
#[derive(Debug, Clone)]
pub struct Condition {
    pub field_name: String,
    pub field: ConditionField,
    pub matcher: ValueMatcher,
    pub cidrs: Vec<IpNet>,
    pub message: Option<String>,
}

/// Subject attribute fields a policy can name, with the OID and short name.
const SUBJECT_FIELDS: &[(&str, &str, &str)] = &[
    ("commonName", "2.5.4.3", "CN"),
    ("organization", "2.5.4.10", "O"),
    ("organizationalUnit", "2.5.4.11", "OU"),
    ("country", "2.5.4.6", "C"),
    ("province", "2.5.4.8", "ST"),
    ("locality", "2.5.4.7", "L"),
    ("streetAddress", "2.5.4.9", "STREET"),
    ("postalCode", "2.5.4.17", "POSTALCODE"),
    ("serialNumber", "2.5.4.5", "SERIALNUMBER"),
];

const KEY_ALGORITHMS: &[&str] = &["RSA", "ECDSA", "Ed25519"];
const CURVES: &[&str] = &["P-224", "P-256", "P-384", "P-521"];

/// Parse and compile every source into one policy set, or report every problem.
pub fn compile(sources: &[Source]) -> Result<PolicySet, LoadErrors> {
    let mut errors = Vec::new();
    let mut policies: Vec<Policy> = Vec::new();
    for source in sources {
        let docs: Vec<schema::PolicyDocument> = match serde_saphyr::from_multiple(&source.text) {
            Ok(docs) => docs,
            Err(e) => {
                errors.push(yaml_error(source, &e));
                continue;
            }
        };
        for doc in docs {
            let mut ctx = Ctx {
                file: &source.path,
                errors: &mut errors,
            };
            if let Some(policy) = compile_document(&mut ctx, doc) {
                policies.push(policy);
            }
        }
    }

    let mut seen: HashMap<String, (String, u64)> = HashMap::new();
    for p in &policies {
        if let Some((file, line)) = seen.get(&p.name) {
            errors.push(LoadError {
                file: p.file.clone(),
                line: Some(p.line),
                field: Some("metadata.name".to_string()),
                message: format!(
                    "duplicate policy name {:?}: also defined at {file}:{line}",
                    p.name
                ),
            });
        } else {
            seen.insert(p.name.clone(), (p.file.clone(), p.line));
        }
    }
    if !errors.is_empty() {
        errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        return Err(LoadErrors(errors));
    }
    policies.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(PolicySet::new(policies, digest(sources)))
}

/// sha256 over the sources' file names and texts, in name order: identifies the policy set in
/// decision records. The directory is left out, so the same files give the same digest in the
/// repository (`policies/`) and in a cluster (the ConfigMap mounted at `/etc/csr-warden/policies`).
pub(crate) fn digest(sources: &[Source]) -> String {
    let name = |s: &Source| {
        std::path::Path::new(&s.path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| s.path.clone())
    };
    let mut named: Vec<(String, &str)> =
        sources.iter().map(|s| (name(s), s.text.as_str())).collect();
    named.sort();
    let mut hasher = Sha256::new();
    for (n, text) in named {
        hasher.update((n.len() as u64).to_be_bytes());
        hasher.update(n.as_bytes());
        hasher.update((text.len() as u64).to_be_bytes());
        hasher.update(text.as_bytes());
    }
    format!("sha256:{}", crate::csr::hex(&hasher.finalize()))
}

fn yaml_error(source: &Source, e: &serde_saphyr::Error) -> LoadError {
    let line = e.location().map(|l| l.line()).filter(|l| *l > 0);
    let message = e.to_string();
    // The error's text may carry a severity word, the position and a source snippet: keep the
    // sentence (the position is reported separately).
    let first = message.lines().next().unwrap_or("invalid YAML").trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let mut first = match first.strip_prefix("line ") {
        Some(rest) => rest.split_once(": ").map_or(first, |(_, msg)| msg),
        None => first,
    }
    .to_string();
    // Type errors do not name the field: quote the offending line, which names field and value.
    let offending = line
        .and_then(|l| {
            source
                .text
                .lines()
                .nth(usize::try_from(l).ok()?.checked_sub(1)?)
        })
        .map(str::trim)
        .filter(|l| !l.is_empty());
    if let Some(text) = offending
        && !first.starts_with("missing field")
        && !first.starts_with("unknown field")
    {
        first = format!("{first} in `{text}`");
    }
    LoadError {
        file: source.path.clone(),
        line,
        field: None,
        message: first,
    }
}

struct Ctx<'a> {
    file: &'a str,
    errors: &'a mut Vec<LoadError>,
}

impl Ctx<'_> {
    fn err(&mut self, line: u64, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(LoadError {
            file: self.file.to_string(),
            line: (line > 0).then_some(line),
            field: Some(field.into()),
            message: message.into(),
        });
    }

    fn error_count(&self) -> usize {
        self.errors.len()
    }
}

fn line<T>(s: &Spanned<T>) -> u64 {
    s.referenced.line()
}

fn compile_document(ctx: &mut Ctx<'_>, doc: schema::PolicyDocument) -> Option<Policy> {
    let before = ctx.error_count();
    if doc.api_version.value != schema::API_VERSION {
        ctx.err(
            line(&doc.api_version),
            "apiVersion",
            format!(
                "{:?} is not supported; use {:?}",
                doc.api_version.value,
                schema::API_VERSION
            ),
        );
    }
    if doc.kind.value != schema::KIND {
        ctx.err(
            line(&doc.kind),
            "kind",
            format!(
                "{:?} is not supported; use {:?}",
                doc.kind.value,
                schema::KIND
            ),
        );
    }
    let name = doc.metadata.name.value.clone();
    let name_line = line(&doc.metadata.name);
    if !is_dns_label_like(&name) {
        ctx.err(
            name_line,
            "metadata.name",
            format!(
                "{name:?} is not a valid name: use lowercase letters, digits, '-' and '.', \
                 at most 253 characters, starting and ending with a letter or digit"
            ),
        );
    }
    let spec = doc.spec;
    let selector = compile_selector(ctx, &spec.selector);
    let captures = capture_names(&selector);
    let action = spec.action.value;

    let mut waived = Vec::new();
    for (i, g) in spec.waive_guards.iter().enumerate() {
        let field = format!("spec.waiveGuards[{i}]");
        match Guard::waivable_from_name(&g.value) {
            Ok(guard) => waived.push(guard),
            Err(msg) => ctx.err(line(g), field, msg),
        }
    }

    let mut rules = ApproveRules::default();
    let mut deny_when = Vec::new();
    match action {
        Action::Approve => {
            if let Some(dw) = &spec.deny_when {
                ctx.err(
                    line(dw),
                    "spec.denyWhen",
                    "only deny policies have denyWhen; an approve policy states what it allows",
                );
            }
            rules = compile_approve_rules(ctx, &spec, &captures);
        }
        Action::Deny => {
            let approve_only: [(&str, Option<u64>); 6] = [
                ("subject", spec.subject.as_ref().map(line)),
                ("subjectAltNames", spec.subject_alt_names.as_ref().map(line)),
                ("usages", spec.usages.as_ref().map(line)),
                ("key", spec.key.as_ref().map(line)),
                ("expiration", spec.expiration.as_ref().map(line)),
                ("extensions", spec.extensions.as_ref().map(line)),
            ];
            for (field, at) in approve_only {
                if let Some(at) = at {
                    ctx.err(
                        at,
                        format!("spec.{field}"),
                        "deny policies take denyWhen conditions, not approve rules",
                    );
                }
            }
            if let Some(g) = spec.waive_guards.first() {
                ctx.err(
                    line(g),
                    "spec.waiveGuards",
                    "only approve policies can waive guards",
                );
            }
            if let Some(dw) = &spec.deny_when {
                for (i, c) in dw.value.iter().enumerate() {
                    if let Some(cond) =
                        compile_condition(ctx, c, &format!("spec.denyWhen[{i}]"), &captures)
                    {
                        deny_when.push(cond);
                    }
                }
            }
        }
    }

    if ctx.error_count() > before {
        return None;
    }
    Some(Policy {
        name,
        file: ctx.file.to_string(),
        line: name_line,
        action,
        mode: spec.mode,
        description: spec.description,
        selector,
        rules,
        deny_when,
        waived,
    })
}

/// Kubernetes object names: DNS subdomain rules.
fn is_dns_label_like(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn compile_selector(ctx: &mut Ctx<'_>, sel: &schema::Selector) -> Selector {
    let mut signers = Vec::new();
    if sel.signer_names.value.is_empty() {
        ctx.err(
            line(&sel.signer_names),
            "spec.match.signerNames",
            "must name at least one signer (exact, or \"domain/*\")",
        );
    }
    for (i, s) in sel.signer_names.value.iter().enumerate() {
        let field = format!("spec.match.signerNames[{i}]");
        match parse_signer(&s.value) {
            Ok(sig) => signers.push(sig),
            Err(msg) => ctx.err(line(s), field, msg),
        }
    }
    let mut usernames = Vec::new();
    for (i, u) in sel.usernames.iter().enumerate() {
        match Pattern::compile(&u.value, false) {
            Ok(p) => usernames.push(p),
            Err(e) => ctx.err(
                line(u),
                format!("spec.match.usernames[{i}]"),
                format!(
                    "invalid regular expression {:?}: {}",
                    u.value,
                    last_line(&e)
                ),
            ),
        }
    }
    let groups = sel.groups.iter().map(|g| g.value.clone()).collect();
    Selector {
        signers,
        usernames,
        groups,
    }
}

fn parse_signer(name: &str) -> Result<SignerSelector, String> {
    let Some((domain, path)) = name.split_once('/') else {
        return Err(format!(
            "{name:?} is not a signer name: expected \"domain/path\" or \"domain/*\""
        ));
    };
    let domain_ok = !domain.is_empty()
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !domain_ok || path.is_empty() {
        return Err(format!(
            "{name:?} is not a signer name: expected \"domain/path\" or \"domain/*\""
        ));
    }
    if path == "*" {
        Ok(SignerSelector::Domain(domain.to_ascii_lowercase()))
    } else if path.contains('*') {
        Err(format!(
            "{name:?}: only a whole path \"*\" is a wildcard (\"{domain}/*\")"
        ))
    } else {
        Ok(SignerSelector::Exact(name.to_string()))
    }
}

/// Capture names every username pattern provides: a template may use only these.
fn capture_names(sel: &Selector) -> BTreeSet<String> {
    let mut iter = sel.usernames.iter();
    let Some(first) = iter.next() else {
        return BTreeSet::new();
    };
    let mut names: BTreeSet<String> = first.capture_names().map(str::to_string).collect();
    for p in iter {
        let these: BTreeSet<String> = p.capture_names().map(str::to_string).collect();
        names = names.intersection(&these).cloned().collect();
    }
    names
}

fn compile_template(
    ctx: &mut Ctx<'_>,
    s: &Spanned<String>,
    field: &str,
    captures: &BTreeSet<String>,
) -> Option<Template> {
    match Template::parse(&s.value) {
        Ok(t) => {
            let missing: Vec<&str> = t.captures().filter(|c| !captures.contains(*c)).collect();
            if missing.is_empty() {
                Some(t)
            } else {
                let have = if captures.is_empty() {
                    "match.usernames captures nothing".to_string()
                } else {
                    let names: Vec<&str> = captures.iter().map(String::as_str).collect();
                    format!(
                        "every match.usernames pattern captures only {}",
                        names.join(", ")
                    )
                };
                ctx.err(
                    line(s),
                    field,
                    format!(
                        "{:?} uses ${{{}}}, but {have}",
                        s.value,
                        missing.join("}, ${")
                    ),
                );
                None
            }
        }
        Err(msg) => {
            ctx.err(line(s), field, msg);
            None
        }
    }
}

fn compile_matcher(
    ctx: &mut Ctx<'_>,
    values: &[Spanned<String>],
    patterns: &[Spanned<String>],
    field: &str,
    captures: &BTreeSet<String>,
    ignore_case: bool,
) -> ValueMatcher {
    let mut m = ValueMatcher {
        ignore_case,
        ..ValueMatcher::default()
    };
    for (i, v) in values.iter().enumerate() {
        if let Some(t) = compile_template(ctx, v, &format!("{field}.values[{i}]"), captures) {
            m.values.push(t);
        }
    }
    for (i, p) in patterns.iter().enumerate() {
        match Pattern::compile(&p.value, ignore_case) {
            Ok(pat) => m.patterns.push(pat),
            Err(e) => ctx.err(
                line(p),
                format!("{field}.patterns[{i}]"),
                format!(
                    "invalid regular expression {:?}: {}",
                    p.value,
                    last_line(&e)
                ),
            ),
        }
    }
    m
}

/// The last non-empty line of a multi-line error (regex errors end with the sentence).
fn last_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}

fn compile_approve_rules(
    ctx: &mut Ctx<'_>,
    spec: &schema::PolicySpec,
    captures: &BTreeSet<String>,
) -> ApproveRules {
    let mut rules = ApproveRules::default();
    if let Some(subject) = &spec.subject {
        rules.subject = compile_subject(ctx, &subject.value, captures);
    }
    if let Some(sans) = &spec.subject_alt_names {
        rules.sans = compile_sans(ctx, &sans.value, captures);
    }
    if let Some(u) = &spec.usages {
        let allowed = compile_usages(ctx, &u.value.allowed, "spec.usages.allowed");
        let required = compile_usages(ctx, &u.value.required, "spec.usages.required");
        if !allowed.is_empty() {
            for (i, r) in required.iter().enumerate() {
                if !allowed.contains(r) {
                    ctx.err(
                        line(&u.value.required[i]),
                        format!("spec.usages.required[{i}]"),
                        format!("{r:?} is required but not in usages.allowed"),
                    );
                }
            }
        }
        rules.usages = Some(UsageRules { allowed, required });
    }
    if let Some(k) = &spec.key {
        rules.key = Some(compile_key(ctx, &k.value, line(k)));
    }
    if let Some(e) = &spec.expiration {
        if let Some(max) = e.value.max_seconds
            && max < 600
        {
            ctx.err(
                line(e),
                "spec.expiration.maxSeconds",
                format!(
                    "{max} is below 600, the smallest expirationSeconds the API server accepts"
                ),
            );
        }
        rules.expiration = Some(ExpirationRules {
            max_seconds: e.value.max_seconds,
            required: e.value.required,
        });
    }
    if let Some(x) = &spec.extensions {
        for (i, oid) in x.value.allowed_oids.iter().enumerate() {
            if is_dotted_oid(&oid.value) {
                rules.allowed_extensions.push(oid.value.clone());
            } else {
                ctx.err(
                    line(oid),
                    format!("spec.extensions.allowedOIDs[{i}]"),
                    format!("{:?} is not a dotted OID", oid.value),
                );
            }
        }
    }
    rules
}

fn is_dotted_oid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

fn compile_usages(ctx: &mut Ctx<'_>, list: &[Spanned<String>], field: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, u) in list.iter().enumerate() {
        if KNOWN_USAGES.contains(&u.value.as_str()) {
            out.push(u.value.clone());
        } else {
            ctx.err(
                line(u),
                format!("{field}[{i}]"),
                format!(
                    "{:?} is not a Kubernetes key usage (for example \"client auth\", \
                     \"server auth\", \"digital signature\")",
                    u.value
                ),
            );
        }
    }
    out
}

fn compile_key(ctx: &mut Ctx<'_>, k: &schema::KeyRules, at: u64) -> KeyRules {
    let mut rules = KeyRules {
        rsa_min_bits: k.rsa_min_bits,
        rsa_max_bits: k.rsa_max_bits,
        ..KeyRules::default()
    };
    for (i, a) in k.algorithms.iter().enumerate() {
        if KEY_ALGORITHMS.contains(&a.value.as_str()) {
            rules.algorithms.push(a.value.clone());
        } else {
            ctx.err(
                line(a),
                format!("spec.key.algorithms[{i}]"),
                format!("{:?} is not one of RSA, ECDSA, Ed25519", a.value),
            );
        }
    }
    for (i, c) in k.ecdsa_curves.iter().enumerate() {
        if CURVES.contains(&c.value.as_str()) {
            rules.ecdsa_curves.push(c.value.clone());
        } else {
            ctx.err(
                line(c),
                format!("spec.key.ecdsaCurves[{i}]"),
                format!("{:?} is not one of P-224, P-256, P-384, P-521", c.value),
            );
        }
    }
    if let (Some(min), Some(max)) = (k.rsa_min_bits, k.rsa_max_bits)
        && min > max
    {
        ctx.err(
            at,
            "spec.key.rsaMinBits",
            format!("rsaMinBits {min} is larger than rsaMaxBits {max}"),
        );
    }
    rules
}

fn compile_subject(
    ctx: &mut Ctx<'_>,
    s: &schema::SubjectRules,
    captures: &BTreeSet<String>,
) -> Vec<AttributeRule> {
    let named = [
        &s.common_name,
        &s.organization,
        &s.organizational_unit,
        &s.country,
        &s.province,
        &s.locality,
        &s.street_address,
        &s.postal_code,
        &s.serial_number,
    ];
    let mut out = Vec::new();
    for ((field, oid, label), rule) in SUBJECT_FIELDS.iter().zip(named) {
        let Some(rule) = rule else { continue };
        let path = format!("spec.subject.{field}");
        if let Some(o) = &rule.value.oid {
            ctx.err(
                line(o),
                format!("{path}.oid"),
                "oid is only for entries of subject.otherAttributes",
            );
        }
        let compiled = compile_attribute(ctx, rule, &path, captures, oid, label);
        out.push(AttributeRule {
            path: format!("subject.{field}"),
            ..compiled
        });
    }
    for (i, rule) in s.other_attributes.iter().enumerate() {
        let path = format!("spec.subject.otherAttributes[{i}]");
        let Some(oid) = &rule.value.oid else {
            ctx.err(
                line(rule),
                format!("{path}.oid"),
                "each entry names its attribute by dotted OID",
            );
            continue;
        };
        if !is_dotted_oid(&oid.value) {
            ctx.err(
                line(oid),
                format!("{path}.oid"),
                format!("{:?} is not a dotted OID", oid.value),
            );
            continue;
        }
        if let Some((field, _, _)) = SUBJECT_FIELDS.iter().find(|(_, o, _)| *o == oid.value) {
            ctx.err(
                line(oid),
                format!("{path}.oid"),
                format!("{} has its own field: use subject.{field}", oid.value),
            );
            continue;
        }
        let label = crate::csr::subject_attribute_name(&oid.value).unwrap_or(&oid.value);
        let compiled = compile_attribute(ctx, rule, &path, captures, &oid.value, label);
        out.push(AttributeRule {
            path: format!("subject.otherAttributes[{i}]"),
            ..compiled
        });
    }
    out
}

fn compile_attribute(
    ctx: &mut Ctx<'_>,
    spanned: &Spanned<schema::AttributeRule>,
    path: &str,
    captures: &BTreeSet<String>,
    oid: &str,
    label: &str,
) -> AttributeRule {
    let r = &spanned.value;
    let at = line(spanned);
    let allowed = compile_matcher(ctx, &r.values, &r.patterns, path, captures, false);
    if r.values.is_empty() && r.patterns.is_empty() {
        ctx.err(
            at,
            path,
            "allows no value: give values or patterns (remove the rule to forbid the attribute)",
        );
    }
    let mut required_values = Vec::new();
    for (i, v) in r.required_values.iter().enumerate() {
        if let Some(t) = compile_template(ctx, v, &format!("{path}.requiredValues[{i}]"), captures)
        {
            required_values.push(t);
        }
    }
    let max_count = r.max_count.unwrap_or(1);
    if max_count == 0 {
        ctx.err(
            at,
            format!("{path}.maxCount"),
            "0 allows nothing: remove the rule to forbid the attribute",
        );
    }
    AttributeRule {
        oid: oid.to_string(),
        label: label.to_string(),
        path: path.to_string(),
        allowed,
        required: r.required,
        required_values,
        max_count,
    }
}

fn compile_sans(ctx: &mut Ctx<'_>, s: &schema::SanRules, captures: &BTreeSet<String>) -> SanRules {
    let mut out = SanRules {
        min_count: s.min_count.unwrap_or(0),
        max_count: s.max_count,
        ..SanRules::default()
    };
    let string_type = |ctx: &mut Ctx<'_>,
                       rule: &Option<Spanned<schema::SanTypeRule>>,
                       field: &str,
                       ignore_case: bool| {
        let rule = rule.as_ref()?;
        let path = format!("spec.subjectAltNames.{field}");
        let allowed = compile_matcher(
            ctx,
            &rule.value.values,
            &rule.value.patterns,
            &path,
            captures,
            ignore_case,
        );
        if rule.value.values.is_empty() && rule.value.patterns.is_empty() {
            ctx.err(
                line(rule),
                &path,
                "allows no value: give values or patterns (remove the rule to forbid the type)",
            );
        }
        Some(SanTypeRule {
            allowed,
            min_count: rule.value.min_count.unwrap_or(0),
            max_count: rule.value.max_count,
            ..SanTypeRule::default()
        })
    };
    out.dns_names = string_type(ctx, &s.dns_names, "dnsNames", true);
    out.email_addresses = string_type(ctx, &s.email_addresses, "emailAddresses", false);
    out.uris = string_type(ctx, &s.uris, "uris", false);
    if let Some(ip) = &s.ip_addresses {
        let cidrs = compile_cidrs(ctx, &ip.value.cidrs, "spec.subjectAltNames.ipAddresses");
        out.ip_addresses = Some(SanTypeRule {
            cidrs,
            min_count: ip.value.min_count.unwrap_or(0),
            max_count: ip.value.max_count,
            ..SanTypeRule::default()
        });
    }
    if let Some(on) = &s.other_names {
        let mut oids = Vec::new();
        for (i, oid) in on.value.oids.iter().enumerate() {
            if is_dotted_oid(&oid.value) {
                oids.push(oid.value.clone());
            } else {
                ctx.err(
                    line(oid),
                    format!("spec.subjectAltNames.otherNames.oids[{i}]"),
                    format!("{:?} is not a dotted OID", oid.value),
                );
            }
        }
        out.other_names = Some(SanTypeRule {
            oids,
            min_count: on.value.min_count.unwrap_or(0),
            max_count: on.value.max_count,
            ..SanTypeRule::default()
        });
    }
    out
}

fn compile_cidrs(ctx: &mut Ctx<'_>, list: &[Spanned<String>], path: &str) -> Vec<IpNet> {
    let mut out = Vec::new();
    if list.is_empty() {
        ctx.err(0, format!("{path}.cidrs"), "give at least one CIDR");
    }
    for (i, c) in list.iter().enumerate() {
        match c.value.parse::<IpNet>() {
            Ok(net) if net.trunc() == net => out.push(net),
            Ok(net) => ctx.err(
                line(c),
                format!("{path}.cidrs[{i}]"),
                format!(
                    "{:?} has host bits set; did you mean {}?",
                    c.value,
                    net.trunc()
                ),
            ),
            Err(_) => ctx.err(
                line(c),
                format!("{path}.cidrs[{i}]"),
                format!(
                    "{:?} is not a CIDR (for example 10.0.0.0/8 or fd00::/8)",
                    c.value
                ),
            ),
        }
    }
    out
}

fn compile_condition(
    ctx: &mut Ctx<'_>,
    c: &schema::DenyCondition,
    path: &str,
    captures: &BTreeSet<String>,
) -> Option<Condition> {
    let field = match c.field.value.as_str() {
        "dnsNames" => ConditionField::DnsNames,
        "ipAddresses" => ConditionField::IpAddresses,
        "emailAddresses" => ConditionField::EmailAddresses,
        "uris" => ConditionField::Uris,
        "usages" => ConditionField::Usages,
        "username" => ConditionField::Username,
        "groups" => ConditionField::Groups,
        other => match SUBJECT_FIELDS.iter().find(|(f, _, _)| *f == other) {
            Some((_, oid, label)) => ConditionField::Subject(oid, label),
            None => {
                ctx.err(
                    line(&c.field),
                    format!("{path}.field"),
                    format!(
                        "{other:?} is not a field: use one of {}, dnsNames, ipAddresses, \
                         emailAddresses, uris, usages, username, groups",
                        SUBJECT_FIELDS
                            .iter()
                            .map(|(f, _, _)| *f)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                return None;
            }
        },
    };
    let matcher = compile_matcher(
        ctx,
        &c.values,
        &c.patterns,
        path,
        captures,
        field == ConditionField::DnsNames,
    );
    let cidrs = if c.cidrs.is_empty() {
        Vec::new()
    } else if field == ConditionField::IpAddresses {
        compile_cidrs(ctx, &c.cidrs, path)
    } else {
        ctx.err(
            line(&c.field),
            format!("{path}.cidrs"),
            "cidrs apply only to field ipAddresses",
        );
        Vec::new()
    };
    if field == ConditionField::IpAddresses && !matcher.is_empty() {
        ctx.err(
            line(&c.field),
            path,
            "field ipAddresses takes cidrs, not values or patterns",
        );
    }
    if matcher.is_empty() && cidrs.is_empty() && c.cidrs.is_empty() {
        ctx.err(
            line(&c.field),
            path,
            "matches nothing: give values, patterns or cidrs",
        );
    }
    Some(Condition {
        field_name: c.field.value.clone(),
        field,
        matcher,
        cidrs,
        message: c.message.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signer_names() {
        assert_eq!(
            parse_signer("example.com/spiffe").unwrap(),
            SignerSelector::Exact("example.com/spiffe".into())
        );
        assert_eq!(
            parse_signer("Example.com/*").unwrap(),
            SignerSelector::Domain("example.com".into())
        );
        assert!(parse_signer("example.com").is_err());
        assert!(parse_signer("/x").is_err());
        assert!(parse_signer("example.com/").is_err());
        assert!(parse_signer("example.com/a*").is_err());
    }

    #[test]
    fn oids() {
        assert!(is_dotted_oid("1.2.3"));
        assert!(!is_dotted_oid("1"));
        assert!(!is_dotted_oid("1..2"));
        assert!(!is_dotted_oid("a.b"));
    }
}
