//! `fedilab up`: build the lab, check the cluster, apply, wait until every
//! instance works, print how to log in. Also the helpers the other cluster
//! commands share (runtime, durations, timings).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use std::net::IpAddr;

use fedilab_manifest::{BuildError, Routing};
use fedilab_orchestrator::readiness::InstanceProgress;
use fedilab_orchestrator::{
    Cluster, InstanceCredentials, LabDir, LabState, PreflightOptions, Progress, ServeSettings,
    StoredKind, Timings, WaitOptions,
};
use fedilab_profile::{InstanceName, InstanceSpecKind, names};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::UsageError;
use crate::cli::{KubeArgs, LabArgs};

/// Output formats of credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum CredsFormat {
    /// Readable text.
    #[default]
    Text,
    /// JSON, for scripts.
    Json,
}

/// Arguments of `fedilab up`.
#[derive(Debug, Args)]
#[command(after_help = "What it does, in order:\n  \
1. checks the cluster: API reachable, k3s, its helm.cattle.io CRDs, enough free memory,\n     \
the lab domain not used by another lab (nothing is applied if a check fails);\n  \
2. applies every object with server-side apply (field manager `fedilab`);\n     \
running `up` again applies only what changed and finishes an interrupted run;\n  \
3. waits per instance: PostgreSQL and Redis, the setup Job, then web/streaming/Sidekiq;\n  \
4. prints each instance's URL, admin login, password and API token.\n\n\
Examples:\n  \
fedilab up --instances 2\n  \
fedilab up -p lab-profiles/mastodon-trio.yaml --timeout-setup 30m   # slow image pulls\n  \
fedilab up --lab exp --domain fediverse.test --instances 3          # a second lab beside the first")]
pub struct UpArgs {
    #[command(flatten)]
    pub lab: LabArgs,

    #[command(flatten)]
    pub kube: KubeArgs,

    /// Apply even when the lab's memory requests exceed the node's free
    /// memory (pods may then stay Pending).
    #[arg(long)]
    pub force: bool,

    /// Apply, then return without waiting for the instances to work.
    #[arg(long)]
    pub no_wait: bool,

    /// Time for PostgreSQL and Redis to become ready, image pulls included
    /// (90s, 10m, 1h).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub timeout_database: Duration,

    /// Time for the setup Job (pulls the ~1 GB Mastodon image, prepares the
    /// database, creates the admin account).
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_duration)]
    pub timeout_setup: Duration,

    /// Time for web, streaming and Sidekiq after setup.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub timeout_services: Duration,

    /// Print fedilab's own time per phase and its number of API requests.
    #[arg(long)]
    pub timings: bool,

    /// Route Traefik straight to the instances instead of through the
    /// inspector on this host (nothing is recorded; attached servers need
    /// the inspector). `fedilab serve` still answers the lab names.
    #[arg(long)]
    pub no_inspector: bool,

    /// Format of the credentials printed at the end.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: CredsFormat,
}

/// A duration such as `90s`, `10m`, `1h30m` or `45` (seconds).
///
/// # Errors
/// A message for clap when `text` is not one.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration such as 90s, 10m or 1h30m");
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total += n * unit;
        number.clear();
    }
    if !number.is_empty() || text.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// A single-threaded runtime for one command.
///
/// # Errors
/// When the OS refuses the runtime's resources.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Connects with `--kubeconfig`/`--context`.
///
/// # Errors
/// When no kubeconfig can be used.
pub async fn connect(kube: &KubeArgs) -> anyhow::Result<Cluster> {
    Ok(fedilab_orchestrator::connect(&kube.options()).await?)
}

/// Connects and checks that the API server answers (one request), so a
/// stopped cluster gets a message that says what to do.
///
/// # Errors
/// When no kubeconfig can be used or the server does not answer.
pub async fn connect_checked(kube: &KubeArgs) -> anyhow::Result<Cluster> {
    let cluster = connect(kube).await?;
    fedilab_orchestrator::reachable(&cluster).await?;
    Ok(cluster)
}

/// Prints phase timings (stderr, so stdout stays parseable).
pub fn print_timings(timings: &Timings, cluster: &Cluster) {
    eprintln!("timings (fedilab's own time = wall - api):");
    for t in timings.phases() {
        eprintln!(
            "  {:<10} wall {:>8.1} ms  api {:>8.1} ms  own {:>7.1} ms  {:>4} requests",
            t.phase,
            t.wall.as_secs_f64() * 1000.0,
            t.api.as_secs_f64() * 1000.0,
            t.wall.saturating_sub(t.api).as_secs_f64() * 1000.0,
            t.requests
        );
    }
    eprintln!("  total requests: {}", cluster.counter.requests());
}

/// Progress: one spinner per instance on a terminal, plain lines otherwise.
struct Bars {
    multi: Option<MultiProgress>,
    bars: Mutex<BTreeMap<String, ProgressBar>>,
}

impl Bars {
    fn new(instances: &[InstanceName]) -> Bars {
        if !std::io::stdout().is_terminal() {
            return Bars {
                multi: None,
                bars: Mutex::default(),
            };
        }
        let multi = MultiProgress::new();
        let style = ProgressStyle::with_template("{spinner} {prefix:<14} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bars = instances
            .iter()
            .map(|i| {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.set_prefix(i.to_string());
                bar.set_message("applied");
                bar.enable_steady_tick(Duration::from_millis(120));
                (i.to_string(), bar)
            })
            .collect();
        Bars {
            multi: Some(multi),
            bars: Mutex::new(bars),
        }
    }

    fn finish(&self) {
        if let Ok(bars) = self.bars.lock() {
            for bar in bars.values() {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
        }
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }
}

fn describe(progress: &InstanceProgress) -> String {
    match progress {
        InstanceProgress::Waiting { phase } => phase.waiting_for().to_owned(),
        InstanceProgress::Ready => "ready".to_owned(),
        InstanceProgress::Failed { phase, reason } => {
            format!("{} failed: {reason}", phase.as_str())
        }
    }
}

impl Progress for Bars {
    fn update(&self, instance: &InstanceName, progress: &InstanceProgress) {
        let text = describe(progress);
        if self.multi.is_none() {
            println!("{instance}: {text}");
            return;
        }
        if let Ok(bars) = self.bars.lock()
            && let Some(bar) = bars.get(instance.as_str())
        {
            match progress {
                InstanceProgress::Ready => bar.finish_with_message(text),
                _ => bar.set_message(text),
            }
        }
    }
}

/// Prints credentials as text or JSON.
///
/// # Errors
/// When JSON cannot be written.
pub fn print_credentials(creds: &[InstanceCredentials], format: CredsFormat) -> anyhow::Result<()> {
    match format {
        CredsFormat::Json => println!("{}", serde_json::to_string_pretty(creds)?),
        CredsFormat::Text => {
            for c in creds {
                println!("{}  {}", c.instance, c.url);
                println!("  login      {}", c.username);
                println!("  password   {}", c.password);
                println!("  API token  {}", c.api_token);
            }
        }
    }
    Ok(())
}

/// Runs `fedilab up`.
///
/// # Errors
/// An invalid profile, an unusable CA or state directory, a failed
/// preflight, apply or wait, each saying what to do.
pub fn run(args: &UpArgs) -> anyhow::Result<ExitCode> {
    let data_dir = crate::paths::data_dir()?;
    let profile_spec = args.lab.load()?;
    let lab_dir = LabDir::new(&data_dir, &profile_spec.name);
    let attached = lab_dir.attached()?;
    let inspector = !args.no_inspector;
    if !inspector && !attached.is_empty() {
        return Err(UsageError(format!(
            "lab {lab} has attached servers ({}), which the cluster reaches only through the              inspector; `fedilab detach` them first, or run `fedilab up` without --no-inspector",
            attached.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", "),
            lab = profile_spec.name
        ))
        .into());
    }
    let spec = fedilab_orchestrator::with_attached(profile_spec, &attached)
        .map_err(|e| UsageError(e.to_string()))?;
    let secrets = lab_dir.secrets(&spec)?;
    let tls = crate::tls::lab_tls(&spec, &data_dir)?;
    let saved = lab_dir.load_state()?;
    let rt = runtime()?;
    let timings_shown = args.timings;
    rt.block_on(async {
        // A stopped cluster gets the message that says what to do.
        let cluster = connect_checked(&args.kube).await?;
        let timings = Timings::new(cluster.counter.clone());
        let outcome = async {
            let node = timings
                .phase("node", fedilab_orchestrator::node_address(&cluster))
                .await?;
            let node_ip: Option<IpAddr> = node.as_deref().and_then(|n| n.parse().ok());
            let Some(node_ip) = node_ip else {
                anyhow::bail!(
                    "no Ready node of {} has an InternalIP, so Traefik's address is unknown;                      check `kubectl get nodes -o wide`",
                    cluster.server
                );
            };
            let serve = ServeSettings::for_lab(
                &data_dir,
                &spec.name,
                saved.as_ref().and_then(|s| s.serve.as_ref()),
                node_ip,
                inspector,
            );
            let routing = match serve.proxy {
                Some(proxy) => Routing::Inspector { proxy },
                None => Routing::Direct,
            };
            let manifests = fedilab_manifest::build(&spec, &secrets, &tls, &routing).map_err(
                |e| match e {
                    BuildError::ExternalNeedsInspector(_) => anyhow::Error::new(UsageError(
                        format!("{e}; run `fedilab up` without --no-inspector"),
                    )),
                    other => anyhow::Error::new(other),
                },
            )?;
            let mut checked = timings
                .phase(
                    "preflight",
                    fedilab_orchestrator::preflight(
                        &cluster,
                        &spec,
                        &manifests,
                        PreflightOptions { force: args.force },
                    ),
                )
                .await?;
            for w in &checked.warnings {
                eprintln!("warning: {w}");
            }
            // A marker brackets the apply, so a rerun after an interrupted
            // `up` restarts CoreDNS even if its key already looks applied.
            checked.coredns_restart_pending = lab_dir.apply_pending()?;
            lab_dir.start_apply()?;
            let report = timings
                .phase(
                    "apply",
                    fedilab_orchestrator::apply(&cluster, &spec, &manifests, &checked),
                )
                .await?;
            lab_dir.finish_apply()?;
            let upstreams = if inspector {
                timings
                    .phase(
                        "upstreams",
                        fedilab_orchestrator::instance_upstreams(&cluster, &spec),
                    )
                    .await?
            } else {
                BTreeMap::new()
            };
            let mut state = LabState::from_spec(&spec, node.as_deref());
            state.route(&upstreams, &attached);
            state.serve = Some(serve);
            lab_dir.save_state(&state)?;
            eprintln!(
                "applied {} objects to {} (lab {}, namespace {}){}",
                report.objects.len(),
                cluster.server,
                spec.name,
                names::namespace(&spec.name),
                if report.coredns_restarted {
                    "; restarted CoreDNS"
                } else {
                    ""
                }
            );
            // The host side: DNS for the lab names, the inspector between
            // Traefik and the instances. Started before the wait, so the
            // setup traffic is recorded too.
            eprintln!(
                "{}",
                crate::host::refresh_serve(&lab_dir, &spec.name, &data_dir)?
            );
            if args.no_wait {
                return anyhow::Ok(node);
            }
            let options = WaitOptions {
                database: args.timeout_database,
                setup: args.timeout_setup,
                services: args.timeout_services,
                ..WaitOptions::default()
            };
            let names: Vec<InstanceName> = spec
                .instances
                .iter()
                .filter(|i| matches!(i.kind, InstanceSpecKind::Mastodon(_)))
                .map(|i| i.name.clone())
                .collect();
            let bars = Bars::new(&names);
            let waited = timings
                .phase(
                    "wait",
                    fedilab_orchestrator::wait_ready(&cluster, &spec, &options, &bars),
                )
                .await;
            bars.finish();
            waited?;
            anyhow::Ok(node)
        }
        .await;
        if timings_shown {
            print_timings(&timings, &cluster);
        }
        let node = outcome?;
        let (state, creds) = fedilab_orchestrator::credentials_from_state(&lab_dir)?
            .context("the lab state was just saved but cannot be read back")?;
        if args.output == CredsFormat::Text {
            println!(
                "lab {} is {} ({} instances under {}):\n",
                spec.name,
                if args.no_wait { "applied" } else { "up" },
                spec.instances.len(),
                spec.domain
            );
        }
        print_credentials(&creds, args.output)?;
        if args.output == CredsFormat::Text {
            for i in state.instances.iter().filter(|i| i.kind != StoredKind::Mastodon) {
                let to = i.upstreams.first().map_or("-", |u| u.url.as_str());
                println!("{}  {} -> {to} ({})", i.name, i.url, if i.kind == StoredKind::Attached { "attached" } else { "external" });
            }
            let dns = state.serve.as_ref().map(|s| s.dns);
            println!(
                "\nThese names resolve inside the cluster, and on this host through fedilab's DNS \
                 at {dns} once systemd-resolved sends the lab domain there (once, as root: \
                 `fedilab dns install-resolver --lab {lab}`); trust the lab CA with \
                 `fedilab ca trust --domain {domain}`. Traefik listens on {node}.\n\
                 Next: `fedilab status`, `fedilab attach NAME --url http://127.0.0.1:PORT` adds \
                 your own server, `fedilab down` removes the lab.",
                dns = dns.map_or_else(|| "-".to_owned(), |d| d.to_string()),
                lab = spec.name,
                domain = spec.domain,
                node = node.as_deref().unwrap_or("the node's address"),
            );
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("10 minutes").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("").is_err());
    }
}
