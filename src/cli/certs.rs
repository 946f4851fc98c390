//! `csr-warden certs dev`: generate a development CA and serving certificate, print the
//! `caBundle` a ValidatingWebhookConfiguration needs to trust them.

use std::io::Write;
use std::path::PathBuf;

use base64::Engine;
use clap::{Args, Subcommand};

use super::CliError;
use crate::server::devcerts;

#[derive(Debug, Args)]
pub struct CertsArgs {
    #[command(subcommand)]
    pub command: CertsCommand,
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Generate a development CA and a serving certificate (never for production).
    ///
    /// Writes ca.crt, tls.crt and tls.key (mode 0600) into --out, for localhost and the
    /// Service's DNS names, and prints the base64 CA bundle for the webhook's `caBundle` on
    /// standard output.
    Dev(DevArgs),
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Directory to write into (created if missing; existing files are replaced).
    #[arg(long, default_value = "certs")]
    pub out: PathBuf,
    /// Name of the Service in front of the webhook.
    #[arg(long, default_value = devcerts::DEFAULT_SERVICE)]
    pub service: String,
    /// Namespace of that Service.
    #[arg(long, default_value = devcerts::DEFAULT_NAMESPACE)]
    pub namespace: String,
}

/// Run `certs`: the caBundle goes to `out`, what was written to `err`.
pub fn run(args: &CertsArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8, CliError> {
    match &args.command {
        CertsCommand::Dev(dev) => {
            if dev.service.is_empty() || dev.namespace.is_empty() {
                return Err(CliError::Usage(
                    "--service and --namespace must not be empty".into(),
                ));
            }
            let files = devcerts::generate_into(&dev.out, &dev.service, &dev.namespace)
                .map_err(|e| CliError::Usage(e.to_string()))?;
            let names = devcerts::serving_names(&dev.service, &dev.namespace).join(", ");
            writeln!(
                err,
                "wrote a DEVELOPMENT CA and serving certificate (never use them in production):\n  \
                 CA:          {}\n  certificate: {} ({names})\n  key:         {} (mode 0600)\n\
                 caBundle for the ValidatingWebhookConfiguration on standard output",
                files.ca.display(),
                files.cert.display(),
                files.key.display(),
            )?;
            let bundle = base64::engine::general_purpose::STANDARD.encode(files.ca_pem.as_bytes());
            writeln!(out, "{bundle}")?;
            Ok(0)
        }
    }
}
