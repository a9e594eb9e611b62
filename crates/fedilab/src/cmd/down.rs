//! `fedilab down`: remove a lab from the cluster (and with `--purge`, its
//! state and CA on this host).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use fedilab_orchestrator::{DownOptions, LabDir, Timings, purge_ca};
use fedilab_profile::{DEFAULT_LAB_NAME, names};
use fedilab_serve::daemon::{self, StopOutcome};

use crate::cli::KubeArgs;
use crate::cmd::creds::lab_name;
use crate::cmd::up::{connect_checked, parse_duration, print_timings, runtime};

/// Arguments of `fedilab down`.
#[derive(Debug, Args)]
#[command(
    after_help = "Removes everything labelled fedilab.dev/lab=NAME: the lab's namespace (and\n\
with it every instance, database and volume), its key in kube-system/coredns-custom (other\n\
labs' keys stay), and, with the last lab, fedilab's Traefik HelmChartConfig; restarts CoreDNS\n\
and waits until nothing of the lab is left (attached servers' objects go with the namespace).\n\
A lab that does not exist is not an error. Stops the lab's `fedilab serve` on this host.\n\
The lab CA, the state and the inspector's recordings on this host stay (hosts that trust it keep working for the next lab of the\n\
same domain) unless --purge.\n\n\
Examples:\n  fedilab down\n  fedilab down --lab exp --purge"
)]
pub struct DownArgs {
    /// The lab.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_LAB_NAME)]
    pub lab: String,

    /// Also delete the lab's state and its CA (under the data directory) on
    /// this host.
    #[arg(long)]
    pub purge: bool,

    /// How long to wait for everything to go.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Print fedilab's own time and its number of API requests.
    #[arg(long)]
    pub timings: bool,

    #[command(flatten)]
    pub kube: KubeArgs,
}

/// Runs `fedilab down`.
///
/// # Errors
/// An unreachable cluster, a failed delete, or objects that outlast the
/// timeout.
pub fn run(args: &DownArgs) -> anyhow::Result<ExitCode> {
    let lab = lab_name(&args.lab)?;
    let data_dir = crate::paths::data_dir()?;
    let dir = LabDir::new(&data_dir, &lab);
    let report = runtime()?.block_on(async {
        let cluster = connect_checked(&args.kube).await?;
        let timings = Timings::new(cluster.counter.clone());
        let options = DownOptions {
            timeout: args.timeout,
            ..DownOptions::default()
        };
        let report = timings
            .phase("down", fedilab_orchestrator::down(&cluster, &lab, &options))
            .await;
        if args.timings {
            print_timings(&timings, &cluster);
        }
        anyhow::Ok(report?)
    })?;
    if report.existed {
        let namespace = names::namespace(&lab);
        let mut inside: BTreeMap<&str, usize> = BTreeMap::new();
        let mut outside = Vec::new();
        for o in &report.removed {
            if o.kind == "Namespace" {
                continue;
            }
            if o.namespace.as_deref() == Some(namespace.as_str()) {
                *inside.entry(o.kind.as_str()).or_default() += 1;
            } else {
                outside.push(o.to_string());
            }
        }
        println!("removed lab {lab}:");
        if report.removed.iter().any(|o| o.kind == "Namespace") {
            let counts = inside
                .iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join(", ");
            println!("  Namespace/{namespace} with {counts}");
        }
        for o in outside {
            println!("  {o}");
        }
        if report.coredns_key_removed {
            println!(
                "  key {} of {}/{} (CoreDNS restarted)",
                names::coredns_key(&lab),
                names::KUBE_SYSTEM,
                names::COREDNS_CUSTOM_CONFIGMAP
            );
        }
        if report.traefik_config_removed {
            println!(
                "  HelmChartConfig/{}/{} (the last lab is gone)",
                names::KUBE_SYSTEM,
                names::TRAEFIK_HELM_CHART_CONFIG
            );
        }
    } else {
        println!(
            "lab {lab} does not exist on the cluster (nothing labelled {}={lab}); nothing to remove",
            names::LAB_KEY
        );
    }
    // The host side goes with the lab (its recordings stay in the lab dir
    // unless --purge).
    match daemon::stop(&dir)? {
        StopOutcome::Stopped { pid, killed } => println!(
            "stopped fedilab serve (pid {pid}{})",
            if killed {
                ", killed after the grace period"
            } else {
                ""
            }
        ),
        StopOutcome::RemovedStale { pid } => {
            println!("removed the stale files of fedilab serve (pid {pid} was not running)");
        }
        StopOutcome::NotRunning => {}
    }
    if args.purge {
        let domain = dir
            .load_state()
            .ok()
            .flatten()
            .map(|s| s.domain)
            .or_else(|| report.domains.first().cloned());
        if dir.remove()? {
            println!("removed {}", dir.path().display());
        }
        if let Some(domain) = domain
            && purge_ca(&data_dir, &domain, &lab)?
        {
            println!(
                "removed the lab CA {}",
                data_dir.join("ca").join(&domain).display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
