//! What went wrong with a component's pods: their state, recent events and
//! the tail of their container logs, gathered for an error message. Best
//! effort: a read that fails becomes a line in the diagnosis, never an error.
//!
//! Two steps: `fetch_component` reads ([`ComponentObjects`]: the pods
//! [`pods_to_diagnose`] picks, their events, the logs [`logs_to_read`]
//! names), [`summarize_component`] turns that into a [`Diagnosis`] (pure,
//! tested on YAML fixtures).

use fedilab_profile::names::{self, Component};
use fedilab_profile::{InstanceName, LabName};
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod, PodStatus};
use kube::Api;
use kube::api::{ListParams, LogParams};

use crate::Cluster;

/// How many log lines and events to show.
const LOG_LINES: i64 = 20;
const EVENTS: usize = 8;

/// What `fetch_component` read about one component's pods. Deserializes
/// from YAML, so fixtures can stand for a cluster.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComponentObjects {
    /// The lab's namespace.
    pub namespace: String,
    /// The component's object name, such as `mastodon1-web`.
    pub component: String,
    /// Why its pods could not be listed, if they could not.
    pub list_error: Option<String>,
    /// The pods [`pods_to_diagnose`] picked, in its order, with what was
    /// read about each.
    pub pods: Vec<PodObjects>,
}

/// What was read about one pod.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PodObjects {
    /// The pod.
    pub pod: Pod,
    /// Its events, as listed.
    pub events: Vec<Event>,
    /// Why its events could not be listed, if they could not.
    pub events_error: Option<String>,
    /// The logs [`logs_to_read`] named, in its order.
    pub logs: Vec<ContainerLog>,
}

/// The tail of one container's log, or why it could not be read.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContainerLog {
    /// The container.
    pub container: String,
    /// Its last lines.
    pub text: String,
    /// Why they could not be read, if they could not.
    pub error: Option<String>,
}

/// A container log worth reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRequest {
    /// The container.
    pub container: String,
    /// Its previous run (it restarted and waits now).
    pub previous: bool,
}

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

/// The pods worth a diagnosis: up to two that are not ready, newest first.
pub fn pods_to_diagnose(mut pods: Vec<Pod>) -> Vec<Pod> {
    pods.retain(|p| !crate::readiness::is_pod_ready(Some(p)));
    pods.sort_by(|a, b| {
        b.metadata
            .creation_timestamp
            .cmp(&a.metadata.creation_timestamp)
    });
    pods.truncate(2);
    pods
}

/// Init containers first, then the others.
fn container_statuses(status: &PodStatus) -> Vec<(&'static str, &ContainerStatus)> {
    status
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
        .collect()
}

/// The logs worth reading: of containers that ran and are not healthy (the
/// failing init container, or the main containers); the previous run for
/// one that restarted and waits.
pub fn logs_to_read(pod: &Pod) -> Vec<LogRequest> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    container_statuses(status)
        .into_iter()
        .filter(|(_, s)| {
            let started =
                s.state.as_ref().is_some_and(|st| st.waiting.is_none()) || s.restart_count > 0;
            let healthy = s.ready
                || s.state
                    .as_ref()
                    .and_then(|st| st.terminated.as_ref())
                    .is_some_and(|t| t.exit_code == 0);
            started && !healthy
        })
        .map(|(_, s)| LogRequest {
            container: s.name.clone(),
            previous: s.state.as_ref().is_some_and(|st| st.waiting.is_some()),
        })
        .collect()
}

/// Diagnoses `component` of `instance`: [`fetch_component`], then
/// [`summarize_component`].
pub(crate) async fn diagnose(
    cluster: &Cluster,
    lab: &LabName,
    instance: &InstanceName,
    component: Component,
) -> Diagnosis {
    summarize_component(&fetch_component(cluster, lab, instance, component).await)
}

/// Reads `component` of `instance`: its pods, and for those
/// [`pods_to_diagnose`] picks, their events and the logs [`logs_to_read`]
/// names. A read that fails is recorded, never returned.
pub(crate) async fn fetch_component(
    cluster: &Cluster,
    lab: &LabName,
    instance: &InstanceName,
    component: Component,
) -> ComponentObjects {
    let namespace = names::namespace(lab);
    let mut objects = ComponentObjects {
        component: names::component_object(instance, component),
        ..ComponentObjects::default()
    };
    let selector = names::component_selector(lab, instance, component)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods_api: Api<Pod> = Api::namespaced(cluster.client.clone(), &namespace);
    let events_api: Api<Event> = Api::namespaced(cluster.client.clone(), &namespace);
    objects.namespace = namespace;
    let pods = match pods_api
        .list(&ListParams::default().labels(&selector))
        .await
    {
        Ok(list) => list.items,
        Err(e) => {
            objects.list_error = Some(e.to_string());
            return objects;
        }
    };
    for pod in pods_to_diagnose(pods) {
        objects
            .pods
            .push(fetch_pod(&pods_api, &events_api, pod).await);
    }
    objects
}

/// Reads one pod's events and the logs [`logs_to_read`] names.
async fn fetch_pod(pods_api: &Api<Pod>, events_api: &Api<Event>, pod: Pod) -> PodObjects {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let fields = format!("involvedObject.kind=Pod,involvedObject.name={name}");
    let (events, events_error) = match events_api
        .list(&ListParams::default().fields(&fields))
        .await
    {
        Ok(list) => (list.items, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let mut logs = Vec::new();
    for wanted in logs_to_read(&pod) {
        let params = LogParams {
            container: Some(wanted.container.clone()),
            tail_lines: Some(LOG_LINES),
            previous: wanted.previous,
            ..LogParams::default()
        };
        let (text, error) = match pods_api.logs(&name, &params).await {
            Ok(text) => (text, None),
            Err(e) => (String::new(), Some(e.to_string())),
        };
        logs.push(ContainerLog {
            container: wanted.container,
            text,
            error,
        });
    }
    PodObjects {
        pod,
        events,
        events_error,
        logs,
    }
}

/// Turns what was read into a [`Diagnosis`]: per pod its phase, one line
/// per container, the last events (oldest first) and the log tails; failed
/// reads as notes. Pure.
pub fn summarize_component(objects: &ComponentObjects) -> Diagnosis {
    let mut diagnosis = Diagnosis {
        component: objects.component.clone(),
        ..Diagnosis::default()
    };
    if let Some(e) = &objects.list_error {
        diagnosis.notes.push(format!("cannot list pods: {e}"));
        return diagnosis;
    }
    for read in &objects.pods {
        let name = read.pod.metadata.name.as_deref().unwrap_or_default();
        let status = read.pod.status.clone().unwrap_or_default();
        diagnosis.pods.push(PodDiagnosis {
            pod: format!("{}/{name}", objects.namespace),
            phase: status.phase.clone().unwrap_or_else(|| "Unknown".to_owned()),
            containers: container_statuses(&status)
                .into_iter()
                .map(|(kind, s)| describe_container(kind, s))
                .collect(),
            events: recent_events(&read.events),
            logs: read
                .logs
                .iter()
                .map(|l| {
                    let text = match &l.error {
                        Some(e) => format!("(logs unavailable: {e})"),
                        None => l.text.clone(),
                    };
                    (l.container.clone(), text)
                })
                .collect(),
        });
        if let Some(e) = &read.events_error {
            diagnosis
                .notes
                .push(format!("cannot list events of {name}: {e}"));
        }
    }
    diagnosis
}

/// The last [`EVENTS`] events, oldest first: `Type Reason: message`.
fn recent_events(events: &[Event]) -> Vec<String> {
    let mut events: Vec<&Event> = events.iter().collect();
    events.sort_by_key(|e| {
        e.last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or(e.event_time.as_ref().map(|t| t.0))
    });
    let skip = events.len().saturating_sub(EVENTS);
    events
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
        .collect()
}
