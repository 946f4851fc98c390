//! Self-signature verification: proof that the requester holds the private key.
//!
//! Covers what Go's crypto/x509 (and so the Kubernetes API server) accepts for requests: RSA
//! PKCS#1 v1.5 and RSA-PSS with SHA-256/384/512 (PSS with MGF1 of the same hash and a salt as long
//! as the hash, as Go requires), ECDSA on P-224/P-256/P-384/P-521, Ed25519, and SHA-1 variants,
//! which are verified and reported as SHA-1 so policy can refuse them. Everything else is
//! [`SignatureStatus::Unsupported`] with its OID, never "invalid".
//!
//! All algorithms are verified with RustCrypto crates, one code path for every algorithm.

use std::fmt;

use rsa::signature::hazmat::PrehashVerifier;
use rsa::{BoxedUint, Pkcs1v15Sign, PublicKey as RsaPublicKey, pss::Pss};
use serde::{Serialize, Serializer};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::public_key::PublicKey;
use x509_parser::signature_algorithm::RsaSsaPssParams;

use super::{KeyFacts, SignatureFacts, oids};

/// Verify an ECDSA signature (DER `Ecdsa-Sig-Value`) over a prehash with a SEC1 point.
/// The prehash may be shorter than the curve order (P-521 with SHA-256); it is zero-padded as
/// FIPS 186 specifies.
macro_rules! ecdsa_verify {
    ($curve:ident, $point:expr, $prehash:expr, $sig:expr) => {{
        use $curve::ecdsa::{DerSignature, VerifyingKey};
        match VerifyingKey::from_sec1_bytes($point) {
            Err(_) => Err("public key is not a valid point on the curve".to_string()),
            Ok(vk) => match DerSignature::from_bytes($sig) {
                Err(_) => Err("signature is not a DER ECDSA signature".to_string()),
                Ok(sig) => vk
                    .verify_prehash($prehash, &sig)
                    .map_err(|_| "signature does not verify with the request's key".to_string()),
            },
        }
    }};
}

/// Smallest and largest RSA modulus verified. Go refuses keys under 1024 bits.
const RSA_BITS: std::ops::RangeInclusive<usize> = 1024..=16384;

/// A hash function used in a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn from_oid(oid: &str) -> Option<Hash> {
        match oid {
            oids::SHA1 => Some(Hash::Sha1),
            oids::SHA256 => Some(Hash::Sha256),
            oids::SHA384 => Some(Hash::Sha384),
            oids::SHA512 => Some(Hash::Sha512),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Hash::Sha1 => "SHA1",
            Hash::Sha256 => "SHA256",
            Hash::Sha384 => "SHA384",
            Hash::Sha512 => "SHA512",
        }
    }

    fn output_len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha1 => Sha1::digest(data).to_vec(),
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha384 => Sha384::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

/// The signature algorithm of a request, named as Go names it (`SHA256-RSA`, `ECDSA-SHA384`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    RsaPkcs1(Hash),
    RsaPss(Hash),
    Ecdsa(Hash),
    Ed25519,
    /// Not accepted by the Kubernetes API server: the algorithm OID and why.
    Unsupported {
        oid: String,
        detail: String,
    },
}

impl SignatureAlgorithm {
    /// The hash the signature uses, where there is one to name.
    pub fn hash(&self) -> Option<Hash> {
        match self {
            SignatureAlgorithm::RsaPkcs1(h)
            | SignatureAlgorithm::RsaPss(h)
            | SignatureAlgorithm::Ecdsa(h) => Some(*h),
            SignatureAlgorithm::Ed25519 | SignatureAlgorithm::Unsupported { .. } => None,
        }
    }
}

impl fmt::Display for SignatureAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureAlgorithm::RsaPkcs1(h) => write!(f, "{}-RSA", h.name()),
            SignatureAlgorithm::RsaPss(h) => write!(f, "{}-RSAPSS", h.name()),
            SignatureAlgorithm::Ecdsa(h) => write!(f, "ECDSA-{}", h.name()),
            SignatureAlgorithm::Ed25519 => f.write_str("Ed25519"),
            SignatureAlgorithm::Unsupported { oid, .. } => write!(f, "unsupported ({oid})"),
        }
    }
}

impl Serialize for SignatureAlgorithm {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Whether the self-signature verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", content = "detail", rename_all = "camelCase")]
pub enum SignatureStatus {
    Valid,
    /// The algorithm is supported but the signature does not verify with the request's key.
    Invalid(String),
    /// The algorithm (or key) is not one csr-warden can verify; never treated as a bad signature.
    Unsupported(String),
}

/// Verify the request's signature over its CertificationRequestInfo with its own public key.
pub(super) fn check(req: &X509CertificationRequest<'_>, key: &KeyFacts) -> SignatureFacts {
    let algorithm = algorithm(req);
    let status = verify(req, key, &algorithm);
    SignatureFacts { algorithm, status }
}

fn algorithm(req: &X509CertificationRequest<'_>) -> SignatureAlgorithm {
    let alg = &req.signature_algorithm;
    let oid = alg.algorithm.to_id_string();
    let unsupported = |detail: &str| SignatureAlgorithm::Unsupported {
        oid: oid.clone(),
        detail: detail.to_string(),
    };
    match oid.as_str() {
        oids::SHA1_WITH_RSA => SignatureAlgorithm::RsaPkcs1(Hash::Sha1),
        oids::SHA256_WITH_RSA => SignatureAlgorithm::RsaPkcs1(Hash::Sha256),
        oids::SHA384_WITH_RSA => SignatureAlgorithm::RsaPkcs1(Hash::Sha384),
        oids::SHA512_WITH_RSA => SignatureAlgorithm::RsaPkcs1(Hash::Sha512),
        oids::ECDSA_WITH_SHA1 => SignatureAlgorithm::Ecdsa(Hash::Sha1),
        oids::ECDSA_WITH_SHA256 => SignatureAlgorithm::Ecdsa(Hash::Sha256),
        oids::ECDSA_WITH_SHA384 => SignatureAlgorithm::Ecdsa(Hash::Sha384),
        oids::ECDSA_WITH_SHA512 => SignatureAlgorithm::Ecdsa(Hash::Sha512),
        oids::ED25519 => SignatureAlgorithm::Ed25519,
        oids::RSASSA_PSS => {
            let Some(params) = alg.parameters.as_ref() else {
                return unsupported("RSASSA-PSS without parameters");
            };
            let Ok(params) = RsaSsaPssParams::try_from(params) else {
                return unsupported("RSASSA-PSS with malformed parameters");
            };
            pss_hash(&params)
                .map(SignatureAlgorithm::RsaPss)
                .unwrap_or_else(|| {
                    unsupported(
                        "RSASSA-PSS parameters other than SHA-256/384/512 with MGF1 of the same \
                         hash, a salt as long as the hash and trailer field 1",
                    )
                })
        }
        _ => unsupported("not an algorithm the Kubernetes API server accepts"),
    }
}

/// The PSS parameter sets Go accepts: hash SHA-256/384/512, MGF1 with the same hash, salt length
/// equal to the hash length, trailer field 1.
fn pss_hash(params: &RsaSsaPssParams<'_>) -> Option<Hash> {
    let hash = Hash::from_oid(&params.hash_algorithm_oid().to_id_string())?;
    if hash == Hash::Sha1 {
        return None;
    }
    let mgf = params.mask_gen_algorithm().ok()?;
    let mgf_ok = mgf.mgf.to_id_string() == oids::MGF1
        && Hash::from_oid(&mgf.hash.to_id_string()) == Some(hash);
    let salt_ok = usize::try_from(params.salt_length()).ok() == Some(hash.output_len());
    (mgf_ok && salt_ok && params.trailer_field() == 1).then_some(hash)
}

fn verify(
    req: &X509CertificationRequest<'_>,
    key: &KeyFacts,
    algorithm: &SignatureAlgorithm,
) -> SignatureStatus {
    if let SignatureAlgorithm::Unsupported { oid, detail } = algorithm {
        return SignatureStatus::Unsupported(format!("signature algorithm {oid}: {detail}"));
    }
    if req.signature_value.unused_bits != 0 {
        return SignatureStatus::Invalid("signature BIT STRING has unused bits".to_string());
    }
    let tbs = req.certification_request_info.raw;
    let sig = req.signature_value.data.as_ref();
    let spki = &req.certification_request_info.subject_pki;
    let key_bytes = spki.subject_public_key.data.as_ref();

    let result = match (algorithm, key) {
        (SignatureAlgorithm::RsaPkcs1(hash), KeyFacts::Rsa { .. }) => {
            rsa_key(spki).and_then(|k| verify_rsa_pkcs1(&k, *hash, tbs, sig))
        }
        (SignatureAlgorithm::RsaPss(hash), KeyFacts::Rsa { .. }) => {
            rsa_key(spki).and_then(|k| verify_rsa_pss(&k, *hash, tbs, sig))
        }
        (SignatureAlgorithm::Ecdsa(hash), KeyFacts::Ecdsa { curve }) => {
            let prehash = hash.digest(tbs);
            match curve {
                super::Curve::P224 => ecdsa_verify!(p224, key_bytes, &prehash, sig),
                super::Curve::P256 => ecdsa_verify!(p256, key_bytes, &prehash, sig),
                super::Curve::P384 => ecdsa_verify!(p384, key_bytes, &prehash, sig),
                super::Curve::P521 => ecdsa_verify!(p521, key_bytes, &prehash, sig),
                super::Curve::Other(oid) => {
                    return SignatureStatus::Unsupported(format!(
                        "ECDSA on {oid} is not accepted by the Kubernetes API server"
                    ));
                }
            }
        }
        (SignatureAlgorithm::Ed25519, KeyFacts::Ed25519) => verify_ed25519(key_bytes, tbs, sig),
        (_, KeyFacts::Other { oid }) => {
            return SignatureStatus::Unsupported(format!(
                "public key algorithm {oid} is not accepted by the Kubernetes API server"
            ));
        }
        (alg, key) => Err(format!(
            "signature algorithm {alg} does not match the request's {} key",
            key.algorithm()
        )),
    };
    match result {
        Ok(()) => SignatureStatus::Valid,
        Err(e) => SignatureStatus::Invalid(e),
    }
}

fn rsa_key(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Result<RsaPublicKey, String> {
    let Ok(PublicKey::RSA(parsed)) = spki.parsed() else {
        return Err("RSA public key does not parse".to_string());
    };
    let n = BoxedUint::from_be_slice_vartime(parsed.modulus);
    let e = BoxedUint::from_be_slice_vartime(parsed.exponent);
    RsaPublicKey::new_with_size_limits(n, e, RSA_BITS).map_err(|err| match err {
        rsa::Error::ModulusTooSmall => format!(
            "RSA key of {} bits is too small to verify (minimum {})",
            super::modulus_bits(parsed.modulus),
            RSA_BITS.start()
        ),
        rsa::Error::ModulusTooLarge => format!(
            "RSA key of {} bits is too large to verify (maximum {})",
            super::modulus_bits(parsed.modulus),
            RSA_BITS.end()
        ),
        other => format!("RSA public key is invalid: {other}"),
    })
}

fn verify_rsa_pkcs1(key: &RsaPublicKey, hash: Hash, tbs: &[u8], sig: &[u8]) -> Result<(), String> {
    let scheme = match hash {
        Hash::Sha1 => Pkcs1v15Sign::new::<Sha1>(),
        Hash::Sha256 => Pkcs1v15Sign::new::<Sha256>(),
        Hash::Sha384 => Pkcs1v15Sign::new::<Sha384>(),
        Hash::Sha512 => Pkcs1v15Sign::new::<Sha512>(),
    };
    key.verify(scheme, &hash.digest(tbs), sig)
        .map_err(|_| "signature does not verify with the request's key".to_string())
}

fn verify_rsa_pss(key: &RsaPublicKey, hash: Hash, tbs: &[u8], sig: &[u8]) -> Result<(), String> {
    let hashed = hash.digest(tbs);
    let salt = hash.output_len();
    let result = match hash {
        Hash::Sha1 => key.verify(Pss::<Sha1>::new_with_salt(salt), &hashed, sig),
        Hash::Sha256 => key.verify(Pss::<Sha256>::new_with_salt(salt), &hashed, sig),
        Hash::Sha384 => key.verify(Pss::<Sha384>::new_with_salt(salt), &hashed, sig),
        Hash::Sha512 => key.verify(Pss::<Sha512>::new_with_salt(salt), &hashed, sig),
    };
    result.map_err(|_| "signature does not verify with the request's key".to_string())
}

fn verify_ed25519(key: &[u8], tbs: &[u8], sig: &[u8]) -> Result<(), String> {
    use ed25519_dalek::Verifier;
    let key: &[u8; 32] = key
        .try_into()
        .map_err(|_| format!("Ed25519 public key is {} bytes, not 32", key.len()))?;
    let vk = ed25519_dalek::VerifyingKey::from_bytes(key)
        .map_err(|_| "Ed25519 public key is not a valid point".to_string())?;
    let sig = ed25519_dalek::Signature::from_slice(sig)
        .map_err(|_| format!("Ed25519 signature is {} bytes, not 64", sig.len()))?;
    vk.verify(tbs, &sig)
        .map_err(|_| "signature does not verify with the request's key".to_string())
}
