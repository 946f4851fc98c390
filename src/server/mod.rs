//! `csr-warden serve`: the HTTPS admission webhook, its metrics port, and the reloading of
//! certificates and policies. [`start`] runs everything on the current tokio runtime and
//! returns a handle; the binary waits for SIGTERM and calls [`Running::shutdown`].

pub mod devcerts;
pub mod http;
pub mod metrics;
pub mod settings;
pub mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::admission::AdmissionSettings;
use crate::policy::{LoadErrors, PolicySet};
use crate::record::DecisionRecord;
pub use settings::{ApproverMode, ServeArgs, Settings, SettingsError};
use tls::{Reload, TlsFiles, TlsState};

/// Where decision records go.
#[derive(Clone, Default)]
pub enum RecordSink {
    /// One JSON line per record on standard output (the default for `serve`), and appended to
    /// `record_file` when one is set.
    #[default]
    Stdout,
    /// Standard output and a file, appended to.
    StdoutAndFile(Arc<Mutex<std::fs::File>>),
    /// Kept in memory, for tests.
    Memory(Arc<Mutex<Vec<DecisionRecord>>>),
}

impl RecordSink {
    /// Standard output, plus `file` (opened for appending, created 0640) when given.
    pub fn stdout(file: Option<&Path>) -> std::io::Result<RecordSink> {
        let Some(path) = file else {
            return Ok(RecordSink::Stdout);
        };
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o640);
        }
        let f = options.open(path).map_err(|e| {
            std::io::Error::new(e.kind(), format!("record_file {}: {e}", path.display()))
        })?;
        Ok(RecordSink::StdoutAndFile(Arc::new(Mutex::new(f))))
    }

    pub fn write(&self, record: &DecisionRecord) {
        use std::io::Write;
        let line = || {
            let mut line = serde_json::to_vec(record).ok()?;
            line.push(b'\n');
            Some(line)
        };
        match self {
            RecordSink::Stdout => {
                if let Some(l) = line() {
                    let _ = std::io::stdout().lock().write_all(&l);
                }
            }
            RecordSink::StdoutAndFile(file) => {
                let Some(l) = line() else { return };
                let _ = std::io::stdout().lock().write_all(&l);
                let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
                if let Err(e) = f.write_all(&l) {
                    tracing::error!(error = %e, "appending a decision record to record_file failed");
                }
            }
            RecordSink::Memory(records) => records
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(record.clone()),
        }
    }
}

/// What every connection shares.
pub struct AppState {
    policies: RwLock<Arc<PolicySet>>,
    pub admission: AdmissionSettings,
    pub settings: Settings,
    pub metrics: metrics::Metrics,
    pub records: RecordSink,
    pub shutting_down: AtomicBool,
    pub approver: crate::approver::ApproverStatus,
}

impl AppState {
    /// The policy set deciding now.
    pub fn policies(&self) -> Arc<PolicySet> {
        self.policies
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_policies(&self, set: PolicySet) {
        self.metrics
            .policies_loaded
            .set(set.policies().len() as i64);
        *self.policies.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Settings(#[from] SettingsError),
    #[error("loading policies from {path}:\n{errors}")]
    Policies { path: String, errors: LoadErrors },
    #[error("serving certificate: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("{0}")]
    DevCerts(#[from] devcerts::DevCertError),
    #[error("approver: {0}")]
    Kubernetes(String),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A started server.
pub struct Running {
    /// `None` when the webhook is off.
    pub webhook_addr: Option<SocketAddr>,
    pub metrics_addr: SocketAddr,
    pub state: Arc<AppState>,
    shutdown: watch::Sender<bool>,
    webhook: Option<JoinHandle<()>>,
    approver: Option<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stop accepting, let in-flight requests finish within `shutdown_timeout`, stop.
    pub async fn shutdown(self) {
        self.state.shutting_down.store(true, Ordering::Relaxed);
        let _ = self.shutdown.send(true);
        if let Some(w) = self.webhook {
            let _ = w.await;
        }
        if let Some(a) = self.approver {
            let timeout = self.state.settings.shutdown_timeout;
            if tokio::time::timeout(timeout, a).await.is_err() {
                tracing::warn!("the approver did not stop within the shutdown timeout");
            }
        }
        for task in self.background {
            task.abort();
        }
    }
}

/// Which certificate files to serve, generating development ones when none is configured.
pub fn resolve_tls_files(settings: &Settings) -> Result<TlsFiles, ServeError> {
    let (cert, key) = match (&settings.cert_file, &settings.key_file) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            let dir = &settings.dev_certs_dir;
            let cert = dir.join(devcerts::CERT_FILE);
            let key = dir.join(devcerts::KEY_FILE);
            if cert.exists() && key.exists() {
                tracing::warn!(
                    cert = %cert.display(),
                    key = %key.display(),
                    "no certificate configured: serving the DEVELOPMENT certificate found in {}; \
                     configure cert_file and key_file (a TLS Secret) in production",
                    dir.display()
                );
            } else {
                let files = devcerts::generate_into(
                    dir,
                    devcerts::DEFAULT_SERVICE,
                    devcerts::DEFAULT_NAMESPACE,
                )?;
                tracing::warn!(
                    ca = %files.ca.display(),
                    cert = %files.cert.display(),
                    key = %files.key.display(),
                    "no certificate configured and none found: GENERATED A DEVELOPMENT CA AND \
                     SERVING CERTIFICATE in {}; never use them in production",
                    dir.display()
                );
            }
            (cert, key)
        }
    };
    Ok(TlsFiles {
        cert,
        key,
        client_ca: settings.client_ca_file.clone(),
    })
}

/// Start the webhook and the metrics endpoint with `settings`.
pub async fn start(settings: Settings, records: RecordSink) -> Result<Running, ServeError> {
    let policies =
        crate::policy_dir::load(&settings.policies).map_err(|errors| ServeError::Policies {
            path: settings.policies.display().to_string(),
            errors,
        })?;
    tracing::info!(
        path = %settings.policies.display(),
        policies = policies.policies().len(),
        digest = policies.digest(),
        "policies loaded"
    );
    let tls = if settings.webhook {
        let files = resolve_tls_files(&settings)?;
        let loaded = tls::load(&files)?;
        log_certificate(&files, &loaded);
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| ServeError::Listen {
                    addr: settings.listen,
                    source,
                })?;
        Some((
            Arc::new(TlsState::new(files, &loaded)),
            loaded.not_after,
            listener,
        ))
    } else {
        None
    };
    let kube_client = approver_client(&settings).await?;
    let metrics_listener = TcpListener::bind(settings.metrics_listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: settings.metrics_listen,
            source,
        })?;
    let metrics_addr = metrics_listener
        .local_addr()
        .map_err(|source| ServeError::Listen {
            addr: settings.metrics_listen,
            source,
        })?;

    let metrics = metrics::Metrics::new();
    metrics
        .policies_loaded
        .set(policies.policies().len() as i64);
    let state = Arc::new(AppState {
        policies: RwLock::new(Arc::new(policies)),
        admission: AdmissionSettings {
            break_glass_users: settings.break_glass_users.clone(),
            break_glass_groups: settings.break_glass_groups.clone(),
            limits: Default::default(),
        },
        settings: settings.clone(),
        metrics,
        records,
        shutting_down: AtomicBool::new(false),
        approver: Default::default(),
    });

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut webhook_addr = None;
    let mut webhook = None;
    let mut tls_state = None;
    if let Some((tls, not_after, listener)) = tls {
        state.metrics.certificate_expiry.set(not_after as f64);
        let addr = listener.local_addr().map_err(|source| ServeError::Listen {
            addr: settings.listen,
            source,
        })?;
        webhook = Some(tokio::spawn(accept_loop(
            listener,
            state.clone(),
            tls.clone(),
            shutdown_rx.clone(),
        )));
        tracing::info!(webhook = %addr, "serving the admission webhook on https://{addr}/validate");
        webhook_addr = Some(addr);
        tls_state = Some(tls);
    } else {
        tracing::info!("the admission webhook is off (webhook: false)");
    }
    let approver = kube_client.map(|client| {
        let config = crate::approver::ApproverConfig {
            dry_run: settings.dry_run,
            identity: identity(&settings),
            lease: settings
                .leader_election
                .then(|| crate::approver::LeaseConfig {
                    namespace: settings.lease_namespace.clone(),
                    name: settings.lease_name.clone(),
                    duration_seconds: settings.lease_duration.as_secs().max(1),
                }),
        };
        tokio::spawn(crate::approver::run(
            client,
            state.clone(),
            config,
            shutdown_rx.clone(),
        ))
    });
    let metrics_task = tokio::spawn(metrics_loop(metrics_listener, state.clone()));
    let policy_digest = state.policies().digest().to_string();
    let reload_task = tokio::spawn(reload_loop(state.clone(), tls_state, policy_digest));
    tracing::info!(metrics = %metrics_addr, "metrics, /healthz and /readyz on http://{metrics_addr}");
    Ok(Running {
        webhook_addr,
        metrics_addr,
        state,
        shutdown: shutdown_tx,
        webhook,
        approver,
        background: vec![metrics_task, reload_task],
    })
}

/// This replica's name: the setting, `$HOSTNAME` (the pod name in a cluster), or a made-up one.
fn identity(settings: &Settings) -> String {
    settings
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| {
            use std::hash::{BuildHasher, Hasher};
            let r = std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish();
            format!("csr-warden-{:08x}", r as u32)
        })
}

/// The Kubernetes client the approver uses, when it runs.
async fn approver_client(settings: &Settings) -> Result<Option<kube::Client>, ServeError> {
    // `auto` starts the approver only for a cluster named on purpose: in-cluster, or a
    // kubeconfig/context setting. A developer's ~/.kube/config or KUBECONFIG is not enough, so
    // `serve` on a laptop never starts approving certificates in whatever cluster is current.
    let named = settings.kubeconfig.is_some()
        || settings.context.is_some()
        || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    match (settings.approver, named) {
        (ApproverMode::Off, _) => {
            tracing::info!("the approver is off (approver: off)");
            return Ok(None);
        }
        (ApproverMode::Auto, false) => {
            let hint = kubernetes_config_source()
                .map(|s| {
                    format!(" ({s} was found but not used: pass --kubeconfig or --approver on)")
                })
                .unwrap_or_default();
            tracing::info!(
                "not in a cluster and no kubeconfig or context given: running the admission \
                 webhook alone; the approver needs a cluster{hint}"
            );
            return Ok(None);
        }
        _ => {}
    }
    let config = match &settings.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| ServeError::Kubernetes(format!("{}: {e}", path.display())))?;
            let options = kube::config::KubeConfigOptions {
                context: settings.context.clone(),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| ServeError::Kubernetes(format!("{}: {e}", path.display())))?
        }
        None if settings.context.is_some() => {
            let options = kube::config::KubeConfigOptions {
                context: settings.context.clone(),
                ..Default::default()
            };
            kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| ServeError::Kubernetes(e.to_string()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| ServeError::Kubernetes(e.to_string()))?,
    };
    tracing::info!(cluster = %config.cluster_url, "the approver decides CSRs in this cluster");
    let client =
        kube::Client::try_from(config).map_err(|e| ServeError::Kubernetes(e.to_string()))?;
    Ok(Some(client))
}

fn log_certificate(files: &TlsFiles, loaded: &tls::Loaded) {
    let expires = jiff::Timestamp::from_second(loaded.not_after)
        .map(|t| t.to_string())
        .unwrap_or_default();
    tracing::info!(
        cert = %files.cert.display(),
        names = ?loaded.names,
        not_after = expires,
        client_ca = files
            .client_ca
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        "serving certificate loaded"
    );
}

fn connection_builder(settings: &Settings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size(64 * 1024)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    builder
}

/// Go's answer to plain HTTP on a TLS port, so a misconfigured client learns what is wrong.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

async fn accept_loop(
    listener: TcpListener,
    state: Arc<AppState>,
    tls_state: Arc<TlsState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = Arc::new(connection_builder(&state.settings));
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(state.settings.max_connections));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let state = state.clone();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls_state.current());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            state.metrics.connections_open.inc();
            serve_connection(tcp, peer, acceptor, &state, &builder, watcher).await;
            state.metrics.connections_open.dec();
        });
    }
    drop(listener);
    tracing::info!(
        open = graceful.count(),
        "stopped accepting connections; finishing requests in flight"
    );
    let timeout = state.settings.shutdown_timeout;
    if tokio::time::timeout(timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?timeout,
            "connections still open after the shutdown timeout; closing them"
        );
    }
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    state: &Arc<AppState>,
    builder: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let handshake_timeout = state.settings.tls_handshake_timeout;
    // A TLS connection starts with a handshake record (0x16); anything else is not TLS.
    let mut first = [0u8; 1];
    match tokio::time::timeout(handshake_timeout, tcp.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] != 0x16 => {
            state.metrics.connection_error("plain_http");
            tracing::debug!(%peer, "plain HTTP on the TLS port");
            let mut tcp = tcp;
            let _ = tokio::time::timeout(handshake_timeout, tcp.write_all(PLAIN_HTTP_ANSWER)).await;
            let _ = tcp.shutdown().await;
            return;
        }
        Ok(Ok(1)) => {}
        Ok(_) => return, // closed or failed before sending anything
        Err(_) => {
            state.metrics.connection_error("handshake_timeout");
            return;
        }
    }
    let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            state.metrics.connection_error("tls_handshake");
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            state.metrics.connection_error("handshake_timeout");
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let service_state = state.clone();
    let service = service_fn(move |req| http::webhook(service_state.clone(), req));
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    if let Err(e) = watcher.watch(conn).await {
        state.metrics.connection_error("http");
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

async fn metrics_loop(listener: TcpListener, state: Arc<AppState>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| http::metrics(state.clone(), req));
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10));
            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
        });
    }
}

/// Check certificate and policy files every `reload_interval`; swap in what changed and works,
/// keep what serves when the change is broken. Files are compared by content, so a Secret or
/// ConfigMap volume's symlink swap, an editor's rename and an in-place write all count.
async fn reload_loop(
    state: Arc<AppState>,
    tls_state: Option<Arc<TlsState>>,
    mut policy_digest: String,
) {
    let mut interval = tokio::time::interval(state.settings.reload_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    let mut last_tls_error = String::new();
    let mut last_policy_error = String::new();
    loop {
        interval.tick().await;
        let (tls_result, policy_result) = {
            let tls_state = tls_state.clone();
            let path = state.settings.policies.clone();
            let policy_digest = policy_digest.clone();
            let checked = tokio::task::spawn_blocking(move || {
                let tls = tls_state.map_or(Reload::Unchanged, |t| t.reload());
                (tls, read_policies(&path, &policy_digest))
            })
            .await;
            match checked {
                Ok(r) => r,
                Err(_) => continue,
            }
        };
        match tls_result {
            Reload::Unchanged => {}
            Reload::Reloaded(loaded) => {
                last_tls_error.clear();
                metrics::Metrics::reload(&state.metrics.certificate_reloads, true);
                state.metrics.certificate_reload_failing.set(0);
                state
                    .metrics
                    .certificate_expiry
                    .set(loaded.not_after as f64);
                if let Some(t) = &tls_state {
                    log_certificate(t.files(), &loaded);
                }
            }
            Reload::Failed(e) => {
                let message = e.to_string();
                state.metrics.certificate_reload_failing.set(1);
                if message != last_tls_error {
                    metrics::Metrics::reload(&state.metrics.certificate_reloads, false);
                    tracing::error!(
                        error = message,
                        "certificate reload failed; the previous certificate keeps serving"
                    );
                    last_tls_error = message;
                }
            }
        }
        match policy_result {
            PolicyReload::Unchanged => {}
            PolicyReload::Reloaded(set) => {
                policy_digest = set.digest().to_string();
                last_policy_error.clear();
                metrics::Metrics::reload(&state.metrics.policy_reloads, true);
                state.metrics.policy_reload_failing.set(0);
                tracing::info!(
                    path = %state.settings.policies.display(),
                    policies = set.policies().len(),
                    digest = set.digest(),
                    "policies reloaded"
                );
                state.set_policies(set);
            }
            PolicyReload::Failed(errors, digest) => {
                // Remember the broken files, so they are reported once, not every interval.
                if let Some(d) = digest {
                    policy_digest = d;
                }
                state.metrics.policy_reload_failing.set(1);
                let message = errors.to_string();
                if message != last_policy_error {
                    metrics::Metrics::reload(&state.metrics.policy_reloads, false);
                    for e in &errors.0 {
                        tracing::error!(
                            file = e.file,
                            line = e.line,
                            field = e.field,
                            error = e.message,
                            "policy reload failed; the last good policies keep deciding"
                        );
                    }
                    last_policy_error = message;
                }
            }
        }
    }
}

enum PolicyReload {
    Unchanged,
    Reloaded(PolicySet),
    /// The errors, and the fingerprint of the broken sources when they could be read.
    Failed(LoadErrors, Option<String>),
}

fn read_policies(path: &Path, current: &str) -> PolicyReload {
    let sources = match crate::policy_dir::read_sources(path) {
        Ok(s) => s,
        Err(e) => return PolicyReload::Failed(e, None),
    };
    let digest = PolicySet::digest_of(&sources);
    if digest == current {
        return PolicyReload::Unchanged;
    }
    match PolicySet::from_sources(&sources) {
        Ok(set) => PolicyReload::Reloaded(set),
        Err(e) => PolicyReload::Failed(e, Some(digest)),
    }
}

/// Where a Kubernetes client would find a cluster, if anywhere.
pub fn kubernetes_config_source() -> Option<String> {
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return Some("in-cluster service account".into());
    }
    if let Some(k) = std::env::var_os("KUBECONFIG").filter(|k| !k.is_empty()) {
        return Some(format!("KUBECONFIG={}", k.to_string_lossy()));
    }
    let home = std::env::var_os("HOME")?;
    let default = Path::new(&home).join(".kube").join("config");
    default.exists().then(|| default.display().to_string())
}
