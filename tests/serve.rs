//! `serve` over real TLS on loopback: AdmissionReviews as the API server sends them, over
//! HTTP/1.1 and HTTP/2, certificate rotation, client certificates, bad input, policy reloads and
//! graceful shutdown.

mod support;

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::json;
use support::{Proto, review, review_bytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERVER_SAMPLE_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decides_reviews_over_http1_and_http2() {
    let h = support::start(|_, _| {}).await;
    for proto in [Proto::Http1, Proto::Http2] {
        // One keep-alive connection for every review.
        let mut conn = h.client().connect(h.addr(), proto).await.unwrap();
        let expected_alpn: &[u8] = if proto == Proto::Http1 {
            b"http/1.1"
        } else {
            b"h2"
        };
        assert_eq!(conn.alpn.as_deref(), Some(expected_alpn));

        let approve = conn
            .post("/validate", review_bytes("create-terraform-alice"))
            .await
            .unwrap();
        assert_eq!(approve.status, StatusCode::OK);
        let r = approve.response();
        assert_eq!(r["allowed"], true, "{proto:?}: {r}");
        assert_eq!(r["uid"], review("create-terraform-alice")["request"]["uid"]);
        assert_eq!(r["auditAnnotations"]["policy"], "terraform-client");

        let deny = conn
            .post("/validate", review_bytes("create-terraform-admin"))
            .await
            .unwrap();
        assert_eq!(deny.status, StatusCode::OK);
        let r = deny.response();
        assert_eq!(r["allowed"], false);
        assert_eq!(r["status"]["code"], 403);
        assert!(
            r["status"]["message"]
                .as_str()
                .unwrap()
                .contains("\n  - guard adminGroups")
        );

        let mut other_signer = review("create-terraform-alice");
        other_signer["request"]["object"]["spec"]["signerName"] = json!("example.com/nobody");
        let ignore = conn
            .post("/validate", serde_json::to_vec(&other_signer).unwrap())
            .await
            .unwrap();
        assert_eq!(ignore.response()["allowed"], true);
        assert_eq!(ignore.response()["auditAnnotations"]["decision"], "ignore");

        let guard = conn
            .post("/validate", review_bytes("approve-terraform-admin"))
            .await
            .unwrap();
        assert_eq!(guard.response()["allowed"], false);
        assert!(
            guard.response()["status"]["message"]
                .as_str()
                .unwrap()
                .starts_with("approval of")
        );

        let mut denied = review("approve-terraform-admin");
        denied["request"]["object"]["status"]["conditions"][0]["type"] = json!("Denied");
        let deny_ok = conn
            .post("/validate", serde_json::to_vec(&denied).unwrap())
            .await
            .unwrap();
        assert_eq!(deny_ok.response()["allowed"], true);

        assert_eq!(conn.get("/healthz").await.unwrap().status, StatusCode::OK);
        assert_eq!(conn.get("/readyz").await.unwrap().status, StatusCode::OK);
        assert_eq!(
            conn.get("/validate").await.unwrap().status,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            conn.get("/nope").await.unwrap().status,
            StatusCode::NOT_FOUND
        );
    }

    // One record per evaluated review: create approve, create deny, create ignore, approval
    // refused; the Denied approval is not evaluated.
    let records = h.records();
    assert_eq!(records.len(), 8, "{records:#?}");
    let denied = &records[1];
    assert_eq!(denied.name, "terraform-admin");
    assert_eq!(denied.requester.username, "terraform");
    assert_eq!(denied.allowed, Some(false));
    assert!(denied.duration_ms.unwrap() > 0.0);
    let sample = |op: &str, decision: &str, allowed: bool| {
        format!(
            "csr_warden_admission_requests_total{{operation=\"{op}\",decision=\"{decision}\",allowed=\"{allowed}\"}}"
        )
    };
    assert_eq!(
        h.metric(&sample("create", "approve", true)).await,
        Some(2.0)
    );
    assert_eq!(h.metric(&sample("create", "deny", false)).await, Some(2.0));
    assert_eq!(
        h.metric(&sample("approval", "deny", false)).await,
        Some(2.0)
    );
    // Every answered review is timed, evaluated or not.
    assert_eq!(
        h.metric("csr_warden_admission_duration_seconds_count")
            .await,
        Some(10.0)
    );
    assert_eq!(
        h.metric("csr_warden_policy_results_total{policy=\"terraform-client\",decision=\"deny\",mode=\"enforce\"}").await,
        Some(4.0)
    );
    h.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_mode_warns_and_break_glass_approves() {
    let h = support::start(|s, _| {
        s.break_glass_groups = vec!["kubeadm:cluster-admins".into()];
    })
    .await;
    let path = h.policies_dir.join("terraform-client.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("mode: enforce", "mode: audit")).unwrap();
    h.wait_for_metric("csr_warden_policy_reloads_total{result=\"success\"}", 1.0)
        .await;

    let mut conn = h.client().connect(h.addr(), Proto::Http2).await.unwrap();
    let mut long_lived = review("create-terraform-alice");
    long_lived["request"]["object"]["spec"]["expirationSeconds"] = json!(90 * 24 * 3600);
    let r = conn
        .post("/validate", serde_json::to_vec(&long_lived).unwrap())
        .await
        .unwrap()
        .response();
    assert_eq!(r["allowed"], true, "{r}");
    let warnings = r["warnings"].as_array().unwrap();
    assert!(
        warnings[0].as_str().unwrap().contains("audit mode"),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("expirationSeconds"))
    );

    let r = conn
        .post("/validate", review_bytes("approve-terraform-admin"))
        .await
        .unwrap()
        .response();
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(r["auditAnnotations"]["break-glass"], "true");
    assert_eq!(
        h.metric("csr_warden_break_glass_approvals_total").await,
        Some(1.0)
    );
    let record = h.records().pop().unwrap();
    assert!(record.approver.unwrap().break_glass);
    h.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_while_a_client_keeps_sending() {
    let mut h = support::start(|_, _| {}).await;
    let client = h.client();
    let addr = h.addr();
    let body = review_bytes("create-terraform-alice");
    let first = client.connect(addr, Proto::Http1).await.unwrap();
    let old_cert = first.peer_cert.clone();
    // A connection opened before the rotation keeps working after it.
    let mut long_lived = first;

    let sender = tokio::spawn(async move {
        let mut sent = 0;
        let mut failures = Vec::new();
        let mut certs = Vec::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(3) {
            match client.connect(addr, Proto::Http1).await {
                Ok(mut conn) => {
                    certs.push(conn.peer_cert.clone());
                    match conn.post("/validate", body.clone()).await {
                        Ok(a) if a.status == StatusCode::OK && a.response()["allowed"] == true => {}
                        Ok(a) => failures.push(format!(
                            "{}: {}",
                            a.status,
                            String::from_utf8_lossy(&a.body)
                        )),
                        Err(e) => failures.push(e),
                    }
                }
                Err(e) => failures.push(e),
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (sent, failures, certs)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let new_serving = h.ca.issue_serving(&support::serving_names()).unwrap();
    h.rotate(&new_serving);
    let (sent, failures, certs) = sender.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {failures:?}",
        failures.len()
    );
    assert!(sent > 20, "only {sent} requests sent");
    let new_der = rustls_pki_types::pem::PemObject::from_pem_slice(new_serving.cert_pem.as_bytes())
        .map(|c: rustls_pki_types::CertificateDer<'_>| c.as_ref().to_vec())
        .unwrap();
    assert_eq!(certs.first(), Some(&old_cert));
    assert_eq!(
        certs.last(),
        Some(&new_der),
        "the new certificate was never served"
    );
    let r = long_lived
        .post("/validate", review_bytes("create-terraform-alice"))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        h.metric("csr_warden_certificate_reloads_total{result=\"success\"}")
            .await,
        Some(1.0)
    );

    // A broken pair (a key that is not the certificate's) keeps the current one serving.
    let other = h.ca.issue_serving(&support::serving_names()).unwrap();
    let mismatched = csr_warden::server::devcerts::Issued {
        cert_pem: other.cert_pem.clone(),
        key_pem: new_serving.key_pem.clone(),
    };
    h.rotate(&mismatched);
    h.wait_for_metric("csr_warden_certificate_reload_failing", 1.0)
        .await;
    let conn = h.client().connect(addr, Proto::Http2).await.unwrap();
    assert_eq!(conn.peer_cert, new_der);
    assert_eq!(
        h.metric("csr_warden_certificate_reloads_total{result=\"failure\"}")
            .await,
        Some(1.0)
    );
    h.rotate(&other);
    h.wait_for_metric("csr_warden_certificate_reload_failing", 0.0)
        .await;
    h.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_required_when_a_client_ca_is_set() {
    let h = support::start(|s, dir| s.client_ca_file = Some(dir.join("ca.crt"))).await;
    let addr = h.addr();

    let anonymous = h.client();
    let refused = match anonymous.connect(addr, Proto::Http1).await {
        Err(_) => true,
        // TLS 1.3: the client may finish its side before the server's alert arrives.
        Ok(mut conn) => conn.get("/healthz").await.is_err(),
    };
    assert!(refused, "a client without a certificate was served");

    let stranger_ca = csr_warden::server::devcerts::DevCa::generate("another CA").unwrap();
    let stranger = support::ClientTls::new(
        &h.ca_pem(),
        Some(&stranger_ca.issue_client("kube-apiserver").unwrap()),
    );
    let refused = match stranger.connect(addr, Proto::Http1).await {
        Err(_) => true,
        Ok(mut conn) => conn.get("/healthz").await.is_err(),
    };
    assert!(
        refused,
        "a client with a certificate from another CA was served"
    );

    let apiserver = support::ClientTls::new(
        &h.ca_pem(),
        Some(&h.ca.issue_client("kube-apiserver").unwrap()),
    );
    for proto in [Proto::Http1, Proto::Http2] {
        let mut conn = apiserver.connect(addr, proto).await.unwrap();
        let r = conn
            .post("/validate", review_bytes("create-terraform-alice"))
            .await
            .unwrap();
        assert_eq!(r.response()["allowed"], true);
    }
    assert!(
        h.metric("csr_warden_connection_errors_total{reason=\"tls_handshake\"}")
            .await
            .unwrap()
            >= 2.0
    );
    h.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_answer_and_the_server_keeps_serving() {
    let h = support::start(|s, _| {
        s.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    let client = h.client();
    let addr = h.addr();

    // Headers one byte a second: the connection is closed after header_read_timeout, and
    // others are served meanwhile.
    let mut slow = client.tls(addr, &[b"http/1.1"]).await.unwrap();
    let slow_task = tokio::spawn(async move {
        let started = Instant::now();
        for b in b"POST /validate HTTP/1.1\r\nHost: localhost\r\n".iter() {
            if slow.write_all(&[*b]).await.is_err() || slow.flush().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            if started.elapsed() > SERVER_SAMPLE_TIMEOUT {
                break;
            }
        }
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), slow.read_to_end(&mut rest)).await;
        (started.elapsed(), rest)
    });

    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "malformed JSON",
            b"{\"apiVersion\": ".to_vec(),
            StatusCode::BAD_REQUEST,
            "not an AdmissionReview",
        ),
        (
            "empty body",
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "empty body",
        ),
        (
            "wrong apiVersion",
            br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}"#
                .to_vec(),
            StatusCode::BAD_REQUEST,
            "admission.k8s.io/v1beta1",
        ),
        (
            "wrong kind",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"ConversionReview"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "ConversionReview",
        ),
        (
            "missing request",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "no request",
        ),
        (
            "10 MiB body",
            vec![b' '; 10 * 1024 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
            "over the limit",
        ),
    ];
    for proto in [Proto::Http1, Proto::Http2] {
        for (what, body, status, expected) in &cases {
            let mut conn = client.connect(addr, proto).await.unwrap();
            let a = conn
                .post("/validate", body.clone())
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(a.status, *status, "{proto:?} {what}");
            let r = a.response();
            assert_eq!(r["allowed"], false, "{what}");
            assert_eq!(r["status"]["code"], status.as_u16(), "{what}");
            let message = r["status"]["message"].as_str().unwrap();
            assert!(message.contains(expected), "{what}: {message}");
        }
    }

    // 10 MiB without Content-Length (chunked): cut off at the limit.
    let mut tls = client.tls(addr, &[b"http/1.1"]).await.unwrap();
    tls.write_all(
        b"POST /validate HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    let chunk = vec![b' '; 64 * 1024];
    let mut written = 0;
    while written < 10 * 1024 * 1024 {
        let head = format!("{:x}\r\n", chunk.len());
        if tls.write_all(head.as_bytes()).await.is_err()
            || tls.write_all(&chunk).await.is_err()
            || tls.write_all(b"\r\n").await.is_err()
        {
            break; // the server answered and closed
        }
        written += chunk.len();
    }
    let _ = tls.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // Plain HTTP on the TLS port: told so, in plain HTTP.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.0 400 Bad Request"), "{answer}");
    assert!(
        answer.contains("HTTP request to an HTTPS server"),
        "{answer}"
    );

    let (elapsed, rest) = slow_task.await.unwrap();
    assert!(
        elapsed < SERVER_SAMPLE_TIMEOUT,
        "the slow connection was never closed"
    );
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.is_empty() || rest.starts_with("HTTP/1.1 408"),
        "{rest}"
    );

    let mut conn = client.connect(addr, Proto::Http1).await.unwrap();
    let r = conn
        .post("/validate", review_bytes("create-terraform-admin"))
        .await
        .unwrap();
    assert_eq!(r.response()["allowed"], false);
    assert!(h.metric("csr_warden_admission_requests_total{operation=\"invalid\",decision=\"error\",allowed=\"false\"}").await.unwrap() >= 12.0);
    assert_eq!(
        h.metric("csr_warden_connection_errors_total{reason=\"plain_http\"}")
            .await,
        Some(1.0)
    );
    h.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_policy_edit_keeps_the_last_good_policies_deciding() {
    let h = support::start(|_, _| {}).await;
    let mut conn = h.client().connect(h.addr(), Proto::Http2).await.unwrap();
    let path = h.policies_dir.join("terraform-client.yaml");
    let good = std::fs::read_to_string(&path).unwrap();

    std::fs::write(
        &path,
        good.replace("    rsaMinBits: 2048", "    rsaMinBits: lots"),
    )
    .unwrap();
    h.wait_for_metric("csr_warden_policy_reload_failing", 1.0)
        .await;
    assert_eq!(
        h.metric("csr_warden_policy_reloads_total{result=\"failure\"}")
            .await,
        Some(1.0)
    );
    let r = conn
        .post("/validate", review_bytes("create-terraform-alice"))
        .await
        .unwrap()
        .response();
    assert_eq!(r["allowed"], true);
    assert_eq!(r["auditAnnotations"]["policy"], "terraform-client");
    assert_eq!(conn.get("/readyz").await.unwrap().status, StatusCode::OK);

    // Deleting the file is an edit like any other: terraform-client stops governing.
    std::fs::write(
        &path,
        good.replace("name: terraform-client", "name: terraform-client-v2"),
    )
    .unwrap();
    h.wait_for_metric("csr_warden_policy_reload_failing", 0.0)
        .await;
    let r = conn
        .post("/validate", review_bytes("create-terraform-alice"))
        .await
        .unwrap()
        .response();
    assert_eq!(r["auditAnnotations"]["policy"], "terraform-client-v2");
    assert_eq!(h.metric("csr_warden_policies_loaded").await, Some(4.0));
    h.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_requests_in_flight_and_refuses_new_connections() {
    let h = support::start(|_, _| {}).await;
    let addr = h.addr();
    let client = h.client();
    let body = review_bytes("create-terraform-alice");
    let mut tls = client.tls(addr, &[b"http/1.1"]).await.unwrap();
    let head = format!(
        "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&body[..body.len() / 2]).await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let state = h.running.state.clone();
    let shutdown = tokio::spawn(h.running.shutdown());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        state
            .shutting_down
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(
        !shutdown.is_finished(),
        "shutdown did not wait for the request in flight"
    );
    assert!(
        client.connect(addr, Proto::Http1).await.is_err(),
        "a new connection was accepted during shutdown"
    );

    tls.write_all(&body[body.len() / 2..]).await.unwrap();
    tls.flush().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains("\"allowed\":true"), "{answer}");
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_the_decision_over_both_protocols() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("curl is not installed: skipping the curl client");
        return;
    }
    let h = support::start(|_, _| {}).await;
    let url = format!("https://localhost:{}/validate", h.addr().port());
    let ca = h.dir.path().join("ca.crt");
    for flag in ["--http1.1", "--http2"] {
        let out = tokio::process::Command::new("curl")
            .args(["-sS", flag, "--cacert"])
            .arg(&ca)
            .args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg("@examples/admission/create-terraform-admin.json")
            .args(["-w", "\n%{http_version}"])
            .arg(&url)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let (json, version) = text.rsplit_once('\n').unwrap();
        assert_eq!(version, if flag == "--http2" { "2" } else { "1.1" });
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["response"]["allowed"], false);
        assert_eq!(v["response"]["status"]["code"], 403);
    }
    let _ = Method::GET;
    h.running.shutdown().await;
}
