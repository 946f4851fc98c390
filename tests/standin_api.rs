//! The Kubernetes API stand-in's rules, each through kube-rs's real client over HTTPS.

use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestSpec,
    CertificateSigningRequestStatus,
};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::ObjectMeta;
use kube::runtime::WatchStreamExt;
use kube_standin::{Config, Fault, FaultFilter, Identity, StandIn};
use serde_json::json;

async fn standin() -> StandIn {
    StandIn::start("127.0.0.1:0".parse().unwrap(), Config::default())
        .await
        .unwrap()
}

async fn csrs(s: &StandIn, context: &str) -> Api<CertificateSigningRequest> {
    Api::all(s.client(context).await)
}

fn pem(file: &str) -> Vec<u8> {
    std::fs::read(format!("examples/requests/{file}")).unwrap()
}

fn csr(name: &str, file: &str, signer: &str, usages: &[&str]) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(pem(file)),
            signer_name: signer.into(),
            usages: Some(usages.iter().map(|u| u.to_string()).collect()),
            // What a client claims here is replaced with what the server knows.
            username: Some("someone-else".into()),
            groups: Some(vec!["system:masters".into()]),
            ..Default::default()
        },
        status: None,
    }
}

const CLIENT: &str = "kubernetes.io/kube-apiserver-client";

fn client_csr(name: &str) -> CertificateSigningRequest {
    csr(
        name,
        "rsa-2048.pem",
        CLIENT,
        &["client auth", "digital signature"],
    )
}

/// The API error of a failed call.
fn api_error<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> kube::core::Status {
    match r {
        Err(kube::Error::Api(e)) => *e,
        Ok(_) => panic!("expected an API error, the call succeeded"),
        Err(e) => panic!("expected an API error, got {e}"),
    }
}

fn condition(kind: &str, status: &str) -> CertificateSigningRequestCondition {
    CertificateSigningRequestCondition {
        type_: kind.into(),
        status: status.into(),
        reason: Some("Test".into()),
        message: Some("set by a test".into()),
        ..Default::default()
    }
}

/// PUT the approval subresource with `conditions` on `base` (its resourceVersion included).
async fn put_approval(
    api: &Api<CertificateSigningRequest>,
    base: &CertificateSigningRequest,
    conditions: Vec<CertificateSigningRequestCondition>,
) -> Result<CertificateSigningRequest, kube::Error> {
    let mut body = base.clone();
    body.status = Some(CertificateSigningRequestStatus {
        conditions: Some(conditions),
        certificate: None,
    });
    let name = base.metadata.name.clone().unwrap();
    api.replace_subresource("approval", &name, &PostParams::default(), &body)
        .await
}

fn types(c: &CertificateSigningRequest) -> Vec<String> {
    c.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| cs.iter().map(|c| c.type_.clone()).collect())
        .unwrap_or_default()
}

async fn wait_for(
    api: &Api<CertificateSigningRequest>,
    name: &str,
    what: impl Fn(&CertificateSigningRequest) -> bool,
) -> CertificateSigningRequest {
    for _ in 0..100 {
        let c = api.get(name).await.unwrap();
        if what(&c) {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{name} never reached the expected state: {:?}",
        api.get(name).await.unwrap().status
    );
}

#[tokio::test]
async fn create_records_the_caller_as_requester_and_clears_status() {
    let s = standin().await;
    let api = csrs(&s, "terraform").await;
    let mut request = client_csr("tf-1");
    request.status = Some(CertificateSigningRequestStatus {
        conditions: Some(vec![condition("Approved", "True")]),
        certificate: None,
    });
    let created = api.create(&PostParams::default(), &request).await.unwrap();
    assert_eq!(created.spec.username.as_deref(), Some("terraform"));
    assert_eq!(created.spec.uid.as_deref(), Some("uid-terraform"));
    assert_eq!(
        created.spec.groups.clone().unwrap(),
        vec!["terraform", "system:authenticated"]
    );
    assert!(types(&created).is_empty(), "status was not cleared");
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.resource_version.is_some());
    assert!(created.metadata.creation_timestamp.is_some());

    let mut generated = client_csr("");
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("tf-".into());
    let g = api
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    let name = g.metadata.name.unwrap();
    assert!(name.starts_with("tf-") && name.len() == 8, "{name}");

    let again = api_error(
        api.create(&PostParams::default(), &client_csr("tf-1"))
            .await,
    );
    assert_eq!((again.code, again.reason.as_str()), (409, "AlreadyExists"));

    // dryRun: validated, not stored.
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    api.create(&dry, &client_csr("tf-dry")).await.unwrap();
    assert_eq!(api_error(api.get("tf-dry").await).code, 404);
}

#[tokio::test]
async fn create_validation_follows_the_api_server() {
    let s = standin().await;
    let api = csrs(&s, "terraform").await;
    let invalid = |e: &kube::core::Status, expected: &str| {
        assert_eq!(e.code, 422, "{}", e.message);
        assert_eq!(e.reason, "Invalid");
        assert!(
            e.message.contains(expected),
            "expected {expected:?} in {:?}",
            e.message
        );
    };
    let e = api_error(
        api.create(
            &PostParams::default(),
            &csr("garbage", "garbage.pem", CLIENT, &["client auth"]),
        )
        .await,
    );
    invalid(&e, "spec.request: Invalid value");
    invalid(&e, "PEM block type must be CERTIFICATE REQUEST");
    let e = api_error(
        api.create(
            &PostParams::default(),
            &csr("tampered", "tampered.pem", CLIENT, &["client auth"]),
        )
        .await,
    );
    invalid(&e, "signature verification failed");
    let e = api_error(
        api.create(
            &PostParams::default(),
            &csr("nosigner", "rsa-2048.pem", "", &["client auth"]),
        )
        .await,
    );
    invalid(&e, "spec.signerName: Required value");
    let e = api_error(
        api.create(
            &PostParams::default(),
            &csr(
                "badsigner",
                "rsa-2048.pem",
                "not-qualified",
                &["client auth"],
            ),
        )
        .await,
    );
    invalid(&e, "must be a fully qualified domain and path");
    let e = api_error(
        api.create(
            &PostParams::default(),
            &csr(
                "legacy",
                "rsa-2048.pem",
                "kubernetes.io/legacy-unknown",
                &["client auth"],
            ),
        )
        .await,
    );
    invalid(&e, "legacy signerName is not allowed");
    let e = api_error(
        api.create(
            &PostParams::default(),
            &csr("nousage", "rsa-2048.pem", CLIENT, &[]),
        )
        .await,
    );
    invalid(&e, "spec.usages: Required value");
    let e = api_error(
        api.create(
            &PostParams::default(),
            &csr(
                "badusage",
                "rsa-2048.pem",
                CLIENT,
                &["client auth", "flying"],
            ),
        )
        .await,
    );
    invalid(&e, "spec.usages[1]: Unsupported value: \"flying\"");
    let e = api_error(
        api.create(
            &PostParams::default(),
            &csr(
                "dupusage",
                "rsa-2048.pem",
                CLIENT,
                &["client auth", "client auth"],
            ),
        )
        .await,
    );
    invalid(&e, "spec.usages[1]: Duplicate value: \"client auth\"");
    let mut short = client_csr("short");
    short.spec.expiration_seconds = Some(599);
    let e = api_error(api.create(&PostParams::default(), &short).await);
    invalid(&e, "spec.expirationSeconds: Invalid value: 599");
    short.spec.expiration_seconds = Some(600);
    api.create(&PostParams::default(), &short).await.unwrap();
    // Several errors at once are listed together, as Go's aggregate does.
    let e = api_error(
        api.create(
            &PostParams::default(),
            &csr("two", "garbage.pem", "", &["client auth"]),
        )
        .await,
    );
    assert!(
        e.message.contains("[spec.request") && e.message.contains(", spec.signerName"),
        "{}",
        e.message
    );

    // The CertificateSubjectRestriction admission plugin.
    let e = api_error(
        api.create(
            &PostParams::default(),
            &csr("masters", "admin-group.pem", CLIENT, &["client auth"]),
        )
        .await,
    );
    assert_eq!(e.code, 403);
    assert!(e.message.ends_with("use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"), "{}", e.message);
    // ...only for that signer.
    api.create(
        &PostParams::default(),
        &csr(
            "masters-other",
            "admin-group.pem",
            "example.com/other",
            &["client auth"],
        ),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn authentication_and_rbac() {
    let s = standin().await;
    // No token, or a wrong one: 401.
    let mut config = s.kube_config("terraform").await.unwrap();
    config.auth_info.token = Some("wrong".to_string().into());
    let stranger: Api<CertificateSigningRequest> =
        Api::all(kube::Client::try_from(config).unwrap());
    assert_eq!(
        api_error(stranger.list(&ListParams::default()).await).code,
        401
    );

    s.set_identity(Identity::new("nobody", "nobody", &["nobodies"], vec![]));
    let nobody = csrs(&s, "nobody").await;
    let e = api_error(nobody.list(&ListParams::default()).await);
    assert_eq!(e.code, 403);
    assert_eq!(
        e.message,
        "certificatesigningrequests.certificates.k8s.io is forbidden: User \"nobody\" cannot list resource \"certificatesigningrequests\" in API group \"certificates.k8s.io\" at the cluster scope"
    );

    let tf = csrs(&s, "terraform").await;
    let created = tf
        .create(&PostParams::default(), &client_csr("tf-1"))
        .await
        .unwrap();
    // A node may create and read CSRs but not approve them.
    let node = csrs(&s, "node-worker-1").await;
    let e = api_error(put_approval(&node, &created, vec![condition("Approved", "True")]).await);
    assert_eq!(e.code, 403);
    assert!(
        e.message
            .contains("cannot update resource \"certificatesigningrequests/approval\""),
        "{}",
        e.message
    );

    // update on approval without approve on the signer: refused by the approval plugin.
    s.set_identity(Identity::new(
        "half-approver",
        "half-approver",
        &[],
        kube_standin::identity::approver_rules(&["example.com/other"]),
    ));
    let half = csrs(&s, "half-approver").await;
    let e = api_error(put_approval(&half, &created, vec![condition("Approved", "True")]).await);
    assert_eq!(e.code, 403);
    assert!(e.message.ends_with("user not permitted to approve requests with signerName \"kubernetes.io/kube-apiserver-client\""), "{}", e.message);
    // Denying needs the same permission.
    let e = api_error(put_approval(&half, &created, vec![condition("Denied", "True")]).await);
    assert_eq!(e.code, 403);

    // `<domain>/*` grants every signer of the domain.
    s.set_identity(Identity::new(
        "domain-approver",
        "domain-approver",
        &[],
        kube_standin::identity::approver_rules(&["kubernetes.io/*"]),
    ));
    let domain = csrs(&s, "domain-approver").await;
    put_approval(&domain, &created, vec![condition("Approved", "True")])
        .await
        .unwrap();

    // csr-warden's service account: approve only for the signers it was granted.
    let kubelet_client = tf
        .create(
            &PostParams::default(),
            &csr(
                "kc",
                "kubelet-worker-1.pem",
                "kubernetes.io/kube-apiserver-client-kubelet",
                &["client auth", "digital signature"],
            ),
        )
        .await
        .unwrap();
    let warden = csrs(&s, "csr-warden").await;
    let e = api_error(
        put_approval(
            &warden,
            &kubelet_client,
            vec![condition("Approved", "True")],
        )
        .await,
    );
    assert!(
        e.message.contains("user not permitted to approve"),
        "{}",
        e.message
    );
    // ...and it cannot create CSRs or write status.
    assert_eq!(
        api_error(
            warden
                .create(&PostParams::default(), &client_csr("w"))
                .await
        )
        .code,
        403
    );
}

#[tokio::test]
async fn approval_rules() {
    let s = standin().await;
    let admin = csrs(&s, "admin").await;
    let created = admin
        .create(&PostParams::default(), &client_csr("c1"))
        .await
        .unwrap();
    let invalid = |e: kube::core::Status, expected: &str| {
        assert_eq!(e.code, 422, "{}", e.message);
        assert!(
            e.message.contains(expected),
            "expected {expected:?} in {:?}",
            e.message
        );
    };
    invalid(
        api_error(put_approval(&admin, &created, vec![condition("Approved", "False")]).await),
        "status.conditions[0].status: Unsupported value: \"False\"",
    );
    invalid(
        api_error(
            put_approval(
                &admin,
                &created,
                vec![condition("Approved", "True"), condition("Denied", "True")],
            )
            .await,
        ),
        "Approved and Denied conditions are mutually exclusive",
    );
    invalid(
        api_error(
            put_approval(
                &admin,
                &created,
                vec![condition("Approved", "True"), condition("Approved", "True")],
            )
            .await,
        ),
        "status.conditions[1].type: Duplicate value: \"Approved\"",
    );
    let approved = put_approval(&admin, &created, vec![condition("Approved", "True")])
        .await
        .unwrap();
    let cond = &approved
        .status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap()[0];
    assert!(
        cond.last_update_time.is_some() && cond.last_transition_time.is_some(),
        "times not filled"
    );
    assert_ne!(
        approved.metadata.resource_version,
        created.metadata.resource_version
    );
    // A stale resourceVersion is a conflict.
    let e = api_error(put_approval(&admin, &created, vec![condition("Denied", "True")]).await);
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    // Conditions cannot be removed.
    let current = admin.get("c1").await.unwrap();
    invalid(
        api_error(put_approval(&admin, &current, vec![]).await),
        "updates may not remove a condition of type \"Approved\"",
    );

    // Merge patch and JSON patch on the approval subresource.
    admin
        .create(&PostParams::default(), &client_csr("c2"))
        .await
        .unwrap();
    let merge = json!({"status": {"conditions": [{"type": "Denied", "status": "True", "reason": "Merge", "message": "m"}]}});
    let denied = admin
        .patch_approval("c2", &PatchParams::default(), &Patch::Merge(&merge))
        .await
        .unwrap();
    assert_eq!(types(&denied), vec!["Denied"]);
    admin
        .create(&PostParams::default(), &client_csr("c3"))
        .await
        .unwrap();
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "add", "path": "/status/conditions", "value": [{"type": "Approved", "status": "True", "reason": "JsonPatch", "message": "j"}]}
    ]))
    .unwrap();
    let approved = admin
        .patch_approval("c3", &PatchParams::default(), &Patch::<()>::Json(ops))
        .await
        .unwrap();
    assert_eq!(types(&approved), vec!["Approved"]);
    // The approval subresource takes only conditions: spec is left alone.
    let mut sneaky = admin.get("c3").await.unwrap();
    sneaky.spec.usages = Some(vec!["server auth".into()]);
    let after = put_approval(&admin, &sneaky, vec![condition("Approved", "True")])
        .await
        .unwrap();
    assert_eq!(
        after.spec.usages.unwrap(),
        vec!["client auth", "digital signature"]
    );
}

#[tokio::test]
async fn status_and_the_built_in_signers() {
    let s = standin().await;
    let admin = csrs(&s, "admin").await;
    let tf = csrs(&s, "terraform").await;

    let mut good = client_csr("good");
    good.spec.expiration_seconds = Some(3600);
    tf.create(&PostParams::default(), &good).await.unwrap();
    tf.patch_approval("good", &PatchParams::default(), &Patch::Merge(json!({"status": {"conditions": [{"type": "Approved", "status": "True", "reason": "TerraformAutoApprove", "message": "m"}]}})))
        .await
        .unwrap();
    let issued = wait_for(&tf, "good", |c| {
        c.status
            .as_ref()
            .and_then(|s| s.certificate.as_ref())
            .is_some()
    })
    .await;
    let pem_bytes = issued.status.unwrap().certificate.unwrap().0;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem_bytes).unwrap();
    let cert = pem.parse_x509().unwrap();
    assert_eq!(cert.subject().to_string(), "CN=alice, O=developers");
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert_eq!(
        lifetime,
        3600 + 300,
        "expirationSeconds plus the 5 minute backdate"
    );
    assert!(!cert.is_ca());

    // server auth on the client signer: approved, then refused by the signer.
    tf.create(
        &PostParams::default(),
        &csr(
            "server-auth",
            "rsa-2048.pem",
            CLIENT,
            &["client auth", "server auth"],
        ),
    )
    .await
    .unwrap();
    tf.patch_approval("server-auth", &PatchParams::default(), &Patch::Merge(json!({"status": {"conditions": [{"type": "Approved", "status": "True", "reason": "R", "message": "m"}]}})))
        .await
        .unwrap();
    let failed = wait_for(&tf, "server-auth", |c| {
        types(c).contains(&"Failed".to_string())
    })
    .await;
    let f = failed
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .unwrap();
    assert_eq!(f.reason.as_deref(), Some("SignerValidationFailure"));
    assert!(f.message.unwrap().contains("server auth"));

    // A kubelet serving certificate, from the node itself.
    let node = csrs(&s, "node-worker-1").await;
    node.create(
        &PostParams::default(),
        &csr(
            "serving",
            "kubelet-worker-1.pem",
            "kubernetes.io/kubelet-serving",
            &["digital signature", "server auth"],
        ),
    )
    .await
    .unwrap();
    admin
        .patch_approval("serving", &PatchParams::default(), &Patch::Merge(json!({"status": {"conditions": [{"type": "Approved", "status": "True", "reason": "R", "message": "m"}]}})))
        .await
        .unwrap();
    wait_for(&node, "serving", |c| {
        c.status
            .as_ref()
            .and_then(|s| s.certificate.as_ref())
            .is_some()
    })
    .await;

    // Writing a certificate needs `sign` on the signer; a pending request cannot get one.
    admin
        .create(
            &PostParams::default(),
            &csr(
                "pending",
                "rsa-2048.pem",
                "example.com/other",
                &["client auth"],
            ),
        )
        .await
        .unwrap();
    let status = json!({"status": {"certificate": base64_pem(&pem_bytes)}});
    let e = api_error(
        admin
            .patch_status("pending", &PatchParams::default(), &Patch::Merge(&status))
            .await,
    );
    assert_eq!(e.code, 422);
    assert!(
        e.message
            .contains("certificate issuance requires an Approved condition"),
        "{}",
        e.message
    );
    s.set_identity(Identity::new("approver-only", "approver-only", &[], {
        let mut r = kube_standin::identity::approver_rules(&["example.com/other"]);
        r.push(k8s_openapi::api::rbac::v1::PolicyRule {
            verbs: vec!["update".into(), "patch".into()],
            api_groups: Some(vec!["certificates.k8s.io".into()]),
            resources: Some(vec!["certificatesigningrequests/status".into()]),
            ..Default::default()
        });
        r
    }));
    let approver = csrs(&s, "approver-only").await;
    approver
        .patch_approval("pending", &PatchParams::default(), &Patch::Merge(json!({"status": {"conditions": [{"type": "Approved", "status": "True", "reason": "R", "message": "m"}]}})))
        .await
        .unwrap();
    let e = api_error(
        approver
            .patch_status("pending", &PatchParams::default(), &Patch::Merge(&status))
            .await,
    );
    assert_eq!(e.code, 403);
    assert!(
        e.message
            .ends_with("user not permitted to sign requests with signerName \"example.com/other\""),
        "{}",
        e.message
    );
    let bad = json!({"status": {"certificate": base64_pem(b"not a certificate")}});
    let e = api_error(
        admin
            .patch_status("pending", &PatchParams::default(), &Patch::Merge(&bad))
            .await,
    );
    assert!(
        e.message
            .contains("must contain at least one CERTIFICATE PEM block"),
        "{}",
        e.message
    );
    let signed = admin
        .patch_status("pending", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert!(signed.status.unwrap().certificate.is_some());
}

fn base64_pem(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn list_pages_and_continue_tokens_expire() {
    let s = standin().await;
    let api = csrs(&s, "admin").await;
    for i in 0..5 {
        api.create(&PostParams::default(), &client_csr(&format!("c{i}")))
            .await
            .unwrap();
    }
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(first.items.len(), 2);
    let token = first.metadata.continue_.clone().unwrap();
    let second = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    let names: Vec<String> = second
        .items
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, vec!["c2", "c3"]);
    let all = api
        .list(&ListParams::default().fields("metadata.name=c4"))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 1);

    s.expire_resource_versions();
    let e = api_error(
        api.list(&ListParams::default().limit(2).continue_token(&token))
            .await,
    );
    assert_eq!(e.code, 410);

    api.delete("c0", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_error(api.get("c0").await).code, 404);
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        4
    );
}

#[tokio::test]
async fn watch_streams_events_bookmarks_and_410_for_expired_versions() {
    let s = standin().await;
    let api = csrs(&s, "admin").await;
    let list = api.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let mut stream = api
        .watch(&WatchParams::default().timeout(30), &rv)
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &client_csr("w1"))
        .await
        .unwrap();
    let mut added = false;
    let mut bookmark = false;
    while !(added && bookmark) {
        match tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .unwrap()
            .unwrap()
        {
            Some(WatchEvent::Added(c)) => added |= c.metadata.name.as_deref() == Some("w1"),
            Some(WatchEvent::Bookmark(_)) => bookmark = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    // Dropped watches end.
    s.drop_watches();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.try_next().await {
                Ok(Some(WatchEvent::Bookmark(_))) => continue,
                other => return other.map(|o| o.is_none()).unwrap_or(true),
            }
        }
    })
    .await
    .unwrap();
    assert!(end, "the watch did not end");

    // An expired resourceVersion: an ERROR event with 410, as upstream.
    s.expire_resource_versions();
    let mut stale = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(Duration::from_secs(5), stale.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        Some(WatchEvent::Error(e)) => assert_eq!(e.code, 410),
        other => panic!("expected a 410 error event, got {other:?}"),
    }

    // kube-runtime's watcher recovers from all of that by itself.
    let events = kube::runtime::watcher(api.clone(), kube::runtime::watcher::Config::default())
        .applied_objects()
        .boxed();
    api.create(&PostParams::default(), &client_csr("w2"))
        .await
        .unwrap();
    let names: Vec<String> = tokio::time::timeout(
        Duration::from_secs(10),
        events
            .take(2)
            .map(|r| r.unwrap().metadata.name.unwrap())
            .collect(),
    )
    .await
    .unwrap();
    assert!(
        names.contains(&"w1".to_string()) && names.contains(&"w2".to_string()),
        "{names:?}"
    );
}

#[tokio::test]
async fn faults_reach_the_client() {
    let s = standin().await;
    let api = csrs(&s, "admin").await;
    s.faults()
        .fail_next(1, Fault::ServerError, FaultFilter::default());
    assert_eq!(api_error(api.list(&ListParams::default()).await).code, 500);
    // One 429 with Retry-After: 1: kube-rs waits that second, retries, and the create succeeds.
    s.faults().fail_next(
        1,
        Fault::TooManyRequests,
        FaultFilter {
            verb: Some("create".into()),
            subresource: None,
        },
    );
    api.list(&ListParams::default()).await.unwrap(); // not a create: unaffected
    let started = std::time::Instant::now();
    api.create(&PostParams::default(), &client_csr("f"))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured"
    );
    assert!(
        s.faults().take("create", None).is_none(),
        "the fault was not consumed"
    );
    s.faults().set_delay(Duration::from_millis(300));
    let started = std::time::Instant::now();
    api.get("f").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn leases_for_leader_election() {
    let s = standin().await;
    let leases: Api<Lease> = Api::namespaced(s.client("admin").await, "csr-warden");
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some("csr-warden".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("pod-a".into()),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }),
    };
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    assert_eq!(created.metadata.namespace.as_deref(), Some("csr-warden"));
    let mut taken = created.clone();
    taken.spec.as_mut().unwrap().holder_identity = Some("pod-b".into());
    let updated = leases
        .replace("csr-warden", &PostParams::default(), &taken)
        .await
        .unwrap();
    assert_eq!(
        updated.spec.unwrap().holder_identity.as_deref(),
        Some("pod-b")
    );
    // Two replicas racing with the same resourceVersion: one wins, one gets 409.
    let e = api_error(
        leases
            .replace("csr-warden", &PostParams::default(), &taken)
            .await,
    );
    assert_eq!(e.code, 409);
    // csr-warden's service account (deploy/'s Role) may get and patch its Lease, only in its
    // own namespace; Terraform may not touch it.
    let warden: Api<Lease> = Api::namespaced(s.client("csr-warden").await, "csr-warden");
    warden.get("csr-warden").await.unwrap();
    warden
        .patch(
            "csr-warden",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"holderIdentity": "pod-c"}})),
        )
        .await
        .unwrap();
    let elsewhere: Api<Lease> = Api::namespaced(s.client("csr-warden").await, "kube-system");
    assert_eq!(api_error(elsewhere.get("csr-warden").await).code, 403);
    let tf_leases: Api<Lease> = Api::namespaced(s.client("terraform").await, "csr-warden");
    assert_eq!(api_error(tf_leases.get("csr-warden").await).code, 403);
}

#[tokio::test]
async fn events_about_a_csr_reach_both_event_apis() {
    use k8s_openapi::api::core::v1::{Event as CoreEvent, ObjectReference};
    use k8s_openapi::api::events::v1::Event;
    let s = standin().await;
    let events: Api<Event> = Api::namespaced(s.client("csr-warden").await, "default");
    let event = Event {
        metadata: ObjectMeta {
            name: Some("tf-1.approved".into()),
            ..Default::default()
        },
        regarding: Some(ObjectReference {
            api_version: Some("certificates.k8s.io/v1".into()),
            kind: Some("CertificateSigningRequest".into()),
            name: Some("tf-1".into()),
            ..Default::default()
        }),
        reason: Some("PolicyApproved".into()),
        note: Some("approved by csr-warden policy terraform-client".into()),
        type_: Some("Normal".into()),
        action: Some("Approve".into()),
        reporting_controller: Some("csr-warden.io/approver".into()),
        reporting_instance: Some("pod-a".into()),
        event_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            jiff::Timestamp::now(),
        )),
        ..Default::default()
    };
    events.create(&PostParams::default(), &event).await.unwrap();
    let core: Api<CoreEvent> = Api::namespaced(s.client("admin").await, "default");
    let listed = core
        .list(
            &ListParams::default()
                .fields("involvedObject.name=tf-1,involvedObject.kind=CertificateSigningRequest"),
        )
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].reason.as_deref(), Some("PolicyApproved"));
    // Terraform has no business writing events.
    let tf: Api<Event> = Api::namespaced(s.client("terraform").await, "default");
    assert_eq!(
        api_error(tf.create(&PostParams::default(), &event).await).code,
        403
    );
}

#[tokio::test]
async fn a_timeout_fault_holds_the_request_until_the_client_gives_up() {
    let s = standin().await;
    let mut config = s.kube_config("admin").await.unwrap();
    config.read_timeout = Some(Duration::from_millis(500));
    let api: Api<CertificateSigningRequest> = Api::all(kube::Client::try_from(config).unwrap());
    s.faults()
        .fail_next(1, Fault::Timeout, FaultFilter::default());
    let started = std::time::Instant::now();
    let r = api.list(&ListParams::default()).await;
    assert!(r.is_err(), "the request was answered");
    assert!(started.elapsed() < Duration::from_secs(30));
    api.list(&ListParams::default()).await.unwrap();
}
