//! The Kubernetes side of a CertificateSigningRequest: what the API server records besides the
//! PKCS#10 request. Plain data, filled by the adapters (CLI, webhook, approver).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::csr::{CsrError, CsrFacts, Limits};

/// Key usages the `certificates.k8s.io/v1` API accepts, as it spells them.
pub const KNOWN_USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

/// The identity the API server recorded for the creator of the request
/// (`spec.username`, `spec.uid`, `spec.groups`, `spec.extra`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Requester {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The fields of `spec` a decision depends on, besides the request itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CsrSpec {
    pub signer_name: String,
    pub usages: Vec<String>,
    pub expiration_seconds: Option<i64>,
}

/// Everything one decision is made from.
#[derive(Debug, Clone)]
pub struct ReviewInput {
    /// The parsed request, or why it could not be parsed.
    pub facts: Result<CsrFacts, CsrError>,
    pub spec: CsrSpec,
    pub requester: Requester,
}

impl ReviewInput {
    /// Parse `request` (PEM or DER) with `limits` and pair it with the Kubernetes fields.
    pub fn new(request: &[u8], limits: &Limits, spec: CsrSpec, requester: Requester) -> Self {
        ReviewInput {
            facts: crate::csr::parse(request, limits),
            spec,
            requester,
        }
    }

    /// The input of a CertificateSigningRequest object: its request, its Kubernetes fields, and
    /// the requester the API server recorded in `spec` (username, uid, groups, extra).
    pub fn from_stored(
        csr: &k8s_openapi::api::certificates::v1::CertificateSigningRequest,
        limits: &Limits,
    ) -> Self {
        let spec = &csr.spec;
        ReviewInput::new(
            &spec.request.0,
            limits,
            CsrSpec {
                signer_name: spec.signer_name.clone(),
                usages: spec.usages.clone().unwrap_or_default(),
                expiration_seconds: spec.expiration_seconds.map(i64::from),
            },
            Requester {
                username: spec.username.clone().unwrap_or_default(),
                uid: spec.uid.clone().unwrap_or_default(),
                groups: spec.groups.clone().unwrap_or_default(),
                extra: spec.extra.clone().unwrap_or_default(),
            },
        )
    }
}
