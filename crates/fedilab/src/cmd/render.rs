//! `fedilab render`: every object of a lab as YAML or JSON, touching no
//! cluster. Certificates come from the local lab CA (created on first use).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use fedilab_manifest::{LabSecrets, seed_from_text};
use rand_core::{OsRng, RngCore};

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
fedilab render --instances 3 --domain fediverse.test --lab exp | kubectl apply --dry-run=server -f -")]
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
}

/// Prints the lab's objects in apply order.
///
/// # Errors
/// An invalid profile ([`crate::UsageError`]), an unusable CA directory, or
/// a failed write to stdout.
pub fn run(args: &RenderArgs) -> anyhow::Result<ExitCode> {
    let spec = args.lab.load()?;
    let master_seed = match &args.seed {
        Some(text) => seed_from_text(text),
        None => {
            let mut seed = [0u8; 32];
            OsRng.fill_bytes(&mut seed);
            seed
        }
    };
    let secrets = LabSecrets::generate(&spec, master_seed);
    let tls = crate::tls::lab_tls(&spec, &crate::paths::data_dir()?)?;
    let manifests = fedilab_manifest::build(&spec, &secrets, &tls)?;
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
