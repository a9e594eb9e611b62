//! What went wrong with a component's pods: their state, recent events and
//! the tail of their container logs, gathered for an error message. Best
//! effort: a read that fails becomes a line in the diagnosis, never an error.

use fedilab_profile::names::{self, Component};
use fedilab_profile::{InstanceName, LabName};
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use kube::Api;
use kube::api::{ListParams, LogParams};

use crate::Cluster;

/// How many log lines and events to show.
const LOG_LINES: i64 = 20;
const EVENTS: usize = 8;

/// One pod's story.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PodDiagnosis {
    /// `namespace/name`.
    pub pod: String,
    /// The pod phase.
    pub phase: String,
    /// One line per container: its state and restarts.
    pub containers: Vec<String>,
    /// Recent events, oldest first: `Type Reason: message`.
    pub events: Vec<String>,
    /// Per container (or the read error): the last log lines.
    pub logs: Vec<(String, String)>,
}

/// The pods of one component that are not ready, with events and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Diagnosis {
    /// The component looked at.
    pub component: String,
    /// The pods (the most relevant first); empty when none was created.
    pub pods: Vec<PodDiagnosis>,
    /// Reads that failed while gathering.
    pub notes: Vec<String>,
}

impl std::fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.pods.is_empty() {
            writeln!(f, "  no pod of {} exists yet", self.component)?;
        }
        for pod in &self.pods {
            writeln!(f, "  pod {} ({}):", pod.pod, pod.phase)?;
            for c in &pod.containers {
                writeln!(f, "    {c}")?;
            }
            if !pod.events.is_empty() {
                writeln!(f, "    recent events:")?;
                for e in &pod.events {
                    writeln!(f, "      {e}")?;
                }
            }
            for (container, text) in &pod.logs {
                writeln!(f, "    last log lines of {container}:")?;
                for line in text.lines() {
                    writeln!(f, "      | {line}")?;
                }
            }
        }
        for n in &self.notes {
            writeln!(f, "  ({n})")?;
        }
        Ok(())
    }
}

fn describe_container(kind: &str, s: &ContainerStatus) -> String {
    let state = s.state.as_ref();
    let what = if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
        format!(
            "waiting: {}{}",
            w.reason.as_deref().unwrap_or("?"),
            w.message
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        )
    } else if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
        format!(
            "terminated: exit code {} ({})",
            t.exit_code,
            t.reason.as_deref().unwrap_or("?")
        )
    } else if state.and_then(|s| s.running.as_ref()).is_some() {
        if s.ready {
            "running, ready".to_owned()
        } else {
            "running, not ready".to_owned()
        }
    } else {
        "not started".to_owned()
    };
    format!("{kind} {}: {what}, {} restarts", s.name, s.restart_count)
}

/// Diagnoses `component` of `instance`: up to two of its pods that are not
/// ready (newest first), each with events and log tails.
pub(crate) async fn diagnose(
    cluster: &Cluster,
    lab: &LabName,
    instance: &InstanceName,
    component: Component,
) -> Diagnosis {
    let namespace = names::namespace(lab);
    let mut diagnosis = Diagnosis {
        component: names::component_object(instance, component),
        ..Diagnosis::default()
    };
    let selector = names::component_selector(lab, instance, component)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods_api: Api<Pod> = Api::namespaced(cluster.client.clone(), &namespace);
    let mut pods = match pods_api
        .list(&ListParams::default().labels(&selector))
        .await
    {
        Ok(list) => list.items,
        Err(e) => {
            diagnosis.notes.push(format!("cannot list pods: {e}"));
            return diagnosis;
        }
    };
    pods.retain(|p| !crate::readiness::is_pod_ready(Some(p)));
    pods.sort_by(|a, b| {
        b.metadata
            .creation_timestamp
            .cmp(&a.metadata.creation_timestamp)
    });
    let events_api: Api<Event> = Api::namespaced(cluster.client.clone(), &namespace);
    for pod in pods.into_iter().take(2) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.clone().unwrap_or_default();
        let mut d = PodDiagnosis {
            pod: format!("{namespace}/{name}"),
            phase: status.phase.clone().unwrap_or_else(|| "Unknown".to_owned()),
            ..PodDiagnosis::default()
        };
        let statuses: Vec<(&str, &ContainerStatus)> = status
            .init_container_statuses
            .iter()
            .flatten()
            .map(|s| ("init container", s))
            .chain(
                status
                    .container_statuses
                    .iter()
                    .flatten()
                    .map(|s| ("container", s)),
            )
            .collect();
        for (kind, s) in &statuses {
            d.containers.push(describe_container(kind, s));
        }
        let fields = format!("involvedObject.kind=Pod,involvedObject.name={name}");
        match events_api
            .list(&ListParams::default().fields(&fields))
            .await
        {
            Ok(list) => {
                let mut events = list.items;
                events.sort_by_key(|e| {
                    e.last_timestamp
                        .as_ref()
                        .map(|t| t.0)
                        .or(e.event_time.as_ref().map(|t| t.0))
                });
                let skip = events.len().saturating_sub(EVENTS);
                d.events = events
                    .iter()
                    .skip(skip)
                    .map(|e| {
                        format!(
                            "{} {}: {}",
                            e.type_.as_deref().unwrap_or("Normal"),
                            e.reason.as_deref().unwrap_or(""),
                            e.message.as_deref().unwrap_or("").trim()
                        )
                    })
                    .collect();
            }
            Err(e) => diagnosis
                .notes
                .push(format!("cannot list events of {name}: {e}")),
        }
        // Logs of containers that ran: the failing init container, or the
        // main containers; the previous run for one that restarted.
        for (_, s) in &statuses {
            let started =
                s.state.as_ref().is_some_and(|st| st.waiting.is_none()) || s.restart_count > 0;
            let healthy = s.ready
                || s.state
                    .as_ref()
                    .and_then(|st| st.terminated.as_ref())
                    .is_some_and(|t| t.exit_code == 0);
            if !started || healthy {
                continue;
            }
            let previous = s.state.as_ref().is_some_and(|st| st.waiting.is_some());
            let params = LogParams {
                container: Some(s.name.clone()),
                tail_lines: Some(LOG_LINES),
                previous,
                ..LogParams::default()
            };
            let text = match pods_api.logs(&name, &params).await {
                Ok(text) => text,
                Err(e) => format!("(logs unavailable: {e})"),
            };
            d.logs.push((s.name.clone(), text));
        }
        diagnosis.pods.push(d);
    }
    diagnosis
}
