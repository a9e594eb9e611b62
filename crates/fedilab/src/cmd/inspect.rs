//! `fedilab inspect`: the recording proxy and its UI, standalone (no lab
//! needed). Parses flags, binds the listeners, starts
//! `fedilab_inspector::Inspector` and runs until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use fedilab_inspector::{Inspector, InspectorConfig, Route, StartError, StoreLimits};

use crate::UsageError;

/// Arguments of `fedilab inspect`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  fedilab inspect --listen 127.0.0.1:8080 \\\n    \
    --route mastodon2.fediverse.local=http://127.0.0.1:3000 \\\n    \
    --route mastodon2.fediverse.local/api/v1/streaming=http://127.0.0.1:4000 --ui 127.0.0.1:8081\n\
    then open http://127.0.0.1:8081/ and send requests to 127.0.0.1:8080 with Host: mastodon2.fediverse.local."
)]
pub struct InspectArgs {
    /// Where the proxy listens for the instances' traffic.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Send requests for HOST to the upstream URL (http://HOST:PORT, no
    /// path). HOST/PREFIX=URL sends only the paths under PREFIX (whole
    /// segments; the longest matching prefix of a host wins), e.g.
    /// mastodon1.fediverse.local/api/v1/streaming=http://10.43.0.20:4000.
    /// Repeat for every instance.
    #[arg(long = "route", value_name = "HOST[/PREFIX]=URL", required = true)]
    pub routes: Vec<Route>,

    /// Where the UI and the JSON API listen. Keep it on loopback: it shows
    /// every recorded request, credentials included.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081")]
    pub ui: SocketAddr,

    /// Keep at most this many exchanges (oldest evicted).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_exchanges: usize,

    /// Keep at most about this many bytes of exchanges (1000000, 64MiB, 1GiB).
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    pub max_bytes: u64,

    /// Capture at most this many bytes of each body (the rest is forwarded,
    /// not kept).
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = parse_size)]
    pub max_body: u64,

    /// Append every exchange to this JSON-lines file and reload it on start.
    #[arg(long, value_name = "FILE")]
    pub persist: Option<PathBuf>,

    /// A fault rule in force from the start: JSON, or key=value pairs such
    /// as host=mastodon2,activity=Create,status=503 (see `fedilab fault
    /// --help`). Repeat for several; `fedilab fault` changes them later.
    #[arg(long = "fault", value_name = "RULE")]
    pub faults: Vec<fedilab_inspector::RuleSpec>,

    /// Threads the proxy runs on, each accepting connections of its own as
    /// nginx's workers do. One carries tens of thousands of requests a
    /// second; more help only with cores to spare beside the servers.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub proxy_threads: u16,
}

fn parse_size(s: &str) -> Result<u64, String> {
    fedilab_inspector::parse_size(s).map_err(|e| e.to_string())
}

/// Runs the inspector until interrupted.
///
/// # Errors
/// A [`UsageError`] for inconsistent flags; other errors when a listener
/// cannot be bound or the capture file cannot be used.
pub fn run(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let to_usize = |v: u64, flag: &str| {
        usize::try_from(v)
            .map_err(|_| UsageError(format!("{flag} {v} is too large for this machine")))
    };
    let config = InspectorConfig {
        routes: args.routes.clone(),
        limits: StoreLimits {
            max_exchanges: args.max_exchanges,
            max_bytes: to_usize(args.max_bytes, "--max-bytes")?,
        },
        max_body_bytes: to_usize(args.max_body, "--max-body")?,
        persist: args.persist.clone(),
        faults: args.faults.clone(),
        proxy_threads: usize::from(args.proxy_threads),
        ..InspectorConfig::default()
    };
    config.validate().map_err(|e| UsageError(e.to_string()))?;
    if !args.ui.ip().is_loopback() {
        tracing::warn!(ui = %args.ui, "the UI is not on loopback: anyone who reaches it sees every recorded request");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args, config))
}

async fn serve(args: &InspectArgs, config: InspectorConfig) -> anyhow::Result<ExitCode> {
    let proxy = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} for the proxy (--listen)", args.listen))?;
    let ui = tokio::net::TcpListener::bind(args.ui)
        .await
        .with_context(|| format!("cannot listen on {} for the UI (--ui)", args.ui))?;
    let hosts: Vec<String> = config.routes.iter().map(|r| r.host.clone()).collect();
    let inspector = Inspector::start(config, proxy, Some(ui)).map_err(|e| match e {
        StartError::Config(e) => anyhow::Error::new(UsageError(e.to_string())),
        other => anyhow::Error::new(other),
    })?;
    let ui_addr = inspector
        .ui_addr()
        .map_or_else(String::new, |a| a.to_string());
    eprintln!(
        "fedilab inspect: proxy on {} for {}; UI on http://{}/ (Ctrl-C to stop)",
        inspector.proxy_addr(),
        hosts.join(", "),
        ui_addr
    );
    wait_for_signal().await?;
    eprintln!("fedilab inspect: stopping");
    inspector
        .shutdown()
        .await
        .context("cannot flush the capture file")?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(unix)]
async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot listen for Ctrl-C"),
        _ = term.recv() => Ok(()),
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> anyhow::Result<()> {
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for Ctrl-C")
}
