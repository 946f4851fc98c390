//! Value matching: templates (`system:node:${node}`) compared literally after substitution, and
//! anchored regular expressions compiled once at load.

use std::fmt::Write;

use regex::Regex;

/// Named captures from the requester's username (`node` -> `worker-1`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captures(pub Vec<(String, String)>);

impl Captures {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Capture(String),
}

/// A value with `${name}` references to username captures. The substituted text always matches
/// literally: a `.` in a node name is a dot, never a wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    /// Parse `${name}` references; `name` is letters, digits and `_`, not starting with a digit.
    pub fn parse(source: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unclosed \"${{\" in {source:?}"))?;
            let name = &after[..end];
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!("{name:?} is not a capture name in {source:?}"));
            }
            parts.push(Part::Capture(name.to_string()));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Template {
            source: source.to_string(),
            parts,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Capture names this template references.
    pub fn captures(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Capture(name) => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// The value with captures substituted; `None` when a capture is missing.
    pub fn render(&self, captures: &Captures) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Capture(name) => out.push_str(captures.get(name)?),
            }
        }
        Some(out)
    }

    fn matches(&self, value: &str, captures: &Captures, ignore_case: bool) -> bool {
        match self.render(captures) {
            Some(expected) if ignore_case => expected.eq_ignore_ascii_case(value),
            Some(expected) => expected == value,
            None => false,
        }
    }
}

/// An anchored regular expression, with the text the policy author wrote.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: Regex,
}

impl Pattern {
    /// Compile `source` so that it must match the whole value.
    pub fn compile(source: &str, ignore_case: bool) -> Result<Pattern, String> {
        let flags = if ignore_case { "(?i)" } else { "" };
        let regex = regex::RegexBuilder::new(&format!("{flags}^(?:{source})$"))
            .size_limit(1 << 20)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Pattern {
            source: source.to_string(),
            regex,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn is_match(&self, value: &str) -> bool {
        self.regex.is_match(value)
    }

    /// Named groups this pattern captures.
    pub fn capture_names(&self) -> impl Iterator<Item = &str> {
        self.regex.capture_names().flatten()
    }

    /// Match and collect named captures.
    pub fn captures(&self, value: &str) -> Option<Captures> {
        let caps = self.regex.captures(value)?;
        Some(Captures(
            self.regex
                .capture_names()
                .flatten()
                .filter_map(|name| {
                    caps.name(name)
                        .map(|m| (name.to_string(), m.as_str().to_string()))
                })
                .collect(),
        ))
    }
}

/// Allowed values: any template or any pattern.
#[derive(Debug, Clone, Default)]
pub struct ValueMatcher {
    pub values: Vec<Template>,
    pub patterns: Vec<Pattern>,
    /// DNS names compare case-insensitively.
    pub ignore_case: bool,
}

impl ValueMatcher {
    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.patterns.is_empty()
    }

    pub fn allows(&self, value: &str, captures: &Captures) -> bool {
        self.values
            .iter()
            .any(|t| t.matches(value, captures, self.ignore_case))
            || self.patterns.iter().any(|p| p.is_match(value))
    }

    /// What was expected, for a reason: `"${node}" or "${node}.cluster.local" (node = worker-1)`.
    pub fn describe(&self, captures: &Captures) -> String {
        let mut alternatives: Vec<String> = self
            .values
            .iter()
            .map(|t| format!("{:?}", t.source()))
            .collect();
        alternatives.extend(
            self.patterns
                .iter()
                .map(|p| format!("pattern \"{}\"", p.source())),
        );
        let mut out = join_or(&alternatives);
        let mut used: Vec<&str> = self.values.iter().flat_map(|t| t.captures()).collect();
        used.sort_unstable();
        used.dedup();
        if !used.is_empty() {
            let shown: Vec<String> = used
                .iter()
                .map(|name| match captures.get(name) {
                    Some(v) => format!("{name} = {v}"),
                    None => format!("{name} not captured"),
                })
                .collect();
            let _ = write!(out, " ({})", shown.join(", "));
        }
        out
    }
}

/// `a`, `a or b`, `a, b or c`.
pub fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(pairs: &[(&str, &str)]) -> Captures {
        Captures(
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    }

    #[test]
    fn template_substitutes_literally() {
        let t = Template::parse("${node}.cluster.local").unwrap();
        let c = caps(&[("node", "node.1")]);
        assert!(t.matches("node.1.cluster.local", &c, false));
        assert!(
            !t.matches("nodex1.cluster.local", &c, false),
            "dot is literal"
        );
        assert!(!t.matches("node.1.cluster.local", &Captures::default(), false));
    }

    #[test]
    fn template_syntax_errors() {
        assert!(Template::parse("${node").is_err());
        assert!(Template::parse("${1x}").is_err());
        assert!(Template::parse("${}").is_err());
        assert_eq!(
            Template::parse("a$b${x}c")
                .unwrap()
                .captures()
                .collect::<Vec<_>>(),
            vec!["x"]
        );
    }

    #[test]
    fn patterns_are_anchored() {
        let p = Pattern::compile("[a-z]+", false).unwrap();
        assert!(p.is_match("abc"));
        assert!(!p.is_match("abc1"));
        assert!(!p.is_match("1abc"));
        let alt = Pattern::compile("a|b", false).unwrap();
        assert!(!alt.is_match("ab"), "alternation is anchored as a whole");
        assert!(Pattern::compile("(", false).is_err());
    }

    #[test]
    fn dns_compares_case_insensitively() {
        let m = ValueMatcher {
            values: vec![Template::parse("${node}").unwrap()],
            patterns: vec![Pattern::compile("[a-z]+\\.example\\.com", true).unwrap()],
            ignore_case: true,
        };
        let c = caps(&[("node", "worker-1")]);
        assert!(m.allows("WORKER-1", &c));
        assert!(m.allows("Api.Example.COM", &c));
        assert!(!m.allows("worker-2", &c));
    }

    #[test]
    fn describe_names_alternatives_and_captures() {
        let m = ValueMatcher {
            values: vec![
                Template::parse("${node}").unwrap(),
                Template::parse("${node}.cluster.local").unwrap(),
            ],
            patterns: vec![],
            ignore_case: true,
        };
        assert_eq!(
            m.describe(&caps(&[("node", "worker-1")])),
            r#""${node}" or "${node}.cluster.local" (node = worker-1)"#
        );
    }

    #[test]
    fn username_captures() {
        let p =
            Pattern::compile("system:serviceaccount:(?P<ns>[^:]+):(?P<sa>[^:]+)", false).unwrap();
        let c = p.captures("system:serviceaccount:payments:api").unwrap();
        assert_eq!(c.get("ns"), Some("payments"));
        assert_eq!(c.get("sa"), Some("api"));
    }
}
