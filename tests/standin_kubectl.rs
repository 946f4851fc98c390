//! kubectl against the stand-in, as a person would use it: create, get, describe, approve, deny.
//! Skipped, with the reason printed, where kubectl is not installed (`.ci/run` installs it).

use std::path::Path;
use std::time::Duration;

use kube_standin::{Config, StandIn};

struct Kubectl {
    kubeconfig: std::path::PathBuf,
}

impl Kubectl {
    async fn run(&self, args: &[&str]) -> (bool, String) {
        let out = tokio::process::Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .await
            .expect("run kubectl");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, text) = self.run(args).await;
        assert!(ok, "kubectl {args:?} failed: {text}");
        text
    }
}

fn kubectl_present() -> bool {
    std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success())
}

async fn setup(dir: &Path) -> (StandIn, Kubectl) {
    let standin = StandIn::start("127.0.0.1:0".parse().unwrap(), Config::default())
        .await
        .unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        serde_saphyr::to_string(&standin.kubeconfig("admin")).unwrap(),
    )
    .unwrap();
    (standin, Kubectl { kubeconfig })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_gets_describes_approves_and_denies() {
    if !kubectl_present() {
        eprintln!(
            "SKIPPED: kubectl is not installed (install Debian's kubectl or kubernetes-client)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_standin, k) = setup(dir.path()).await;

    let out = k
        .ok(&[
            "--context",
            "terraform",
            "create",
            "-f",
            "examples/csr/terraform-alice.yaml",
        ])
        .await;
    assert_eq!(
        out.trim(),
        "certificatesigningrequest.certificates.k8s.io/terraform-alice created"
    );
    k.ok(&[
        "--context",
        "terraform",
        "create",
        "-f",
        "examples/csr/terraform-long-lived.yaml",
    ])
    .await;

    let table = k.ok(&["get", "csr"]).await;
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].split_whitespace().eq([
            "NAME",
            "AGE",
            "SIGNERNAME",
            "REQUESTOR",
            "REQUESTEDDURATION",
            "CONDITION"
        ]),
        "{table}"
    );
    let alice: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(alice[0], "terraform-alice");
    assert_eq!(
        &alice[2..],
        [
            "kubernetes.io/kube-apiserver-client",
            "terraform",
            "<none>",
            "Pending"
        ]
    );
    assert!(lines[2].contains("90d"), "{table}");

    let described = k.ok(&["describe", "csr", "terraform-alice"]).await;
    assert!(
        described.contains("Requesting User:    terraform"),
        "{described}"
    );
    assert!(described.contains("Common Name:    alice"), "{described}");

    // A node may not approve.
    let (ok, out) = k
        .run(&[
            "--context",
            "node-worker-1",
            "certificate",
            "approve",
            "terraform-alice",
        ])
        .await;
    assert!(!ok);
    assert!(
        out.contains("cannot update resource \"certificatesigningrequests/approval\""),
        "{out}"
    );

    let out = k.ok(&["certificate", "approve", "terraform-alice"]).await;
    assert!(out.contains("terraform-alice approved"), "{out}");
    let out = k.ok(&["certificate", "deny", "terraform-long-lived"]).await;
    assert!(out.contains("terraform-long-lived denied"), "{out}");
    let mut table = String::new();
    for _ in 0..50 {
        table = k.ok(&["get", "csr", "-o", "custom-columns=NAME:.metadata.name,COND:.status.conditions[*].type,CERT:.status.certificate"]).await;
        if table
            .lines()
            .any(|l| l.starts_with("terraform-alice") && !l.ends_with("<none>"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        table.lines().any(|l| l.starts_with("terraform-alice")
            && l.contains("Approved")
            && !l.ends_with("<none>")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("terraform-long-lived") && l.contains("Denied")),
        "{table}"
    );
    let (ok, out) = k
        .run(&["certificate", "approve", "terraform-long-lived"])
        .await;
    assert!(!ok && out.contains("is already Denied"), "{out}");

    // What the API server refuses at create, kubectl shows as the server said it.
    let (ok, out) = k
        .run(&[
            "--context",
            "terraform",
            "create",
            "-f",
            "examples/csr/terraform-admin.yaml",
        ])
        .await;
    assert!(!ok);
    assert!(out.contains("use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"), "{out}");

    k.ok(&["delete", "csr", "terraform-alice"]).await;
    let (ok, out) = k.run(&["get", "csr", "terraform-alice"]).await;
    assert!(
        !ok && (out.contains("NotFound") || out.contains("not found")),
        "{out}"
    );
}
