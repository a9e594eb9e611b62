//! `fedilab up`: flags in, `fedilab_lab::up` called, its report printed.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use fedilab_lab::{UpPlan, UpReport, UpRequest};
use fedilab_orchestrator::{Timings, WaitOptions};
use fedilab_state::StoredKind;

use crate::UsageError;
use crate::cli::{KubeArgs, LabArgs};
use crate::common::{Threads, connect_checked, runtime, serve_daemon};
use crate::output::{CredsFormat, UpProgress, print_credentials, print_timings};

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
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = crate::common::parse_duration)]
    pub timeout_database: Duration,

    /// Time for the setup Job (pulls the ~1 GB Mastodon image, prepares the
    /// database, creates the admin account).
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = crate::common::parse_duration)]
    pub timeout_setup: Duration,

    /// Time for web, streaming and Sidekiq after setup.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = crate::common::parse_duration)]
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

/// Runs `fedilab up`.
///
/// # Errors
/// An invalid profile, an unusable CA or state directory, a failed
/// preflight, apply or wait, each saying what to do.
pub fn run(args: &UpArgs) -> anyhow::Result<ExitCode> {
    let data_dir = crate::paths::data_dir()?;
    let spec = args.lab.load()?;
    let rules = spec.inspector.faults.len();
    if args.no_inspector && rules > 0 {
        eprintln!(
            "warning: the profile's {rules} fault rule{} will not apply: --no-inspector runs no inspector",
            if rules == 1 { "" } else { "s" }
        );
    }
    let daemon = serve_daemon(&spec.name, &data_dir)?;
    let request = UpRequest {
        data_dir: data_dir.clone(),
        spec,
        inspector: !args.no_inspector,
        force: args.force,
        wait: (!args.no_wait).then(|| WaitOptions {
            database: args.timeout_database,
            setup: args.timeout_setup,
            services: args.timeout_services,
            ..WaitOptions::default()
        }),
    };
    let plan = UpPlan::prepare(request).map_err(usage_or)?;
    // Attached servers are in the plan's lab: a rule may name one.
    crate::cli::warn_unknown_rule_hosts(plan.spec());
    let report = runtime(Threads::One)?.block_on(async {
        let cluster = connect_checked(&args.kube).await?;
        let timings = Timings::new(cluster.counter.clone());
        let progress = UpProgress::new(plan.spec().name.clone(), cluster.server.clone());
        let outcome = fedilab_lab::up(&cluster, &plan, &daemon, &progress, &timings).await;
        progress.finish();
        if outcome.as_ref().is_ok_and(|r| r.waited) {
            crate::cmd::snapshot::fresh_after_up(&cluster, &data_dir, &plan.spec().name).await;
        }
        if args.timings {
            print_timings(&timings, &cluster);
        }
        outcome.map_err(usage_or)
    })?;
    if args.output == CredsFormat::Text {
        println!("{}", summary_text(&report));
    }
    print_credentials(&report.credentials, args.output)?;
    if args.output == CredsFormat::Text {
        print!("{}", next_steps_text(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// A usage error (exit 2) when the input is at fault, else the error.
fn usage_or(e: fedilab_lab::UpError) -> anyhow::Error {
    if e.is_usage() {
        UsageError(e.to_string()).into()
    } else {
        e.into()
    }
}

/// The line above the credentials.
fn summary_text(report: &UpReport) -> String {
    format!(
        "lab {} is {} ({} instances under {}):\n",
        report.spec.name,
        if report.waited { "up" } else { "applied" },
        report.spec.instances.len(),
        report.spec.domain
    )
}

/// The servers outside the cluster, then how to reach the lab from this
/// host and what to do next.
fn next_steps_text(report: &UpReport) -> String {
    let mut out = String::new();
    let state = &report.state;
    for i in state
        .instances
        .iter()
        .filter(|i| i.kind != StoredKind::Mastodon)
    {
        let to = i
            .upstreams
            .first()
            .map_or_else(|| "-".to_owned(), |u| u.url.to_string());
        let _ = writeln!(out, "{}  {} -> {to} ({})", i.name, i.url, i.kind.as_str());
    }
    let dns = state
        .serve
        .as_ref()
        .map_or_else(|| "-".to_owned(), |s| s.dns.to_string());
    let _ = writeln!(
        out,
        "\nThese names resolve inside the cluster, and on this host through fedilab's DNS \
         at {dns} once systemd-resolved sends the lab domain there (once, as root: \
         `fedilab dns install-resolver --lab {lab}`); trust the lab CA with \
         `fedilab ca trust --domain {domain}`. Traefik listens on {node}.\n\
         Next: `fedilab status`, `fedilab attach NAME --url http://127.0.0.1:PORT` adds \
         your own server, `fedilab down` removes the lab.",
        lab = report.spec.name,
        domain = report.spec.domain,
        node = report.node,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(attached: bool) -> UpReport {
        let yaml = if attached {
            "instances:\n  - name: mastodon1\n  - {name: mine, kind: external, url: \"http://127.0.0.1:3000\"}\n"
        } else {
            "instances:\n  - name: mastodon1\n"
        };
        let spec =
            fedilab_profile::LabSpec::from_yaml(yaml, "test", &Default::default()).expect("spec");
        let mut state = fedilab_state::LabState::from_spec(&spec, Some([192, 0, 2, 10].into()));
        state.serve = Some(fedilab_state::ServeSettings::choose(
            [192, 0, 2, 10].into(),
            true,
            &[],
        ));
        UpReport {
            spec,
            state,
            node: [192, 0, 2, 10].into(),
            waited: true,
            credentials: Vec::new(),
        }
    }

    #[test]
    fn the_summary_and_next_steps_name_the_lab_and_its_addresses() {
        let r = report(true);
        assert_eq!(
            summary_text(&r),
            "lab main is up (2 instances under fediverse.local):\n"
        );
        let next = next_steps_text(&r);
        assert!(
            next.starts_with(
                "mine  https://mine.fediverse.local/ -> http://127.0.0.1:3000 (external)\n"
            ),
            "{next}"
        );
        assert!(
            next.contains("fedilab's DNS at 127.0.0.1:5300 once"),
            "{next}"
        );
        assert!(next.contains("Traefik listens on 192.0.2.10."), "{next}");
        assert!(
            next.contains("`fedilab dns install-resolver --lab main`"),
            "{next}"
        );
    }

    #[test]
    fn no_message_has_a_run_of_spaces() {
        // Regression (issue 12): a string continued on the next line without
        // `\` kept the indentation in two of up's messages.
        let r = report(true);
        for text in [summary_text(&r), next_steps_text(&r)] {
            assert!(
                !text.contains("  fedilab") && !text.contains(" the  "),
                "{text}"
            );
            for line in text.lines() {
                let body = line.trim_start();
                assert!(!body.contains("   "), "a run of spaces: {line:?}");
            }
        }
        let err = fedilab_lab::UpError::AttachedNeedInspector {
            lab: "main".parse().expect("lab"),
            servers: "mine".to_owned(),
        };
        assert!(!err.to_string().contains("  "), "{err}");
        let err = fedilab_lab::UpError::NoNodeAddress {
            server: "https://127.0.0.1:6443".to_owned(),
        };
        assert!(!err.to_string().contains("  "), "{err}");
    }
}
