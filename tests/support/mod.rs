//! Test support: a webhook server started in-process on loopback with its own CA, files laid out
//! as a Kubernetes Secret volume mounts them, and a rustls + hyper client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use csr_warden::record::DecisionRecord;
use csr_warden::server::devcerts::{DevCa, Issued};
use csr_warden::server::{self, RecordSink, Running, Settings};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub struct Harness {
    pub running: Running,
    pub dir: tempfile::TempDir,
    pub ca: DevCa,
    /// A Secret-volume-like directory: tls.crt -> ..data/tls.crt, ..data -> ..<generation>.
    pub cert_dir: PathBuf,
    /// A copy of the shipped policies, free to edit.
    pub policies_dir: PathBuf,
    pub records: Arc<Mutex<Vec<DecisionRecord>>>,
    generation: usize,
}

/// localhost, and the Service name the API server (or the stand-in) calls the webhook by.
pub fn serving_names() -> Vec<String> {
    vec![
        "localhost".into(),
        "127.0.0.1".into(),
        "csr-warden.csr-warden.svc".into(),
    ]
}

/// Start a server on 127.0.0.1 with short reload intervals; `configure` adjusts the settings
/// (it gets the temporary directory, where `ca.crt` is the test CA).
pub async fn start(configure: impl FnOnce(&mut Settings, &Path)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::generate("test CA").unwrap();
    let cert_dir = dir.path().join("tls");
    std::fs::create_dir_all(&cert_dir).unwrap();
    let policies_dir = dir.path().join("policies");
    std::fs::create_dir_all(&policies_dir).unwrap();
    for entry in std::fs::read_dir("policies").unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, policies_dir.join(p.file_name().unwrap())).unwrap();
    }
    let mut generation = 0;
    let serving = ca.issue_serving(&serving_names()).unwrap();
    install_secret(&cert_dir, &mut generation, &serving);
    std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).unwrap();

    let mut settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        cert_file: Some(cert_dir.join("tls.crt")),
        key_file: Some(cert_dir.join("tls.key")),
        policies: policies_dir.clone(),
        reload_interval: Duration::from_millis(100),
        // Tests that want the approver turn it on with a stand-in kubeconfig.
        approver: csr_warden::server::ApproverMode::Off,
        ..Settings::default()
    };
    configure(&mut settings, dir.path());
    let records = Arc::new(Mutex::new(Vec::new()));
    let running = server::start(settings, RecordSink::Memory(records.clone()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    Harness {
        running,
        dir,
        ca,
        cert_dir,
        policies_dir,
        records,
        generation,
    }
}

impl Harness {
    pub fn addr(&self) -> SocketAddr {
        self.running.webhook_addr.expect("the webhook is on")
    }

    pub fn ca_pem(&self) -> String {
        self.ca.cert_pem().to_string()
    }

    /// Whether this replica's approver holds the lease.
    pub fn leads(&self) -> bool {
        self.running
            .state
            .approver
            .leader
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Wait up to `within` for this replica to hold the lease; whether it does.
    pub async fn wait_until_leading(&self, within: Duration) -> bool {
        let started = std::time::Instant::now();
        while !self.leads() && started.elapsed() < within {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.leads()
    }

    /// Replace the serving certificate the way the kubelet updates a Secret volume.
    pub fn rotate(&mut self, issued: &Issued) {
        install_secret(&self.cert_dir, &mut self.generation, issued);
    }

    pub fn records(&self) -> Vec<DecisionRecord> {
        self.records.lock().unwrap().clone()
    }

    pub fn client(&self) -> ClientTls {
        ClientTls::new(&self.ca_pem(), None)
    }

    /// GET /metrics over plain HTTP.
    pub async fn metrics(&self) -> String {
        let tcp = TcpStream::connect(self.running.metrics_addr).await.unwrap();
        let (mut send, conn) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = Request::get("/metrics")
            .header("host", "localhost")
            .body(Full::default())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    /// The value of one sample line (`name{labels}`) in /metrics, if present.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(sample)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .and_then(|v| v.trim().parse().ok())
    }

    /// Wait until `sample` reads `value` (reloads happen every 100 ms).
    pub async fn wait_for_metric(&self, sample: &str, value: f64) {
        for _ in 0..100 {
            if self.metric(sample).await == Some(value) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{sample} never became {value}:\n{}", self.metrics().await);
    }
}

/// Secret volume layout: `..data` is a symlink to a timestamped directory, `tls.crt` and
/// `tls.key` are symlinks through `..data`; an update writes a new directory and swaps `..data`.
pub fn install_secret(dir: &Path, generation: &mut usize, issued: &Issued) {
    *generation += 1;
    let data_dir = dir.join(format!("..gen_{generation}"));
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::write(data_dir.join("tls.crt"), &issued.cert_pem).unwrap();
    std::fs::write(data_dir.join("tls.key"), &issued.key_pem).unwrap();
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(data_dir.file_name().unwrap(), &tmp_link).unwrap();
    std::fs::rename(&tmp_link, dir.join("..data")).unwrap();
    for f in ["tls.crt", "tls.key"] {
        let link = dir.join(f);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(f), &link).unwrap();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Http1,
    Http2,
}

#[derive(Clone)]
pub struct ClientTls {
    pub config: Arc<rustls::ClientConfig>,
}

impl ClientTls {
    pub fn new(ca_pem: &str, client_cert: Option<&Issued>) -> ClientTls {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let builder =
            rustls::ClientConfig::builder_with_provider(csr_warden::server::tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots);
        let config = match client_cert {
            Some(issued) => {
                let certs = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
                let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
                builder.with_client_auth_cert(certs, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        ClientTls {
            config: Arc::new(config),
        }
    }

    /// A TLS stream to `addr` with the given ALPN protocols.
    pub async fn tls(
        &self,
        addr: SocketAddr,
        alpn: &[&[u8]],
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let mut config = (*self.config).clone();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await?;
        // As Go's net/http (the API server) does: no Nagle delay on small frames.
        tcp.set_nodelay(true)?;
        connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    }

    pub async fn connect(&self, addr: SocketAddr, proto: Proto) -> Result<Conn, String> {
        let alpn: &[&[u8]] = match proto {
            Proto::Http1 => &[b"http/1.1"],
            Proto::Http2 => &[b"h2"],
        };
        let tls = self.tls(addr, alpn).await.map_err(|e| e.to_string())?;
        let (_, session) = tls.get_ref();
        let peer_cert = session
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec())
            .unwrap_or_default();
        let negotiated = session.alpn_protocol().map(|p| p.to_vec());
        let io = TokioIo::new(tls);
        let send = match proto {
            Proto::Http1 => {
                let (send, conn) = hyper::client::conn::http1::handshake(io)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                Sender::Http1(send)
            }
            Proto::Http2 => {
                let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                Sender::Http2(send)
            }
        };
        Ok(Conn {
            send,
            peer_cert,
            alpn: negotiated,
        })
    }
}

enum Sender {
    Http1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

pub struct Conn {
    send: Sender,
    /// DER of the certificate the server presented.
    pub peer_cert: Vec<u8>,
    pub alpn: Option<Vec<u8>>,
}

pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    /// The AdmissionReview's response.
    pub fn response(&self) -> serde_json::Value {
        self.json()["response"].clone()
    }
}

impl Conn {
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        let req = Request::builder()
            .method(method)
            .uri(format!("https://localhost{path}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let resp = match &mut self.send {
            Sender::Http1(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                let (mut parts, body) = req.into_parts();
                parts.uri = path.parse().unwrap();
                parts.headers.insert("host", "localhost".parse().unwrap());
                s.send_request(Request::from_parts(parts, body)).await
            }
            Sender::Http2(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                s.send_request(req).await
            }
        }
        .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Answer { status, body })
    }

    pub async fn post(&mut self, path: &str, body: Vec<u8>) -> Result<Answer, String> {
        self.request(Method::POST, path, body).await
    }

    pub async fn get(&mut self, path: &str) -> Result<Answer, String> {
        self.request(Method::GET, path, Vec::new()).await
    }
}

/// An AdmissionReview from `examples/admission/`.
pub fn review(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(format!("examples/admission/{name}.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn review_bytes(name: &str) -> Vec<u8> {
    std::fs::read(format!("examples/admission/{name}.json")).unwrap()
}

/// csr-warden with its approver pointed at `standin` as the csr-warden service account
/// (2 s leases, so failover tests are quick); `configure` adjusts the settings further.
pub async fn start_with_standin(
    standin: &kube_standin::StandIn,
    configure: impl FnOnce(&mut Settings),
) -> Harness {
    start_with_standin_as(standin, "csr-warden", configure).await
}

/// The same, with the stand-in identity of kubeconfig context `context`.
pub async fn start_with_standin_as(
    standin: &kube_standin::StandIn,
    context: &str,
    configure: impl FnOnce(&mut Settings),
) -> Harness {
    let kubeconfig = serde_saphyr::to_string(&standin.kubeconfig(context)).unwrap();
    let context = context.to_string();
    start(move |s, dir| {
        let path = dir.join("kubeconfig");
        std::fs::write(&path, kubeconfig).unwrap();
        s.kubeconfig = Some(path);
        s.context = Some(context);
        s.approver = csr_warden::server::ApproverMode::On;
        s.lease_duration = Duration::from_secs(2);
        configure(s);
    })
    .await
}

/// The ValidatingWebhookConfiguration `deploy/` ships, with the test CA as caBundle (what an
/// overlay fills in), `failure_policy` and `timeout_seconds` set for the test.
pub fn deploy_webhook(
    ca_pem: &str,
    failure_policy: &str,
    timeout_seconds: i32,
) -> k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration {
    let text = std::fs::read_to_string("deploy/base/webhook.yaml").unwrap();
    let mut v = kube_standin::webhook::load(&text).unwrap().remove(0);
    let w = &mut v.webhooks.as_mut().unwrap()[0];
    w.client_config.ca_bundle = Some(k8s_openapi::ByteString(ca_pem.as_bytes().to_vec()));
    w.failure_policy = Some(failure_policy.into());
    w.timeout_seconds = Some(timeout_seconds);
    v
}
