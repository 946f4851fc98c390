//! Built-in guards: checks that hold for every request a policy governs, whatever the policies
//! say. A few can be waived by an approve policy, by name (`spec.waiveGuards`); the waiver shows
//! in every decision it affects.

use std::fmt;

use crate::csr::{CsrError, CsrFacts, Hash, SignatureStatus};
use crate::request::CsrSpec;

/// Subject organizations that grant cluster-admin: never in an approved certificate.
pub const ADMIN_GROUPS: &[&str] = &["system:masters", "kubeadm:cluster-admins"];

pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
pub const KUBE_APISERVER_CLIENT_KUBELET: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Guard {
    /// The request must parse. Not waivable.
    Request,
    /// The self-signature must verify (proof of possession). Not waivable.
    Signature,
    /// SHA-1 signatures are refused.
    Sha1Signature,
    /// O `system:masters` and `kubeadm:cluster-admins` are refused.
    AdminGroups,
    /// CA certificates are refused.
    CertificateAuthority,
    /// What kube-controller-manager's signer would refuse for the built-in signers. Not waivable:
    /// approving it would only end in a `Failed` condition.
    SignerRules,
}

impl Guard {
    pub const WAIVABLE: [Guard; 3] = [
        Guard::Sha1Signature,
        Guard::AdminGroups,
        Guard::CertificateAuthority,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Guard::Request => "request",
            Guard::Signature => "signature",
            Guard::Sha1Signature => "sha1Signature",
            Guard::AdminGroups => "adminGroups",
            Guard::CertificateAuthority => "certificateAuthority",
            Guard::SignerRules => "signerRules",
        }
    }

    /// The guard a policy may waive by this name, or why it may not.
    pub fn waivable_from_name(name: &str) -> Result<Guard, String> {
        if let Some(g) = Guard::WAIVABLE.iter().find(|g| g.name() == name) {
            return Ok(*g);
        }
        let fixed = [Guard::Request, Guard::Signature, Guard::SignerRules];
        if fixed.iter().any(|g| g.name() == name) {
            return Err(format!("guard {name:?} cannot be waived"));
        }
        Err(format!(
            "{name:?} is not a guard; waivable guards are sha1Signature, adminGroups, \
             certificateAuthority"
        ))
    }
}

impl fmt::Display for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A guard that does not hold, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardFailure {
    pub guard: Guard,
    pub message: String,
}

/// Every guard that fails for this request.
pub fn check(facts: &Result<CsrFacts, CsrError>, spec: &CsrSpec) -> Vec<GuardFailure> {
    let facts = match facts {
        Ok(f) => f,
        Err(e) => {
            return vec![GuardFailure {
                guard: Guard::Request,
                message: e.to_string(),
            }];
        }
    };
    let mut out = Vec::new();
    let mut fail = |guard, message: String| out.push(GuardFailure { guard, message });

    match &facts.signature.status {
        SignatureStatus::Valid => {}
        SignatureStatus::Invalid(why) => fail(
            Guard::Signature,
            format!(
                "{} signature is invalid: {why}; the requester has not proven it holds the key",
                facts.signature.algorithm
            ),
        ),
        SignatureStatus::Unsupported(why) => fail(
            Guard::Signature,
            format!("signature cannot be verified: {why}"),
        ),
    }
    if facts.signature.algorithm.hash() == Some(Hash::Sha1) {
        fail(
            Guard::Sha1Signature,
            format!(
                "signature algorithm {} uses SHA-1, which is refused",
                facts.signature.algorithm
            ),
        );
    }
    for o in facts.subject_values(ORGANIZATION) {
        if ADMIN_GROUPS.contains(&o) {
            fail(
                Guard::AdminGroups,
                format!("O {o:?} is an administrator group and is never approved"),
            );
        }
    }
    if facts.basic_constraints_ca == Some(true) {
        fail(
            Guard::CertificateAuthority,
            "basicConstraints asks for a CA certificate (CA:TRUE)".to_string(),
        );
    }
    if facts.key_usage.contains(&"cert sign") {
        fail(
            Guard::CertificateAuthority,
            "keyUsage extension asks for certificate signing".to_string(),
        );
    }
    if spec.usages.iter().any(|u| u == "cert sign") {
        fail(
            Guard::CertificateAuthority,
            "usage \"cert sign\" asks for a CA certificate".to_string(),
        );
    }
    for message in signer_rules(facts, spec) {
        fail(Guard::SignerRules, message);
    }
    out
}

const ORGANIZATION: &str = "2.5.4.10";
const COMMON_NAME: &str = "2.5.4.3";

/// kube-controller-manager's signer checks (`isKubeAPIServerClient`, `ValidateKubeletClientCSR`,
/// `ValidateKubeletServingCSR`): what it would refuse with a `Failed` condition, reason
/// `SignerValidationFailure`, after the request had been approved.
fn signer_rules(facts: &CsrFacts, spec: &CsrSpec) -> Vec<String> {
    let signer = spec.signer_name.as_str();
    let mut out = Vec::new();
    let usages: Vec<&str> = spec.usages.iter().map(String::as_str).collect();
    // The kubelet signers take exactly {digital signature, <purpose>}, with or without key
    // encipherment (kubelets stopped asking for it for non-RSA keys in 1.27), in any order.
    let kubelet_usages = |out: &mut Vec<String>, purpose: &str| {
        let optional = "key encipherment";
        let exact = usages.contains(&"digital signature")
            && usages.contains(&purpose)
            && usages
                .iter()
                .all(|u| ["digital signature", purpose, optional].contains(u));
        if !exact {
            out.push(format!(
                "signer {signer} requires usages exactly \"digital signature\", \"{purpose}\" \
                 and optionally \"{optional}\", got {usages:?}"
            ));
        }
    };
    let kubelet_identity = |out: &mut Vec<String>| {
        let orgs: Vec<&str> = facts.subject_values(ORGANIZATION).collect();
        if orgs != ["system:nodes"] {
            out.push(format!(
                "signer {signer} requires O exactly \"system:nodes\", got {orgs:?}"
            ));
        }
        let cn = facts.subject_values(COMMON_NAME).next().unwrap_or("");
        if !cn.starts_with("system:node:") {
            out.push(format!(
                "signer {signer} requires CN to start with \"system:node:\", got {cn:?}"
            ));
        }
    };
    match signer {
        KUBE_APISERVER_CLIENT => {
            for u in &usages {
                if !["digital signature", "key encipherment", "client auth"].contains(u) {
                    out.push(format!(
                        "signer {signer} refuses usage {u:?}: it allows only \"client auth\", \
                         \"digital signature\" and \"key encipherment\""
                    ));
                }
            }
            if !usages.contains(&"client auth") {
                out.push(format!("signer {signer} requires usage \"client auth\""));
            }
        }
        KUBE_APISERVER_CLIENT_KUBELET => {
            kubelet_identity(&mut out);
            if facts.sans.iter().any(|s| {
                matches!(
                    s,
                    crate::csr::San::Dns(_)
                        | crate::csr::San::Email(_)
                        | crate::csr::San::Ip(_)
                        | crate::csr::San::Uri(_)
                )
            }) {
                out.push(format!(
                    "signer {signer} refuses DNS, email, IP and URI subject alternative names"
                ));
            }
            kubelet_usages(&mut out, "client auth");
        }
        KUBELET_SERVING => {
            kubelet_identity(&mut out);
            if facts
                .sans
                .iter()
                .any(|s| matches!(s, crate::csr::San::Email(_) | crate::csr::San::Uri(_)))
            {
                out.push(format!(
                    "signer {signer} refuses email and URI subject alternative names"
                ));
            }
            if !facts
                .sans
                .iter()
                .any(|s| matches!(s, crate::csr::San::Dns(_) | crate::csr::San::Ip(_)))
            {
                out.push(format!(
                    "signer {signer} requires at least one DNS or IP subject alternative name"
                ));
            }
            kubelet_usages(&mut out, "server auth");
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_three_guards_can_be_waived() {
        assert_eq!(
            Guard::waivable_from_name("adminGroups"),
            Ok(Guard::AdminGroups)
        );
        assert!(
            Guard::waivable_from_name("signature")
                .unwrap_err()
                .contains("cannot be waived")
        );
        assert!(
            Guard::waivable_from_name("signerRules")
                .unwrap_err()
                .contains("cannot be waived")
        );
        assert!(
            Guard::waivable_from_name("sha1")
                .unwrap_err()
                .contains("not a guard")
        );
    }

    #[test]
    fn unparseable_request_fails_the_request_guard_only() {
        let failures = check(&Err(CsrError::Empty), &CsrSpec::default());
        assert_eq!(
            failures,
            vec![GuardFailure {
                guard: Guard::Request,
                message: "request is empty".into()
            }]
        );
    }
}
