//! The webhook's HTTP routes: `POST /validate`, `GET /healthz`, `GET /readyz`; and the
//! metrics port's `GET /metrics`. Admission decisions come from [`crate::admission`]; this
//! module reads bodies within limits, keeps the deadline, logs and counts.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use super::AppState;
use super::metrics::{AdmissionLabels, PolicyLabels};
use crate::admission::{self, Reviewed};
use crate::policy::Verdict;

pub type ResponseBody = Full<Bytes>;

fn text(status: StatusCode, body: impl Into<String>) -> Response<ResponseBody> {
    let mut r = Response::new(Full::new(Bytes::from(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<ResponseBody> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// Route one webhook request.
pub async fn webhook<B>(
    state: Arc<AppState>,
    req: Request<B>,
) -> Result<Response<ResponseBody>, Infallible>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let path = req.uri().path().to_string();
    let response = match (req.method(), path.as_str()) {
        (&Method::POST, "/validate") => validate(&state, req).await,
        (_, "/validate") => {
            let mut r = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "use POST with an AdmissionReview\n",
            );
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
            r
        }
        (&Method::GET | &Method::HEAD, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET | &Method::HEAD, "/readyz") => readyz(&state),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: csr-warden serves POST /validate, GET /healthz, GET /readyz\n",
        ),
    };
    Ok(response)
}

/// Ready once certificate and policies are loaded (`serve` does not start otherwise); not ready
/// while shutting down or while the approver lacks a permission it needs.
fn readyz(state: &AppState) -> Response<ResponseBody> {
    if state.shutting_down.load(Ordering::Relaxed) {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    if let Some(e) = state.approver.permission_error() {
        return text(StatusCode::SERVICE_UNAVAILABLE, format!("approver: {e}\n"));
    }
    text(StatusCode::OK, "ok\n")
}

/// Route one metrics-port request: `/metrics`, and `/healthz` and `/readyz` as on the webhook
/// port (for an approver-only deployment).
pub async fn metrics<B>(
    state: Arc<AppState>,
    req: Request<B>,
) -> Result<Response<ResponseBody>, Infallible> {
    match req.uri().path() {
        "/healthz" => return Ok(text(StatusCode::OK, "ok\n")),
        "/readyz" => return Ok(readyz(&state)),
        "/metrics" => {}
        _ => return Ok(text(StatusCode::NOT_FOUND, "not found: try /metrics\n")),
    }
    let mut r = text(StatusCode::OK, state.metrics.encode());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    Ok(r)
}

fn count(state: &AppState, operation: &str, decision: &str, allowed: bool) {
    state
        .metrics
        .admission_requests
        .get_or_create(&AdmissionLabels {
            operation: operation.into(),
            decision: decision.into(),
            allowed: allowed.to_string(),
        })
        .inc();
}

/// A response for a body that is not a review: counted, logged, answered in AdmissionReview form.
fn refuse(state: &AppState, status: StatusCode, message: &str) -> Response<ResponseBody> {
    count(state, "invalid", "error", false);
    tracing::warn!(
        status = status.as_u16(),
        error = message,
        "refused an admission request"
    );
    let mut review = admission::invalid_response(message);
    if let Some(r) = review.response.as_mut() {
        r.result.code = status.as_u16();
    }
    json(status, serde_json::to_vec(&review).unwrap_or_default())
}

async fn validate<B>(state: &Arc<AppState>, req: Request<B>) -> Response<ResponseBody>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let limit = state.settings.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > DRAIN_LIMIT_BYTES) {
        // Too large even to read and throw away: answer now and close the connection.
        let mut r = refuse(
            state,
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body of {n} bytes is over the limit of {limit} bytes"),
        );
        r.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return r;
    }
    let read = tokio::time::timeout(
        state.settings.body_read_timeout,
        read_body(req.into_body(), limit),
    )
    .await;
    let body = match read {
        Err(_) => {
            return refuse(
                state,
                StatusCode::REQUEST_TIMEOUT,
                &format!(
                    "request body not received within {:?}",
                    state.settings.body_read_timeout
                ),
            );
        }
        Ok(Err(BodyError::TooLarge(n))) => {
            let mut r = refuse(
                state,
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body of {n} bytes or more is over the limit of {limit} bytes"),
            );
            if n > DRAIN_LIMIT_BYTES {
                r.headers_mut().insert(
                    header::CONNECTION,
                    header::HeaderValue::from_static("close"),
                );
            }
            return r;
        }
        Ok(Err(BodyError::Read(e))) => {
            return refuse(
                state,
                StatusCode::BAD_REQUEST,
                &format!("reading the request body: {e}"),
            );
        }
        Ok(Ok(body)) => body,
    };

    let started = Instant::now();
    let request = match admission::parse_review(&body) {
        Ok(r) => r,
        Err(message) => return refuse(state, StatusCode::BAD_REQUEST, &message),
    };
    let review_uid = request.uid.clone();
    let policies = state.policies();
    let settings = state.admission.clone();
    let timestamp = crate::record::now_rfc3339();
    // Evaluation is CPU work (signature checks): off the I/O threads, and bounded in time.
    let task = tokio::task::spawn_blocking(move || {
        admission::review(&policies, &settings, &request, timestamp)
    });
    let deadline = state.settings.evaluation_deadline;
    let reviewed = match tokio::time::timeout(deadline, task).await {
        Ok(Ok(reviewed)) => reviewed,
        Ok(Err(join)) => {
            tracing::error!(review_uid, error = %join, "evaluation failed");
            return refuse(
                state,
                StatusCode::INTERNAL_SERVER_ERROR,
                "csr-warden failed to evaluate this request",
            );
        }
        Err(_) => {
            tracing::error!(review_uid, deadline = ?deadline, "evaluation missed its deadline");
            return refuse(
                state,
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("csr-warden could not decide within {deadline:?}"),
            );
        }
    };
    let elapsed = started.elapsed();
    respond(state, reviewed, elapsed)
}

/// A body over the limit is still read (and thrown away) up to this many bytes, so that the
/// client, still sending, gets to read the 413 instead of a reset connection.
const DRAIN_LIMIT_BYTES: u64 = 64 * 1024 * 1024;

enum BodyError {
    /// Bytes received when the reading stopped.
    TooLarge(u64),
    Read(String),
}

/// The body, if it is at most `limit` bytes. A larger one is drained up to
/// [`DRAIN_LIMIT_BYTES`] before [`BodyError::TooLarge`] is returned.
async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let mut body = std::pin::pin!(body);
    let mut kept = bytes::BytesMut::new();
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total += data.len() as u64;
        if total <= limit as u64 {
            kept.extend_from_slice(&data);
        } else if total > DRAIN_LIMIT_BYTES {
            return Err(BodyError::TooLarge(total));
        } else {
            kept.clear();
        }
    }
    if total > limit as u64 {
        return Err(BodyError::TooLarge(total));
    }
    Ok(kept.freeze())
}

fn respond(
    state: &AppState,
    reviewed: Reviewed,
    elapsed: std::time::Duration,
) -> Response<ResponseBody> {
    let Reviewed {
        kind,
        response,
        decision,
        record,
        break_glass,
    } = reviewed;
    let allowed = response.allowed;
    let verdict = decision.as_ref().map_or("ignore", |d| match d.verdict() {
        Verdict::Approve => "approve",
        Verdict::Deny => "deny",
        Verdict::Ignore => "ignore",
    });
    count(state, kind.as_str(), verdict, allowed);
    state
        .metrics
        .admission_duration
        .observe(elapsed.as_secs_f64());
    if let Some(d) = &decision {
        state
            .metrics
            .policy_results
            .get_or_create(&PolicyLabels {
                policy: d.policy().unwrap_or("none").into(),
                decision: verdict.into(),
                mode: d.mode().map_or("none".into(), |m| m.to_string()),
            })
            .inc();
    }
    if break_glass {
        state.metrics.break_glass_approvals.inc();
    }
    if let Some(mut record) = record {
        record.duration_ms = Some(elapsed.as_secs_f64() * 1000.0);
        if break_glass {
            tracing::warn!(
                csr = record.name,
                approver = record
                    .approver
                    .as_ref()
                    .map(|a| a.username.as_str())
                    .unwrap_or(""),
                policy = record.policy.as_deref().unwrap_or(""),
                "break-glass approval of a request policy denies"
            );
        }
        state.records.write(&record);
    } else {
        tracing::debug!(
            operation = kind.as_str(),
            allowed,
            "admission review allowed without evaluation"
        );
    }
    let body = serde_json::to_vec(&response.into_review()).unwrap_or_default();
    json(StatusCode::OK, body)
}
