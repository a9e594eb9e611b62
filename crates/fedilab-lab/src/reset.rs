//! `reset` and `snapshot save|list|delete`: the lab-level sequence over
//! the orchestrator's per-instance snapshot commands. Picks the instances
//! (default: every one fedilab runs; attached and external servers have no
//! state here), runs them concurrently, then puts a marker on the
//! inspector's timeline (or clears the recordings). [`record_fresh`] is
//! what `up` calls once setup is done.
//!
//! Snapshots live in the lab's own pods (template databases, Redis
//! databases, the media volume), so `down`, which deletes the lab's
//! namespace and with it every volume, removes them all.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fedilab_data::KindState;
use fedilab_data::snapshot::{Listed, Part, SnapshotName};
use fedilab_orchestrator::Cluster;
use fedilab_orchestrator::snapshot::{
    self as snap, InstanceOutcome, SnapshotError, StateOptions, StateProgress, StateTarget,
};
use fedilab_profile::{InstanceName, LabName};
use fedilab_state::{LabDir, LabState};
use futures_util::future::join_all;
use tokio::sync::watch;

use crate::members::{NotUp, lab_state};

/// Which lab and instances, and the budgets.
#[derive(Debug, Clone)]
pub struct StateRequest {
    /// The data directory (the lab's state).
    pub data_dir: PathBuf,
    /// The lab.
    pub lab: LabName,
    /// The instances; empty: every instance fedilab runs.
    pub instances: Vec<InstanceName>,
    /// Budgets and pace.
    pub options: StateOptions,
}

/// What happened to the inspector's recordings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recordings {
    /// A marker was added with this text.
    Marked(String),
    /// They were deleted.
    Cleared,
    /// The lab runs without the inspector.
    NoInspector,
    /// The inspector did not answer (the reset itself is done).
    Unreachable(String),
}

/// What a lab-level command did.
#[derive(Debug)]
pub struct StateReport {
    /// The lab.
    pub lab: LabName,
    /// The snapshot.
    pub snapshot: SnapshotName,
    /// The instances that finished, in the order asked.
    pub done: Vec<InstanceOutcome>,
    /// The instances that failed.
    pub failed: Vec<SnapshotError>,
    /// The recordings (reset and save only).
    pub recordings: Option<Recordings>,
    /// Wall time of the whole command.
    pub total: Duration,
}

/// One snapshot as `snapshot list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRow {
    /// Its name.
    pub name: SnapshotName,
    /// When its database was saved (the first instance's).
    pub saved_at: Option<String>,
    /// Per instance, the parts it has (a complete snapshot has all).
    pub instances: Vec<(InstanceName, Vec<Part>)>,
}

/// Why a lab-level command could not start.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The lab is not up here.
    #[error(transparent)]
    NotUp(#[from] NotUp),
    /// An instance the lab does not have.
    #[error("lab {lab} has no instance {name} (it has: {known})")]
    UnknownInstance {
        /// The lab.
        lab: LabName,
        /// The name asked for.
        name: InstanceName,
        /// The lab's instances, comma-separated.
        known: String,
    },
    /// An attached or external server (its state is not fedilab's), or a
    /// kind without a state module yet.
    #[error("{name} is {}", not_managed_text(kind))]
    NotManaged {
        /// The instance.
        name: InstanceName,
        /// `attached`, `external`, or the kind (`misskey`...).
        kind: &'static str,
    },
    /// The snapshot is missing on some instances.
    #[error(
        "no snapshot {name} on {missing} in lab {lab}; `fedilab snapshot list --lab {lab}` \
         shows the snapshots"
    )]
    NoSnapshot {
        /// The lab.
        lab: LabName,
        /// The snapshot.
        name: SnapshotName,
        /// The instances without it, comma-separated.
        missing: String,
    },
    /// Listing failed on an instance.
    #[error(transparent)]
    Snapshot(#[from] Box<SnapshotError>),
}

fn not_managed_text(kind: &str) -> String {
    match kind {
        "attached" | "external" => format!(
            "an {kind} server: its state is not in the lab, fedilab cannot snapshot or reset it"
        ),
        other => format!("a {other} instance: snapshots and reset support Mastodon only so far"),
    }
}

impl StateError {
    /// Whether the user's input is at fault (the CLI exits 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            StateError::NotUp(NotUp::Missing { .. })
                | StateError::UnknownInstance { .. }
                | StateError::NotManaged { .. }
                | StateError::NoSnapshot { .. }
        )
    }
}

/// A request checked against the lab's state on this host: the lab is up
/// here and every instance named is one fedilab runs. Made without a
/// cluster, so a refusal never needs one.
pub struct StatePlan {
    request: StateRequest,
    state: LabState,
    instances: Vec<(InstanceName, &'static dyn KindState)>,
}

impl std::fmt::Debug for StatePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatePlan")
            .field("request", &self.request)
            .field(
                "instances",
                &self.instances.iter().map(|(i, _)| i).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl StatePlan {
    /// Checks `request` against the lab's saved state.
    ///
    /// # Errors
    /// [`StateError::NotUp`], [`StateError::UnknownInstance`],
    /// [`StateError::NotManaged`].
    pub fn prepare(request: StateRequest) -> Result<StatePlan, StateError> {
        let (state, instances) = pick(&request)?;
        Ok(StatePlan {
            request,
            state,
            instances,
        })
    }

    /// The instances it works on.
    pub fn instances(&self) -> Vec<&InstanceName> {
        self.instances.iter().map(|(i, _)| i).collect()
    }

    /// The lab's in-cluster instances left out because their kind has no
    /// state module yet (only when no instance was named): `(name, kind)`.
    pub fn skipped(&self) -> Vec<(&InstanceName, &'static str)> {
        if !self.request.instances.is_empty() {
            return Vec::new();
        }
        self.state
            .instances
            .iter()
            .filter(|i| {
                !matches!(
                    i.kind,
                    fedilab_state::StoredKind::Attached | fedilab_state::StoredKind::External
                ) && fedilab_data::for_kind(i.kind.as_str()).is_none()
            })
            .map(|i| (&i.name, i.kind.as_str()))
            .collect()
    }
}

type Picked = (LabState, Vec<(InstanceName, &'static dyn KindState)>);

/// The lab's state and the instances to work on.
fn pick(request: &StateRequest) -> Result<Picked, StateError> {
    let dir = LabDir::new(&request.data_dir, &request.lab);
    let state = lab_state(&dir, &request.lab)?;
    let managed = |i: &fedilab_state::StoredInstance| fedilab_data::for_kind(i.kind.as_str());
    let instances = if request.instances.is_empty() {
        state
            .instances
            .iter()
            .filter_map(|i| managed(i).map(|k| (i.name.clone(), k)))
            .collect()
    } else {
        let mut picked = Vec::new();
        for name in &request.instances {
            let Some(found) = state.instances.iter().find(|i| &i.name == name) else {
                return Err(StateError::UnknownInstance {
                    lab: request.lab.clone(),
                    name: name.clone(),
                    known: state
                        .instances
                        .iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            };
            let kind = managed(found).ok_or_else(|| StateError::NotManaged {
                name: name.clone(),
                kind: found.kind.as_str(),
            })?;
            if !picked.iter().any(|(n, _)| n == name) {
                picked.push((name.clone(), kind));
            }
        }
        picked
    };
    Ok((state, instances))
}

fn target<'a>(
    lab: &'a LabName,
    (instance, kind): &'a (InstanceName, &'static dyn KindState),
) -> StateTarget<'a> {
    StateTarget {
        lab,
        instance,
        kind: *kind,
    }
}

fn split(
    results: Vec<Result<InstanceOutcome, SnapshotError>>,
) -> (Vec<InstanceOutcome>, Vec<SnapshotError>) {
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for r in results {
        match r {
            Ok(o) => done.push(o),
            Err(e) => failed.push(e),
        }
    }
    (done, failed)
}

/// Each picked instance's snapshot listing.
async fn listings(
    cluster: &Cluster,
    plan: &StatePlan,
) -> Result<Vec<(InstanceName, Vec<Listed>)>, StateError> {
    let lab = &plan.request.lab;
    let options = &plan.request.options;
    let all = join_all(plan.instances.iter().map(|i| async move {
        snap::list_instance(cluster, target(lab, i), options)
            .await
            .map(|l| (i.0.clone(), l))
    }))
    .await;
    all.into_iter()
        .map(|r| r.map_err(|e| StateError::Snapshot(Box::new(e))))
        .collect()
}

/// The clock time for a marker (`12:03:04`, UTC) and the full timestamp.
fn now() -> (String, String) {
    let now = jiff::Timestamp::now();
    let full = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let clock = now.strftime("%H:%M:%S").to_string();
    (clock, full)
}

async fn recordings(state: &LabState, clear: bool, text: String, kind: &str) -> Recordings {
    let Some(ui) = state.serve.as_ref().and_then(|s| s.ui) else {
        return Recordings::NoInspector;
    };
    let timeout = Duration::from_secs(5);
    let result = if clear {
        fedilab_inspector::client::clear(ui, timeout).await
    } else {
        fedilab_inspector::client::mark(ui, kind, &text, timeout).await
    };
    match result {
        Ok(()) if clear => Recordings::Cleared,
        Ok(()) => Recordings::Marked(text),
        Err(e) => Recordings::Unreachable(format!("the inspector at {ui}: {e}")),
    }
}

/// Returns every picked instance to snapshot `to`, concurrently, then
/// marks the inspector's timeline (or clears it with `clear_recordings`).
///
/// # Errors
/// [`StateError`] before anything changed: the snapshot is missing
/// somewhere, or listing failed.
/// Failures on single instances are in [`StateReport::failed`].
///
/// # Caveats
/// Bounded by the request's [`StateOptions`]; `cancel` turning true stops
/// every instance with its cleanup.
pub async fn reset(
    cluster: &Cluster,
    plan: &StatePlan,
    to: &SnapshotName,
    clear_recordings: bool,
    progress: &dyn StateProgress,
    cancel: &watch::Receiver<bool>,
) -> Result<StateReport, StateError> {
    let start = Instant::now();
    let request = &plan.request;
    let lab = &request.lab;
    let listed = listings(cluster, plan).await?;
    let missing: Vec<&str> = listed
        .iter()
        .filter(|(_, l)| !l.iter().any(|x| &x.name == to && x.part == Part::Database))
        .map(|(i, _)| i.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(StateError::NoSnapshot {
            lab: lab.clone(),
            name: to.clone(),
            missing: missing.join(", "),
        });
    }
    let results = join_all(plan.instances.iter().map(|i| {
        snap::reset_instance(
            cluster,
            target(lab, i),
            to,
            &request.options,
            progress,
            cancel,
        )
    }))
    .await;
    let (done, failed) = split(results);
    let (clock, _) = now();
    let recordings = if done.is_empty() {
        None
    } else {
        Some(
            recordings(
                &plan.state,
                clear_recordings,
                format!("reset to {to} at {clock}"),
                "reset",
            )
            .await,
        )
    };
    Ok(StateReport {
        lab: lab.clone(),
        snapshot: to.clone(),
        done,
        failed,
        recordings,
        total: start.elapsed(),
    })
}

/// Saves every picked instance as snapshot `name` (replacing one of that
/// name), concurrently, and marks the inspector's timeline.
///
/// # Errors
/// None of its own today: failures on single instances are in
/// [`StateReport::failed`].
///
/// # Caveats
/// As [`reset`]; the queues' drain is bounded by
/// [`StateOptions::drain_budget`].
pub async fn save(
    cluster: &Cluster,
    plan: &StatePlan,
    name: &SnapshotName,
    progress: &dyn StateProgress,
    cancel: &watch::Receiver<bool>,
) -> Result<StateReport, StateError> {
    let start = Instant::now();
    let request = &plan.request;
    let lab = &request.lab;
    let (clock, full) = now();
    let results = join_all(plan.instances.iter().map(|i| {
        snap::save_instance(
            cluster,
            target(lab, i),
            name,
            &full,
            &request.options,
            progress,
            cancel,
        )
    }))
    .await;
    let (done, failed) = split(results);
    let recordings = if done.is_empty() {
        None
    } else {
        Some(
            recordings(
                &plan.state,
                false,
                format!("snapshot {name} saved at {clock}"),
                "snapshot",
            )
            .await,
        )
    };
    Ok(StateReport {
        lab: lab.clone(),
        snapshot: name.clone(),
        done,
        failed,
        recordings,
        total: start.elapsed(),
    })
}

/// Deletes snapshot `name` from every picked instance.
///
/// # Errors
/// None of its own today (deleting what is not there is no error);
/// failures on single instances are in [`StateReport::failed`].
pub async fn delete(
    cluster: &Cluster,
    plan: &StatePlan,
    name: &SnapshotName,
    progress: &dyn StateProgress,
) -> Result<StateReport, StateError> {
    let start = Instant::now();
    let request = &plan.request;
    let lab = &request.lab;
    let results =
        join_all(plan.instances.iter().map(|i| {
            snap::delete_instance(cluster, target(lab, i), name, &request.options, progress)
        }))
        .await;
    let (done, failed) = split(results);
    Ok(StateReport {
        lab: lab.clone(),
        snapshot: name.clone(),
        done,
        failed,
        recordings: None,
        total: start.elapsed(),
    })
}

/// The lab's snapshots, by name, with the parts each instance holds.
///
/// # Errors
/// Listing failed on an instance.
pub async fn list(cluster: &Cluster, plan: &StatePlan) -> Result<Vec<SnapshotRow>, StateError> {
    let listed = listings(cluster, plan).await?;
    Ok(rows(&listed))
}

/// Groups per-instance listings by snapshot name (pure).
pub fn rows(listed: &[(InstanceName, Vec<Listed>)]) -> Vec<SnapshotRow> {
    let mut rows: Vec<SnapshotRow> = Vec::new();
    for (instance, items) in listed {
        for item in items {
            let row = match rows.iter_mut().position(|r| r.name == item.name) {
                Some(i) => &mut rows[i],
                None => {
                    rows.push(SnapshotRow {
                        name: item.name.clone(),
                        saved_at: None,
                        instances: Vec::new(),
                    });
                    let last = rows.len() - 1;
                    &mut rows[last]
                }
            };
            if item.part == Part::Database && row.saved_at.is_none() && !item.detail.is_empty() {
                row.saved_at = Some(item.detail.clone());
            }
            match row.instances.iter_mut().find(|(i, _)| i == instance) {
                Some((_, parts)) => parts.push(item.part),
                None => row.instances.push((instance.clone(), vec![item.part])),
            }
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

/// `up`'s last step: saves `fresh` on every instance that has none yet
/// (a second `up` keeps the first one's), so `fedilab reset` has a
/// post-setup state to return to.
///
/// # Errors
/// As [`save`].
pub async fn record_fresh(
    cluster: &Cluster,
    plan: &StatePlan,
    progress: &dyn StateProgress,
) -> Result<StateReport, StateError> {
    let fresh = SnapshotName::fresh();
    let listed = listings(cluster, plan).await?;
    let without: Vec<(InstanceName, &'static dyn KindState)> = plan
        .instances
        .iter()
        .filter(|(name, _)| {
            !listed.iter().any(|(i, l)| {
                i == name
                    && l.iter()
                        .any(|x| x.name == fresh && x.part == Part::Database)
            })
        })
        .cloned()
        .collect();
    let plan = StatePlan {
        request: plan.request.clone(),
        state: plan.state.clone(),
        instances: without,
    };
    if plan.instances.is_empty() {
        return Ok(StateReport {
            lab: plan.request.lab.clone(),
            snapshot: fresh,
            done: Vec::new(),
            failed: Vec::new(),
            recordings: None,
            total: Duration::ZERO,
        });
    }
    let (_tx, never) = watch::channel(false);
    save(cluster, &plan, &fresh, progress, &never).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(name: &str, part: Part, detail: &str) -> Listed {
        Listed {
            name: name.parse().expect("name"),
            part,
            detail: detail.to_owned(),
        }
    }

    #[test]
    fn rows_group_parts_by_snapshot_and_instance() {
        let m1: InstanceName = "mastodon1".parse().expect("i");
        let m2: InstanceName = "mastodon2".parse().expect("i");
        let got = rows(&[
            (
                m1.clone(),
                vec![
                    listed("fresh", Part::Database, "2026-12-07T03:00:00Z"),
                    listed("fresh", Part::Redis, "600"),
                    listed("b", Part::Media, "3"),
                ],
            ),
            (m2.clone(), vec![listed("fresh", Part::Database, "later")]),
        ]);
        assert_eq!(
            got,
            [
                SnapshotRow {
                    name: "b".parse().expect("n"),
                    saved_at: None,
                    instances: vec![(m1.clone(), vec![Part::Media])],
                },
                SnapshotRow {
                    name: "fresh".parse().expect("n"),
                    saved_at: Some("2026-12-07T03:00:00Z".to_owned()),
                    instances: vec![
                        (m1, vec![Part::Database, Part::Redis]),
                        (m2, vec![Part::Database])
                    ],
                },
            ]
        );
    }
}
