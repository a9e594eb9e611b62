//! `fedilab verify`: runs the lab's checks (egress, names, trust,
//! federation) as short-lived pods and host-side queries, prints a
//! checklist with evidence, exits 0 only when no check failed. `--plan`
//! prints the checks without touching the cluster.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use fedilab_orchestrator::VerifyOptions;
use fedilab_state::LabDir;
use fedilab_verify::{
    EnvSource, HostSide, Outcome, PlanInputs, StepRun, VerifyPlan, VerifyReport, pair_of, plan,
};
use rand_core::{OsRng, RngCore};

use crate::UsageError;
use crate::cli::{KubeArgs, LabArgs};
use crate::common::{Threads, connect_checked, parse_duration, runtime};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum VerifyFormat {
    /// A checklist.
    #[default]
    Text,
    /// JSON, for scripts.
    Json,
}

/// Arguments of `fedilab verify`.
#[derive(Debug, Args)]
#[command(after_help = "The checks:\n  \
egress      from a lab pod, TCP to 1.1.1.1:443 and 9.9.9.9:443 and DNS to 8.8.8.8:53 fail;\n              \
another instance's web Service answers\n  \
names       in a lab pod every instance host resolves (Ruby's Resolv::DNS, as Mastodon)\n              \
to Traefik's ClusterIP; on this host the embedded DNS answers with the node address\n  \
trust       from each Mastodon pod, HTTPS to the other instances' WebFinger verifies with\n              \
the lab trust bundle and fails with only the image's system bundle\n  \
federation  one round trip per ordered pair of server kinds (the first instance of each;\n              \
Mastodon to Mastodon when there are two): A follows B's admin, B accepts (approving the\n              \
request if its admin is locked, as GoToSocial's is), B posts, the post reaches A's home\n              \
timeline, each side through its own API; the inspector recorded Follow, Accept and\n              \
Create, signed\n\n\
Check pods run the instance's own Mastodon image (Ruby stdlib only) with its environment and\n\
trust bundle; a federation pair from Misskey or GoToSocial runs as a client of their API in a\n\
Mastodon image (GoToSocial's image has no scripting runtime) with the lab trust bundle. Pods\n\
are deleted afterwards (also on failure or Ctrl-C). A failing check names what it saw and\n\
the likely cause (for federation, the failing pair).\n\n\
Exit status: 0 when every check passed (or was skipped: federation needs two instances\n\
fedilab runs), 1 when a check failed, 2 for bad usage.\n\n\
Examples:\n  \
fedilab verify\n  \
fedilab verify --plan                 # what would run, without a cluster\n  \
fedilab verify --lab exp -o json | jq '.checks[] | select(.outcome == \"fail\")'")]
pub struct VerifyArgs {
    #[command(flatten)]
    pub lab: LabArgs,

    #[command(flatten)]
    pub kube: KubeArgs,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: VerifyFormat,

    /// Print the checks (pods, commands, expectations) without touching the
    /// cluster.
    #[arg(long)]
    pub plan: bool,

    /// Time each check pod may take, start to end (90s, 5m).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Runs `fedilab verify`.
///
/// # Errors
/// An invalid profile, an unreadable lab state, an unreachable cluster.
pub fn run(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let mut spec = args.lab.load()?;
    let state = LabDir::new(&crate::paths::data_dir()?, &spec.name).load_state()?;
    if let Some(state) = &state {
        // Without a profile or counts, the lab as `up` made it.
        if args.lab.profile.is_none() && args.lab.instances.is_none() {
            let mut lab = args.lab.clone();
            lab.instances = Some(fedilab_lab::recorded_counts(state));
            lab.domain.get_or_insert_with(|| state.domain.to_string());
            spec = lab.load()?;
        }
        fedilab_lab::check_same_lab(&spec, state).map_err(|e| UsageError(e.to_string()))?;
    }
    let host = state.as_ref().and_then(|s| {
        let serve = s.serve.as_ref()?;
        Some(HostSide {
            node_address: s.node_address,
            dns: serve.dns,
            inspector: serve.ui,
        })
    });
    let mut inputs = PlanInputs::new(host, &format!("{:016x}", OsRng.next_u64()));
    // The round trip's two waits fit in the pod's time.
    inputs.federation_wait_secs = u32::try_from(args.timeout.as_secs() / 3)
        .unwrap_or(u32::MAX)
        .clamp(10, 120);
    let plan = plan(&spec, &inputs);
    if args.plan {
        match args.output {
            VerifyFormat::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
            VerifyFormat::Text => print_plan(&plan),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let options = VerifyOptions {
        pod_timeout: args.timeout,
        ..VerifyOptions::default()
    };
    let run = runtime(Threads::One)?.block_on(async {
        let cluster = connect_checked(&args.kube).await?;
        let cancel = async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        anyhow::Ok(fedilab_orchestrator::verify(&cluster, &spec, &plan, &options, cancel).await?)
    })?;
    match args.output {
        VerifyFormat::Json => println!("{}", serde_json::to_string_pretty(&run.report)?),
        VerifyFormat::Text => print_report(&run.report),
    }
    for pod in &run.not_deleted {
        eprintln!("warning: could not delete check pod {pod}; `kubectl delete pod` it");
    }
    Ok(if run.report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_plan(plan: &VerifyPlan) {
    println!(
        "fedilab verify: {} checks for lab {} (pods in namespace {})",
        plan.checks.len(),
        plan.lab,
        plan.namespace
    );
    for (n, check) in plan.checks.iter().enumerate() {
        println!("\n{}. {}: {}", n + 1, check.id, check.title);
        if let Some(reason) = &check.skipped {
            println!("   skipped: {reason}");
            continue;
        }
        for step in &check.steps {
            print_step(&step.run);
        }
        for e in &check.expect {
            println!("   expect: {e}");
        }
        for note in &check.notes {
            println!("   note: {note}");
        }
    }
}

/// One step of the plan: a check pod, or a query from this host.
fn print_step(run: &StepRun) {
    match run {
        StepRun::Pod(pod) => {
            if pod.client_only {
                println!(
                    "   pod {} (a client of {}'s API in image {}, with the lab trust bundle):",
                    pod.pod, pod.instance, pod.image
                );
            } else {
                println!(
                    "   pod {} ({}'s image {}, environment and trust bundle):",
                    pod.pod, pod.instance, pod.image
                );
            }
            println!("     ruby -e <{}>", pod.script.file_name());
            for e in &pod.env {
                match &e.from {
                    EnvSource::Value { value } => println!("     {}={value}", e.name),
                    EnvSource::SecretKeyRef { secret, key } => {
                        println!("     {} from Secret {secret}, key {key}", e.name);
                    }
                    EnvSource::TraefikClusterIp => {
                        println!("     {}=<ClusterIP of kube-system/traefik>", e.name);
                    }
                }
            }
        }
        StepRun::HostDns(dns) => println!(
            "   host: DNS query (A) for {} to {}, expecting {}",
            dns.hosts.join(", "),
            dns.server.map_or(
                "the embedded DNS (not recorded yet: `fedilab up` saves it)".to_owned(),
                |s| s.to_string()
            ),
            dns.expected
                .map_or("the node address".to_owned(), |a| a.to_string())
        ),
        StepRun::Inspector(inspector) => {
            let pair = inspector
                .round_trip
                .as_deref()
                .and_then(pair_of)
                .map(|p| format!(", the deliveries of {p}"))
                .unwrap_or_default();
            println!(
                "   host: inspector API at {}{pair}:",
                inspector.api.map_or(
                    "(not recorded yet: `fedilab up` saves it)".to_owned(),
                    |a| a.to_string()
                )
            );
            for q in &inspector.queries {
                println!(
                    "     {} {} -> {}, signature valid",
                    q.activity, q.from, q.to
                );
            }
        }
    }
}

fn print_report(report: &VerifyReport) {
    println!("fedilab verify: lab {}", report.lab);
    for check in &report.checks {
        let mark = match check.outcome {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Skipped => "SKIP",
        };
        println!("\n[{mark}] {}: {}", check.id, check.title);
        for e in &check.evidence {
            println!("       {e}");
        }
        if let Some(x) = &check.explanation {
            let label = if check.outcome == Outcome::Fail {
                "likely cause"
            } else {
                "why"
            };
            for (i, line) in x.lines().enumerate() {
                let head = if i == 0 { label } else { "" };
                println!(
                    "       {head:<13}{}{line}",
                    if i == 0 { ": " } else { "  " }
                );
            }
        }
    }
    let failed = report
        .checks
        .iter()
        .filter(|c| c.outcome == Outcome::Fail)
        .count();
    println!(
        "\n{} of {} checks passed{}",
        report
            .checks
            .iter()
            .filter(|c| c.outcome == Outcome::Pass)
            .count(),
        report.checks.len(),
        if failed == 0 {
            String::new()
        } else {
            format!(", {failed} failed")
        }
    );
}
