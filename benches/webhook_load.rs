//! Load on `POST /validate` over TLS with keep-alive: runs the release `csr-warden serve` as its
//! own process (development certificates in a temporary directory, the shipped policies), drives
//! it with concurrent HTTP/1.1 and HTTP/2 connections, and prints requests per second, latency
//! percentiles and the server's memory.
//!
//!   cargo bench --bench webhook_load
//!   LOAD_SECONDS=20 LOAD_CONNECTIONS=16 cargo bench --bench webhook_load
//!
//! Client and server share the machine: on 2 cores the client's own work is part of the figures.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{ClientTls, Proto};

struct Server {
    child: Child,
    _dir: tempfile::TempDir,
    addr: std::net::SocketAddr,
    ca_pem: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let metrics_port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_csr-warden"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
        .arg("--dev-certs-dir")
        .arg(dir.path())
        .args(["--log-level", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting csr-warden serve");
    let mut server = Server {
        child,
        _dir: dir,
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        ca_pem: String::new(),
    };
    for _ in 0..200 {
        if let Ok(ca_pem) = std::fs::read_to_string(server._dir.path().join("ca.crt")) {
            let client = ClientTls::new(&ca_pem, None);
            if let Ok(mut c) = client.connect(server.addr, Proto::Http1).await
                && c.get("/readyz").await.is_ok_and(|a| a.status == 200)
            {
                server.ca_pem = ca_pem;
                return server;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("csr-warden serve did not become ready");
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn run(server: &Server, proto: Proto, review: &str, connections: usize, seconds: u64) {
    let body = Arc::new(support::review_bytes(review));
    let expected_allowed = !review.contains("admin");
    let client = ClientTls::new(&server.ca_pem, None);
    // Warm up: connections open, one request each.
    let mut conns = Vec::new();
    for _ in 0..connections {
        let mut c = client.connect(server.addr, proto).await.unwrap();
        c.post("/validate", body.to_vec()).await.unwrap();
        conns.push(c);
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut c| {
            let body = body.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let a = c.post("/validate", body.to_vec()).await.unwrap();
                    latencies.push(t.elapsed().as_micros() as u64);
                    assert_eq!(a.status, 200);
                    assert_eq!(a.response()["allowed"], expected_allowed);
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)] as f64 / 1000.0;
    let (rss, hwm) = rss_kib(server.child.id());
    println!(
        "{:<6} {:<24} {:>3} conns  {:>8.0} req/s  p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  server RSS {:>6} KiB (peak {} KiB)",
        format!("{proto:?}"),
        review,
        connections,
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.90),
        pct(0.99),
        *all.last().unwrap() as f64 / 1000.0,
        rss,
        hwm
    );
}

fn main() {
    // `cargo test --benches` runs bench binaries with --bench absent: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let seconds: u64 = std::env::var("LOAD_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let connections: usize = std::env::var("LOAD_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let server = start_server().await;
        let (rss, _) = rss_kib(server.child.id());
        println!("server idle RSS {rss} KiB");
        for proto in [Proto::Http1, Proto::Http2] {
            for review in ["create-terraform-alice", "create-terraform-admin"] {
                run(&server, proto, review, connections, seconds).await;
            }
        }
        run(&server, Proto::Http1, "create-terraform-alice", 1, seconds).await;
    });
}
