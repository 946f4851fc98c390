//! `deploy/`: the manifests build with kustomize, decode into their Kubernetes types, hold the
//! least privilege the approver needs (no more, no less), and name exactly the signers the
//! policies govern.

use std::collections::BTreeSet;
use std::path::Path;

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use serde_json::Value;

fn kubectl_present() -> bool {
    std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn kustomize(dir: &Path) -> Vec<Value> {
    let out = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_saphyr::from_multiple(&String::from_utf8(out.stdout).unwrap()).unwrap()
}

/// Decode every object into its k8s-openapi type; the kinds found.
fn decode_all(objects: &[Value]) -> Vec<String> {
    let mut kinds = Vec::new();
    for o in objects {
        let kind = o["kind"].as_str().unwrap().to_string();
        let v = go_base64(o.clone());
        let decoded = match kind.as_str() {
            "Namespace" => serde_json::from_value::<Namespace>(v).map(|_| ()),
            "ServiceAccount" => serde_json::from_value::<ServiceAccount>(v).map(|_| ()),
            "ClusterRole" => serde_json::from_value::<ClusterRole>(v).map(|_| ()),
            "ClusterRoleBinding" => serde_json::from_value::<ClusterRoleBinding>(v).map(|_| ()),
            "Role" => serde_json::from_value::<Role>(v).map(|_| ()),
            "RoleBinding" => serde_json::from_value::<RoleBinding>(v).map(|_| ()),
            "ConfigMap" => serde_json::from_value::<ConfigMap>(v).map(|_| ()),
            "Secret" => serde_json::from_value::<Secret>(v).map(|_| ()),
            "Service" => serde_json::from_value::<Service>(v).map(|_| ()),
            "Deployment" => serde_json::from_value::<Deployment>(v).map(|_| ()),
            "PodDisruptionBudget" => serde_json::from_value::<PodDisruptionBudget>(v).map(|_| ()),
            "ValidatingWebhookConfiguration" => {
                serde_json::from_value::<ValidatingWebhookConfiguration>(v).map(|_| ())
            }
            "Issuer" | "Certificate" => {
                assert_eq!(o["apiVersion"], "cert-manager.io/v1");
                Ok(())
            }
            other => panic!("unexpected kind {other} in deploy/"),
        };
        decoded.unwrap_or_else(|e| panic!("{kind} {}: {e}", o["metadata"]["name"]));
        kinds.push(kind);
    }
    kinds.sort();
    kinds
}

/// kustomize wraps long base64 values over lines; Go's decoder (the API server's) skips line
/// breaks, k8s-openapi's does not: remove them where the API has base64 fields.
fn go_base64(mut o: Value) -> Value {
    let strip = |v: &mut Value| {
        if let Some(s) = v.as_str() {
            *v = Value::String(s.chars().filter(|c| *c != '\n' && *c != '\r').collect());
        }
    };
    let secret = o["kind"] == "Secret";
    if let Some(data) = o.get_mut("data").and_then(Value::as_object_mut)
        && secret
    {
        data.values_mut().for_each(strip);
    }
    if let Some(hooks) = o.get_mut("webhooks").and_then(Value::as_array_mut) {
        for h in hooks {
            if let Some(b) = h.pointer_mut("/clientConfig/caBundle") {
                strip(b);
            }
        }
    }
    o
}

fn find<T: serde::de::DeserializeOwned>(objects: &[Value], kind: &str) -> T {
    let o = objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"));
    serde_json::from_value(go_base64(o.clone())).unwrap()
}

#[test]
fn base_and_overlays_build_and_decode() {
    if !kubectl_present() {
        eprintln!(
            "SKIPPED: kubectl is not installed (install Debian's kubectl or kubernetes-client)"
        );
        return;
    }
    let base = kustomize(Path::new("deploy/base"));
    let kinds = decode_all(&base);
    for k in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "ValidatingWebhookConfiguration",
    ] {
        assert!(
            kinds.contains(&k.to_string()),
            "{k} missing from deploy/base"
        );
    }
    let cm = kinds_named(&base, "ConfigMap");
    assert!(cm[0].starts_with("csr-warden-policies-"), "{cm:?}");

    // The Deployment: 3 replicas, probes, restricted security context, policies from the
    // generated ConfigMap (its hashed name), the serving certificate from the TLS Secret.
    let d: Deployment = find(&base, "Deployment");
    let spec = d.spec;
    assert_eq!(spec.replicas, Some(3));
    let pod = spec.template.spec.unwrap();
    assert!(pod.topology_spread_constraints.is_some());
    let psc = pod.security_context.unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let c = &pod.containers[0];
    let sc = c.security_context.clone().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
    assert_eq!(
        c.readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/readyz")
    );
    assert_eq!(
        c.liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/healthz")
    );
    assert!(c.resources.as_ref().unwrap().limits.is_some());
    let volumes = pod.volumes.unwrap();
    let policies = volumes.iter().find(|v| v.name == "policies").unwrap();
    assert_eq!(policies.config_map.as_ref().unwrap().name, cm[0]);
    let tls = volumes.iter().find(|v| v.name == "tls").unwrap();
    assert_eq!(
        tls.secret.as_ref().unwrap().secret_name.as_deref(),
        Some("csr-warden-tls")
    );
    // The container reads the policies from where the ConfigMap is mounted.
    let mount = c
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == "policies")
        .unwrap();
    assert!(
        c.args
            .as_ref()
            .unwrap()
            .contains(&format!("--policies={}", mount.mount_path))
    );

    // The webhook: as the README and the issue describe it.
    let w: ValidatingWebhookConfiguration = find(&base, "ValidatingWebhookConfiguration");
    let hook = &w.webhooks.unwrap()[0];
    assert_eq!(hook.failure_policy.as_deref(), Some("Fail"));
    assert_eq!(hook.side_effects, "None");
    assert_eq!(hook.timeout_seconds, Some(3));
    assert_eq!(hook.admission_review_versions, vec!["v1"]);

    let cm_overlay = kustomize(Path::new("deploy/overlays/cert-manager"));
    let kinds = decode_all(&cm_overlay);
    assert!(kinds.contains(&"Certificate".to_string()) && kinds.contains(&"Issuer".to_string()));
    let w: ValidatingWebhookConfiguration = find(&cm_overlay, "ValidatingWebhookConfiguration");
    assert_eq!(
        w.metadata
            .annotations
            .unwrap()
            .get("cert-manager.io/inject-ca-from")
            .map(String::as_str),
        Some("csr-warden/csr-warden-serving")
    );

    // The dev overlay, with certificates from `csr-warden certs dev`, in a copy of the tree.
    let dir = tempfile::tempdir().unwrap();
    copy_tree(Path::new("deploy"), &dir.path().join("deploy"));
    copy_tree(Path::new("policies"), &dir.path().join("policies"));
    let certs = dir.path().join("deploy/overlays/dev/certs");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_csr-warden"))
        .args(["certs", "dev", "--out"])
        .arg(&certs)
        .output()
        .unwrap();
    assert!(status.status.success());
    let dev = kustomize(&dir.path().join("deploy/overlays/dev"));
    decode_all(&dev);
    let w: ValidatingWebhookConfiguration = find(&dev, "ValidatingWebhookConfiguration");
    let bundle = w.webhooks.unwrap()[0]
        .client_config
        .ca_bundle
        .clone()
        .unwrap()
        .0;
    assert_eq!(bundle, std::fs::read(certs.join("ca.crt")).unwrap());
    let secret: Secret = find(&dev, "Secret");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(secret.metadata.name.as_deref(), Some("csr-warden-tls"));
}

fn kinds_named(objects: &[Value], kind: &str) -> Vec<String> {
    objects
        .iter()
        .filter(|o| o["kind"] == kind)
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// (API group, resource, verb) triples.
fn triples(rules: &[PolicyRule]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for r in rules {
        for g in r.api_groups.iter().flatten() {
            for res in r.resources.iter().flatten() {
                for v in &r.verbs {
                    assert!(
                        g != "*" && res != "*" && v != "*",
                        "wildcard in deploy RBAC: {r:?}"
                    );
                    out.insert((g.clone(), res.clone(), v.clone()));
                }
            }
        }
    }
    out
}

#[test]
fn rbac_is_exactly_what_the_code_uses() {
    let (cluster, namespaced) = kube_standin::csr_warden_deploy_rbac();
    let t = |g: &str, r: &str, v: &str| (g.to_string(), r.to_string(), v.to_string());
    // Each line names the code path that needs it. A rule added to deploy/ without a code path
    // that uses it fails here; one the code needs but deploy/ lacks fails the end-to-end tests,
    // which run the approver under exactly these rules.
    let used: BTreeSet<_> = [
        t("certificates.k8s.io", "certificatesigningrequests", "get"), // approver: re-read after 409 (src/approver/mod.rs)
        t("certificates.k8s.io", "certificatesigningrequests", "list"), // approver: kube-runtime watcher's initial list
        t("certificates.k8s.io", "certificatesigningrequests", "watch"), // approver: kube-runtime watcher
        t(
            "certificates.k8s.io",
            "certificatesigningrequests/approval",
            "update",
        ), // approver: replace_subresource("approval")
        t("certificates.k8s.io", "signers", "approve"), // API server's CertificateApproval check on that write
        t("events.k8s.io", "events", "create"),         // approver: kube-runtime Recorder::publish
        t("events.k8s.io", "events", "patch"), // Recorder::publish, repeated events (series)
    ]
    .into_iter()
    .collect();
    assert_eq!(
        triples(&cluster),
        used,
        "ClusterRole rules differ from what the code uses"
    );
    let lease_used: BTreeSet<_> = [
        t("coordination.k8s.io", "leases", "get"), // kube-lease-manager: read the Lease
        t("coordination.k8s.io", "leases", "create"), // kube-lease-manager: first replica creates it
        t("coordination.k8s.io", "leases", "patch"),  // kube-lease-manager: acquire, renew, release
    ]
    .into_iter()
    .collect();
    let lease_rules: Vec<PolicyRule> = namespaced.iter().map(|(_, r)| r.clone()).collect();
    assert_eq!(triples(&lease_rules), lease_used);
    assert!(namespaced.iter().all(|(ns, _)| ns == "csr-warden"));
    let rbac = std::fs::read_to_string("deploy/base/rbac.yaml").unwrap();
    assert!(
        !rbac.contains("secrets"),
        "csr-warden needs no Secret access"
    );
}

#[test]
fn signer_names_match_the_policies() {
    let policies = csr_warden::policy_dir::load("policies".as_ref()).unwrap();
    let governed: BTreeSet<String> = policies.governed_signers().into_iter().collect();
    assert!(!governed.is_empty());

    let (cluster, _) = kube_standin::csr_warden_deploy_rbac();
    let approve = cluster.iter().find(|r| r.verbs == ["approve"]).unwrap();
    let names: BTreeSet<String> = approve
        .resource_names
        .clone()
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        names, governed,
        "deploy/base/rbac.yaml resourceNames differ from the signers policies/ governs"
    );

    let text = std::fs::read_to_string("deploy/base/webhook.yaml").unwrap();
    let w = kube_standin::webhook::load(&text).unwrap().remove(0);
    let condition = w.webhooks.unwrap()[0]
        .match_conditions
        .clone()
        .unwrap()
        .into_iter()
        .find(|c| c.name == "governed-signers")
        .unwrap();
    let in_list: BTreeSet<String> = regex::Regex::new(r"'([^']+)'")
        .unwrap()
        .captures_iter(&condition.expression)
        .map(|c| c[1].to_string())
        .collect();
    assert_eq!(
        in_list, governed,
        "the webhook's matchConditions differ from the signers policies/ governs"
    );

    // policies/kustomization.yaml packages every policy file.
    let k: Value =
        serde_saphyr::from_str(&std::fs::read_to_string("policies/kustomization.yaml").unwrap())
            .unwrap();
    let listed: BTreeSet<String> = k["configMapGenerator"][0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    let files: BTreeSet<String> = csr_warden::policy_dir::read_sources("policies".as_ref())
        .unwrap()
        .into_iter()
        .map(|s| {
            Path::new(&s.path)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string()
        })
        .collect();
    assert_eq!(
        listed, files,
        "policies/kustomization.yaml does not list every policy file"
    );
}
