//! `serve` settings: defaults, then a config file (`--config`), then environment
//! (`CSR_WARDEN_*`), then flags; later sources win. Loaded with the `config` crate.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Deserializer, Serialize};

/// Flags of `csr-warden serve`. Every flag overrides the file and the environment.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Settings file (YAML or JSON); keys as in the README's settings table.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address of the HTTPS webhook [default: 0.0.0.0:8443].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Address of the plain-HTTP metrics endpoint [default: 0.0.0.0:9090].
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Serving certificate chain, PEM (a TLS Secret's tls.crt).
    #[arg(long, value_name = "FILE")]
    pub cert_file: Option<PathBuf>,
    /// Serving private key, PEM (a TLS Secret's tls.key).
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// CA bundle (PEM) for client certificates; when set, clients must present one.
    #[arg(long, value_name = "FILE")]
    pub client_ca_file: Option<PathBuf>,
    /// Policy directory (or a single file) [default: policies].
    #[arg(long, value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// Where development certificates are found or generated when none is configured
    /// [default: certs].
    #[arg(long, value_name = "DIR")]
    pub dev_certs_dir: Option<PathBuf>,
    /// User whose approvals pass even when policy denies (repeatable).
    #[arg(long = "break-glass-user", value_name = "USER")]
    pub break_glass_users: Vec<String>,
    /// Group whose members' approvals pass even when policy denies (repeatable).
    #[arg(long = "break-glass-group", value_name = "GROUP")]
    pub break_glass_groups: Vec<String>,
    /// Log filter, e.g. `info` or `csr_warden=debug` [default: info].
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Run the approver: auto (when a cluster is configured), on, off [default: auto].
    #[arg(long, value_name = "MODE")]
    pub approver: Option<String>,
    /// Do not serve the admission webhook (run the approver alone).
    #[arg(long)]
    pub no_webhook: bool,
    /// kubeconfig for the approver [default: in-cluster, then KUBECONFIG, then ~/.kube/config].
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context for the approver.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Decide and log, but write nothing to the cluster.
    #[arg(long)]
    pub dry_run: bool,
    /// This replica's name in the Lease and in Events [default: $HOSTNAME].
    #[arg(long, value_name = "NAME")]
    pub identity: Option<String>,
    /// Append every decision record to this file too (JSON lines).
    #[arg(long, value_name = "FILE")]
    pub record_file: Option<PathBuf>,
}

/// Whether `serve` runs the approver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApproverMode {
    /// When a Kubernetes configuration is found.
    Auto,
    On,
    Off,
}

/// Every `serve` setting, with its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_ca_file: Option<PathBuf>,
    pub dev_certs_dir: PathBuf,
    pub policies: PathBuf,
    pub break_glass_users: Vec<String>,
    pub break_glass_groups: Vec<String>,
    /// Largest AdmissionReview body accepted; larger gets 413.
    pub max_body_bytes: usize,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    #[serde(with = "duration")]
    pub tls_handshake_timeout: Duration,
    /// Time allowed for a request's headers (HTTP/1.1), from the first byte or while idle.
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// Time allowed to receive a request body.
    #[serde(with = "duration")]
    pub body_read_timeout: Duration,
    /// Time allowed to decide one review; keep it below the webhook's timeoutSeconds.
    #[serde(with = "duration")]
    pub evaluation_deadline: Duration,
    /// After SIGTERM, how long in-flight requests may take before the server exits.
    #[serde(with = "duration")]
    pub shutdown_timeout: Duration,
    /// How often certificate and policy files are checked for changes.
    #[serde(with = "duration")]
    pub reload_interval: Duration,
    pub log_level: String,
    /// Serve the admission webhook.
    pub webhook: bool,
    pub approver: ApproverMode,
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// The approver decides and logs but writes nothing.
    pub dry_run: bool,
    /// Elect one deciding replica through a Lease.
    pub leader_election: bool,
    pub lease_namespace: String,
    pub lease_name: String,
    #[serde(with = "duration")]
    pub lease_duration: Duration,
    /// This replica's name (Lease holder, Event instance); `$HOSTNAME` when unset.
    pub identity: Option<String>,
    /// Append every decision record to this file too (JSON lines).
    pub record_file: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            metrics_listen: SocketAddr::from(([0, 0, 0, 0], 9090)),
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            dev_certs_dir: PathBuf::from("certs"),
            policies: PathBuf::from("policies"),
            break_glass_users: Vec::new(),
            break_glass_groups: Vec::new(),
            max_body_bytes: 1024 * 1024,
            max_connections: 1024,
            tls_handshake_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            evaluation_deadline: Duration::from_millis(2000),
            shutdown_timeout: Duration::from_secs(20),
            reload_interval: Duration::from_secs(2),
            log_level: "info".into(),
            webhook: true,
            approver: ApproverMode::Auto,
            kubeconfig: None,
            context: None,
            dry_run: false,
            leader_election: true,
            lease_namespace: "csr-warden".into(),
            lease_name: "csr-warden".into(),
            lease_duration: Duration::from_secs(15),
            identity: None,
            record_file: None,
        }
    }
}

/// Settings that cannot be used, naming the source and the key.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{file}: {message}")]
    File { file: String, message: String },
    #[error("invalid settings: {0}")]
    Invalid(String),
}

/// Environment variables that configure `serve` start with this.
pub const ENV_PREFIX: &str = "CSR_WARDEN";

impl Settings {
    /// Combine defaults, `--config`, the environment and the flags. `env` replaces the
    /// process environment (for tests); `None` reads the process environment.
    pub fn load(
        args: &ServeArgs,
        env: Option<HashMap<String, String>>,
    ) -> Result<Settings, SettingsError> {
        let mut builder = config::Config::builder()
            .add_source(config::Config::try_from(&Settings::default()).map_err(invalid)?);
        if let Some(path) = &args.config {
            builder = builder.add_source(file_source(path)?);
        }
        let env = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("_")
            .try_parsing(true)
            .list_separator(",")
            .with_list_parse_key("break_glass_users")
            .with_list_parse_key("break_glass_groups")
            .source(env);
        builder = builder.add_source(env);

        let set = |b: config::ConfigBuilder<config::builder::DefaultState>,
                   key: &str,
                   value: Option<String>| match value {
            Some(v) => b.set_override(key, v),
            None => Ok(b),
        };
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        builder = set(builder, "listen", args.listen.clone()).map_err(invalid)?;
        builder = set(builder, "metrics_listen", args.metrics_listen.clone()).map_err(invalid)?;
        builder = set(builder, "cert_file", path(&args.cert_file)).map_err(invalid)?;
        builder = set(builder, "key_file", path(&args.key_file)).map_err(invalid)?;
        builder = set(builder, "client_ca_file", path(&args.client_ca_file)).map_err(invalid)?;
        builder = set(builder, "policies", path(&args.policies)).map_err(invalid)?;
        builder = set(builder, "dev_certs_dir", path(&args.dev_certs_dir)).map_err(invalid)?;
        builder = set(builder, "log_level", args.log_level.clone()).map_err(invalid)?;
        builder = set(builder, "approver", args.approver.clone()).map_err(invalid)?;
        builder = set(builder, "kubeconfig", path(&args.kubeconfig)).map_err(invalid)?;
        builder = set(builder, "context", args.context.clone()).map_err(invalid)?;
        builder = set(builder, "identity", args.identity.clone()).map_err(invalid)?;
        builder = set(builder, "record_file", path(&args.record_file)).map_err(invalid)?;
        if args.no_webhook {
            builder = builder.set_override("webhook", false).map_err(invalid)?;
        }
        if args.dry_run {
            builder = builder.set_override("dry_run", true).map_err(invalid)?;
        }
        if !args.break_glass_users.is_empty() {
            builder = builder
                .set_override("break_glass_users", args.break_glass_users.clone())
                .map_err(invalid)?;
        }
        if !args.break_glass_groups.is_empty() {
            builder = builder
                .set_override("break_glass_groups", args.break_glass_groups.clone())
                .map_err(invalid)?;
        }
        let settings: Settings = builder
            .build()
            .map_err(invalid)?
            .try_deserialize()
            .map_err(invalid)?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(SettingsError::Invalid(
                "cert_file and key_file go together: set both, or neither to use development \
                 certificates"
                    .into(),
            ));
        }
        if !self.webhook && self.approver == ApproverMode::Off {
            return Err(SettingsError::Invalid(
                "webhook is off and approver is off: nothing to run".into(),
            ));
        }
        let positive = [
            ("max_body_bytes", self.max_body_bytes),
            ("max_connections", self.max_connections),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(SettingsError::Invalid(format!("{key} must be above 0")));
            }
        }
        let durations = [
            ("tls_handshake_timeout", self.tls_handshake_timeout),
            ("header_read_timeout", self.header_read_timeout),
            ("body_read_timeout", self.body_read_timeout),
            ("evaluation_deadline", self.evaluation_deadline),
            ("reload_interval", self.reload_interval),
            ("lease_duration", self.lease_duration),
        ];
        for (key, value) in durations {
            if value.is_zero() {
                return Err(SettingsError::Invalid(format!("{key} must be above 0")));
            }
        }
        Ok(())
    }
}

fn invalid(e: impl std::fmt::Display) -> SettingsError {
    SettingsError::Invalid(e.to_string())
}

/// A settings file as a `config` source: JSON as it is, YAML read with serde-saphyr.
fn file_source(
    path: &Path,
) -> Result<config::File<config::FileSourceString, config::FileFormat>, SettingsError> {
    let file_error = |message: String| SettingsError::File {
        file: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    let json = if path.extension().is_some_and(|e| e == "json") {
        text
    } else {
        let value: serde_json::Value = if text.trim().is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            serde_saphyr::from_str(&text).map_err(|e| file_error(e.to_string()))?
        };
        if !value.is_object() {
            return Err(file_error("expected a mapping of settings".into()));
        }
        value.to_string()
    };
    Ok(config::File::from_str(&json, config::FileFormat::Json))
}

/// Durations as `"10s"`, `"250ms"`, `"2m"` (jiff's friendly format) or a number of seconds.
mod duration {
    use super::*;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        let d = jiff::SignedDuration::try_from(*d).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&format!("{d:#}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Fractional(f64),
            Text(String),
        }
        let bad = |v: &dyn std::fmt::Display| {
            serde::de::Error::custom(format!(
                "invalid duration {v}: expected e.g. \"10s\", \"250ms\" or a number of seconds"
            ))
        };
        match Raw::deserialize(d)? {
            Raw::Seconds(s) => Ok(Duration::from_secs(s)),
            Raw::Fractional(f) => Duration::try_from_secs_f64(f).map_err(|_| bad(&f)),
            Raw::Text(t) => {
                let parsed: jiff::SignedDuration =
                    t.trim().parse().map_err(|_| bad(&format!("{t:?}")))?;
                Duration::try_from(parsed).map_err(|_| bad(&format!("{t:?}")))
            }
        }
    }
}
