//! Object identifiers csr-warden names, as dotted strings.

pub const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
pub const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
pub const ED25519: &str = "1.3.101.112";

pub const P224: &str = "1.3.132.0.33";
pub const P256: &str = "1.2.840.10045.3.1.7";
pub const P384: &str = "1.3.132.0.34";
pub const P521: &str = "1.3.132.0.35";

pub const SHA1_WITH_RSA: &str = "1.2.840.113549.1.1.5";
pub const SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";
pub const SHA384_WITH_RSA: &str = "1.2.840.113549.1.1.12";
pub const SHA512_WITH_RSA: &str = "1.2.840.113549.1.1.13";
pub const RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
pub const MGF1: &str = "1.2.840.113549.1.1.8";
pub const ECDSA_WITH_SHA1: &str = "1.2.840.10045.4.1";
pub const ECDSA_WITH_SHA256: &str = "1.2.840.10045.4.3.2";
pub const ECDSA_WITH_SHA384: &str = "1.2.840.10045.4.3.3";
pub const ECDSA_WITH_SHA512: &str = "1.2.840.10045.4.3.4";

pub const SHA1: &str = "1.3.14.3.2.26";
pub const SHA256: &str = "2.16.840.1.101.3.4.2.1";
pub const SHA384: &str = "2.16.840.1.101.3.4.2.2";
pub const SHA512: &str = "2.16.840.1.101.3.4.2.3";

/// Subject attributes policies name, with their short names.
const SUBJECT_ATTRIBUTES: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.5", "SERIALNUMBER"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.17", "POSTALCODE"),
    ("1.2.840.113549.1.9.1", "emailAddress"),
    ("0.9.2342.19200300.100.1.1", "UID"),
    ("0.9.2342.19200300.100.1.25", "DC"),
];

/// The short name of a subject attribute (`CN`, `O`, ...), if it has one.
pub fn subject_attribute_name(oid: &str) -> Option<&'static str> {
    SUBJECT_ATTRIBUTES
        .iter()
        .find(|(o, _)| *o == oid)
        .map(|(_, name)| *name)
}

const EXTENSIONS: &[(&str, &str)] = &[
    ("2.5.29.17", "subjectAltName"),
    ("2.5.29.19", "basicConstraints"),
    ("2.5.29.15", "keyUsage"),
    ("2.5.29.37", "extKeyUsage"),
    ("2.5.29.14", "subjectKeyIdentifier"),
    ("2.5.29.30", "nameConstraints"),
    ("2.5.29.32", "certificatePolicies"),
    ("1.3.6.1.5.5.7.1.1", "authorityInfoAccess"),
    ("1.3.6.1.5.5.7.1.24", "tlsFeature"),
];

/// The name of a well-known extension, if it has one.
pub fn extension_name(oid: &str) -> Option<&'static str> {
    EXTENSIONS
        .iter()
        .find(|(o, _)| *o == oid)
        .map(|(_, name)| *name)
}
