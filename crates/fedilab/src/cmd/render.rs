//! `fedilab render`: every object of a lab as YAML or JSON, touching no
//! cluster. Certificates come from the local lab CA (created on first use).

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use fedilab_manifest::{BuildError, LabSecrets, Routing, seed_from_text};
use fedilab_profile::names;
use rand_core::{OsRng, RngCore};

use crate::UsageError;
use crate::cli::LabArgs;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Multi-document YAML, one document per object.
    Yaml,
    /// A v1 List as JSON.
    Json,
}

/// Arguments of `fedilab render`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
fedilab render --instances 2                      # the default lab, two Mastodons\n  \
fedilab render -p lab-profiles/mastodon-trio.yaml -o json\n  \
fedilab render --instances 3 --domain fediverse.test --lab exp | kubectl apply --dry-run=server -f -\n  \
fedilab render -p lab-profiles/mastodon-and-host.yaml --inspector-at 192.0.2.10:8480")]
pub struct RenderArgs {
    #[command(flatten)]
    pub lab: LabArgs,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Yaml)]
    pub output: Format,

    /// Derive every generated secret (passwords, keys, tokens) from TEXT, so
    /// the output is reproducible. INSECURE: anyone who knows TEXT knows the
    /// secrets. Meant for golden files and tests.
    #[arg(long, value_name = "TEXT")]
    pub seed: Option<String>,

    /// Route every instance through the inspector listening at ADDR:PORT
    /// (the node's address, as `fedilab serve` binds it; its default port
    /// is 8480): each instance gets a selector-less Service and an
    /// EndpointSlice pointing there, and its Ingress sends every path to
    /// it. Without it, Traefik routes straight to the instances, as
    /// `up --no-inspector` does; a profile with an external instance then
    /// fails, since only the inspector reaches servers outside the cluster.
    #[arg(long, value_name = "ADDR:PORT")]
    pub inspector_at: Option<SocketAddr>,
}

/// Prints the lab's objects in apply order.
///
/// # Errors
/// An invalid profile ([`crate::UsageError`]), an unusable CA directory, or
/// a failed write to stdout.
pub fn run(args: &RenderArgs) -> anyhow::Result<ExitCode> {
    let spec = args.lab.load()?;
    crate::cli::warn_unknown_rule_hosts(&spec);
    let master_seed = match &args.seed {
        Some(text) => seed_from_text(text),
        None => {
            let mut seed = [0u8; 32];
            OsRng.fill_bytes(&mut seed);
            seed
        }
    };
    let secrets = LabSecrets::generate(&spec, master_seed);
    let routing = match args.inspector_at {
        Some(proxy) => Routing::Inspector { proxy },
        None => Routing::Direct,
    };
    let (tls, created) = fedilab_lab::lab_tls(&spec, &crate::paths::data_dir()?)?;
    if let Some(dir) = created {
        eprintln!("{}", crate::output::ca_created_text(&spec.domain, &dir));
    }
    let manifests = fedilab_manifest::build(&spec, &secrets, &tls, &routing).map_err(|e| {
        match e {
            // Both are about what the user asked for, not about fedilab.
            BuildError::ExternalNeedsInspector(_) => anyhow::Error::new(UsageError(format!(
                "{e}\npass --inspector-at ADDR:PORT (the node's address and the inspector's \
                 port, such as 192.0.2.10:{})",
                names::SERVE_PROXY_PORT
            ))),
            BuildError::ProxyAddress { .. } => {
                anyhow::Error::new(UsageError(format!("--inspector-at: {e}")))
            }
            other => other.into(),
        }
    })?;
    let text = match args.output {
        Format::Yaml => manifests.to_yaml()?,
        Format::Json => manifests.to_json()?,
    };
    write_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes to stdout; a closed pipe (`fedilab render | head`) is not an error.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}
