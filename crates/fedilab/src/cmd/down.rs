//! `fedilab down`: flags in, `fedilab_lab::down` called, what it removed
//! printed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use fedilab_lab::{DownReport, DownRequest};
use fedilab_orchestrator::{DownOptions, Timings};
use fedilab_profile::{LabName, names};
use fedilab_serve::daemon::StopOutcome;

use crate::cli::KubeArgs;
use crate::common::{LabSelect, Threads, connect_checked, runtime, serve_daemon};
use crate::output::print_timings;

/// Arguments of `fedilab down`.
#[derive(Debug, Args)]
#[command(
    after_help = "Removes everything labelled fedilab.dev/lab=NAME: the lab's namespace (and\n\
with it every instance, database and volume), its key in kube-system/coredns-custom (other\n\
labs' keys stay; a ConfigMap you made yourself is never deleted); restarts CoreDNS and waits\n\
until it is available again, then until nothing of the lab is left (attached servers' objects\n\
go with the namespace). With the last lab, a Traefik HelmChartConfig that an older fedilab\n\
created goes too; one you wrote is never touched.\n\
A lab that does not exist is not an error. Stops the lab's `fedilab serve` on this host.\n\
The lab CA, the state and the inspector's recordings on this host stay (hosts that trust\n\
it keep working for the next lab of the same domain) unless --purge.\n\n\
Examples:\n  fedilab down\n  fedilab down --lab exp --purge"
)]
pub struct DownArgs {
    #[command(flatten)]
    pub lab: LabSelect,

    /// Also delete the lab's state and its CA (under the data directory) on
    /// this host.
    #[arg(long)]
    pub purge: bool,

    /// How long to wait for everything to go.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = crate::common::parse_duration)]
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
    let request = DownRequest {
        data_dir: crate::paths::data_dir()?,
        lab: args.lab.lab.clone(),
        purge: args.purge,
        options: DownOptions {
            timeout: args.timeout,
            ..DownOptions::default()
        },
    };
    let daemon = serve_daemon(&request.lab, &request.data_dir)?;
    let report = runtime(Threads::One)?.block_on(async {
        let cluster = connect_checked(&args.kube).await?;
        let timings = Timings::new(cluster.counter.clone());
        let report = fedilab_lab::down(&cluster, &request, &daemon, &timings).await;
        if args.timings {
            print_timings(&timings, &cluster);
        }
        anyhow::Ok(report?)
    })?;
    print!("{}", report_text(&report, &request.lab));
    Ok(ExitCode::SUCCESS)
}

/// What `down` removed, in the lab's namespace (counted by kind) and
/// outside it, and what happened on this host.
fn report_text(report: &DownReport, lab: &LabName) -> String {
    let mut out = String::new();
    let cluster = &report.cluster;
    if cluster.existed {
        let namespace = names::namespace(lab);
        let mut inside: BTreeMap<&str, usize> = BTreeMap::new();
        let mut outside = Vec::new();
        for o in cluster.removed.iter().filter(|o| o.kind != "Namespace") {
            if o.namespace.as_deref() == Some(namespace.as_str()) {
                *inside.entry(o.kind.as_str()).or_default() += 1;
            } else {
                outside.push(o.to_string());
            }
        }
        let _ = writeln!(out, "removed lab {lab}:");
        if cluster.removed.iter().any(|o| o.kind == "Namespace") {
            let counts: Vec<String> = inside.iter().map(|(k, n)| format!("{n} {k}")).collect();
            let _ = writeln!(out, "  Namespace/{namespace} with {}", counts.join(", "));
        }
        for o in outside {
            let _ = writeln!(out, "  {o}");
        }
        if cluster.coredns_key_removed {
            let _ = writeln!(
                out,
                "  key {} of {}/{} (CoreDNS restarted)",
                names::coredns_key(lab),
                names::KUBE_SYSTEM,
                names::COREDNS_CUSTOM_CONFIGMAP
            );
        }
        if cluster.traefik_config_removed {
            let _ = writeln!(
                out,
                "  HelmChartConfig/{}/{} (left by an older fedilab; the last lab is gone)",
                names::KUBE_SYSTEM,
                names::TRAEFIK_HELM_CHART_CONFIG
            );
        }
    } else {
        let _ = writeln!(
            out,
            "lab {lab} does not exist on the cluster (nothing labelled {}={lab}); nothing to remove",
            names::LAB_KEY
        );
    }
    out.push_str(&host_text(report));
    out
}

/// What `down` did on this host: the host side, and with `--purge` the
/// state and the CA.
fn host_text(report: &DownReport) -> String {
    let mut out = String::new();
    match report.serve {
        StopOutcome::Stopped { pid, killed } => {
            let how = if killed {
                ", killed after the grace period"
            } else {
                ""
            };
            let _ = writeln!(out, "stopped fedilab serve (pid {pid}{how})");
        }
        StopOutcome::RemovedStale { pid } => {
            let _ = writeln!(
                out,
                "removed the stale files of fedilab serve (pid {pid} was not running)"
            );
        }
        StopOutcome::NotRunning => {}
    }
    if let Some(dir) = &report.purged_state {
        let _ = writeln!(out, "removed {}", dir.display());
    }
    if let Some(dir) = &report.purged_ca {
        let _ = writeln!(out, "removed the lab CA {}", dir.display());
    }
    out
}

#[cfg(test)]
mod tests {
    use fedilab_orchestrator::RemovedObject;

    use super::*;

    fn object(kind: &str, namespace: Option<&str>, name: &str) -> RemovedObject {
        RemovedObject {
            kind: kind.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    #[test]
    fn the_report_counts_the_namespace_and_names_what_was_outside() {
        let lab: LabName = "main".parse().expect("lab");
        let report = DownReport {
            cluster: fedilab_orchestrator::DownReport {
                existed: true,
                removed: vec![
                    object("Namespace", None, "fedilab-main"),
                    object("Deployment", Some("fedilab-main"), "mastodon1-web"),
                    object("Deployment", Some("fedilab-main"), "mastodon2-web"),
                    object("Secret", Some("fedilab-main"), "mastodon1-admin"),
                ],
                coredns_key_removed: true,
                domains: vec!["fediverse.local".to_owned()],
                traefik_config_removed: false,
            },
            serve: StopOutcome::Stopped {
                pid: 42,
                killed: false,
            },
            purged_state: Some("/data/labs/main".into()),
            purged_ca: None,
        };
        assert_eq!(
            report_text(&report, &lab),
            "removed lab main:\n  Namespace/fedilab-main with 2 Deployment, 1 Secret\n  \
             key fedilab-main.server of kube-system/coredns-custom (CoreDNS restarted)\n\
             stopped fedilab serve (pid 42)\nremoved /data/labs/main\n"
        );
    }

    #[test]
    fn a_lab_that_is_not_there_is_said_so() {
        let lab: LabName = "gone".parse().expect("lab");
        let report = DownReport {
            cluster: fedilab_orchestrator::DownReport::default(),
            serve: StopOutcome::NotRunning,
            purged_state: None,
            purged_ca: None,
        };
        assert_eq!(
            report_text(&report, &lab),
            "lab gone does not exist on the cluster (nothing labelled fedilab.dev/lab=gone); \
             nothing to remove\n"
        );
    }
}
