//! Who is calling (bearer tokens) and what they may do (RBAC rules).
//!
//! Authorization mirrors the RBAC authorizer (`plugin/pkg/auth/authorizer/rbac`):
//! a request is allowed when one rule matches its verb, API group, resource (with
//! `resource/subresource` for subresources, `*` and `*/subresource` as wildcards) and, when the
//! rule lists `resourceNames`, its name. Members of `system:masters` are allowed everything, as
//! the API server's privileged-group authorizer does.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::PolicyRule;

/// One caller: the token that identifies it and the user the API server would see.
#[derive(Debug, Clone)]
pub struct Identity {
    /// kubeconfig context and user name for this identity.
    pub context: String,
    pub token: String,
    pub username: String,
    pub uid: String,
    /// As the authenticator reports them; `system:authenticated` is added for every identity.
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
    /// ClusterRole rules: everywhere.
    pub rules: Vec<PolicyRule>,
    /// Role rules: only in their namespace.
    pub namespaced_rules: Vec<(String, PolicyRule)>,
}

/// What is being asked, as the authorizer sees it.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub name: Option<&'a str>,
    pub namespace: Option<&'a str>,
}

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
    let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    PolicyRule {
        verbs: v(verbs),
        api_groups: Some(v(groups)),
        resources: Some(v(resources)),
        resource_names: (!names.is_empty()).then(|| v(names)),
        non_resource_urls: None,
    }
}

pub const CERTIFICATES: &str = "certificates.k8s.io";

/// Rules of a requester that may create and read CSRs (`system:certificates.k8s.io:certificatesigningrequests:*` style).
pub fn csr_requester_rules() -> Vec<PolicyRule> {
    vec![rule(
        &["create", "get", "list", "watch", "delete"],
        &[CERTIFICATES],
        &["certificatesigningrequests"],
        &[],
    )]
}

/// Rules that let a caller approve requests for `signers` (names or `<domain>/*`).
pub fn approver_rules(signers: &[&str]) -> Vec<PolicyRule> {
    vec![
        rule(
            &["update", "patch"],
            &[CERTIFICATES],
            &["certificatesigningrequests/approval"],
            &[],
        ),
        rule(&["approve"], &[CERTIFICATES], &["signers"], signers),
    ]
}

impl Identity {
    pub fn new(context: &str, username: &str, groups: &[&str], rules: Vec<PolicyRule>) -> Identity {
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        Identity {
            context: context.into(),
            token: format!("token-{context}"),
            username: username.into(),
            uid: format!("uid-{context}"),
            groups,
            extra: BTreeMap::new(),
            rules,
            namespaced_rules: Vec::new(),
        }
    }

    /// The cluster administrator (`system:masters`: everything allowed).
    pub fn admin() -> Identity {
        Identity::new("admin", "kubernetes-admin", &["system:masters"], vec![])
    }

    /// The csr-warden service account with `rules` (cluster-wide) and `namespaced` rules.
    pub fn csr_warden(rules: Vec<PolicyRule>, namespaced: Vec<(String, PolicyRule)>) -> Identity {
        let mut i = Identity::new(
            "csr-warden",
            "system:serviceaccount:csr-warden:csr-warden",
            &[
                "system:serviceaccounts",
                "system:serviceaccounts:csr-warden",
            ],
            rules,
        );
        i.namespaced_rules = namespaced;
        i
    }

    /// A Terraform runner: creates, reads and deletes CSRs, and may approve
    /// `kubernetes.io/kube-apiserver-client` requests (what `auto_approve = true` needs).
    pub fn terraform() -> Identity {
        let mut rules = csr_requester_rules();
        rules.extend(approver_rules(&["kubernetes.io/kube-apiserver-client"]));
        Identity::new("terraform", "terraform", &["terraform"], rules)
    }

    /// A node, `system:node:<name>` in `system:nodes`: creates and reads CSRs.
    pub fn node(name: &str) -> Identity {
        Identity::new(
            &format!("node-{name}"),
            &format!("system:node:{name}"),
            &["system:nodes"],
            csr_requester_rules(),
        )
    }

    /// A service account `system:serviceaccount:<ns>:<name>` that creates and reads CSRs.
    pub fn service_account(namespace: &str, name: &str) -> Identity {
        Identity::new(
            &format!("sa-{namespace}-{name}"),
            &format!("system:serviceaccount:{namespace}:{name}"),
            &[
                "system:serviceaccounts",
                &format!("system:serviceaccounts:{namespace}"),
            ],
            csr_requester_rules(),
        )
    }

    pub fn is_superuser(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }

    /// Whether the rules allow `a`.
    pub fn allows(&self, a: &Attributes<'_>) -> bool {
        self.is_superuser()
            || self.rules.iter().any(|r| rule_matches(r, a))
            || self
                .namespaced_rules
                .iter()
                .any(|(ns, r)| a.namespace == Some(ns.as_str()) && rule_matches(r, a))
    }
}

fn has(list: &Option<Vec<String>>, want: &str) -> bool {
    list.as_ref()
        .is_some_and(|l| l.iter().any(|x| x == "*" || x == want))
}

fn rule_matches(r: &PolicyRule, a: &Attributes<'_>) -> bool {
    if !r.verbs.iter().any(|v| v == "*" || v == a.verb) {
        return false;
    }
    if !has(&r.api_groups, a.group) {
        return false;
    }
    let combined = match a.subresource {
        Some(sub) => format!("{}/{sub}", a.resource),
        None => a.resource.to_string(),
    };
    let resource_ok = r.resources.as_ref().is_some_and(|rs| {
        rs.iter().any(|x| {
            x == "*"
                || *x == combined
                || a.subresource
                    .is_some_and(|sub| x.strip_prefix("*/") == Some(sub))
        })
    });
    if !resource_ok {
        return false;
    }
    match &r.resource_names {
        None => true,
        Some(names) if names.is_empty() => true,
        Some(names) => a.name.is_some_and(|n| names.iter().any(|x| x == n)),
    }
}

/// The API server's wording for a refused request
/// (`k8s.io/apiserver/pkg/endpoints/handlers/responsewriters.forbiddenMessage`).
pub fn forbidden_message(identity: &Identity, a: &Attributes<'_>) -> String {
    let resource = match a.subresource {
        Some(sub) => format!("{}/{sub}", a.resource),
        None => a.resource.to_string(),
    };
    let qualified = if a.group.is_empty() {
        a.resource.to_string()
    } else {
        format!("{}.{}", a.resource, a.group)
    };
    let subject = match a.name {
        Some(n) => format!("{qualified} \"{n}\" is forbidden"),
        None => format!("{qualified} is forbidden"),
    };
    let scope = match a.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    format!(
        "{subject}: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        identity.username, a.verb, a.group
    )
}
