//! CSR facts from requests made with OpenSSL (examples/requests/make.sh).

use std::net::IpAddr;

use csr_warden::csr::{
    self, CsrError, CsrFacts, Curve, KeyFacts, Limits, San, SignatureStatus, StringType,
};

fn read(name: &str) -> Vec<u8> {
    let path = format!("{}/examples/requests/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn facts(name: &str) -> CsrFacts {
    csr::parse(&read(name), &Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_accepted_algorithm_verifies() {
    let cases = [
        ("rsa-2048.pem", "SHA256-RSA", KeyFacts::Rsa { bits: 2048 }),
        ("rsa-1024.pem", "SHA256-RSA", KeyFacts::Rsa { bits: 1024 }),
        (
            "rsa-4096-sha512.pem",
            "SHA512-RSA",
            KeyFacts::Rsa { bits: 4096 },
        ),
        (
            "rsa-pss-sha256.pem",
            "SHA256-RSAPSS",
            KeyFacts::Rsa { bits: 2048 },
        ),
        (
            "rsa-pss-sha384.pem",
            "SHA384-RSAPSS",
            KeyFacts::Rsa { bits: 2048 },
        ),
        ("rsa-sha1.pem", "SHA1-RSA", KeyFacts::Rsa { bits: 2048 }),
        (
            "p224.pem",
            "ECDSA-SHA256",
            KeyFacts::Ecdsa { curve: Curve::P224 },
        ),
        (
            "p256.pem",
            "ECDSA-SHA256",
            KeyFacts::Ecdsa { curve: Curve::P256 },
        ),
        (
            "p384.pem",
            "ECDSA-SHA384",
            KeyFacts::Ecdsa { curve: Curve::P384 },
        ),
        (
            "p521.pem",
            "ECDSA-SHA512",
            KeyFacts::Ecdsa { curve: Curve::P521 },
        ),
        (
            "p521-sha256.pem",
            "ECDSA-SHA256",
            KeyFacts::Ecdsa { curve: Curve::P521 },
        ),
        (
            "ecdsa-sha1.pem",
            "ECDSA-SHA1",
            KeyFacts::Ecdsa { curve: Curve::P256 },
        ),
        ("ed25519.pem", "Ed25519", KeyFacts::Ed25519),
    ];
    for (file, alg, key) in cases {
        let f = facts(file);
        assert_eq!(f.signature.algorithm.to_string(), alg, "{file}");
        assert_eq!(f.signature.status, SignatureStatus::Valid, "{file}");
        assert_eq!(f.key, key, "{file}");
    }
}

#[test]
fn a_tampered_signature_is_invalid_not_unsupported() {
    let f = facts("tampered.pem");
    assert!(
        matches!(f.signature.status, SignatureStatus::Invalid(ref m) if m.contains("does not verify")),
        "{:?}",
        f.signature.status
    );
}

#[test]
fn algorithms_outside_the_api_servers_list_are_unsupported_with_their_oid() {
    // PSS with a 20-byte salt: Go accepts only salt == hash length.
    let f = facts("rsa-pss-salt-20.pem");
    assert!(
        matches!(f.signature.status, SignatureStatus::Unsupported(ref m) if m.contains("1.2.840.113549.1.1.10")),
        "{:?}",
        f.signature.status
    );
    // DSA: not accepted by the API server.
    let f = facts("dsa.pem");
    assert!(
        matches!(f.signature.status, SignatureStatus::Unsupported(ref m) if m.contains("2.16.840.1.101.3.4.3.2")),
        "{:?}",
        f.signature.status
    );
    // An RSA-PSS key (not rsaEncryption): reported by key OID.
    let f = facts("rsa-pss-key.pem");
    assert_eq!(
        f.key,
        KeyFacts::Other {
            oid: "1.2.840.113549.1.1.10".into()
        }
    );
    assert!(matches!(
        f.signature.status,
        SignatureStatus::Unsupported(_)
    ));
}

#[test]
fn subject_keeps_every_attribute_in_order() {
    let f = facts("duplicate-cn.pem");
    let labels: Vec<(&str, &str)> = f
        .subject
        .iter()
        .map(|a| (a.label(), a.value.as_str()))
        .collect();
    assert_eq!(
        labels,
        vec![("CN", "alice"), ("CN", "admin"), ("O", "developers")]
    );
    assert_eq!(f.subject_values("2.5.4.3").count(), 2);
}

#[test]
fn bmpstring_subject_is_decoded_and_reported() {
    let f = facts("bmpstring.pem");
    assert_eq!(f.subject_summary(), "CN=alice, O=developers");
    assert!(f.subject.iter().all(|a| a.string_type == StringType::Bmp));
}

#[test]
fn every_san_type_is_reported() {
    let f = facts("all-sans.pem");
    assert_eq!(f.sans[0], San::Dns("a.example.com".into()));
    assert_eq!(f.sans[1], San::Ip("192.0.2.1".parse::<IpAddr>().unwrap()));
    assert_eq!(f.sans[2], San::Ip("2001:db8::1".parse::<IpAddr>().unwrap()));
    assert_eq!(f.sans[3], San::Email("a@example.com".into()));
    assert_eq!(f.sans[4], San::Uri("https://a.example.com/x".into()));
    assert!(matches!(&f.sans[5], San::OtherName { oid, .. } if oid == "1.3.6.1.4.1.311.20.2.3"));
    assert!(
        matches!(&f.sans[6], San::Other { kind, detail } if kind == "registeredID" && detail == "1.2.3.4")
    );
    assert!(
        matches!(&f.sans[7], San::Other { kind, detail } if kind == "directoryName" && detail.contains("dir"))
    );
    assert_eq!(f.sans.len(), 8);
    assert_eq!(f.key_usage, vec!["digital signature", "key encipherment"]);
    assert_eq!(
        f.ext_key_usage,
        vec!["client auth".to_string(), "1.2.3.5".to_string()]
    );
    let custom = f
        .extensions
        .iter()
        .find(|e| e.oid == "1.2.3.6")
        .expect("custom extension");
    assert!(custom.critical);
    assert_eq!(custom.name, None);
}

#[test]
fn ca_request_is_visible() {
    assert_eq!(facts("ca-request.pem").basic_constraints_ca, Some(true));
    assert_eq!(facts("p256.pem").basic_constraints_ca, None);
}

#[test]
fn two_thousand_sans_exceed_the_limit() {
    let err = csr::parse(&read("many-sans.pem"), &Limits::default()).unwrap_err();
    assert_eq!(
        err,
        CsrError::TooManySans {
            count: 2000,
            limit: 256
        }
    );
    assert_eq!(
        err.to_string(),
        "request has 2000 subject alternative names, more than the limit of 256"
    );
    let roomy = Limits {
        max_sans: 2000,
        ..Limits::default()
    };
    assert_eq!(
        csr::parse(&read("many-sans.pem"), &roomy)
            .unwrap()
            .sans
            .len(),
        2000
    );
}

#[test]
fn garbage_is_an_error() {
    let err = csr::parse(&read("garbage.pem"), &Limits::default()).unwrap_err();
    assert!(matches!(err, CsrError::Pem(_)), "{err:?}");
}

#[test]
fn der_and_pem_give_the_same_facts() {
    let pem = read("p384.pem");
    let text = String::from_utf8(pem.clone()).unwrap();
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64_decode(&b64);
    assert_eq!(
        csr::parse(&der, &Limits::default()).unwrap(),
        facts("p384.pem")
    );
}

#[test]
fn truncated_requests_never_panic() {
    let pem = read("all-sans.pem");
    let text = String::from_utf8(pem).unwrap();
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64_decode(&b64);
    for cut in 0..der.len() {
        let _ = csr::parse(&der[..cut], &Limits::default());
    }
    for i in 0..der.len() {
        let mut bad = der.clone();
        bad[i] ^= 0xff;
        let _ = csr::parse(&bad, &Limits::default());
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}
