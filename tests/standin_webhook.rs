//! The stand-in calls csr-warden's webhook as the API server does: service + caBundle over TLS,
//! rules for CREATE and the approval subresource, matchConditions, failurePolicy, timeoutSeconds.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::ObjectMeta;
use kube_standin::{Config, StandIn};
use serde_json::json;

const WEBHOOK: &str = "csr-warden.csr-warden.io";

/// The webhook configuration deploy/ ships, pointing at the test CA.
fn configuration(
    ca_pem: &str,
    failure_policy: &str,
    timeout: i32,
) -> ValidatingWebhookConfiguration {
    support::deploy_webhook(ca_pem, failure_policy, timeout)
}

fn csr(
    name: &str,
    file: &str,
    signer: &str,
    usages: &[&str],
    expiration: Option<i32>,
) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(std::fs::read(format!("examples/requests/{file}")).unwrap()),
            signer_name: signer.into(),
            usages: Some(usages.iter().map(|u| u.to_string()).collect()),
            expiration_seconds: expiration,
            ..Default::default()
        },
        status: None,
    }
}

const CLIENT: &str = "kubernetes.io/kube-apiserver-client";

fn alice() -> CertificateSigningRequest {
    csr("alice", "rsa-2048.pem", CLIENT, &["client auth"], None)
}

/// 90 days: over terraform-client's 30-day limit.
fn long_lived() -> CertificateSigningRequest {
    csr(
        "long-lived",
        "ed25519.pem",
        CLIENT,
        &["client auth"],
        Some(90 * 24 * 3600),
    )
}

fn api_error<T>(r: Result<T, kube::Error>) -> kube::core::Status {
    match r {
        Err(kube::Error::Api(e)) => *e,
        Ok(_) => panic!("expected an API error, the call succeeded"),
        Err(e) => panic!("expected an API error, got {e}"),
    }
}

async fn setup(failure_policy: &str) -> (support::Harness, StandIn) {
    let h = support::start(|_, _| {}).await;
    let standin = StandIn::start("127.0.0.1:0".parse().unwrap(), Config::default())
        .await
        .unwrap();
    standin.set_service("csr-warden", "csr-warden", h.addr());
    standin.set_webhooks(vec![configuration(&h.ca_pem(), failure_policy, 3)]);
    (h, standin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_is_refused_with_the_reasons_and_allowed_when_policy_approves() {
    let (h, s) = setup("Fail").await;
    let tf: Api<CertificateSigningRequest> = Api::all(s.client("terraform").await);
    tf.create(&PostParams::default(), &alice()).await.unwrap();
    let e = api_error(tf.create(&PostParams::default(), &long_lived()).await);
    assert_eq!(e.code, 403);
    let expected = format!(
        "admission webhook \"{WEBHOOK}\" denied the request: CertificateSigningRequest \"long-lived\" denied by csr-warden policy \"terraform-client\":\n  - terraform-client: expiration:"
    );
    assert!(e.message.starts_with(&expected), "{}", e.message);
    assert_eq!(
        api_error(tf.get("long-lived").await).code,
        404,
        "a refused request was stored"
    );

    // The webhook saw what the API server records: the caller as requester.
    let records = h.records();
    assert_eq!(records.len(), 2);
    assert_eq!(records[1].requester.username, "terraform");
    assert!(
        records[1]
            .requester
            .groups
            .contains(&"system:authenticated".to_string())
    );

    // A signer outside matchConditions never reaches the webhook.
    tf.create(
        &PostParams::default(),
        &csr(
            "other",
            "ed25519.pem",
            "example.com/ungoverned",
            &["client auth"],
            Some(90 * 24 * 3600),
        ),
    )
    .await
    .unwrap();
    assert_eq!(h.records().len(), 2);
    h.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_of_a_request_policy_denies_is_refused() {
    let (h, s) = setup("Fail").await;
    // Stored before the webhook was configured, so it exists to be approved.
    s.set_webhooks(vec![]);
    let tf: Api<CertificateSigningRequest> = Api::all(s.client("terraform").await);
    tf.create(&PostParams::default(), &long_lived())
        .await
        .unwrap();
    tf.create(&PostParams::default(), &alice()).await.unwrap();
    s.set_webhooks(vec![configuration(&h.ca_pem(), "Fail", 3)]);

    let approve = Patch::Merge(
        json!({"status": {"conditions": [{"type": "Approved", "status": "True", "reason": "TerraformAutoApprove", "message": "approved by terraform"}]}}),
    );
    // Terraform's auto_approve on its own request: refused with the reasons.
    let e = api_error(
        tf.patch_approval("long-lived", &PatchParams::default(), &approve)
            .await,
    );
    assert_eq!(e.code, 403);
    assert!(
        e.message.contains(
            "approval of CertificateSigningRequest \"long-lived\" by \"terraform\" refused"
        ),
        "{}",
        e.message
    );
    // Denying is always allowed; approving what policy approves too.
    let deny = Patch::Merge(
        json!({"status": {"conditions": [{"type": "Denied", "status": "True", "reason": "Manual", "message": "no"}]}}),
    );
    tf.patch_approval("long-lived", &PatchParams::default(), &deny)
        .await
        .unwrap();
    tf.patch_approval("alice", &PatchParams::default(), &approve)
        .await
        .unwrap();
    h.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_policy_and_timeout_when_the_webhook_cannot_answer() {
    let standin = StandIn::start("127.0.0.1:0".parse().unwrap(), Config::default())
        .await
        .unwrap();
    let tf: Api<CertificateSigningRequest> = Api::all(standin.client("terraform").await);
    let ca = csr_warden::server::devcerts::DevCa::generate("unused").unwrap();

    // Nothing listens: Ignore lets the request through, Fail refuses it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    standin.set_service("csr-warden", "csr-warden", closed);
    standin.set_webhooks(vec![configuration(ca.cert_pem(), "Ignore", 3)]);
    tf.create(&PostParams::default(), &long_lived())
        .await
        .unwrap();
    standin.set_webhooks(vec![configuration(ca.cert_pem(), "Fail", 3)]);
    let e = api_error(tf.create(&PostParams::default(), &alice()).await);
    assert_eq!(e.code, 500);
    assert!(
        e.message.starts_with(&format!(
            "Internal error occurred: failed calling webhook \"{WEBHOOK}\""
        )),
        "{}",
        e.message
    );

    // Accepts and never answers: cut off after timeoutSeconds.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            held.push(c);
        }
    });
    standin.set_service("csr-warden", "csr-warden", silent_addr);
    standin.set_webhooks(vec![configuration(ca.cert_pem(), "Fail", 1)]);
    let started = Instant::now();
    let e = api_error(tf.create(&PostParams::default(), &alice()).await);
    let waited = started.elapsed();
    assert!(e.message.contains("deadline exceeded"), "{}", e.message);
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(10),
        "{waited:?}"
    );

    // A caBundle that does not sign the webhook's certificate: the TLS handshake fails.
    let h = support::start(|_, _| {}).await;
    standin.set_service("csr-warden", "csr-warden", h.addr());
    standin.set_webhooks(vec![configuration(ca.cert_pem(), "Fail", 3)]);
    let e = api_error(tf.create(&PostParams::default(), &alice()).await);
    assert!(e.message.contains("tls"), "{}", e.message);
    assert!(h.records().is_empty());
    h.running.shutdown().await;
}
