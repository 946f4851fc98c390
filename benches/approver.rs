//! The approver against kube-standin, in one process over loopback HTTPS (the stand-in, the
//! webhook and the approver share the machine's cores):
//! - the Terraform flow: create, then poll GET every 10 ms until Approved and a certificate
//!   appear; median and p90 of 20;
//! - a backlog: N pending requests (default 5,000) created while csr-warden is down, then the
//!   time from its start until every one is decided.
//!
//!   cargo bench --bench approver
//!   BACKLOG=20000 cargo bench --bench approver

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use kube::api::{Api, ListParams, PostParams};
use kube::core::ObjectMeta;
use kube_standin::{Config, StandIn};

fn csr(name: &str) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(std::fs::read("examples/requests/rsa-2048.pem").unwrap()),
            signer_name: "kubernetes.io/kube-apiserver-client".into(),
            usages: Some(vec!["client auth".into(), "digital signature".into()]),
            ..Default::default()
        },
        status: None,
    }
}

fn decided(c: &CertificateSigningRequest) -> bool {
    c.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Approved" || c.type_ == "Denied")
        })
}

fn issued(c: &CertificateSigningRequest) -> bool {
    c.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some()
}

async fn warden(standin: &StandIn) -> support::Harness {
    support::start_with_standin(standin, |_| {}).await
}

async fn terraform_flow() {
    let standin = StandIn::start("127.0.0.1:0".parse().unwrap(), Config::default())
        .await
        .unwrap();
    let h = warden(&standin).await;
    let tf: Api<CertificateSigningRequest> = Api::all(standin.client("terraform").await);
    // Let the approver's first list and the lease settle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut times = Vec::new();
    for i in 0..20 {
        let name = format!("tf-{i}");
        let started = Instant::now();
        tf.create(&PostParams::default(), &csr(&name))
            .await
            .unwrap();
        loop {
            let c = tf.get(&name).await.unwrap();
            if decided(&c) && issued(&c) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "terraform flow, create to certificate (20 requests, 10 ms polling): median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        times[9].as_secs_f64() * 1000.0,
        times[17].as_secs_f64() * 1000.0,
        times[19].as_secs_f64() * 1000.0
    );
    h.running.shutdown().await;
    standin.shutdown().await;
}

async fn backlog(n: usize) {
    // The signer off: this measures deciding, not issuing.
    let standin = StandIn::start(
        "127.0.0.1:0".parse().unwrap(),
        Config {
            signer: false,
            ..Config::default()
        },
    )
    .await
    .unwrap();
    let tf: Api<CertificateSigningRequest> = Api::all(standin.client("terraform").await);
    let created = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(64) {
        let creates = chunk.iter().map(|i| {
            let tf = tf.clone();
            async move {
                tf.create(&PostParams::default(), &csr(&format!("b-{i}")))
                    .await
                    .unwrap()
            }
        });
        futures_util::future::join_all(creates).await;
    }
    println!(
        "backlog: {n} pending requests created in {:.1} s",
        created.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let h = warden(&standin).await;
    loop {
        let list = tf.list(&ListParams::default()).await.unwrap();
        let done = list.items.iter().filter(|c| decided(c)).count();
        if done == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "backlog: {n} pending requests decided in {secs:.1} s after csr-warden started ({:.0} decisions/s)",
        n as f64 / secs
    );
    h.running.shutdown().await;
    standin.shutdown().await;
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n: usize = std::env::var("BACKLOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        terraform_flow().await;
        backlog(n).await;
    });
}
