//! `fedilab bootstrap`: install k3s on a fresh VM with the settings fedilab
//! needs, wait for the node, say what to run next.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use fedilab_orchestrator::K3S_KUBECONFIG;
use fedilab_orchestrator::bootstrap::{
    Step, hand_over_kubeconfig, install_k3s, plan, wait_node_ready,
};

use crate::common::{Threads, parse_duration, runtime};

/// Arguments of `fedilab bootstrap`.
#[derive(Debug, Args)]
#[command(
    after_help = "Runs k3s's official install script with k3s's defaults:\n  \
curl -sfL https://get.k3s.io | sh -\n\
(it asks for sudo when not run as root). Those defaults are what fedilab relies on:\n\
Traefik, CoreDNS with coredns-custom, local-path storage and NetworkPolicy enforcement\n\
(what keeps lab pods off the internet). The cluster-admin kubeconfig\n\
/etc/rancher/k3s/k3s.yaml stays 0600 and root's; you (SUDO_USER under sudo) get a 0600\n\
copy as ~/.kube/config, or as ~/.kube/k3s.yaml when you already have a ~/.kube/config\n\
(then use --kubeconfig ~/.kube/k3s.yaml or KUBECONFIG). Skips the installation when k3s\n\
is already there, and still makes the copy.\n\n\
Examples:\n  fedilab bootstrap --dry-run\n  fedilab bootstrap && fedilab up --instances 2"
)]
pub struct BootstrapArgs {
    /// Print each step without doing it.
    #[arg(long)]
    pub dry_run: bool,

    /// How long to wait for the node to be Ready.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Runs `fedilab bootstrap`.
///
/// # Errors
/// A failed install script or a node that does not become Ready.
pub fn run(args: &BootstrapArgs) -> anyhow::Result<ExitCode> {
    let installed = Path::new(K3S_KUBECONFIG).exists();
    let steps = plan(installed, args.timeout);
    for (i, step) in steps.iter().enumerate() {
        println!("[{}/{}] {step}", i + 1, steps.len());
        if args.dry_run {
            continue;
        }
        match step {
            Step::AlreadyInstalled { .. } | Step::Next { .. } => {}
            Step::Install { .. } => install_k3s()?,
            Step::HandOver => println!("      {}", hand_over_kubeconfig()?),
            Step::WaitNodeReady {
                kubeconfig,
                timeout,
            } => {
                let node =
                    runtime(Threads::One)?.block_on(wait_node_ready(kubeconfig, *timeout))?;
                println!("      node {node} is Ready");
            }
        }
    }
    if args.dry_run {
        println!("(dry run: nothing was done)");
    }
    Ok(ExitCode::SUCCESS)
}
