//! Runs `fedilab_data::snapshot`'s plans in one instance's pods through
//! [`crate::exec`]: save, reset, delete and list a named snapshot, with the
//! job workers quiet while the state is copied or swapped, and cleanup when
//! a step fails or the caller cancels.
//!
//! ```text
//! reset_instance   prepare (database, Redis, media beside the live state)
//!                  || quiet the workers (TSTP, until Redis shows them quiet and idle)
//!                  -> commit (database swap, SWAPDB, media swap) -> restart the workers
//! save_instance    drain the queues -> quiet -> copy -> restart the workers
//! delete_instance / list_instance
//! ```
//!
//! Cleanup: a failure (or cancel) before the first commit step reopens the
//! live database and restarts the workers: the old state stays, whole. A
//! failure once the commits began (a part may be swapped: a dropped
//! connection does not say) reopens the database but keeps the workers
//! quiet (they must not run old jobs against new data) and says to run the
//! reset again, which completes it: each part is swapped atomically, and a
//! rerun swaps them all.
//! This module never prints; progress goes through [`StateProgress`].

use std::time::{Duration, Instant};

use fedilab_data::KindState;
use fedilab_data::snapshot::{self, Listed, Part, SnapshotName, Step, WorkersState};
use fedilab_profile::{InstanceName, LabName};
use tokio::sync::watch;

use crate::Cluster;
use crate::exec::{ExecError, ExecTarget, capture_in, find_running_pod};

/// Which instance, and where its kind keeps its state.
#[derive(Clone, Copy)]
pub struct StateTarget<'a> {
    /// The lab.
    pub lab: &'a LabName,
    /// The instance.
    pub instance: &'a InstanceName,
    /// Its kind's state places.
    pub kind: &'static dyn KindState,
}

impl std::fmt::Debug for StateTarget<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateTarget")
            .field("lab", self.lab)
            .field("instance", self.instance)
            .field("kind", &self.kind.kind())
            .finish()
    }
}

/// Budgets and pace.
#[derive(Debug, Clone)]
pub struct StateOptions {
    /// How long the workers may take to report quiet and idle (Sidekiq
    /// reports with its heartbeat, every 10 s).
    pub quiet_budget: Duration,
    /// How long `save` waits for the queues to drain.
    pub drain_budget: Duration,
    /// Pause between two probes.
    pub poll: Duration,
    /// How often the quiet signal is sent again while a worker does not
    /// report quiet (one that was booting missed the first; each signal is
    /// a line in Sidekiq's log).
    pub resignal: Duration,
    /// Budget of each command.
    pub step_budget: Duration,
}

impl Default for StateOptions {
    fn default() -> Self {
        StateOptions {
            quiet_budget: Duration::from_secs(60),
            drain_budget: Duration::from_secs(60),
            poll: Duration::from_millis(500),
            resignal: Duration::from_secs(5),
            step_budget: Duration::from_secs(300),
        }
    }
}

/// Where the commands report while they run.
pub trait StateProgress: Sync {
    /// `text` about `instance` (a step began, the workers' state).
    fn note(&self, instance: &InstanceName, text: &str);
}

/// One timed phase of an instance's command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseTime {
    /// `prepare database`, `quiet workers`, `commit redis`...
    pub phase: String,
    /// How long it took.
    pub elapsed: Duration,
}

/// What a command did on one instance.
#[derive(Debug, Clone)]
pub struct InstanceOutcome {
    /// The instance.
    pub instance: InstanceName,
    /// Each part's last line of output (`saved fresh db 2 keys 600`...).
    pub parts: Vec<(Part, String)>,
    /// The phases with their times, in order.
    pub phases: Vec<PhaseTime>,
    /// From start to end.
    pub total: Duration,
}

/// Why a snapshot command failed on an instance.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The command could not be run.
    #[error("{phase} of instance {instance} could not run")]
    Exec {
        /// The instance.
        instance: InstanceName,
        /// `commit database`...
        phase: String,
        /// Why.
        #[source]
        source: ExecError,
    },
    /// The command failed.
    #[error("{phase} of instance {instance} failed (exit code {code}): {stderr}")]
    Failed {
        /// The instance.
        instance: InstanceName,
        /// `commit database`...
        phase: String,
        /// Its exit code.
        code: i32,
        /// The end of its stderr.
        stderr: String,
    },
    /// The command took too long.
    #[error("{phase} of instance {instance} did not finish within {budget:?}")]
    Timeout {
        /// The instance.
        instance: InstanceName,
        /// `commit database`...
        phase: String,
        /// The budget.
        budget: Duration,
    },
    /// The workers did not report quiet and idle in time.
    #[error(
        "the job workers of instance {instance} did not report quiet and idle within \
         {budget:?} (processes {}, quiet {}, jobs in flight {}); nothing was changed, \
         the workers were restarted; try again, or raise --quiet-timeout",
        last.processes, last.quiet, last.busy
    )]
    NotQuiet {
        /// The instance.
        instance: InstanceName,
        /// The budget.
        budget: Duration,
        /// Their last reported state.
        last: WorkersState,
    },
    /// The queues did not drain in time.
    #[error(
        "the job queues of instance {instance} did not drain within {budget:?} \
         ({} jobs queued, {} in flight); nothing was saved",
        last.queued, last.busy
    )]
    NotDrained {
        /// The instance.
        instance: InstanceName,
        /// The budget.
        budget: Duration,
        /// The last state.
        last: WorkersState,
    },
    /// The workers' probe printed something else.
    #[error("cannot read the job workers' state of instance {instance} from {output:?}")]
    Probe {
        /// The instance.
        instance: InstanceName,
        /// What the probe printed.
        output: String,
    },
    /// The caller cancelled (Ctrl-C).
    #[error("cancelled on instance {instance}")]
    Cancelled {
        /// The instance.
        instance: InstanceName,
    },
    /// A commit step failed: parts may be swapped, the workers stay quiet.
    #[error(
        "instance {instance} is part way through its reset (swapped: {swapped}): {source}; \
         its job workers stay quiet until `fedilab reset` is run again, which completes it"
    )]
    PartWay {
        /// The instance.
        instance: InstanceName,
        /// The parts already swapped, comma-separated.
        swapped: String,
        /// What failed.
        #[source]
        source: Box<SnapshotError>,
    },
}

impl SnapshotError {
    fn instance_phase(instance: &InstanceName, phase: &str) -> (InstanceName, String) {
        (instance.clone(), phase.to_owned())
    }
}

fn phase_name(verb: &str, step: &Step) -> String {
    format!("{verb} {}", step.part.as_str())
}

/// Runs one step in its container; its stdout when it exits 0.
///
/// # Errors
/// [`SnapshotError::Exec`], [`SnapshotError::Failed`],
/// [`SnapshotError::Timeout`].
pub async fn run_step(
    cluster: &Cluster,
    target: StateTarget<'_>,
    step: &Step,
    phase: &str,
    budget: Duration,
) -> Result<String, SnapshotError> {
    let exec_target = ExecTarget {
        lab: target.lab.clone(),
        instance: target.instance.clone(),
        component: step.component,
        container: Some(step.container.to_owned()),
    };
    let (instance, phase) = SnapshotError::instance_phase(target.instance, phase);
    // Running is enough: a worker that is still booting (after the last
    // reset's restart) must be reached to be quieted.
    let run = async {
        let pod = find_running_pod(cluster, &exec_target).await?;
        capture_in(cluster, &pod, &step.argv, None).await
    };
    let captured = match tokio::time::timeout(budget, run).await {
        Err(_) => {
            return Err(SnapshotError::Timeout {
                instance,
                phase,
                budget,
            });
        }
        Ok(Err(source)) => {
            return Err(SnapshotError::Exec {
                instance,
                phase,
                source,
            });
        }
        Ok(Ok(c)) => c,
    };
    if captured.code != 0 {
        let stderr = String::from_utf8_lossy(&captured.stderr);
        let tail: Vec<&str> = stderr.trim().lines().rev().take(3).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(SnapshotError::Failed {
            instance,
            phase,
            code: captured.code,
            stderr: tail.join(" / "),
        });
    }
    Ok(String::from_utf8_lossy(&captured.stdout).into_owned())
}

/// Times phases and keeps the parts' output.
struct Recorder {
    start: Instant,
    phases: Vec<PhaseTime>,
    parts: Vec<(Part, String)>,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            phases: Vec::new(),
            parts: Vec::new(),
        }
    }

    fn phase(&mut self, phase: String, since: Instant) {
        self.phases.push(PhaseTime {
            phase,
            elapsed: since.elapsed(),
        });
    }

    fn finish(self, instance: &InstanceName) -> InstanceOutcome {
        InstanceOutcome {
            instance: instance.clone(),
            parts: self.parts,
            phases: self.phases,
            total: self.start.elapsed(),
        }
    }
}

fn last_line(out: &str) -> String {
    out.trim().lines().last().unwrap_or("").to_owned()
}

/// Runs `steps` one after another, timing each.
async fn run_all(
    cluster: &Cluster,
    target: StateTarget<'_>,
    steps: &[Step],
    verb: &str,
    options: &StateOptions,
    progress: &dyn StateProgress,
    rec: &mut Recorder,
) -> Result<(), SnapshotError> {
    for step in steps {
        let phase = phase_name(verb, step);
        progress.note(target.instance, &phase);
        let since = Instant::now();
        let out = run_step(cluster, target, step, &phase, options.step_budget).await?;
        rec.phase(phase, since);
        rec.parts.push((step.part, last_line(&out)));
    }
    Ok(())
}

async fn probe(
    cluster: &Cluster,
    target: StateTarget<'_>,
    step: &Step,
    options: &StateOptions,
) -> Result<WorkersState, SnapshotError> {
    let out = run_step(cluster, target, step, "probe workers", options.step_budget).await?;
    snapshot::parse_workers(&out).ok_or_else(|| SnapshotError::Probe {
        instance: target.instance.clone(),
        output: out.trim().to_owned(),
    })
}

/// Quiets the workers (the signal again every [`StateOptions::resignal`]
/// while one does not report quiet: it also reaches a process that was
/// booting) until Redis shows every live one quiet with nothing in flight.
async fn quiet(
    cluster: &Cluster,
    target: StateTarget<'_>,
    options: &StateOptions,
    progress: &dyn StateProgress,
) -> Result<Duration, SnapshotError> {
    let since = Instant::now();
    let Some(probe_step) = snapshot::probe_workers(target.kind) else {
        return Ok(since.elapsed());
    };
    let signals = snapshot::quiet_workers(target.kind);
    let mut last = WorkersState::default();
    let mut signalled: Option<Instant> = None;
    loop {
        let all_quiet = last.processes > 0 && last.quiet == last.processes;
        if signalled.is_none_or(|at| !all_quiet && at.elapsed() >= options.resignal) {
            for step in &signals {
                run_step(cluster, target, step, "quiet workers", options.step_budget).await?;
            }
            signalled = Some(Instant::now());
        }
        let state = probe(cluster, target, &probe_step, options).await?;
        if state.quiet_and_idle() {
            return Ok(since.elapsed());
        }
        if state != last {
            progress.note(
                target.instance,
                &format!(
                    "waiting for the workers: {} of {} quiet, {} jobs in flight",
                    state.quiet, state.processes, state.busy
                ),
            );
            last = state;
        }
        if since.elapsed() >= options.quiet_budget {
            return Err(SnapshotError::NotQuiet {
                instance: target.instance.clone(),
                budget: options.quiet_budget,
                last,
            });
        }
        tokio::time::sleep(options.poll).await;
    }
}

/// Waits until the queues are empty and nothing runs.
async fn drain(
    cluster: &Cluster,
    target: StateTarget<'_>,
    options: &StateOptions,
    progress: &dyn StateProgress,
) -> Result<(), SnapshotError> {
    let since = Instant::now();
    let Some(probe_step) = snapshot::probe_workers(target.kind) else {
        return Ok(());
    };
    let mut last = None;
    loop {
        let state = probe(cluster, target, &probe_step, options).await?;
        if state.drained() {
            return Ok(());
        }
        if last != Some(state) {
            progress.note(
                target.instance,
                &format!(
                    "draining the queues: {} jobs queued, {} in flight",
                    state.queued, state.busy
                ),
            );
            last = Some(state);
        }
        if since.elapsed() >= options.drain_budget {
            return Err(SnapshotError::NotDrained {
                instance: target.instance.clone(),
                budget: options.drain_budget,
                last: state,
            });
        }
        tokio::time::sleep(options.poll).await;
    }
}

/// Restarts the workers. The container going down may cut the exec's
/// connection before its status: that is the restart we asked for.
async fn restart(
    cluster: &Cluster,
    target: StateTarget<'_>,
    options: &StateOptions,
    progress: &dyn StateProgress,
) -> Result<(), SnapshotError> {
    for step in snapshot::restart_workers(target.kind) {
        progress.note(target.instance, "restart workers");
        match run_step(
            cluster,
            target,
            &step,
            "restart workers",
            options.step_budget,
        )
        .await
        {
            Ok(_)
            | Err(SnapshotError::Exec {
                source: ExecError::Closed { .. } | ExecError::Stream { .. },
                ..
            }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// After a failure with nothing swapped: the live database accepts
/// connections and the workers restart. Best effort: errors are logged,
/// the original failure is what the caller sees.
async fn cleanup(
    cluster: &Cluster,
    target: StateTarget<'_>,
    options: &StateOptions,
    progress: &dyn StateProgress,
    workers: bool,
) {
    for step in snapshot::undo(target.kind) {
        if let Err(e) = run_step(cluster, target, &step, "undo", options.step_budget).await {
            tracing::warn!("cleanup of {}: {e}", target.instance);
        }
    }
    if workers && let Err(e) = restart(cluster, target, options, progress).await {
        tracing::warn!("cleanup of {}: {e}", target.instance);
    }
}

/// Resolves when `cancel` turns true (never when its sender is gone).
async fn cancelled(mut cancel: watch::Receiver<bool>) {
    if cancel.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Runs `work` unless `cancel` turns true first.
async fn or_cancel<T>(
    work: impl std::future::Future<Output = Result<T, SnapshotError>>,
    cancel: &watch::Receiver<bool>,
    instance: &InstanceName,
) -> Result<T, SnapshotError> {
    tokio::select! {
        r = work => r,
        () = cancelled(cancel.clone()) => Err(SnapshotError::Cancelled { instance: instance.clone() }),
    }
}

/// Returns the instance to snapshot `name`: see the module doc.
///
/// # Errors
/// [`SnapshotError`]: the snapshot does not exist (nothing changed), the
/// workers did not quiet, a step failed or timed out, `cancel` turned true.
///
/// # Caveats
/// Each command is bounded by [`StateOptions::step_budget`], the quiet by
/// [`StateOptions::quiet_budget`].
pub async fn reset_instance(
    cluster: &Cluster,
    target: StateTarget<'_>,
    name: &SnapshotName,
    options: &StateOptions,
    progress: &dyn StateProgress,
    cancel: &watch::Receiver<bool>,
) -> Result<InstanceOutcome, SnapshotError> {
    let mut rec = Recorder::new();
    let mut prep = Recorder::new();
    let prepare_steps = snapshot::prepare_reset(target.kind, name);
    let both = async {
        tokio::try_join!(
            run_all(
                cluster,
                target,
                &prepare_steps,
                "prepare",
                options,
                progress,
                &mut prep
            ),
            quiet(cluster, target, options, progress),
        )
    };
    match or_cancel(both, cancel, target.instance).await {
        Ok(((), quiet_time)) => {
            rec.phases.append(&mut prep.phases);
            rec.phases.push(PhaseTime {
                phase: "quiet workers".to_owned(),
                elapsed: quiet_time,
            });
        }
        Err(e) => {
            cleanup(cluster, target, options, progress, true).await;
            return Err(e);
        }
    }
    let mut swapped: Vec<&'static str> = Vec::new();
    for step in snapshot::commit_reset(target.kind) {
        let phase = phase_name("commit", &step);
        progress.note(target.instance, &phase);
        let since = Instant::now();
        let run = run_step(cluster, target, &step, &phase, options.step_budget);
        match or_cancel(run, cancel, target.instance).await {
            Ok(out) => {
                rec.phase(phase, since);
                rec.parts.push((step.part, last_line(&out)));
                swapped.push(step.part.as_str());
            }
            Err(e) => {
                // A step whose outcome is unknown (a dropped connection, a
                // failure after its swap) may have swapped: the workers
                // stay quiet until a rerun completes the reset.
                cleanup(cluster, target, options, progress, false).await;
                let swapped = if swapped.is_empty() {
                    "none confirmed".to_owned()
                } else {
                    swapped.join(", ")
                };
                return Err(SnapshotError::PartWay {
                    instance: target.instance.clone(),
                    swapped,
                    source: Box::new(e),
                });
            }
        }
    }
    let since = Instant::now();
    restart(cluster, target, options, progress).await?;
    rec.phase("restart workers".to_owned(), since);
    Ok(rec.finish(target.instance))
}

/// Saves the instance's state as snapshot `name` (replacing one of that
/// name): drains the queues, quiets the workers, copies database, Redis
/// and media, restarts the workers.
///
/// # Errors
/// [`SnapshotError`]: the queues did not drain or the workers did not
/// quiet (nothing saved), a step failed, `cancel` turned true. A snapshot
/// replaced part way keeps the parts already copied; save it again.
///
/// # Caveats
/// Bounded by the [`StateOptions`] budgets.
pub async fn save_instance(
    cluster: &Cluster,
    target: StateTarget<'_>,
    name: &SnapshotName,
    saved_at: &str,
    options: &StateOptions,
    progress: &dyn StateProgress,
    cancel: &watch::Receiver<bool>,
) -> Result<InstanceOutcome, SnapshotError> {
    let mut rec = Recorder::new();
    let since = Instant::now();
    or_cancel(
        drain(cluster, target, options, progress),
        cancel,
        target.instance,
    )
    .await?;
    rec.phase("drain queues".to_owned(), since);
    let steps = snapshot::save(target.kind, name, saved_at);
    let work = async {
        let quiet_time = quiet(cluster, target, options, progress).await?;
        rec.phases.push(PhaseTime {
            phase: "quiet workers".to_owned(),
            elapsed: quiet_time,
        });
        run_all(cluster, target, &steps, "save", options, progress, &mut rec).await
    };
    if let Err(e) = or_cancel(work, cancel, target.instance).await {
        cleanup(cluster, target, options, progress, true).await;
        return Err(e);
    }
    let since = Instant::now();
    restart(cluster, target, options, progress).await?;
    rec.phase("restart workers".to_owned(), since);
    Ok(rec.finish(target.instance))
}

/// Deletes snapshot `name` from the instance (absent parts are no error).
///
/// # Errors
/// A step failed or timed out.
pub async fn delete_instance(
    cluster: &Cluster,
    target: StateTarget<'_>,
    name: &SnapshotName,
    options: &StateOptions,
    progress: &dyn StateProgress,
) -> Result<InstanceOutcome, SnapshotError> {
    let mut rec = Recorder::new();
    let steps = snapshot::delete(target.kind, name);
    run_all(
        cluster, target, &steps, "delete", options, progress, &mut rec,
    )
    .await?;
    Ok(rec.finish(target.instance))
}

/// The instance's snapshots, per part.
///
/// # Errors
/// A step failed or timed out.
pub async fn list_instance(
    cluster: &Cluster,
    target: StateTarget<'_>,
    options: &StateOptions,
) -> Result<Vec<Listed>, SnapshotError> {
    let mut listed = Vec::new();
    for step in snapshot::list(target.kind) {
        let phase = phase_name("list", &step);
        let out = run_step(cluster, target, &step, &phase, options.step_budget).await?;
        listed.extend(snapshot::parse_list(step.part, &out));
    }
    Ok(listed)
}
