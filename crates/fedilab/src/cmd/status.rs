//! `fedilab status`: per lab, a table of instances (phase, ready pods, URL,
//! age), the servers attached from this host, whether the lab's `fedilab
//! serve` runs and where, and the lab-level objects; or the same as JSON.

use std::process::ExitCode;

use clap::{Args, ValueEnum};
use std::net::SocketAddr;
use std::path::Path;

use fedilab_orchestrator::{LabStatus, Timings};
use fedilab_profile::LabName;
use fedilab_serve::daemon::{self, ServeStatus};
use fedilab_state::{AttachedServer, LabDir};

use crate::cli::KubeArgs;
use crate::common::{Threads, connect_checked, parse_lab, runtime};
use crate::output::print_timings;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum StatusFormat {
    /// Tables.
    #[default]
    Table,
    /// JSON, for scripts.
    Json,
}

/// Arguments of `fedilab status`.
#[derive(Debug, Args)]
#[command(
    after_help = "Phases: database (PostgreSQL, Redis) -> setup (the setup Job) -> services\n\
(web, streaming, Sidekiq) -> ready; failed when the setup Job gave up (`fedilab up` retries it);\n\
external: a server outside the cluster (attached: added by `fedilab attach`).\n\
host: whether this host's `fedilab serve` (lab DNS and inspector) runs, and where.\n\n\
Examples:\n  fedilab status\n  fedilab status --lab exp -o json"
)]
pub struct StatusArgs {
    /// Only this lab (default: every lab on the cluster).
    #[arg(long, value_name = "NAME", value_parser = parse_lab)]
    pub lab: Option<fedilab_profile::LabName>,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: StatusFormat,

    /// Print fedilab's own time and its number of API requests.
    #[arg(long)]
    pub timings: bool,

    #[command(flatten)]
    pub kube: KubeArgs,
}

fn age(seconds: Option<i64>) -> String {
    match seconds {
        None => "-".to_owned(),
        Some(s) if s < 120 => format!("{s}s"),
        Some(s) if s < 7200 => format!("{}m", s / 60),
        Some(s) if s < 172_800 => format!("{}h", s / 3600),
        Some(s) => format!("{}d", s / 86_400),
    }
}

/// Whether this host's `fedilab serve` runs for a lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum ServeState {
    Running,
    Starting,
    Stopped,
    Stale,
}

/// What this host runs for a lab: its `fedilab serve` and the servers
/// attached from here.
#[derive(Debug, serde::Serialize)]
struct HostSide {
    /// `running`, `starting`, `stopped` or `stale`.
    serve: ServeState,
    /// Its pid, when it runs.
    pid: Option<u32>,
    /// How it was started, when it runs.
    how: Option<String>,
    /// Where its DNS answers.
    dns: Option<SocketAddr>,
    /// Where its proxy listens.
    proxy: Option<SocketAddr>,
    /// Its UI, `http://ADDR/`.
    ui: Option<String>,
    /// The line `status` prints.
    summary: String,
    /// Servers `fedilab attach` added: name -> URL on this host.
    attached: Vec<AttachedServer>,
}

/// A lab on the cluster and what this host runs for it.
#[derive(Debug, serde::Serialize)]
struct LabReport {
    #[serde(flatten)]
    cluster: LabStatus,
    host: HostSide,
}

fn host_side(data_dir: &Path, lab: &LabName) -> anyhow::Result<HostSide> {
    let dir = LabDir::new(data_dir, lab);
    let status = daemon::status(&dir);
    let summary = crate::output::serve_line(&status, lab);
    let mut host = HostSide {
        serve: ServeState::Stopped,
        pid: None,
        how: None,
        dns: None,
        proxy: None,
        ui: None,
        summary,
        attached: dir.attached()?,
    };
    match status {
        ServeStatus::Running {
            pid,
            addresses,
            how,
            ..
        } => {
            host.serve = ServeState::Running;
            host.pid = Some(pid);
            host.how = Some(how.to_string());
            host.dns = Some(addresses.dns);
            host.proxy = addresses.proxy;
            host.ui = addresses.ui.map(|a| format!("http://{a}/"));
        }
        ServeStatus::Starting { pid } => {
            host.serve = ServeState::Starting;
            host.pid = Some(pid);
        }
        ServeStatus::Stale { .. } => host.serve = ServeState::Stale,
        ServeStatus::Stopped => {}
    }
    Ok(host)
}

fn print_table(report: &LabReport) {
    let lab = &report.cluster;
    let state = if !lab.exists {
        "not on the cluster"
    } else if lab.terminating {
        "being deleted"
    } else {
        "present"
    };
    println!(
        "lab {}  namespace {} ({state}, age {})",
        lab.lab,
        lab.namespace,
        age(lab.age_seconds)
    );
    if !lab.instances.is_empty() {
        println!(
            "  {:<14} {:<9} {:<6} {:<40} AGE",
            "INSTANCE", "PHASE", "PODS", "URL"
        );
        for i in &lab.instances {
            let attached = report
                .host
                .attached
                .iter()
                .any(|a| a.name.as_str() == i.name);
            println!(
                "  {:<14} {:<9} {:<6} {:<40} {}",
                i.name,
                if attached {
                    "attached"
                } else {
                    i.phase.as_str()
                },
                format!("{}/{}", i.ready_pods, i.pods),
                i.url.as_deref().unwrap_or("-"),
                age(i.age_seconds)
            );
        }
    }
    for a in &report.host.attached {
        println!("  attached {} -> {}", a.name, a.url);
    }
    println!("  host: {}", report.host.summary);
    println!("  lab objects:");
    for o in &lab.lab_objects {
        println!(
            "    {:<8} {}",
            if o.present { "present" } else { "missing" },
            o.object
        );
    }
}

/// Runs `fedilab status`.
///
/// # Errors
/// An unreachable cluster or a failed read.
pub fn run(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let wanted = args.lab.clone();
    let data_dir = crate::paths::data_dir()?;
    runtime(Threads::One)?.block_on(async {
        let cluster = connect_checked(&args.kube).await?;
        let timings = Timings::new(cluster.counter.clone());
        let labs = match wanted {
            Some(lab) => vec![lab],
            None => {
                timings
                    .phase("list", fedilab_orchestrator::list_labs(&cluster))
                    .await?
            }
        };
        let mut all = Vec::new();
        for lab in &labs {
            all.push(LabReport {
                cluster: timings
                    .phase("status", fedilab_orchestrator::status(&cluster, lab))
                    .await?,
                host: host_side(&data_dir, lab)?,
            });
        }
        match args.output {
            StatusFormat::Json => println!("{}", serde_json::to_string_pretty(&all)?),
            StatusFormat::Table if all.is_empty() => {
                println!(
                    "no fedilab labs on {}; `fedilab up` creates one",
                    cluster.server
                );
            }
            StatusFormat::Table => {
                for (i, lab) in all.iter().enumerate() {
                    if i > 0 {
                        println!();
                    }
                    print_table(lab);
                }
            }
        }
        if args.timings {
            print_timings(&timings, &cluster);
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
