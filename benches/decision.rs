//! Parse + verify one request per key type, and evaluate one request against 1, 100 and 1,000
//! policies: all for the request's signer (each one evaluated: only the last passes), and all for
//! other signers (the index skips them).
//!
//!     cargo bench --bench decision

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use csr_warden::csr::{self, Limits};
use csr_warden::policy::{PolicySet, Source, Verdict};
use csr_warden::request::{CsrSpec, Requester, ReviewInput};

fn request(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/examples/requests/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn parse_and_verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_verify");
    for name in [
        "rsa-2048.pem",
        "rsa-4096-sha512.pem",
        "rsa-pss-sha256.pem",
        "p224.pem",
        "p256.pem",
        "p384.pem",
        "p521.pem",
        "ed25519.pem",
    ] {
        let pem = request(name);
        let limits = Limits::default();
        group.bench_function(name.trim_end_matches(".pem"), |b| {
            b.iter(|| csr::parse(black_box(&pem), &limits).unwrap())
        });
    }
    group.finish();
}

fn policy(name: &str, signer: &str, cn: &str) -> String {
    format!(
        "apiVersion: csr-warden.io/v1alpha1\nkind: CSRPolicy\nmetadata:\n  name: {name}\nspec:\n  action: approve\n  match:\n    signerNames: [{signer}]\n    groups: [terraform]\n  subject:\n    commonName:\n      values: [{cn}]\n    organization:\n      values: [developers]\n  usages:\n    allowed: [client auth, digital signature]\n  key:\n    algorithms: [ECDSA]\n---\n"
    )
}

fn set(n: usize, same_signer: bool) -> PolicySet {
    let mut yaml = String::new();
    for i in 0..n {
        let last = i + 1 == n;
        let signer = if same_signer || last {
            "example.com/client".to_string()
        } else {
            format!("s{i}.example.com/client")
        };
        let cn = if last { "alice" } else { "someone-else" };
        yaml.push_str(&policy(&format!("p{i:05}"), &signer, cn));
    }
    PolicySet::from_sources(&[Source {
        path: "bench.yaml".into(),
        text: yaml,
    }])
    .unwrap()
}

fn evaluate(c: &mut Criterion) {
    let input = ReviewInput::new(
        &request("p256.pem"),
        &Limits::default(),
        CsrSpec {
            signer_name: "example.com/client".into(),
            usages: vec!["client auth".into()],
            expiration_seconds: None,
        },
        Requester {
            username: "terraform".into(),
            groups: vec!["terraform".into()],
            ..Requester::default()
        },
    );
    let mut group = c.benchmark_group("evaluate");
    for n in [1, 100, 1000] {
        for (label, same) in [("same_signer", true), ("other_signers", false)] {
            let policies = set(n, same);
            assert_eq!(policies.evaluate(&input).verdict(), Verdict::Approve);
            group.bench_function(format!("{label}/{n}"), |b| {
                b.iter(|| policies.evaluate(black_box(&input)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, parse_and_verify, evaluate);
criterion_main!(benches);
