//! kube-standin: a Kubernetes API stand-in for CertificateSigningRequests, for csr-warden's
//! tests and for development without a cluster. It speaks the real protocol over HTTP to the real
//! clients (kube-rs, kubectl) and mirrors the API server's rules for CSRs, each citing the
//! upstream behaviour it follows. It is never part of the shipped csr-warden.
#![forbid(unsafe_code)]

pub mod cel;
pub mod csr;
pub mod discovery;
pub mod faults;
pub mod identity;
pub mod kubeconfig;
pub mod protobuf;
pub mod server;
pub mod signer;
pub mod status;
pub mod store;
pub mod table;
pub mod webhook;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use faults::{Fault, FaultFilter, Faults};
pub use identity::Identity;

/// What a stand-in starts with.
pub struct Config {
    pub identities: Vec<Identity>,
    pub webhooks: Vec<ValidatingWebhookConfiguration>,
    /// Watch events kept per resource; older resourceVersions are compacted (410 Gone).
    pub history_limit: usize,
    /// How often a watch that asked for bookmarks gets one.
    pub bookmark_interval: Duration,
    /// Run the built-in signers (kube-controller-manager's).
    pub signer: bool,
}

/// The RBAC `deploy/base/rbac.yaml` ships for csr-warden's service account, compiled in: the
/// ClusterRole's rules (cluster-wide) and the Role's rules (in the namespace kustomize gives it,
/// `csr-warden`). The stand-in grants exactly these, so a rule the approver needs but the
/// manifests lack fails the tests as it would fail in a cluster.
pub fn csr_warden_deploy_rbac() -> (Vec<PolicyRule>, Vec<(String, PolicyRule)>) {
    use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
    const RBAC: &str = include_str!("../../deploy/base/rbac.yaml");
    const NAMESPACE: &str = "csr-warden";
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(RBAC).expect("deploy/base/rbac.yaml is YAML");
    let mut cluster = Vec::new();
    let mut namespaced = Vec::new();
    for doc in docs {
        match doc["kind"].as_str() {
            Some("ClusterRole") => {
                let role: ClusterRole = serde_json::from_value(doc).expect("ClusterRole");
                cluster.extend(role.rules.unwrap_or_default());
            }
            Some("Role") => {
                let role: Role = serde_json::from_value(doc).expect("Role");
                let ns = role
                    .metadata
                    .namespace
                    .unwrap_or_else(|| NAMESPACE.to_string());
                namespaced.extend(
                    role.rules
                        .unwrap_or_default()
                        .into_iter()
                        .map(|r| (ns.clone(), r)),
                );
            }
            _ => {}
        }
    }
    (cluster, namespaced)
}

impl Default for Config {
    fn default() -> Self {
        Config {
            identities: vec![
                Identity::admin(),
                {
                    let (rules, namespaced) = csr_warden_deploy_rbac();
                    Identity::csr_warden(rules, namespaced)
                },
                Identity::terraform(),
                Identity::node("worker-1"),
                Identity::node("worker-2"),
                Identity::service_account("payments", "api"),
            ],
            webhooks: Vec::new(),
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(1),
            signer: true,
        }
    }
}

/// Shared by every request.
pub struct State {
    store: Mutex<store::Store>,
    identities: RwLock<Vec<Identity>>,
    webhooks: RwLock<Vec<ValidatingWebhookConfiguration>>,
    services: RwLock<HashMap<(String, String), SocketAddr>>,
    pub faults: Faults,
    /// Bumped to end every open watch.
    pub watch_generation: watch::Sender<u64>,
    pub bookmark_interval: Duration,
    pub signer: signer::Signer,
}

impl State {
    pub fn store(&self) -> MutexGuard<'_, store::Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn identities(&self) -> Vec<Identity> {
        self.identities
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn webhooks(&self) -> Vec<ValidatingWebhookConfiguration> {
        self.webhooks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Where a Service's port is served (the stand-in has no kube-proxy: tests say where).
    pub fn service_address(&self, namespace: &str, name: &str, _port: i32) -> Option<SocketAddr> {
        self.services
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(namespace.to_string(), name.to_string()))
            .copied()
    }
}

/// A running stand-in.
pub struct StandIn {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl StandIn {
    /// Serve on `listen` (port 0 picks one).
    pub async fn start(listen: SocketAddr, config: Config) -> std::io::Result<StandIn> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            store: Mutex::new(store::Store::new(config.history_limit)),
            identities: RwLock::new(config.identities),
            webhooks: RwLock::new(config.webhooks),
            services: RwLock::new(HashMap::new()),
            faults: Faults::default(),
            watch_generation: watch::channel(0).0,
            bookmark_interval: config.bookmark_interval,
            signer: signer::Signer::new(),
        });
        let (cert_pem, key_pem) = state.signer.issue_serving(&["localhost", "127.0.0.1"]);
        let tls = tls_acceptor(&cert_pem, &key_pem)?;
        let (shutdown, mut stop) = watch::channel(false);
        let serve_state = state.clone();
        let server = tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
                    _ = stop.changed() => return,
                };
                let _ = tcp.set_nodelay(true);
                let state = serve_state.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(Duration::from_secs(10), tls.accept(tcp)).await
                    else {
                        return;
                    };
                    let service = service_fn(move |req| server::handle(state.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let mut tasks = vec![server];
        if config.signer {
            tasks.push(tokio::spawn(signer_loop(state.clone())));
        }
        Ok(StandIn {
            addr,
            state,
            shutdown,
            tasks,
        })
    }

    /// `https://127.0.0.1:<port>`: always HTTPS, since Kubernetes clients send bearer tokens
    /// only over TLS.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The CA that signs the stand-in's serving certificate and the certificates it issues.
    pub fn ca_pem(&self) -> &str {
        self.state.signer.ca_pem()
    }

    /// A kubeconfig with one context per identity; `current` is the current context.
    pub fn kubeconfig(&self, current: &str) -> serde_json::Value {
        kubeconfig::kubeconfig(
            &self.url(),
            self.ca_pem(),
            &self.state.identities(),
            current,
        )
    }

    /// A kube-rs configuration for one identity's context.
    pub async fn kube_config(&self, context: &str) -> Result<kube::Config, String> {
        let kc: kube::config::Kubeconfig =
            serde_json::from_value(self.kubeconfig(context)).map_err(|e| e.to_string())?;
        kube::Config::from_custom_kubeconfig(
            kc,
            &kube::config::KubeConfigOptions {
                context: Some(context.to_string()),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())
    }

    /// A kube-rs client acting as `context`'s identity.
    pub async fn client(&self, context: &str) -> kube::Client {
        let config = self
            .kube_config(context)
            .await
            .expect("stand-in kubeconfig");
        kube::Client::try_from(config).expect("kube client")
    }

    pub fn faults(&self) -> &Faults {
        &self.state.faults
    }

    pub fn set_webhooks(&self, webhooks: Vec<ValidatingWebhookConfiguration>) {
        *self
            .state
            .webhooks
            .write()
            .unwrap_or_else(|e| e.into_inner()) = webhooks;
    }

    /// Route a Service (as a webhook's `clientConfig.service` names it) to `addr`.
    pub fn set_service(&self, namespace: &str, name: &str, addr: SocketAddr) {
        self.state
            .services
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert((namespace.to_string(), name.to_string()), addr);
    }

    /// Add an identity, or replace the one with the same context.
    pub fn set_identity(&self, identity: Identity) {
        let mut ids = self
            .state
            .identities
            .write()
            .unwrap_or_else(|e| e.into_inner());
        ids.retain(|i| i.context != identity.context);
        ids.push(identity);
    }

    /// End every open watch (clients see the stream close).
    pub fn drop_watches(&self) {
        self.state.watch_generation.send_modify(|g| *g += 1);
    }

    /// Compact history: every resourceVersion handed out so far is too old to watch from.
    pub fn expire_resource_versions(&self) {
        self.state.store().compact();
    }

    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.drop_watches();
        for t in self.tasks {
            t.abort();
        }
    }
}

fn tls_acceptor(cert_pem: &str, key_pem: &str) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(std::io::Error::other)?;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(std::io::Error::other)?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(std::io::Error::other)?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(std::io::Error::other)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// kube-controller-manager's signing controller: signs or fails approved requests.
async fn signer_loop(state: Arc<State>) {
    let (_, mut rx, _) = state.store().watch_current(store::CSRS);
    loop {
        // Rescan everything on every wake-up: simple, and nothing is missed after a lag.
        let objects = state.store().list(store::CSRS, None);
        for obj in objects {
            let Ok(parsed) = csr::parse(&obj) else {
                continue;
            };
            let outcome = state.signer.decide(&parsed);
            let name = csr::name_of(&obj);
            let mut updated = obj.clone();
            match outcome {
                signer::Outcome::Skip => continue,
                signer::Outcome::Issued(pem) => {
                    use base64::Engine;
                    updated["status"]["certificate"] =
                        json!(base64::engine::general_purpose::STANDARD.encode(pem.as_bytes()));
                }
                signer::Outcome::Failed(message) => {
                    let mut conds = updated["status"]["conditions"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    let now = store::now();
                    conds.push(json!({
                        "type": "Failed", "status": "True", "reason": "SignerValidationFailure",
                        "message": message, "lastUpdateTime": now, "lastTransitionTime": now,
                    }));
                    updated["status"]["conditions"] = json!(conds);
                }
            }
            let rv = obj["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_string);
            let _ = state
                .store()
                .update(store::CSRS, "", &name, updated, rv.as_deref());
        }
        match rx.recv().await {
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(_) => return,
        }
    }
}
