//! `csr-warden audit --cluster` against the stand-in: approvals the policies deny (by
//! csr-warden before a policy change, or by someone else), pending requests, a policy report.

use std::path::Path;
use std::process::{Command, Output};

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn audit(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_csr-warden"))
        .current_dir(ROOT)
        .arg("audit")
        .arg("--cluster")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("run csr-warden audit")
}

fn manifest(name: &str) -> CertificateSigningRequest {
    let text = std::fs::read_to_string(format!("{ROOT}/examples/kubectl/{name}.yaml")).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

fn approve(reason: &str) -> Patch<serde_json::Value> {
    Patch::Merge(
        json!({"status": {"conditions": [{"type": "Approved", "status": "True", "reason": reason, "message": "by test"}]}}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_finds_break_glass_drift_and_pending() {
    let standin = kube_standin::StandIn::start("127.0.0.1:0".parse().unwrap(), Default::default())
        .await
        .unwrap();
    let tf: Api<CertificateSigningRequest> = Api::all(standin.client("terraform").await);
    let admin: Api<CertificateSigningRequest> = Api::all(standin.client("admin").await);
    // Approved as the policies approve it (by csr-warden).
    tf.create(&PostParams::default(), &manifest("terraform-alice"))
        .await
        .unwrap();
    admin
        .patch_approval(
            "terraform-alice",
            &PatchParams::default(),
            &approve("PolicyApproved"),
        )
        .await
        .unwrap();
    // Approved by a person although the policies deny it (90 days): break-glass.
    tf.create(&PostParams::default(), &manifest("terraform-long-lived"))
        .await
        .unwrap();
    admin
        .patch_approval(
            "terraform-long-lived",
            &PatchParams::default(),
            &approve("KubectlApprove"),
        )
        .await
        .unwrap();
    // Nobody decided yet.
    tf.create(&PostParams::default(), &manifest("terraform-server-auth"))
        .await
        .unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        serde_saphyr::to_string(&standin.kubeconfig("admin")).unwrap(),
    )
    .unwrap();

    let k = kubeconfig.clone();
    let o = tokio::task::spawn_blocking(move || audit(&k, &[]))
        .await
        .unwrap();
    let table = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{table}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let line = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{table}"))
            .to_string()
    };
    assert!(line("terraform-alice").contains("consistent"), "{table}");
    assert!(
        line("terraform-long-lived").contains("break-glass")
            && line("terraform-long-lived").contains("KubectlApprove"),
        "{table}"
    );
    assert!(line("terraform-server-auth").contains("pending"), "{table}");
    assert!(
        table.lines().last().unwrap().starts_with(
            "3 requests: 1 approved although the policies deny them, 1 pending in scope"
        ),
        "{table}"
    );

    // The policies change: csr-warden's own approval of alice is now drift.
    let stricter = tmp.path().join("policies");
    std::fs::create_dir(&stricter).unwrap();
    let tf_policy =
        std::fs::read_to_string(format!("{ROOT}/policies/terraform-client.yaml")).unwrap();
    std::fs::write(
        stricter.join("terraform-client.yaml"),
        tf_policy.replace("[example cluster, developers]", "[example cluster]"),
    )
    .unwrap();
    let (k, p) = (kubeconfig.clone(), stricter.clone());
    let o = tokio::task::spawn_blocking(move || {
        audit(&k, &["--policies", p.to_str().unwrap(), "--output", "json"])
    })
    .await
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let alice = v["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "terraform-alice")
        .unwrap();
    assert_eq!(alice["finding"], "approved-denied-now");
    assert_eq!(alice["decidedBy"], "PolicyApproved: by test");

    // As a ClusterPolicyReport.
    let k = kubeconfig.clone();
    let o = tokio::task::spawn_blocking(move || audit(&k, &["--output", "report"]))
        .await
        .unwrap();
    let report: serde_json::Value =
        serde_saphyr::from_str(&String::from_utf8_lossy(&o.stdout)).unwrap();
    assert_eq!(report["apiVersion"], "wgpolicyk8s.io/v1alpha2");
    assert_eq!(report["kind"], "ClusterPolicyReport");
    assert_eq!(report["summary"]["fail"], 1);
    assert_eq!(report["summary"]["pass"], 1);
    assert_eq!(report["summary"]["warn"], 1);
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert!(
        results.iter().all(|r| r["source"] == "csr-warden"
            && r["resources"][0]["kind"] == "CertificateSigningRequest")
    );
    let fail = results.iter().find(|r| r["result"] == "fail").unwrap();
    assert_eq!(fail["resources"][0]["name"], "terraform-long-lived");
    assert!(
        fail["message"]
            .as_str()
            .unwrap()
            .contains("expirationSeconds 7776000")
    );

    // As decision records, which `check` reproduces.
    let k = kubeconfig.clone();
    let o = tokio::task::spawn_blocking(move || audit(&k, &["--output", "record"]))
        .await
        .unwrap();
    let records = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(records.lines().count(), 3, "{records}");
    let first: serde_json::Value = serde_json::from_str(records.lines().next().unwrap()).unwrap();
    assert_eq!(first["source"], "audit");
    let file = tmp.path().join("audit.jsonl");
    std::fs::write(&file, &records).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_csr-warden"))
        .current_dir(ROOT)
        .args(["check", "--output", "json"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let reproduced = text
        .lines()
        .filter(|l| l.contains("\"reproduced\":true"))
        .count();
    assert_eq!(reproduced, 3, "{text}");
}
