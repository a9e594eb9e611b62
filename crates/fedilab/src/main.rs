//! The `fedilab` command: argument parsing, output formats and exit codes.
//!
//! This crate is glue. Everything a test would want to call without a
//! process (validation, manifests, certificates, DNS, the proxy) lives in a
//! library crate; a command here loads its inputs, calls the library and
//! prints the result.

mod cli;
mod cmd;
mod common;
mod output;
mod paths;

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for bad input: an invalid profile or flag (clap uses 2 too).
pub const EXIT_USAGE: u8 = 2;

/// An error caused by what the user gave us, as opposed to what happened
/// while acting on it. Exits with [`EXIT_USAGE`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn main() -> ExitCode {
    // ring is the only rustls provider compiled in; install it before any
    // TLS use (kube, the inspector). Already installed is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = cli::Cli::parse();
    init_tracing(cli.verbose);
    match cmd::run(cli) {
        Ok(code) => code,
        Err(err) => {
            if let Some(usage) = err.downcast_ref::<UsageError>() {
                eprintln!("error: {usage}");
                return ExitCode::from(EXIT_USAGE);
            }
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        // kube's client logs connection failures as ERROR lines of its own;
        // fedilab reports them once, with what to do next.
        // fedilab serve logs its addresses and reloads at info.
        0 => "warn,kube_client=off,fedilab_serve=info",
        1 => "info,fedilab=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FEDILAB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
