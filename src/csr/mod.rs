//! CSR facts: everything a policy may look at in a PKCS#10 request, extracted once.
//!
//! [`parse`] turns PEM or DER into [`CsrFacts`]. It never panics on bad input: every problem is a
//! [`CsrError`] value. Nothing here does I/O; limits are given by the caller in [`Limits`].

mod oids;
mod signature;
mod strings;

use std::fmt;
use std::net::IpAddr;

use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::pem::PemObject;
use serde::Serialize;
use sha2::{Digest, Sha256};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

pub use oids::subject_attribute_name;
pub use signature::{Hash, SignatureAlgorithm, SignatureStatus};
pub use strings::StringType;

/// Bounds on what [`parse`] accepts, so a hostile request cannot make evaluation expensive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted input (PEM text or DER), in bytes.
    pub max_request_bytes: usize,
    /// Most subject alternative names, all types together.
    pub max_sans: usize,
    /// Most subject attributes (all RDNs together).
    pub max_subject_attributes: usize,
    /// Most requested extensions.
    pub max_extensions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 128 * 1024,
            max_sans: 256,
            max_subject_attributes: 64,
            max_extensions: 64,
        }
    }
}

/// Why a request could not be read. Each message names what was wrong and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    #[error("request is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("request is empty")]
    Empty,
    #[error("request is not a PEM \"CERTIFICATE REQUEST\" block: {0}")]
    Pem(String),
    #[error("request is not a valid PKCS#10 structure: {0}")]
    Der(String),
    #[error("request has {count} subject alternative names, more than the limit of {limit}")]
    TooManySans { count: usize, limit: usize },
    #[error("request has {count} subject attributes, more than the limit of {limit}")]
    TooManySubjectAttributes { count: usize, limit: usize },
    #[error("request has {count} extensions, more than the limit of {limit}")]
    TooManyExtensions { count: usize, limit: usize },
    #[error("request extension {oid} ({name}) is malformed: {detail}")]
    BadExtension {
        oid: String,
        name: &'static str,
        detail: String,
    },
}

/// One attribute of the subject, in the order it appears (RDN by RDN).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubjectAttribute {
    /// Dotted OID, e.g. `2.5.4.3`.
    pub oid: String,
    /// Short name (`CN`, `O`, ...) where the OID is a well-known one.
    pub name: Option<&'static str>,
    /// The decoded value; an undecodable value is `#` followed by its DER bytes in hex.
    pub value: String,
    /// The ASN.1 string type the value was encoded with.
    pub string_type: StringType,
    /// Index of the RDN (SET) that holds this attribute; multi-valued RDNs share an index.
    pub rdn: usize,
}

impl SubjectAttribute {
    /// `CN`, `O`, ... or the dotted OID for attributes without a short name.
    pub fn label(&self) -> &str {
        self.name.unwrap_or(&self.oid)
    }
}

/// A subject alternative name of any type. Nothing is dropped: unknown or malformed entries are
/// kept as [`San::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "value", rename_all = "camelCase")]
pub enum San {
    Dns(String),
    Ip(IpAddr),
    Email(String),
    Uri(String),
    OtherName {
        oid: String,
        value_hex: String,
    },
    /// directoryName, registeredID, x400Address, ediPartyName, or an entry that did not parse.
    Other {
        kind: String,
        detail: String,
    },
}

impl San {
    /// The SAN type as a policy names it (`dnsNames`, `ipAddresses`, ...).
    pub fn kind(&self) -> &str {
        match self {
            San::Dns(_) => "dnsNames",
            San::Ip(_) => "ipAddresses",
            San::Email(_) => "emailAddresses",
            San::Uri(_) => "uris",
            San::OtherName { .. } => "otherNames",
            San::Other { kind, .. } => kind,
        }
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(v) => write!(f, "DNS:{v}"),
            San::Ip(v) => write!(f, "IP:{v}"),
            San::Email(v) => write!(f, "email:{v}"),
            San::Uri(v) => write!(f, "URI:{v}"),
            San::OtherName { oid, value_hex } => write!(f, "otherName:{oid};#{value_hex}"),
            San::Other { kind, detail } => write!(f, "{kind}:{detail}"),
        }
    }
}

/// An elliptic curve, by the name the Kubernetes docs and Go use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Curve {
    #[serde(rename = "P-224")]
    P224,
    #[serde(rename = "P-256")]
    P256,
    #[serde(rename = "P-384")]
    P384,
    #[serde(rename = "P-521")]
    P521,
    /// A curve the API server does not accept, by OID.
    Other(String),
}

impl fmt::Display for Curve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Curve::P224 => f.write_str("P-224"),
            Curve::P256 => f.write_str("P-256"),
            Curve::P384 => f.write_str("P-384"),
            Curve::P521 => f.write_str("P-521"),
            Curve::Other(oid) => write!(f, "curve {oid}"),
        }
    }
}

/// The requester's public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "algorithm")]
pub enum KeyFacts {
    #[serde(rename = "RSA")]
    Rsa {
        bits: usize,
    },
    #[serde(rename = "ECDSA")]
    Ecdsa {
        curve: Curve,
    },
    Ed25519,
    /// Any other key type, by its algorithm OID.
    Other {
        oid: String,
    },
}

impl KeyFacts {
    /// The algorithm name policies use: `RSA`, `ECDSA`, `Ed25519`, or the OID.
    pub fn algorithm(&self) -> &str {
        match self {
            KeyFacts::Rsa { .. } => "RSA",
            KeyFacts::Ecdsa { .. } => "ECDSA",
            KeyFacts::Ed25519 => "Ed25519",
            KeyFacts::Other { oid } => oid,
        }
    }
}

impl fmt::Display for KeyFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyFacts::Rsa { bits } => write!(f, "RSA {bits} bits"),
            KeyFacts::Ecdsa { curve } => write!(f, "ECDSA {curve}"),
            KeyFacts::Ed25519 => f.write_str("Ed25519"),
            KeyFacts::Other { oid } => write!(f, "key algorithm {oid}"),
        }
    }
}

/// The signature over the request and whether it verifies with the request's own key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureFacts {
    pub algorithm: SignatureAlgorithm,
    pub status: SignatureStatus,
}

/// An extension requested in the PKCS#10 extensionRequest attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestedExtension {
    pub oid: String,
    /// Name of a well-known extension (`subjectAltName`, ...), if known.
    pub name: Option<&'static str>,
    pub critical: bool,
}

/// Everything csr-warden knows about one PKCS#10 request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CsrFacts {
    /// Hex SHA-256 of the DER request: identifies the request in decision records.
    pub sha256: String,
    pub subject: Vec<SubjectAttribute>,
    pub key: KeyFacts,
    pub signature: SignatureFacts,
    pub sans: Vec<San>,
    pub extensions: Vec<RequestedExtension>,
    /// `Some(true)` when basicConstraints asks for a CA certificate.
    pub basic_constraints_ca: Option<bool>,
    /// keyUsage bits requested in the PKCS#10 (names as Kubernetes spells usages).
    pub key_usage: Vec<&'static str>,
    /// extKeyUsage requested in the PKCS#10: names for the known ones, dotted OIDs otherwise.
    pub ext_key_usage: Vec<String>,
}

impl CsrFacts {
    /// Values of one subject attribute, by dotted OID, in request order.
    pub fn subject_values<'a>(&'a self, oid: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.subject
            .iter()
            .filter(move |a| a.oid == oid)
            .map(|a| a.value.as_str())
    }

    /// One-line summary of the subject, RFC 4514 style but in request order (`CN=a, O=b`).
    pub fn subject_summary(&self) -> String {
        let parts: Vec<String> = self
            .subject
            .iter()
            .map(|a| format!("{}={}", a.label(), a.value))
            .collect();
        parts.join(", ")
    }
}

/// Parse a request given as PEM (`CERTIFICATE REQUEST`) or DER.
pub fn parse(input: &[u8], limits: &Limits) -> Result<CsrFacts, CsrError> {
    if input.len() > limits.max_request_bytes {
        return Err(CsrError::TooLarge {
            size: input.len(),
            limit: limits.max_request_bytes,
        });
    }
    let trimmed = input.trim_ascii();
    if trimmed.is_empty() {
        return Err(CsrError::Empty);
    }
    if trimmed.first() == Some(&0x30) {
        return parse_der(trimmed, limits);
    }
    let der = pem_to_der(trimmed)?;
    parse_der(&der, limits)
}

fn pem_to_der(pem: &[u8]) -> Result<Vec<u8>, CsrError> {
    let mut iter = CertificateSigningRequestDer::pem_slice_iter(pem);
    match iter.next() {
        Some(Ok(der)) => {
            if iter.next().is_some() {
                return Err(CsrError::Pem(
                    "more than one CERTIFICATE REQUEST block".to_string(),
                ));
            }
            Ok(der.as_ref().to_vec())
        }
        Some(Err(e)) => Err(CsrError::Pem(e.to_string())),
        None => Err(CsrError::Pem(
            "no CERTIFICATE REQUEST block found".to_string(),
        )),
    }
}

fn parse_der(der: &[u8], limits: &Limits) -> Result<CsrFacts, CsrError> {
    let (rest, req) =
        X509CertificationRequest::from_der(der).map_err(|e| CsrError::Der(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CsrError::Der(format!(
            "{} bytes of trailing data after the request",
            rest.len()
        )));
    }
    let info = &req.certification_request_info;

    let subject = subject_attributes(info, limits)?;
    let key = key_facts(&info.subject_pki);
    let signature = signature::check(&req, &key);

    let mut facts = CsrFacts {
        sha256: hex(&Sha256::digest(der)),
        subject,
        key,
        signature,
        sans: Vec::new(),
        extensions: Vec::new(),
        basic_constraints_ca: None,
        key_usage: Vec::new(),
        ext_key_usage: Vec::new(),
    };
    read_extensions(&req, limits, &mut facts)?;
    Ok(facts)
}

fn subject_attributes(
    info: &x509_parser::certification_request::X509CertificationRequestInfo<'_>,
    limits: &Limits,
) -> Result<Vec<SubjectAttribute>, CsrError> {
    let mut out = Vec::new();
    for (rdn_index, rdn) in info.subject.iter().enumerate() {
        for attr in rdn.iter() {
            if out.len() == limits.max_subject_attributes {
                let count = info.subject.iter().map(|r| r.iter().count()).sum();
                return Err(CsrError::TooManySubjectAttributes {
                    count,
                    limit: limits.max_subject_attributes,
                });
            }
            let oid = attr.attr_type().to_id_string();
            let (value, string_type) = strings::decode(attr.attr_value());
            out.push(SubjectAttribute {
                name: subject_attribute_name(&oid),
                oid,
                value,
                string_type,
                rdn: rdn_index,
            });
        }
    }
    Ok(out)
}

fn key_facts(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> KeyFacts {
    let alg = spki.algorithm.algorithm.to_id_string();
    match alg.as_str() {
        oids::RSA_ENCRYPTION => match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => KeyFacts::Rsa {
                bits: modulus_bits(rsa.modulus),
            },
            _ => KeyFacts::Other { oid: alg },
        },
        oids::EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string());
            let curve = match curve.as_deref() {
                Some(oids::P224) => Curve::P224,
                Some(oids::P256) => Curve::P256,
                Some(oids::P384) => Curve::P384,
                Some(oids::P521) => Curve::P521,
                Some(other) => Curve::Other(other.to_string()),
                None => Curve::Other("(no named curve)".to_string()),
            };
            KeyFacts::Ecdsa { curve }
        }
        oids::ED25519 => KeyFacts::Ed25519,
        _ => KeyFacts::Other { oid: alg },
    }
}

/// Size of an RSA modulus in bits, from its big-endian bytes (leading zero bytes ignored).
fn modulus_bits(modulus: &[u8]) -> usize {
    let start = modulus
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(modulus.len());
    let significant = &modulus[start..];
    match significant.first() {
        None => 0,
        Some(first) => significant.len() * 8 - first.leading_zeros() as usize,
    }
}

fn read_extensions(
    req: &X509CertificationRequest<'_>,
    limits: &Limits,
    facts: &mut CsrFacts,
) -> Result<(), CsrError> {
    let info = &req.certification_request_info;
    for attr in info.iter_attributes() {
        let ParsedCriAttribute::ExtensionRequest(ext_req) = attr.parsed_attribute() else {
            continue;
        };
        if facts.extensions.len() + ext_req.extensions.len() > limits.max_extensions {
            return Err(CsrError::TooManyExtensions {
                count: facts.extensions.len() + ext_req.extensions.len(),
                limit: limits.max_extensions,
            });
        }
        for ext in &ext_req.extensions {
            let oid = ext.oid.to_id_string();
            let name = oids::extension_name(&oid);
            let bad = |detail: String| CsrError::BadExtension {
                oid: oid.clone(),
                name: name.unwrap_or("unknown"),
                detail,
            };
            match ext.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    let count = facts.sans.len() + san.general_names.len();
                    if count > limits.max_sans {
                        return Err(CsrError::TooManySans {
                            count,
                            limit: limits.max_sans,
                        });
                    }
                    facts
                        .sans
                        .extend(san.general_names.iter().map(general_name_to_san));
                }
                ParsedExtension::BasicConstraints(bc) => facts.basic_constraints_ca = Some(bc.ca),
                ParsedExtension::KeyUsage(ku) => facts.key_usage = key_usage_names(ku.flags),
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    facts.ext_key_usage = ext_key_usage_names(eku)
                }
                ParsedExtension::ParseError { error } if name.is_some() => {
                    return Err(bad(error.to_string()));
                }
                _ => {}
            }
            facts.extensions.push(RequestedExtension {
                oid,
                name,
                critical: ext.critical,
            });
        }
    }
    Ok(())
}

fn general_name_to_san(name: &GeneralName<'_>) -> San {
    match name {
        GeneralName::DNSName(v) => San::Dns((*v).to_string()),
        GeneralName::RFC822Name(v) => San::Email((*v).to_string()),
        GeneralName::URI(v) => San::Uri((*v).to_string()),
        GeneralName::IPAddress(bytes) => match ip_from_bytes(bytes) {
            Some(ip) => San::Ip(ip),
            None => San::Other {
                kind: "ipAddress".to_string(),
                detail: format!("malformed, {} bytes: #{}", bytes.len(), hex(bytes)),
            },
        },
        GeneralName::OtherName(oid, value) => San::OtherName {
            oid: oid.to_id_string(),
            value_hex: hex(value),
        },
        GeneralName::DirectoryName(n) => San::Other {
            kind: "directoryName".to_string(),
            detail: n.to_string(),
        },
        GeneralName::RegisteredID(oid) => San::Other {
            kind: "registeredID".to_string(),
            detail: oid.to_id_string(),
        },
        GeneralName::X400Address(any) => San::Other {
            kind: "x400Address".to_string(),
            detail: format!("#{}", hex(any.data)),
        },
        GeneralName::EDIPartyName(any) => San::Other {
            kind: "ediPartyName".to_string(),
            detail: format!("#{}", hex(any.data)),
        },
        GeneralName::Invalid(tag, data) => San::Other {
            kind: "invalid".to_string(),
            detail: format!("tag {} #{}", tag.0, hex(data)),
        },
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// keyUsage bits (RFC 5280 order) as Kubernetes names the usages.
fn key_usage_names(flags: u16) -> Vec<&'static str> {
    const NAMES: [&str; 9] = [
        "digital signature",
        "content commitment",
        "key encipherment",
        "data encipherment",
        "key agreement",
        "cert sign",
        "crl sign",
        "encipher only",
        "decipher only",
    ];
    NAMES
        .iter()
        .enumerate()
        .filter(|(bit, _)| flags & (1 << bit) != 0)
        .map(|(_, name)| *name)
        .collect()
}

fn ext_key_usage_names(eku: &x509_parser::extensions::ExtendedKeyUsage<'_>) -> Vec<String> {
    let mut out: Vec<String> = [
        (eku.any, "any"),
        (eku.server_auth, "server auth"),
        (eku.client_auth, "client auth"),
        (eku.code_signing, "code signing"),
        (eku.email_protection, "email protection"),
        (eku.time_stamping, "timestamping"),
        (eku.ocsp_signing, "ocsp signing"),
    ]
    .iter()
    .filter(|(set, _)| *set)
    .map(|(_, name)| (*name).to_string())
    .collect();
    out.extend(eku.other.iter().map(|oid| oid.to_id_string()));
    out
}

/// Lowercase hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modulus_bits_ignores_leading_zeros() {
        assert_eq!(modulus_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(modulus_bits(&[0x01, 0xff]), 9);
        assert_eq!(modulus_bits(&[0x00]), 0);
        assert_eq!(modulus_bits(&[]), 0);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let limits = Limits::default();
        for input in [
            &b""[..],
            b"   \n",
            b"hello",
            b"\x30",
            b"\x30\x82\xff\xff",
            b"-----BEGIN CERTIFICATE REQUEST-----\n!!!\n-----END CERTIFICATE REQUEST-----\n",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            assert!(parse(input, &limits).is_err(), "{input:?}");
        }
    }

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let limits = Limits {
            max_request_bytes: 10,
            ..Limits::default()
        };
        let err = parse(&[0x30; 11], &limits).unwrap_err();
        assert_eq!(
            err.to_string(),
            "request is 11 bytes, more than the limit of 10 bytes"
        );
    }

    #[test]
    fn key_usage_bits_map_to_kubernetes_names() {
        // digitalSignature is bit 0, keyEncipherment bit 2, keyCertSign bit 5.
        assert_eq!(
            key_usage_names(0b10_0101),
            vec!["digital signature", "key encipherment", "cert sign"]
        );
    }
}
