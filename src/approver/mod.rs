//! The approver: watches stored CSRs (kube-runtime's controller: list, then watch), decides each
//! in-scope pending request with the decision core from what the API server stored, and writes
//! Approved or Denied through the `approval` subresource with the resourceVersion it decided on.
//! One replica decides at a time, elected through a coordination.k8s.io Lease.

pub mod plan;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use tokio::sync::{mpsc, watch};

use crate::policy::Verdict;
use crate::record::{DecisionRecord, RecordContext, RecordSource};
use crate::server::AppState;
use crate::server::metrics::ApproverLabels;
use plan::Plan;

/// How the approver runs.
#[derive(Debug, Clone)]
pub struct ApproverConfig {
    /// Decide and log, never write.
    pub dry_run: bool,
    /// Who this replica is (the Lease holder identity, the Event reporting instance).
    pub identity: String,
    /// Elect one deciding replica through this Lease; `None` decides always.
    pub lease: Option<LeaseConfig>,
}

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// Seconds a lease holds without renewal; a new leader takes over within this.
    pub duration_seconds: u64,
}

/// What the approver reports to the rest of the server.
#[derive(Default)]
pub struct ApproverStatus {
    pub leader: AtomicBool,
    /// Missing permissions by signer: readiness is false while any is listed.
    permission_errors: Mutex<HashMap<String, String>>,
}

impl ApproverStatus {
    /// The first missing permission, if any (for /readyz).
    pub fn permission_error(&self) -> Option<String> {
        let errors = self
            .permission_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<&String> = errors.values().collect();
        v.sort();
        v.first().map(|s| s.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Forbidden(String),
    #[error("resourceVersion conflicts on every attempt")]
    Conflicts,
}

struct Ctx {
    api: Api<CertificateSigningRequest>,
    state: Arc<AppState>,
    config: ApproverConfig,
    recorder: Recorder,
    attempts: Mutex<HashMap<String, u32>>,
}

impl Ctx {
    fn is_leader(&self) -> bool {
        self.config.lease.is_none() || self.state.approver.leader.load(Ordering::Relaxed)
    }

    fn forget(&self, name: &str) {
        self.attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }
}

/// Run the approver until `shutdown` turns true.
pub async fn run(
    client: kube::Client,
    state: Arc<AppState>,
    config: ApproverConfig,
    shutdown: watch::Receiver<bool>,
) {
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "csr-warden".into(),
            instance: Some(config.identity.clone()),
        },
    );
    let (reconcile_all_tx, reconcile_all_rx) = mpsc::channel::<()>(4);
    let mut lease_rx = None;
    let mut lease_task = None;
    if let Some(lease) = &config.lease {
        match start_lease(client.clone(), lease, &config.identity).await {
            Ok((rx, task)) => {
                lease_rx = Some(rx);
                lease_task = Some(task);
            }
            Err(e) => {
                tracing::error!(error = %e, namespace = lease.namespace, lease = lease.name, "leader election cannot start; this replica will not decide");
                state.metrics.approver_error("lease");
            }
        }
    }
    let mut leader_task = None;
    if let Some(mut rx) = lease_rx {
        let state = state.clone();
        let identity = config.identity.clone();
        let mut stop = shutdown.clone();
        leader_task = Some(tokio::spawn(async move {
            loop {
                let leading = *rx.borrow_and_update();
                let was = state.approver.leader.swap(leading, Ordering::Relaxed);
                state.metrics.approver_leader.set(i64::from(leading));
                if leading && !was {
                    tracing::info!(identity, "elected: this replica now decides CSRs");
                    let _ = reconcile_all_tx.send(()).await;
                } else if !leading && was {
                    tracing::info!(identity, "lost the lease: another replica decides now");
                }
                let ended = tokio::select! {
                    r = rx.changed() => r.is_err(),
                    _ = stop.wait_for(|s| *s) => true,
                };
                if ended {
                    // Dropping the receiver makes the lease manager release the lease, so
                    // another replica takes over at once instead of after the lease expires.
                    state.approver.leader.store(false, Ordering::Relaxed);
                    state.metrics.approver_leader.set(0);
                    return;
                }
            }
        }));
    } else if config.lease.is_none() {
        state.approver.leader.store(true, Ordering::Relaxed);
        state.metrics.approver_leader.set(1);
    }

    let ctx = Arc::new(Ctx {
        api: api.clone(),
        state: state.clone(),
        config,
        recorder,
        attempts: Mutex::new(HashMap::new()),
    });
    let trigger = futures_util::stream::unfold(reconcile_all_rx, |mut rx| async move {
        rx.recv().await.map(|v| (v, rx))
    });
    let controller = Controller::new(api, watcher::Config::default())
        .reconcile_all_on(trigger)
        .graceful_shutdown_on({
            let mut shutdown = shutdown.clone();
            async move {
                let _ = shutdown.wait_for(|s| *s).await;
            }
        });
    let store = controller.store();
    let gauges = tokio::spawn(pending_gauges(store, state.clone()));
    tracing::info!("approver watching CertificateSigningRequests");
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "approver controller event");
            }
        })
        .await;
    gauges.abort();
    if let Some(t) = leader_task {
        let _ = t.await;
    }
    if let Some(t) = lease_task
        && tokio::time::timeout(Duration::from_secs(5), t)
            .await
            .is_err()
    {
        tracing::warn!(
            "the lease was not released within 5 s; another replica takes over when it expires"
        );
    }
    tracing::info!("approver stopped");
}

async fn start_lease(
    client: kube::Client,
    lease: &LeaseConfig,
    identity: &str,
) -> Result<
    (
        watch::Receiver<bool>,
        tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
    ),
    kube_lease_manager::LeaseManagerError,
> {
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client, &lease.name)
        .with_namespace(&lease.namespace)
        .with_identity(identity)
        .with_duration(lease.duration_seconds)
        .with_grace(lease.duration_seconds.div_ceil(3).max(1))
        .build()
        .await?;
    Ok(manager.watch().await)
}

/// Count in-scope pending requests and the oldest one's age, every second.
async fn pending_gauges(
    store: kube::runtime::reflector::Store<CertificateSigningRequest>,
    state: Arc<AppState>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let policies = state.policies();
        let now = jiff::Timestamp::now();
        let mut pending = 0i64;
        let mut oldest = 0f64;
        for csr in store.state() {
            if !plan::is_pending(&policies, &csr) {
                continue;
            }
            pending += 1;
            if let Some(created) = &csr.metadata.creation_timestamp {
                oldest = oldest.max(now.duration_since(created.0).as_secs_f64());
            }
        }
        state.metrics.approver_pending.set(pending);
        state.metrics.approver_oldest_pending.set(oldest);
    }
}

/// The decision record of a decision made with `policies` (their digest, not whatever is
/// loaded by the time the record is written).
fn record(
    ctx: &Ctx,
    policies: &crate::policy::PolicySet,
    csr: &CertificateSigningRequest,
    input: &crate::request::ReviewInput,
    decision: &crate::policy::Decision,
    written: bool,
) {
    let name = csr.name_any();
    let uid = csr.metadata.uid.clone().unwrap_or_default();
    let mut r = DecisionRecord::new(
        RecordContext {
            source: RecordSource::Approver,
            timestamp: crate::record::now_rfc3339(),
            name: &name,
            uid: &uid,
            policy_digest: policies.digest(),
        },
        &csr.spec.request.0,
        input,
        decision,
    );
    r.written = Some(written);
    if ctx.config.dry_run {
        r.dry_run = Some(true);
    }
    ctx.state.records.write(&r);
}

async fn event(
    ctx: &Ctx,
    csr: &CertificateSigningRequest,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &csr.object_ref(&())).await {
        ctx.state.metrics.approver_error("event");
        tracing::warn!(csr = csr.name_any(), error = %e, "could not record an Event");
    }
}

/// The permission a 403 from the approval write says is missing.
fn missing_permission(signer: &str, message: &str) -> String {
    if message.contains("not permitted to approve") {
        let domain = signer.split_once('/').map_or(signer, |(d, _)| d);
        format!(
            "missing permission: verb \"approve\" on resource \"signers\" in API group \"certificates.k8s.io\" with resourceName {signer:?} (or \"{domain}/*\"); the API server said: {message}"
        )
    } else {
        format!(
            "missing permission to write approvals (verb \"update\" on \"certificatesigningrequests/approval\"): the API server said: {message}"
        )
    }
}

async fn reconcile(
    csr: Arc<CertificateSigningRequest>,
    ctx: Arc<Ctx>,
) -> Result<Action, ApproveError> {
    if !ctx.is_leader() {
        return Ok(Action::await_change());
    }
    let name = csr.name_any();
    let limits = ctx.state.admission.limits;
    let mut current = (*csr).clone();
    for _ in 0..5 {
        let policies = ctx.state.policies();
        match plan::plan(&policies, &current, ctx.config.dry_run, &limits) {
            Plan::OutOfScope | Plan::AlreadyDecided(_) => {
                ctx.forget(&name);
                return Ok(Action::await_change());
            }
            Plan::Observe {
                decision,
                input,
                why,
            } => {
                tracing::debug!(csr = name, why, "decided, nothing written");
                if decision.verdict() != Verdict::Ignore {
                    record(&ctx, &policies, &current, &input, &decision, false);
                }
                ctx.state
                    .metrics
                    .approver_decisions
                    .get_or_create(&ApproverLabels {
                        policy: decision.policy().unwrap_or("none").into(),
                        decision: "observe".into(),
                        signer: current.spec.signer_name.clone(),
                    })
                    .inc();
                ctx.forget(&name);
                return Ok(Action::await_change());
            }
            Plan::Write {
                condition,
                decision,
                input,
            } => {
                let mut body = current.clone();
                let status = body.status.get_or_insert_with(Default::default);
                status
                    .conditions
                    .get_or_insert_with(Vec::new)
                    .push(condition.clone());
                let started = Instant::now();
                let result = ctx
                    .api
                    .replace_subresource("approval", &name, &PostParams::default(), &body)
                    .await;
                ctx.state
                    .metrics
                    .approval_write_duration
                    .observe(started.elapsed().as_secs_f64());
                let signer = current.spec.signer_name.clone();
                match result {
                    Ok(_) => {
                        let approved = decision.verdict() == Verdict::Approve;
                        ctx.state
                            .metrics
                            .approver_decisions
                            .get_or_create(&ApproverLabels {
                                policy: decision.policy().unwrap_or("none").into(),
                                decision: if approved { "approve" } else { "deny" }.into(),
                                signer: signer.clone(),
                            })
                            .inc();
                        ctx.state
                            .approver
                            .permission_errors
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&signer);
                        record(&ctx, &policies, &current, &input, &decision, true);
                        let message = condition.message.clone().unwrap_or_default();
                        tracing::info!(csr = name, decision = %decision.verdict(), policy = decision.policy().unwrap_or(""), "condition written");
                        let (reason, action, type_) = if approved {
                            (plan::REASON_APPROVED, "Approve", EventType::Normal)
                        } else {
                            (plan::REASON_DENIED, "Deny", EventType::Warning)
                        };
                        event(&ctx, &current, type_, reason, action, message).await;
                        ctx.forget(&name);
                        return Ok(Action::await_change());
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        // Someone wrote since: re-read and decide again.
                        ctx.state.metrics.approver_error("conflict");
                        match ctx.api.get(&name).await {
                            Ok(fresh) => current = fresh,
                            Err(kube::Error::Api(s)) if s.code == 404 => {
                                return Ok(Action::await_change());
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
                    Err(kube::Error::Api(s))
                        if s.code == 403 && s.message.contains("admission webhook") =>
                    {
                        ctx.state.metrics.approver_error("webhook_denied");
                        tracing::warn!(
                            csr = name,
                            error = s.message,
                            "an admission webhook refused the approver's write"
                        );
                        return Err(ApproveError::Forbidden(s.message.clone()));
                    }
                    Err(kube::Error::Api(s)) if s.code == 403 => {
                        let why = missing_permission(&signer, &s.message);
                        ctx.state.metrics.approver_error("forbidden");
                        let first = ctx
                            .state
                            .approver
                            .permission_errors
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(signer.clone(), why.clone())
                            .is_none();
                        tracing::error!(
                            csr = name,
                            signer,
                            error = why,
                            "the approver cannot write its decision"
                        );
                        if first {
                            event(
                                &ctx,
                                &current,
                                EventType::Warning,
                                "MissingPermission",
                                "Approve",
                                why.clone(),
                            )
                            .await;
                        }
                        return Err(ApproveError::Forbidden(why));
                    }
                    Err(e) => {
                        ctx.state.metrics.approver_error("api");
                        return Err(e.into());
                    }
                }
            }
        }
    }
    Err(ApproveError::Conflicts)
}

/// Retry with exponential backoff and jitter per request: 0.5 s doubling to 5 min; 30 s for a
/// missing permission.
fn error_policy(
    csr: Arc<CertificateSigningRequest>,
    error: &ApproveError,
    ctx: Arc<Ctx>,
) -> Action {
    let name = csr.name_any();
    let n = {
        let mut attempts = ctx.attempts.lock().unwrap_or_else(|e| e.into_inner());
        let n = attempts.entry(name.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let base = match error {
        ApproveError::Forbidden(_) => Duration::from_secs(30),
        _ => Duration::from_millis(500)
            .saturating_mul(1 << n.min(10))
            .min(Duration::from_secs(300)),
    };
    let jitter = 0.5
        + (std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
            % 1000) as f64
            / 1000.0;
    let delay = base.mul_f64(jitter);
    tracing::warn!(csr = name, attempt = n, retry_in = ?delay, error = %error, "deciding failed; will retry");
    Action::requeue(delay)
}
