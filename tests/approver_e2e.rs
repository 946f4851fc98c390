//! End to end over real sockets: kube-standin (API server, signer), csr-warden's webhook and
//! approver, and clients acting as Terraform, an admin and nodes.

mod support;

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::ObjectMeta;
use kube_standin::{Config, Fault, FaultFilter, Identity, StandIn};
use serde_json::json;

const CLIENT: &str = "kubernetes.io/kube-apiserver-client";

fn webhook(ca_pem: &str, failure_policy: &str) -> ValidatingWebhookConfiguration {
    support::deploy_webhook(ca_pem, failure_policy, 3)
}

/// A request as the Terraform provider makes it: no expirationSeconds, usages given.
fn terraform_csr(name: &str, file: &str, expiration: Option<i32>) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(std::fs::read(format!("examples/requests/{file}")).unwrap()),
            signer_name: CLIENT.into(),
            usages: Some(vec![
                "client auth".into(),
                "digital signature".into(),
                "key encipherment".into(),
            ]),
            expiration_seconds: expiration,
            ..Default::default()
        },
        status: None,
    }
}

/// csr-warden with its approver pointed at `standin` as the csr-warden service account.
async fn warden(
    standin: &StandIn,
    configure: impl FnOnce(&mut csr_warden::server::Settings),
) -> support::Harness {
    support::start_with_standin(standin, configure).await
}

async fn wait_for(
    api: &Api<CertificateSigningRequest>,
    name: &str,
    within: Duration,
    what: impl Fn(&CertificateSigningRequest) -> bool,
) -> CertificateSigningRequest {
    let started = Instant::now();
    loop {
        if let Ok(c) = api.get(name).await
            && what(&c)
        {
            return c;
        }
        assert!(
            started.elapsed() < within,
            "{name} not in the expected state after {within:?}: {:?}",
            api.get(name).await.map(|c| c.status)
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn conditions(c: &CertificateSigningRequest) -> Vec<(String, String, String)> {
    c.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        c.type_.clone(),
                        c.reason.clone().unwrap_or_default(),
                        c.message.clone().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn issued(c: &CertificateSigningRequest) -> bool {
    c.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty())
}

fn decided(c: &CertificateSigningRequest) -> bool {
    conditions(c)
        .iter()
        .any(|(t, _, _)| t == "Approved" || t == "Denied")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_without_auto_approve_gets_its_certificate_and_bad_requests_are_refused() {
    let standin = StandIn::start("127.0.0.1:0".parse().unwrap(), Config::default())
        .await
        .unwrap();
    let h = warden(&standin, |_| {}).await;
    standin.set_service("csr-warden", "csr-warden", h.addr());
    standin.set_webhooks(vec![webhook(&h.ca_pem(), "Fail")]);
    let tf: Api<CertificateSigningRequest> = Api::all(standin.client("terraform").await);

    let mut times = Vec::new();
    for i in 0..5 {
        let name = format!("tf-{i}");
        let started = Instant::now();
        tf.create(
            &PostParams::default(),
            &terraform_csr(&name, "rsa-2048.pem", None),
        )
        .await
        .unwrap();
        let done = wait_for(&tf, &name, Duration::from_secs(20), |c| {
            decided(c) && issued(c)
        })
        .await;
        times.push(started.elapsed());
        let conds = conditions(&done);
        assert_eq!(conds.len(), 1, "{conds:?}");
        assert_eq!(conds[0].0, "Approved");
        assert_eq!(conds[0].1, "PolicyApproved");
        assert_eq!(
            conds[0].2,
            "csr-warden: approved by policy \"terraform-client\""
        );
        let pem = done.status.unwrap().certificate.unwrap().0;
        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
        assert_eq!(
            pem.parse_x509().unwrap().subject().to_string(),
            "CN=alice, O=developers"
        );
        tf.delete(&name, &DeleteParams::default()).await.unwrap();
    }
    eprintln!("create to certificate: {times:?}");

    // Refused at create, with the reasons, by the webhook.
    let e = match tf
        .create(
            &PostParams::default(),
            &terraform_csr("long", "ed25519.pem", Some(90 * 24 * 3600)),
        )
        .await
    {
        Err(kube::Error::Api(s)) => s,
        other => panic!(
            "expected a refusal, got {:?}",
            other.map(|c| c.metadata.name)
        ),
    };
    assert_eq!(e.code, 403);
    assert!(
        e.message
            .contains("expirationSeconds 7776000 is more than the maximum of 2592000"),
        "{}",
        e.message
    );

    // Decision records: one per write, source approver.
    let approver_records: Vec<_> = h
        .records()
        .into_iter()
        .filter(|r| r.source == csr_warden::record::RecordSource::Approver)
        .collect();
    assert_eq!(approver_records.len(), 5);
    assert!(
        approver_records
            .iter()
            .all(|r| r.written == Some(true) && r.requester.username == "terraform")
    );
    assert_eq!(
        h.metric("csr_warden_approver_decisions_total{policy=\"terraform-client\",decision=\"approve\",signer=\"kubernetes.io/kube-apiserver-client\"}").await,
        Some(5.0)
    );
    h.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_webhook_down_the_approver_denies_with_the_same_reasons() {
    let standin = StandIn::start("127.0.0.1:0".parse().unwrap(), Config::default())
        .await
        .unwrap();
    let h = warden(&standin, |_| {}).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    standin.set_service("csr-warden", "csr-warden", closed);
    standin.set_webhooks(vec![webhook(&h.ca_pem(), "Ignore")]);
    let tf: Api<CertificateSigningRequest> = Api::all(standin.client("terraform").await);
    tf.create(
        &PostParams::default(),
        &terraform_csr("long", "ed25519.pem", Some(90 * 24 * 3600)),
    )
    .await
    .unwrap();
    let denied = wait_for(&tf, "long", Duration::from_secs(20), decided).await;
    let conds = conditions(&denied);
    assert_eq!(conds.len(), 1);
    assert_eq!(
        (conds[0].0.as_str(), conds[0].1.as_str()),
        ("Denied", "PolicyDenied")
    );
    assert!(conds[0].2.starts_with("csr-warden: denied by policy \"terraform-client\": terraform-client: expiration: expirationSeconds 7776000 is more than the maximum"), "{}", conds[0].2);

    // An admin approving it now is refused by the API server (Approved and Denied exclude each
    // other); csr-warden never approved it.
    let admin: Api<CertificateSigningRequest> = Api::all(standin.client("admin").await);
    let approve = Patch::Merge(
        json!({"status": {"conditions": [{"type": "Denied", "status": "True", "reason": "PolicyDenied", "message": "x"}, {"type": "Approved", "status": "True", "reason": "Manual", "message": "m"}]}}),
    );
    assert!(
        admin
            .patch_approval("long", &PatchParams::default(), &approve)
            .await
            .is_err()
    );
    assert!(!issued(&tf.get("long").await.unwrap()));

    // An Event explains the decision.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(standin.client("admin").await, "default");
    let list = events.list(&ListParams::default()).await.unwrap();
    assert!(
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("PolicyDenied")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("long")),
        "no PolicyDenied event: {:?}",
        list.items.iter().map(|e| &e.reason).collect::<Vec<_>>()
    );
    h.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_created_while_csr_warden_was_down_are_decided_when_it_starts() {
    let standin = StandIn::start("127.0.0.1:0".parse().unwrap(), Config::default())
        .await
        .unwrap();
    let tf: Api<CertificateSigningRequest> = Api::all(standin.client("terraform").await);
    let node: Api<CertificateSigningRequest> = Api::all(standin.client("node-worker-1").await);
    for i in 0..3 {
        tf.create(
            &PostParams::default(),
            &terraform_csr(&format!("early-{i}"), "rsa-2048.pem", None),
        )
        .await
        .unwrap();
    }
    // Out of scope: a signer no policy governs. Never touched.
    let mut other = terraform_csr("other-signer", "rsa-2048.pem", None);
    other.spec.signer_name = "example.com/ungoverned".into();
    node.create(&PostParams::default(), &other).await.unwrap();
    // Already decided by someone else: never touched.
    tf.create(
        &PostParams::default(),
        &terraform_csr("pre-denied", "rsa-2048.pem", None),
    )
    .await
    .unwrap();
    let admin: Api<CertificateSigningRequest> = Api::all(standin.client("admin").await);
    admin
        .patch_approval("pre-denied", &PatchParams::default(), &Patch::Merge(json!({"status": {"conditions": [{"type": "Denied", "status": "True", "reason": "Manual", "message": "by hand"}]}})))
        .await
        .unwrap();

    let h = warden(&standin, |_| {}).await;
    for i in 0..3 {
        let c = wait_for(&tf, &format!("early-{i}"), Duration::from_secs(20), decided).await;
        assert_eq!(conditions(&c)[0].0, "Approved");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(conditions(&node.get("other-signer").await.unwrap()).is_empty());
    assert_eq!(
        conditions(&admin.get("pre-denied").await.unwrap()),
        vec![("Denied".into(), "Manual".into(), "by hand".into())]
    );
    h.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_permission_is_named_and_makes_the_replica_unready() {
    let standin = StandIn::start("127.0.0.1:0".parse().unwrap(), Config::default())
        .await
        .unwrap();
    // csr-warden's rules without `approve` on kube-apiserver-client.
    let (mut rules, namespaced) = kube_standin::csr_warden_deploy_rbac();
    for r in &mut rules {
        if r.verbs == ["approve"] {
            r.resource_names = Some(vec!["example.com/spiffe".into()]);
        }
    }
    standin.set_identity(Identity::csr_warden(rules, namespaced));
    let h = warden(&standin, |_| {}).await;
    let tf: Api<CertificateSigningRequest> = Api::all(standin.client("terraform").await);
    tf.create(
        &PostParams::default(),
        &terraform_csr("needs-approve", "rsa-2048.pem", None),
    )
    .await
    .unwrap();
    h.wait_for_metric("csr_warden_approver_errors_total{kind=\"forbidden\"}", 1.0)
        .await;
    let mut conn = h
        .client()
        .connect(h.addr(), support::Proto::Http1)
        .await
        .unwrap();
    let ready = conn.get("/readyz").await.unwrap();
    assert_eq!(ready.status, 503);
    let text = String::from_utf8_lossy(&ready.body).to_string();
    assert!(
        text.contains("missing permission: verb \"approve\" on resource \"signers\" in API group \"certificates.k8s.io\" with resourceName \"kubernetes.io/kube-apiserver-client\""),
        "{text}"
    );
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(standin.client("admin").await, "default");
    let list = events.list(&ListParams::default()).await.unwrap();
    assert!(
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("MissingPermission"))
    );
    assert!(conditions(&tf.get("needs-approve").await.unwrap()).is_empty());
    h.wait_for_metric("csr_warden_approver_pending_requests", 1.0)
        .await;
    assert!(
        h.metric("csr_warden_approver_oldest_pending_age_seconds")
            .await
            .is_some()
    );
    h.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_decide_each_request_once_and_the_survivor_takes_over() {
    let standin = StandIn::start("127.0.0.1:0".parse().unwrap(), Config::default())
        .await
        .unwrap();
    let a = warden(&standin, |s| s.identity = Some("replica-a".into())).await;
    let b = warden(&standin, |s| s.identity = Some("replica-b".into())).await;
    let tf: Api<CertificateSigningRequest> = Api::all(standin.client("terraform").await);
    for i in 0..10 {
        tf.create(
            &PostParams::default(),
            &terraform_csr(&format!("r-{i}"), "rsa-2048.pem", None),
        )
        .await
        .unwrap();
    }
    for i in 0..10 {
        let c = wait_for(&tf, &format!("r-{i}"), Duration::from_secs(30), decided).await;
        assert_eq!(
            conditions(&c).len(),
            1,
            "decided twice: {:?}",
            conditions(&c)
        );
    }
    let written = |h: &support::Harness| {
        h.records()
            .iter()
            .filter(|r| r.written == Some(true))
            .count()
    };
    assert_eq!(written(&a) + written(&b), 10);
    let a_leads = a.leads();
    let (leader, survivor) = if a_leads { (a, b) } else { (b, a) };
    leader.running.shutdown().await;
    // The stopped leader released the lease: the other replica takes it within a renew period.
    survivor.wait_until_leading(Duration::from_secs(10)).await;
    assert!(
        survivor.leads(),
        "the surviving replica did not take the lease"
    );
    let started = Instant::now();
    tf.create(
        &PostParams::default(),
        &terraform_csr("after-failover", "rsa-2048.pem", None),
    )
    .await
    .unwrap();
    wait_for(&tf, "after-failover", Duration::from_secs(20), decided).await;
    eprintln!("failover decided within {:?}", started.elapsed());
    assert!(
        survivor
            .records()
            .iter()
            .any(|r| r.name == "after-failover" && r.written == Some(true))
    );
    survivor.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_and_a_racing_writer_still_end_with_each_request_decided_once() {
    let standin = StandIn::start("127.0.0.1:0".parse().unwrap(), Config::default())
        .await
        .unwrap();
    let h = warden(&standin, |_| {}).await;
    let tf: Api<CertificateSigningRequest> = Api::all(standin.client("terraform").await);
    let admin: Api<CertificateSigningRequest> = Api::all(standin.client("admin").await);
    standin.faults().fail_next(
        3,
        Fault::ServerError,
        FaultFilter {
            verb: Some("update".into()),
            subresource: Some("approval".into()),
        },
    );
    standin.faults().fail_next(
        2,
        Fault::TooManyRequests,
        FaultFilter {
            verb: Some("update".into()),
            subresource: None,
        },
    );
    let names: Vec<String> = (0..20).map(|i| format!("f-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        tf.create(
            &PostParams::default(),
            &terraform_csr(name, "rsa-2048.pem", None),
        )
        .await
        .unwrap();
        if i == 5 {
            standin.drop_watches();
        }
        if i == 10 {
            standin.expire_resource_versions();
            standin.drop_watches();
        }
    }
    // Another writer labels requests while the approver decides them: resourceVersions move.
    let racers = names.iter().map(|n| {
        let admin = admin.clone();
        async move {
            let patch = Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}}));
            let _ = admin.patch(n, &PatchParams::default(), &patch).await;
        }
    });
    join_all(racers).await;
    let mut ungoverned = terraform_csr("untouched", "rsa-2048.pem", None);
    ungoverned.spec.signer_name = "example.com/ungoverned".into();
    tf.create(&PostParams::default(), &ungoverned)
        .await
        .unwrap();
    for name in &names {
        let c = wait_for(&tf, name, Duration::from_secs(60), decided).await;
        assert_eq!(conditions(&c).len(), 1, "{name}: {:?}", conditions(&c));
    }
    assert!(conditions(&tf.get("untouched").await.unwrap()).is_empty());
    h.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_approval_of_a_denied_request_is_refused_except_for_break_glass() {
    let standin = StandIn::start("127.0.0.1:0".parse().unwrap(), Config::default())
        .await
        .unwrap();
    standin.set_identity(Identity::new(
        "oncall",
        "oncall",
        &["sre-oncall"],
        kube_standin::identity::approver_rules(&[CLIENT]),
    ));
    // Dry run: the approver decides and logs but does not deny first, so a person gets to try.
    let h = warden(&standin, |s| {
        s.dry_run = true;
        s.break_glass_groups = vec!["sre-oncall".into()];
    })
    .await;
    standin.set_service("csr-warden", "csr-warden", h.addr());
    // Stored while the webhook is not configured yet.
    let tf: Api<CertificateSigningRequest> = Api::all(standin.client("terraform").await);
    tf.create(
        &PostParams::default(),
        &terraform_csr("long", "ed25519.pem", Some(90 * 24 * 3600)),
    )
    .await
    .unwrap();
    standin.set_webhooks(vec![webhook(&h.ca_pem(), "Fail")]);
    let approve = Patch::Merge(
        json!({"status": {"conditions": [{"type": "Approved", "status": "True", "reason": "KubectlApprove", "message": "by hand"}]}}),
    );

    let admin: Api<CertificateSigningRequest> = Api::all(standin.client("admin").await);
    let e = match admin
        .patch_approval("long", &PatchParams::default(), &approve)
        .await
    {
        Err(kube::Error::Api(s)) => s,
        other => panic!(
            "the admin's approval went through: {:?}",
            other.map(|c| conditions(&c))
        ),
    };
    assert_eq!(e.code, 403);
    assert!(e.message.contains("approval of CertificateSigningRequest \"long\" by \"kubernetes-admin\" refused by csr-warden policy \"terraform-client\""), "{}", e.message);

    let oncall: Api<CertificateSigningRequest> = Api::all(standin.client("oncall").await);
    oncall
        .patch_approval("long", &PatchParams::default(), &approve)
        .await
        .unwrap();
    let approved = wait_for(&tf, "long", Duration::from_secs(20), issued).await;
    assert_eq!(conditions(&approved)[0].1, "KubectlApprove");
    assert!(
        h.records()
            .iter()
            .any(|r| r.name == "long" && r.approver.as_ref().is_some_and(|a| a.break_glass))
    );
    // csr-warden itself never approved it: its only records for it are dry-run denials.
    let own: Vec<_> = h
        .records()
        .into_iter()
        .filter(|r| r.name == "long" && r.source == csr_warden::record::RecordSource::Approver)
        .collect();
    assert!(!own.is_empty());
    assert!(
        own.iter()
            .all(|r| r.decision == csr_warden::policy::Verdict::Deny
                && r.written == Some(false)
                && r.dry_run == Some(true))
    );
    h.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approver_runs_alone_without_the_webhook() {
    let standin = StandIn::start("127.0.0.1:0".parse().unwrap(), Config::default())
        .await
        .unwrap();
    let h = warden(&standin, |s| s.webhook = false).await;
    assert!(h.running.webhook_addr.is_none());
    let tf: Api<CertificateSigningRequest> = Api::all(standin.client("terraform").await);
    tf.create(
        &PostParams::default(),
        &terraform_csr("alone", "rsa-2048.pem", None),
    )
    .await
    .unwrap();
    wait_for(&tf, "alone", Duration::from_secs(20), |c| {
        decided(c) && issued(c)
    })
    .await;
    // Health and readiness are on the metrics port.
    let tcp = tokio::net::TcpStream::connect(h.running.metrics_addr)
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake::<
        _,
        http_body_util::Full<bytes::Bytes>,
    >(hyper_util::rt::TokioIo::new(tcp))
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/readyz")
        .header("host", "localhost")
        .body(Default::default())
        .unwrap();
    assert_eq!(send.send_request(req).await.unwrap().status(), 200);
    h.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_without_releasing_is_replaced_within_the_lease_duration() {
    let standin = StandIn::start("127.0.0.1:0".parse().unwrap(), Config::default())
        .await
        .unwrap();
    // Two replicas of the same service account, each with its own token.
    let (rules, namespaced) = kube_standin::csr_warden_deploy_rbac();
    let mut b = Identity::csr_warden(rules, namespaced);
    b.context = "csr-warden-b".into();
    b.token = "token-csr-warden-b".into();
    standin.set_identity(b);
    let a = support::start_with_standin_as(&standin, "csr-warden", |s| {
        s.identity = Some("replica-a".into())
    })
    .await;
    // Let replica a take the lease first.
    a.wait_until_leading(Duration::from_secs(5)).await;
    assert!(a.leads());
    let b = support::start_with_standin_as(&standin, "csr-warden-b", |s| {
        s.identity = Some("replica-b".into())
    })
    .await;

    // Replica a loses every permission (a network partition, a dead node): it cannot renew
    // or release the lease, nor write a decision.
    standin.set_identity(Identity::csr_warden(vec![], vec![]));
    let cut = Instant::now();
    b.wait_until_leading(Duration::from_secs(15)).await;
    let took = cut.elapsed();
    assert!(b.leads(), "replica b never took the lease");
    eprintln!("replica b took over {took:?} after replica a was cut off (lease 2 s)");

    let tf: Api<CertificateSigningRequest> = Api::all(standin.client("terraform").await);
    tf.create(
        &PostParams::default(),
        &terraform_csr("after-cut", "rsa-2048.pem", None),
    )
    .await
    .unwrap();
    let c = wait_for(&tf, "after-cut", Duration::from_secs(20), decided).await;
    assert_eq!(conditions(&c).len(), 1);
    assert!(
        b.records()
            .iter()
            .any(|r| r.name == "after-cut" && r.written == Some(true))
    );
    assert!(
        !a.records()
            .iter()
            .any(|r| r.name == "after-cut" && r.written == Some(true))
    );
    a.running.shutdown().await;
    b.running.shutdown().await;
}
