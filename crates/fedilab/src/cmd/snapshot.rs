//! `fedilab reset` and `fedilab snapshot save|list|delete`: flags in, one
//! `fedilab_lab` call, the report out (text, `--timings`, `-o json`), and
//! `up`'s `fresh` snapshot ([`fresh_after_up`]). The printers are pure
//! text functions; the sequence lives in `fedilab_lab::reset`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use fedilab_data::snapshot::SnapshotName;
use fedilab_lab::{Recordings, SnapshotRow, StateError, StatePlan, StateReport, StateRequest};
use fedilab_orchestrator::snapshot::{SnapshotError, StateOptions, StateProgress};
use fedilab_orchestrator::{Cluster, InstanceOutcome};
use fedilab_profile::{InstanceName, LabName};
use tokio::sync::watch;

use crate::UsageError;
use crate::cli::KubeArgs;
use crate::common::{LabSelect, Threads, connect_checked, parse_duration, runtime};

/// Output format of the state commands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum StateFormat {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON document.
    Json,
}

fn parse_snapshot(text: &str) -> Result<SnapshotName, String> {
    text.parse().map_err(|e| format!("{e}"))
}

fn parse_instance(text: &str) -> Result<InstanceName, String> {
    text.parse().map_err(|e| format!("{e}"))
}

/// Flags every state command shares.
#[derive(Debug, Args)]
pub struct StateFlags {
    #[command(flatten)]
    pub lab: LabSelect,

    /// How long the job workers (Sidekiq) may take to report quiet with no
    /// job in flight; they report with their heartbeat, every 10 s (a
    /// Sidekiq still booting after the last reset takes longer).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub quiet_timeout: Duration,

    /// Print each step's time per instance.
    #[arg(long)]
    pub timings: bool,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: StateFormat,

    #[command(flatten)]
    pub kube: KubeArgs,
}

/// Arguments of `fedilab reset`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
fedilab reset                          # every instance back to `fresh` (right after setup)\n  \
fedilab reset mastodon2 --to before-follow --timings\n  \
fedilab reset --clear-recordings -o json\n\n\
Database, Redis (queues, retries, timelines, caches) and media return to the snapshot; pods\n\
stay, connections are cut and re-established, Sidekiq restarts. No delivery of the previous\n\
experiment runs afterwards (README: Experiment loop).")]
pub struct ResetArgs {
    /// The instances (default: every instance fedilab runs in the lab).
    #[arg(value_name = "INSTANCE", value_parser = parse_instance)]
    pub instances: Vec<InstanceName>,

    /// The snapshot to return to.
    #[arg(long, value_name = "SNAPSHOT", default_value = "fresh", value_parser = parse_snapshot)]
    pub to: SnapshotName,

    /// Delete the inspector's recordings instead of marking the reset on
    /// their timeline.
    #[arg(long)]
    pub clear_recordings: bool,

    #[command(flatten)]
    pub flags: StateFlags,
}

/// Arguments of `fedilab snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

/// `fedilab snapshot` subcommands.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Save the lab's state (every instance, queues drained first) under
    /// NAME, replacing a snapshot of that name.
    Save {
        /// The snapshot's name (lowercase letters, digits, '-').
        #[arg(value_parser = parse_snapshot)]
        name: SnapshotName,
        /// The instances (default: every instance fedilab runs).
        #[arg(value_name = "INSTANCE", value_parser = parse_instance)]
        instances: Vec<InstanceName>,
        /// How long to wait for Sidekiq's queues to drain.
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
        drain_timeout: Duration,
        #[command(flatten)]
        flags: StateFlags,
    },
    /// List the lab's snapshots and which instances hold them.
    List {
        #[command(flatten)]
        flags: StateFlags,
    },
    /// Delete snapshot NAME from every instance.
    Delete {
        /// The snapshot.
        #[arg(value_parser = parse_snapshot)]
        name: SnapshotName,
        #[command(flatten)]
        flags: StateFlags,
    },
}

/// Progress lines on stderr (text output only).
struct Notes {
    quiet: bool,
}

impl StateProgress for Notes {
    fn note(&self, instance: &InstanceName, text: &str) {
        if !self.quiet {
            eprintln!("{instance}: {text}");
        }
    }
}

/// The checked request: refusals (lab not up here, unknown instance) come
/// before any cluster contact.
fn plan(
    flags: &StateFlags,
    instances: Vec<InstanceName>,
    drain: Option<Duration>,
) -> anyhow::Result<StatePlan> {
    let mut options = StateOptions {
        quiet_budget: flags.quiet_timeout,
        ..StateOptions::default()
    };
    if let Some(drain) = drain {
        options.drain_budget = drain;
    }
    let request = StateRequest {
        data_dir: crate::paths::data_dir()?,
        lab: flags.lab.lab.clone(),
        instances,
        options,
    };
    let plan = StatePlan::prepare(request).map_err(usage_or)?;
    for (name, kind) in plan.skipped() {
        eprintln!(
            "warning: {name} ({kind}) is left out: snapshots and reset support Mastodon only so far"
        );
    }
    Ok(plan)
}

fn usage_or(e: StateError) -> anyhow::Error {
    if e.is_usage() {
        UsageError(e.to_string()).into()
    } else {
        e.into()
    }
}

/// A cancel flag that Ctrl-C sets.
fn ctrl_c() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = tx.send(true);
        }
    });
    rx
}

/// Runs `fedilab reset`.
///
/// # Errors
/// The lab is not up here, an unknown instance or snapshot (exit 2), the
/// cluster is unreachable; an instance that failed makes the exit code 1.
pub fn reset(args: &ResetArgs) -> anyhow::Result<ExitCode> {
    let flags = &args.flags;
    let req = plan(flags, args.instances.clone(), None)?;
    let report = runtime(Threads::One)?.block_on(async {
        let cluster = connect_checked(&flags.kube).await?;
        let notes = Notes {
            quiet: flags.output == StateFormat::Json,
        };
        let cancel = ctrl_c();
        fedilab_lab::reset(
            &cluster,
            &req,
            &args.to,
            args.clear_recordings,
            &notes,
            &cancel,
        )
        .await
        .map_err(usage_or)
    })?;
    print_report("reset to", &report, flags)
}

/// Runs `fedilab snapshot ...`.
///
/// # Errors
/// As [`reset`].
pub fn snapshot(args: &SnapshotArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        SnapshotCommand::Save {
            name,
            instances,
            drain_timeout,
            flags,
        } => {
            let req = plan(flags, instances.clone(), Some(*drain_timeout))?;
            let report = runtime(Threads::One)?.block_on(async {
                let cluster = connect_checked(&flags.kube).await?;
                let notes = Notes {
                    quiet: flags.output == StateFormat::Json,
                };
                fedilab_lab::snapshot_save(&cluster, &req, name, &notes, &ctrl_c())
                    .await
                    .map_err(usage_or)
            })?;
            print_report("saved", &report, flags)
        }
        SnapshotCommand::Delete { name, flags } => {
            let req = plan(flags, Vec::new(), None)?;
            let report = runtime(Threads::One)?.block_on(async {
                let cluster = connect_checked(&flags.kube).await?;
                let notes = Notes { quiet: true };
                fedilab_lab::snapshot_delete(&cluster, &req, name, &notes)
                    .await
                    .map_err(usage_or)
            })?;
            print_report("deleted", &report, flags)
        }
        SnapshotCommand::List { flags } => {
            let req = plan(flags, Vec::new(), None)?;
            let rows = runtime(Threads::One)?.block_on(async {
                let cluster = connect_checked(&flags.kube).await?;
                fedilab_lab::snapshot_list(&cluster, &req)
                    .await
                    .map_err(usage_or)
            })?;
            match flags.output {
                StateFormat::Text => print!("{}", list_text(&flags.lab.lab, &rows)),
                StateFormat::Json => {
                    println!("{}", serde_json::to_string_pretty(&list_json(&rows))?)
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_report(verb: &str, report: &StateReport, flags: &StateFlags) -> anyhow::Result<ExitCode> {
    match flags.output {
        StateFormat::Text => print!("{}", report_text(verb, report, flags.timings)),
        StateFormat::Json => println!("{}", serde_json::to_string_pretty(&report_json(report))?),
    }
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

fn outcome_text(verb: &str, name: &SnapshotName, o: &InstanceOutcome, timings: bool) -> String {
    let parts: Vec<String> = o
        .parts
        .iter()
        .map(|(part, out)| format!("{}: {out}", part.as_str()))
        .collect();
    let mut text = format!(
        "{}: {verb} {name} in {} ({})\n",
        o.instance,
        secs(o.total),
        parts.join("; ")
    );
    if timings {
        for p in &o.phases {
            text.push_str(&format!("  {:<18} {:>8}\n", p.phase, secs(p.elapsed)));
        }
    }
    text
}

/// The report as text.
pub fn report_text(verb: &str, report: &StateReport, timings: bool) -> String {
    let mut text = String::new();
    for o in &report.done {
        text.push_str(&outcome_text(verb, &report.snapshot, o, timings));
    }
    for e in &report.failed {
        text.push_str(&format!("error: {}\n", error_chain(e)));
    }
    match &report.recordings {
        Some(Recordings::Marked(m)) => text.push_str(&format!("inspector: marked \"{m}\"\n")),
        Some(Recordings::Cleared) => text.push_str("inspector: recordings deleted\n"),
        Some(Recordings::Unreachable(why)) => {
            text.push_str(&format!("warning: no marker on the recordings: {why}\n"));
        }
        Some(Recordings::NoInspector) | None => {}
    }
    if timings {
        text.push_str(&format!("total {}\n", secs(report.total)));
    }
    text
}

fn error_chain(e: &SnapshotError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// The report as JSON.
pub fn report_json(report: &StateReport) -> serde_json::Value {
    let outcome = |o: &InstanceOutcome| {
        serde_json::json!({
            "instance": o.instance.as_str(),
            "seconds": o.total.as_secs_f64(),
            "parts": o.parts.iter().map(|(p, out)| serde_json::json!({"part": p.as_str(), "result": out})).collect::<Vec<_>>(),
            "phases": o.phases.iter().map(|p| serde_json::json!({"phase": p.phase, "seconds": p.elapsed.as_secs_f64()})).collect::<Vec<_>>(),
        })
    };
    let recordings = match &report.recordings {
        Some(Recordings::Marked(m)) => serde_json::json!({"marked": m}),
        Some(Recordings::Cleared) => serde_json::json!("cleared"),
        Some(Recordings::NoInspector) => serde_json::json!("no inspector"),
        Some(Recordings::Unreachable(why)) => serde_json::json!({"unreachable": why}),
        None => serde_json::Value::Null,
    };
    serde_json::json!({
        "lab": report.lab.as_str(),
        "snapshot": report.snapshot.as_str(),
        "seconds": report.total.as_secs_f64(),
        "instances": report.done.iter().map(outcome).collect::<Vec<_>>(),
        "failed": report.failed.iter().map(error_chain).collect::<Vec<_>>(),
        "recordings": recordings,
    })
}

/// `snapshot list` as text.
pub fn list_text(lab: &LabName, rows: &[SnapshotRow]) -> String {
    if rows.is_empty() {
        return format!("lab {lab} has no snapshots (`fedilab snapshot save NAME --lab {lab}`)\n");
    }
    let mut text = String::new();
    for row in rows {
        let instances: Vec<String> = row
            .instances
            .iter()
            .map(|(i, parts)| {
                if parts.len() == 3 {
                    i.to_string()
                } else {
                    let parts: Vec<&str> = parts.iter().map(|p| p.as_str()).collect();
                    format!("{i} (only {})", parts.join(", "))
                }
            })
            .collect();
        text.push_str(&format!(
            "{:<20} {:<22} {}\n",
            row.name.as_str(),
            row.saved_at.as_deref().unwrap_or("-"),
            instances.join(", ")
        ));
    }
    text
}

fn list_json(rows: &[SnapshotRow]) -> serde_json::Value {
    serde_json::Value::Array(
        rows.iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name.as_str(),
                    "saved_at": r.saved_at,
                    "instances": r.instances.iter().map(|(i, parts)| serde_json::json!({
                        "instance": i.as_str(),
                        "parts": parts.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

/// `up`'s last step once every instance works: the `fresh` snapshot on
/// each instance without one. A failure is a warning: the lab is up.
pub async fn fresh_after_up(cluster: &Cluster, data_dir: &Path, lab: &LabName) {
    let req = StateRequest {
        data_dir: data_dir.to_owned(),
        lab: lab.clone(),
        instances: Vec::new(),
        options: StateOptions::default(),
    };
    let plan = match StatePlan::prepare(req) {
        Ok(plan) => plan,
        Err(e) => {
            no_fresh(&e.to_string());
            return;
        }
    };
    let notes = Notes { quiet: true };
    match fedilab_lab::record_fresh(cluster, &plan, &notes).await {
        Ok(report) => {
            if !report.done.is_empty() {
                let names: Vec<&str> = report.done.iter().map(|o| o.instance.as_str()).collect();
                eprintln!(
                    "saved snapshot fresh of {} (`fedilab reset` returns here)",
                    names.join(", ")
                );
            }
            for e in &report.failed {
                no_fresh(&error_chain(e));
            }
        }
        Err(e) => no_fresh(&e.to_string()),
    }
}

/// The warning when `up` could not save `fresh`, with the way out.
fn no_fresh(why: &str) {
    eprintln!(
        "warning: no fresh snapshot: {why}; `fedilab reset` needs one: \
         `fedilab snapshot save fresh` saves it once the lab works"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedilab_data::snapshot::Part;
    use fedilab_orchestrator::PhaseTime;

    #[test]
    fn a_reset_report_says_what_was_restored_and_how_long_it_took() {
        let report = StateReport {
            lab: "main".parse().expect("lab"),
            snapshot: SnapshotName::fresh(),
            done: vec![InstanceOutcome {
                instance: "mastodon1".parse().expect("i"),
                parts: vec![
                    (Part::Database, String::new()),
                    (Part::Redis, "swapped".to_owned()),
                ],
                phases: vec![PhaseTime {
                    phase: "commit database".to_owned(),
                    elapsed: Duration::from_millis(250),
                }],
                total: Duration::from_millis(3210),
            }],
            failed: Vec::new(),
            recordings: Some(Recordings::Marked("reset to fresh at 12:03:04".to_owned())),
            total: Duration::from_millis(3300),
        };
        assert_eq!(
            report_text("reset to", &report, true),
            "mastodon1: reset to fresh in 3.21s (database: ; redis: swapped)\n  \
             commit database       0.25s\n\
             inspector: marked \"reset to fresh at 12:03:04\"\ntotal 3.30s\n"
        );
        let json = report_json(&report);
        assert_eq!(json["instances"][0]["phases"][0]["seconds"], 0.25);
        assert_eq!(json["recordings"]["marked"], "reset to fresh at 12:03:04");
    }

    #[test]
    fn the_list_names_instances_missing_parts() {
        let rows = vec![SnapshotRow {
            name: SnapshotName::fresh(),
            saved_at: Some("2026-12-07T03:00:00Z".to_owned()),
            instances: vec![
                (
                    "mastodon1".parse().expect("i"),
                    vec![Part::Database, Part::Redis, Part::Media],
                ),
                ("mastodon2".parse().expect("i"), vec![Part::Database]),
            ],
        }];
        let lab: LabName = "main".parse().expect("lab");
        assert_eq!(
            list_text(&lab, &rows),
            "fresh                2026-12-07T03:00:00Z   mastodon1, mastodon2 (only database)\n"
        );
        assert!(list_text(&lab, &[]).contains("has no snapshots"));
    }
}
