//! Prometheus metrics (OpenMetrics text), served on their own plain-HTTP port.
//! Labels are low-cardinality: operation, decision, mode, policy name; never a CSR name.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    /// create | approval | other | invalid
    pub operation: String,
    /// approve | deny | ignore | error
    pub decision: String,
    /// "true" when the response let the operation through.
    pub allowed: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub policy: String,
    pub decision: String,
    pub mode: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// success | failure
    pub result: String,
}

pub struct Metrics {
    registry: Registry,
    pub admission_requests: Family<AdmissionLabels, Counter>,
    pub admission_duration: Histogram,
    pub policy_results: Family<PolicyLabels, Counter>,
    pub break_glass_approvals: Counter,
    pub certificate_reloads: Family<ResultLabels, Counter>,
    pub policy_reloads: Family<ResultLabels, Counter>,
    /// 1 while the policy files on disk are broken and the last good set is serving.
    pub policy_reload_failing: Gauge,
    /// 1 while the certificate files on disk are unusable and the previous pair is serving.
    pub certificate_reload_failing: Gauge,
    pub policies_loaded: Gauge,
    pub certificate_expiry: Gauge<f64, AtomicU64>,
    pub connections_open: Gauge,
    /// Connections closed before a request: TLS handshake failures, plain HTTP, timeouts.
    pub connection_errors: Family<ReasonLabels, Counter>,
    pub approver_decisions: Family<ApproverLabels, Counter>,
    pub approval_write_duration: Histogram,
    pub approver_errors: Family<KindLabels, Counter>,
    pub approver_pending: Gauge,
    pub approver_oldest_pending: Gauge<f64, AtomicU64>,
    pub approver_leader: Gauge,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApproverLabels {
    pub policy: String,
    /// approve | deny (written), or observe (audit mode, dry run, ignored)
    pub decision: String,
    pub signer: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// conflict | forbidden | webhook_denied | api | event
    pub kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// tls_handshake | handshake_timeout | plain_http | http
    pub reason: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("csr_warden");
        let admission_requests = Family::<AdmissionLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "AdmissionReviews answered, by operation, decision and whether allowed",
            admission_requests.clone(),
        );
        // 0.25 ms to 8.2 s, doubling, plus 10 s.
        let buckets = exponential_buckets(0.00025, 2.0, 16).chain([10.0]);
        let admission_duration = Histogram::new(buckets);
        registry.register_with_unit(
            "admission_duration",
            "Time from a complete request body to the response, per AdmissionReview",
            prometheus_client::registry::Unit::Seconds,
            admission_duration.clone(),
        );
        let policy_results = Family::<PolicyLabels, Counter>::default();
        registry.register(
            "policy_results",
            "Decisions by deciding policy, decision and mode (webhook)",
            policy_results.clone(),
        );
        let break_glass_approvals = Counter::default();
        registry.register(
            "break_glass_approvals",
            "Approvals let through only because the approver is on the break-glass list",
            break_glass_approvals.clone(),
        );
        let certificate_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "certificate_reloads",
            "Serving certificate reloads after the files changed",
            certificate_reloads.clone(),
        );
        let policy_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "policy_reloads",
            "Policy reloads after the files changed",
            policy_reloads.clone(),
        );
        let policy_reload_failing = Gauge::default();
        registry.register(
            "policy_reload_failing",
            "1 while the policy files are broken and the last good policies are deciding",
            policy_reload_failing.clone(),
        );
        let certificate_reload_failing = Gauge::default();
        registry.register(
            "certificate_reload_failing",
            "1 while the certificate files are unusable and the previous certificate is serving",
            certificate_reload_failing.clone(),
        );
        let policies_loaded = Gauge::default();
        registry.register(
            "policies_loaded",
            "Policies in the set that is deciding",
            policies_loaded.clone(),
        );
        let certificate_expiry = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate, seconds since the Unix epoch",
            certificate_expiry.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Webhook connections open now",
            connections_open.clone(),
        );
        let connection_errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connection_errors",
            "Webhook connections that ended in an error, by reason",
            connection_errors.clone(),
        );
        let approver_decisions = Family::<ApproverLabels, Counter>::default();
        registry.register(
            "approver_decisions",
            "Decisions the approver made, by deciding policy, decision and signer",
            approver_decisions.clone(),
        );
        let approval_write_duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register_with_unit(
            "approval_write_duration",
            "Time to write one Approved or Denied condition through the approval subresource",
            prometheus_client::registry::Unit::Seconds,
            approval_write_duration.clone(),
        );
        let approver_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "approver_errors",
            "Approver errors by kind (conflict, forbidden, webhook_denied, api, event)",
            approver_errors.clone(),
        );
        let approver_pending = Gauge::default();
        registry.register(
            "approver_pending_requests",
            "In-scope requests not yet Approved, Denied or Failed",
            approver_pending.clone(),
        );
        let approver_oldest_pending = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "approver_oldest_pending_age",
            "Age of the oldest in-scope pending request",
            prometheus_client::registry::Unit::Seconds,
            approver_oldest_pending.clone(),
        );
        let approver_leader = Gauge::default();
        registry.register(
            "approver_leader",
            "1 while this replica holds the lease and decides",
            approver_leader.clone(),
        );
        Metrics {
            approver_decisions,
            approval_write_duration,
            approver_errors,
            approver_pending,
            approver_oldest_pending,
            approver_leader,
            registry,
            admission_requests,
            admission_duration,
            policy_results,
            break_glass_approvals,
            certificate_reloads,
            policy_reloads,
            policy_reload_failing,
            certificate_reload_failing,
            policies_loaded,
            certificate_expiry,
            connections_open,
            connection_errors,
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn reload(family: &Family<ResultLabels, Counter>, ok: bool) {
        family
            .get_or_create(&ResultLabels {
                result: if ok { "success" } else { "failure" }.into(),
            })
            .inc();
    }

    pub fn approver_error(&self, kind: &str) {
        self.approver_errors
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
    }

    pub fn connection_error(&self, reason: &str) {
        self.connection_errors
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }
}
