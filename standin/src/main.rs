//! `kube-standin`: run the Kubernetes API stand-in as a process, for kubectl and csr-warden.
//!
//!   cargo run -p kube-standin -- --listen 127.0.0.1:6443 --kubeconfig-out standin.kubeconfig
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use kube_standin::{Config, Fault, FaultFilter, StandIn};

#[derive(Debug, Parser)]
#[command(
    name = "kube-standin",
    version,
    about = "A Kubernetes API stand-in for CertificateSigningRequests (development and tests only)"
)]
struct Args {
    /// Address to serve plain HTTP on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// ValidatingWebhookConfigurations to call (YAML or JSON, several documents allowed).
    #[arg(long, value_name = "FILE")]
    webhooks: Option<PathBuf>,
    /// CA (PEM) to put in every webhook whose caBundle is empty, as an overlay or cert-manager
    /// would (for `--webhooks deploy/base/webhook.yaml`).
    #[arg(long, value_name = "FILE")]
    webhook_ca: Option<PathBuf>,
    /// Route a Service named by a webhook to an address: NAMESPACE/NAME=HOST:PORT (repeatable).
    #[arg(long = "service", value_name = "NS/NAME=ADDR")]
    services: Vec<String>,
    /// Write a kubeconfig with one context per identity (admin, csr-warden, terraform,
    /// node-worker-1, node-worker-2, sa-payments-api).
    #[arg(long, value_name = "FILE")]
    kubeconfig_out: Option<PathBuf>,
    /// Fail the next requests: 500[:N], 429[:N] or timeout[:N] (repeatable).
    #[arg(long = "fault", value_name = "KIND[:N]")]
    faults: Vec<String>,
    /// Delay every API response by this many milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Do not run the built-in signers.
    #[arg(long)]
    no_signer: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = Config {
        signer: !args.no_signer,
        ..Config::default()
    };
    if let Some(path) = &args.webhooks {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        config.webhooks = kube_standin::webhook::load(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    if let Some(ca) = &args.webhook_ca {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        for w in config
            .webhooks
            .iter_mut()
            .flat_map(|c| c.webhooks.iter_mut().flatten())
        {
            if w.client_config
                .ca_bundle
                .as_ref()
                .is_none_or(|b| b.0.is_empty())
            {
                w.client_config.ca_bundle = Some(k8s_openapi::ByteString(pem.clone()));
            }
        }
    }
    let standin = StandIn::start(args.listen, config)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    for s in &args.services {
        let Some((svc, addr)) = s.split_once('=') else {
            bail!("--service {s:?}: expected NS/NAME=HOST:PORT")
        };
        let Some((ns, name)) = svc.split_once('/') else {
            bail!("--service {s:?}: expected NS/NAME=HOST:PORT")
        };
        let addr: SocketAddr = addr
            .parse()
            .with_context(|| format!("--service {s:?}: bad address"))?;
        standin.set_service(ns, name, addr);
    }
    for f in &args.faults {
        let (kind, count) = f.split_once(':').unwrap_or((f, "1"));
        let fault: Fault = kind.parse().map_err(anyhow::Error::msg)?;
        let count: usize = count
            .parse()
            .with_context(|| format!("--fault {f:?}: bad count"))?;
        standin
            .faults()
            .fail_next(count, fault, FaultFilter::default());
    }
    standin
        .faults()
        .set_delay(Duration::from_millis(args.delay_ms));
    if let Some(path) = &args.kubeconfig_out {
        let text = serde_saphyr::to_string(&standin.kubeconfig("admin"))
            .context("writing the kubeconfig")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!(
            "kubeconfig written to {} (contexts: admin, csr-warden, terraform, node-worker-1, node-worker-2, sa-payments-api)",
            path.display()
        );
    }
    eprintln!("kube-standin serving {}; stop with Ctrl-C", standin.url());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    standin.shutdown().await;
    Ok(())
}
