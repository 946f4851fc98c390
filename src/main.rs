//! The `csr-warden` binary: parses the command line and runs a command.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use csr_warden::cli::{Cli, Command, audit, certs, check, diff, lint, test};
use csr_warden::server::{self, RecordSink, ServeArgs, Settings};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Serve(args) => serve(args),
        Command::Check(args) => check::run(args, &mut std::io::stdout().lock()).map_err(Into::into),
        Command::Diff(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| {
                rt.block_on(diff::run(args, &mut std::io::stdout().lock()))
                    .map_err(Into::into)
            }),
        Command::Audit(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| {
                rt.block_on(audit::run(args, &mut std::io::stdout().lock()))
                    .map_err(Into::into)
            }),
        Command::Lint(args) => lint::run(args, &mut std::io::stdout().lock()).map_err(Into::into),
        Command::Test(args) => test::run(args, &mut std::io::stdout().lock()).map_err(Into::into),
        Command::Certs(args) => certs::run(
            args,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        )
        .map_err(Into::into),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("csr-warden: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: &ServeArgs) -> anyhow::Result<u8> {
    let settings = Settings::load(args, None)?;
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log_level)
        .with_context(|| format!("invalid log_level {:?}", settings.log_level))?;
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let records = RecordSink::stdout(settings.record_file.as_deref())?;
        let running = server::start(settings, records).await?;
        let signal = shutdown_signal().await;
        tracing::info!(
            signal,
            "shutting down: no new connections, finishing requests in flight"
        );
        running.shutdown().await;
        tracing::info!("stopped");
        Ok(0)
    })
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}
