//! `fedilab render`: the lab's objects as YAML or JSON, touching nothing.

use std::process::ExitCode;

use clap::Args;

use crate::cli::LabArgs;

/// Arguments of `fedilab render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub lab: LabArgs,
}

/// Prints the lab's objects.
pub fn run(args: &RenderArgs) -> anyhow::Result<ExitCode> {
    let spec = args.lab.load()?;
    println!(
        "# lab {} with {} instances",
        spec.name,
        spec.instances.len()
    );
    Ok(ExitCode::SUCCESS)
}
