//! `csr-warden diff`: decisions that change between two policy sets, over files, a git revision
//! and a cluster.

use std::path::Path;
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn diff_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_csr-warden"))
        .current_dir(dir)
        .arg("diff")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run csr-warden diff")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The shipped `policies/*.yaml` copied into `dir`.
fn copy_policies(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for e in std::fs::read_dir(format!("{ROOT}/policies")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
}

/// A copy of the shipped policies with terraform-client allowing only one hour and one group.
fn stricter(dir: &Path) {
    copy_policies(dir);
    let path = dir.join("terraform-client.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let stricter = text
        .replace("maxSeconds: 2592000  # 30 days", "maxSeconds: 3600")
        .replace("[example cluster, developers]", "[example cluster]");
    assert_ne!(text, stricter);
    std::fs::write(path, stricter).unwrap();
}

#[test]
fn files_under_two_policy_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let head = tmp.path().join("head");
    stricter(&head);
    let head_arg = head.to_str().unwrap();
    let inputs = [
        "examples/csr/terraform-alice.yaml",
        "examples/csr/kubelet-worker-1.yaml",
    ];
    let mut args = vec!["--base", "policies", "--head", head_arg];
    args.extend(inputs);
    let o = diff_in(Path::new(ROOT), &args, &[]);
    assert_eq!(o.status.code(), Some(0));
    let md = stdout(&o);
    assert!(
        md.starts_with("#### csr-warden: 1 of 2 requests change"),
        "{md}"
    );
    assert!(md.contains("| `examples/csr/terraform-alice.yaml (terraform-alice)` | approve (terraform-client) | **deny (terraform-client)** | terraform-client: subject.organization: O \"developers\" is not allowed"), "{md}");
    assert!(!md.contains("kubelet-worker-1"), "{md}");

    let mut args = vec!["--base", "policies", "--head", head_arg, "--output", "text"];
    args.extend(inputs);
    let text = stdout(&diff_in(Path::new(ROOT), &args, &[]));
    assert!(
        text.contains("terraform-alice): approve (terraform-client) -> deny (terraform-client)"),
        "{text}"
    );
    assert_eq!(text.lines().last(), Some("1 of 2 requests change"));

    let mut args = vec!["--base", "policies", "--head", head_arg, "--output", "json"];
    args.extend(inputs);
    let v: serde_json::Value =
        serde_json::from_slice(&diff_in(Path::new(ROOT), &args, &[]).stdout).unwrap();
    assert_eq!(v["decided"], 2);
    assert_eq!(v["changed"][0]["before"]["decision"], "approve");
    assert_eq!(v["changed"][0]["after"]["decision"], "deny");
}

#[test]
fn base_from_a_git_revision() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .current_dir(repo)
            .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    git(&["init", "-q"]);
    stricter(&repo.join("policies"));
    git(&["add", "policies"]);
    git(&["commit", "-q", "-m", "stricter"]);
    // The working tree goes back to the shipped policies: the change under review.
    copy_policies(&repo.join("policies"));
    let input = format!("{ROOT}/examples/csr/terraform-alice.yaml");
    let o = diff_in(repo, &["--base", "HEAD", "--output", "text", &input], &[]);
    let text = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        text.contains("deny (terraform-client) -> approve (terraform-client)"),
        "{text}"
    );

    let o = diff_in(repo, &["--base", "no-such-rev", &input], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nor a revision git knows"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_csr_in_a_cluster() {
    use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
    use kube::api::{Api, PostParams};
    let standin = kube_standin::StandIn::start("127.0.0.1:0".parse().unwrap(), Default::default())
        .await
        .unwrap();
    let tf: Api<CertificateSigningRequest> = Api::all(standin.client("terraform").await);
    for f in ["terraform-alice", "terraform-server-auth"] {
        let text = std::fs::read_to_string(format!("{ROOT}/examples/kubectl/{f}.yaml")).unwrap();
        let csr: CertificateSigningRequest = serde_saphyr::from_str(&text).unwrap();
        tf.create(&PostParams::default(), &csr).await.unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        serde_saphyr::to_string(&standin.kubeconfig("admin")).unwrap(),
    )
    .unwrap();
    let head = tmp.path().join("head");
    stricter(&head);
    let o = tokio::task::spawn_blocking(move || {
        diff_in(
            Path::new(ROOT),
            &[
                "--base",
                "policies",
                "--head",
                head.to_str().unwrap(),
                "--cluster",
                "--output",
                "text",
            ],
            &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
        )
    })
    .await
    .unwrap();
    let text = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        text.contains("csr/terraform-alice: approve (terraform-client) -> deny (terraform-client)"),
        "{text}"
    );
    assert_eq!(text.lines().last(), Some("1 of 2 requests change"));
}
