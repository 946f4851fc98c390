//! `examples/kubectl/`: every manifest, created as the identity its README names, ends as the
//! README says (webhook and approver from `deploy/` settings, on the stand-in).

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, PostParams};
use kube_standin::{Config, StandIn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_ends_as_its_readme_says() {
    let readme = std::fs::read_to_string("examples/kubectl/README.md").unwrap();
    let rows: Vec<Vec<String>> = readme
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains(".yaml"))
        .map(|l| {
            l.split('|')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    let files = std::fs::read_dir("examples/kubectl").unwrap().filter(|e| {
        e.as_ref()
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "yaml")
    });
    assert_eq!(
        rows.len(),
        files.count(),
        "every manifest has a row, every row a manifest"
    );

    let standin = StandIn::start("127.0.0.1:0".parse().unwrap(), Config::default())
        .await
        .unwrap();
    let h = support::start_with_standin(&standin, |_| {}).await;
    standin.set_service("csr-warden", "csr-warden", h.addr());
    standin.set_webhooks(vec![support::deploy_webhook(&h.ca_pem(), "Fail", 3)]);

    for row in &rows {
        let (file, context, outcome) = (&row[0], &row[1], &row[2]);
        let text = std::fs::read_to_string(format!("examples/kubectl/{file}")).unwrap();
        let csr: CertificateSigningRequest = serde_saphyr::from_str(&text).unwrap();
        let name = csr.metadata.name.clone().unwrap();
        let api: Api<CertificateSigningRequest> = Api::all(standin.client(context).await);
        let created = api.create(&PostParams::default(), &csr).await;
        match outcome.as_str() {
            "refused" => {
                let e = match created {
                    Err(kube::Error::Api(s)) => s,
                    other => panic!(
                        "{file}: expected a refusal, got {:?}",
                        other.map(|c| c.status)
                    ),
                };
                assert_eq!(e.code, 403, "{file}: {}", e.message);
                assert!(
                    e.message.contains("denied by csr-warden policy"),
                    "{file}: {}",
                    e.message
                );
            }
            "approved" => {
                created.unwrap_or_else(|e| panic!("{file}: {e}"));
                let started = Instant::now();
                loop {
                    let c = api.get(&name).await.unwrap();
                    let types: Vec<String> = c
                        .status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|c| c.type_)
                        .collect();
                    if types.iter().any(|t| t == "Approved") {
                        break;
                    }
                    assert!(!types.iter().any(|t| t == "Denied"), "{file}: denied");
                    assert!(
                        started.elapsed() < Duration::from_secs(20),
                        "{file}: never approved"
                    );
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
            other => panic!("{file}: unknown outcome {other}"),
        }
    }
    h.running.shutdown().await;
}
