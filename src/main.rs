//! The `csr-warden` binary: parses the command line and runs a command.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use csr_warden::cli::{Cli, Command, check};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Check(args) => check::run(args, &mut std::io::stdout().lock()),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("csr-warden: {e}");
            ExitCode::from(2)
        }
    }
}
