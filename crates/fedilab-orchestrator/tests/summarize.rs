//! The judging halves of `status` and of the wait's diagnosis, on YAML
//! fixtures of what their fetches read (`tests/fixtures/summarize/`): no
//! cluster, no fake API server.

use fedilab_orchestrator::readiness::Phase;
use fedilab_orchestrator::{
    ComponentObjects, InstancePhase, LabObjects, LogRequest, logs_to_read, pods_to_diagnose,
    summarize, summarize_component,
};
use fedilab_profile::LabName;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

fn fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = format!(
        "{}/tests/fixtures/summarize/{name}.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn lab() -> LabName {
    "main".parse().expect("lab name")
}

/// Noon, two hours after the fixtures' namespace was created.
fn noon() -> jiff::Timestamp {
    "2025-01-01T12:00:00Z".parse().expect("timestamp")
}

#[test]
fn a_lab_with_every_phase_summarizes_to_the_json_status_prints() {
    let objects: LabObjects = fixture("lab-mixed");
    let status = summarize(&objects, &lab(), noon());
    let phases: Vec<(&str, InstancePhase)> = status
        .instances
        .iter()
        .map(|i| (i.name.as_str(), i.phase))
        .collect();
    assert_eq!(
        phases,
        [
            ("mastodon1", InstancePhase::Ready),
            ("mastodon2", InstancePhase::Waiting(Phase::Database)),
            ("mastodon3", InstancePhase::Failed),
            ("mine", InstancePhase::External),
        ]
    );
    // The JSON of `fedilab status -o json`: phases as the same strings.
    assert_eq!(
        serde_json::to_value(&status).expect("json"),
        json!({
            "lab": "main",
            "namespace": "fedilab-main",
            "exists": true,
            "terminating": false,
            "age_seconds": 7200,
            "instances": [
                {"name": "mastodon1", "phase": "ready", "ready_pods": 4, "pods": 5,
                 "url": "https://mastodon1.fediverse.local/", "age_seconds": 7140},
                {"name": "mastodon2", "phase": "database", "ready_pods": 0, "pods": 1,
                 "url": null, "age_seconds": 3600},
                {"name": "mastodon3", "phase": "failed", "ready_pods": 0, "pods": 0,
                 "url": null, "age_seconds": 7170},
                {"name": "mine", "phase": "external", "ready_pods": 0, "pods": 0,
                 "url": "https://mine.fediverse.local/", "age_seconds": null},
            ],
            "lab_objects": [
                {"object": "Namespace/fedilab-main", "present": true},
                {"object": "NetworkPolicy/fedilab-main/fedilab-egress", "present": true},
                {"object": "ConfigMap/fedilab-main/fedilab-lab-ca", "present": true},
                {"object": "ConfigMap/fedilab-main/fedilab-setup-scripts", "present": false},
                {"object": "ConfigMap/kube-system/coredns-custom[fedilab-main.server]",
                 "present": true},
            ],
        })
    );
}

#[test]
fn every_phase_has_its_string() {
    for (phase, text) in [
        (InstancePhase::Waiting(Phase::Database), "database"),
        (InstancePhase::Waiting(Phase::Setup), "setup"),
        (InstancePhase::Waiting(Phase::Services), "services"),
        (InstancePhase::Ready, "ready"),
        (InstancePhase::Failed, "failed"),
        (InstancePhase::External, "external"),
    ] {
        assert_eq!(phase.as_str(), text);
        assert_eq!(phase.to_string(), text);
        assert_eq!(serde_json::to_value(phase).expect("json"), json!(text));
    }
}

#[test]
fn a_namespace_being_deleted_is_terminating() {
    let mut objects: LabObjects = fixture("lab-mixed");
    if let Some(ns) = objects.namespace.as_mut() {
        ns.metadata.deletion_timestamp = Some(Time(noon()));
    }
    let status = summarize(&objects, &lab(), noon());
    assert!(status.exists && status.terminating);
}

#[test]
fn a_lab_not_on_the_cluster_has_no_instances_and_only_shared_objects() {
    let objects: LabObjects = fixture("lab-absent");
    let status = summarize(&objects, &lab(), noon());
    assert!(!status.exists && !status.terminating);
    assert_eq!(status.age_seconds, None);
    assert!(status.instances.is_empty());
    let objects: Vec<(&str, bool)> = status
        .lab_objects
        .iter()
        .map(|o| (o.object.as_str(), o.present))
        .collect();
    assert_eq!(
        objects,
        [
            ("Namespace/fedilab-main", false),
            (
                "ConfigMap/kube-system/coredns-custom[fedilab-main.server]",
                false
            ),
        ]
    );
}

#[test]
fn the_pods_worth_a_diagnosis_are_two_unready_newest_first() {
    let pods: Vec<Pod> = fixture("pods-of-web");
    let picked: Vec<String> = pods_to_diagnose(pods)
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(picked, ["mastodon1-web-new", "mastodon1-web-middle"]);
}

#[test]
fn logs_are_read_from_containers_that_ran_and_are_unhealthy() {
    let objects: ComponentObjects = fixture("component-web");
    let wanted = logs_to_read(&objects.pods[0].pod);
    assert_eq!(
        wanted,
        [
            LogRequest {
                container: "web".to_owned(),
                previous: true
            },
            LogRequest {
                container: "sidecar".to_owned(),
                previous: false
            },
        ]
    );
    assert!(logs_to_read(&objects.pods[1].pod).is_empty(), "no status");
}

#[test]
fn a_crashing_component_is_diagnosed_with_states_last_events_and_logs() {
    let objects: ComponentObjects = fixture("component-web");
    let diagnosis = summarize_component(&objects);
    assert_eq!(diagnosis.component, "mastodon1-web");
    let a = &diagnosis.pods[0];
    assert_eq!(
        (a.pod.as_str(), a.phase.as_str()),
        ("fedilab-main/mastodon1-web-a", "Running")
    );
    assert_eq!(
        a.containers,
        [
            "init container trust-bundle: terminated: exit code 0 (Completed), 0 restarts",
            "container web: waiting: CrashLoopBackOff (back-off 40s restarting failed \
             container), 3 restarts",
            "container sidecar: running, not ready, 0 restarts",
            "container helper: running, ready, 0 restarts",
        ]
    );
    assert_eq!(
        a.events,
        [
            "Normal Pulled: pulled",
            "Normal Created: created",
            "Normal Started: started",
            "Warning Unhealthy: probe failed",
            "Normal Killing: killing",
            "Normal Pulled: again",
            "Normal Created: created again",
            "Warning BackOff: Back-off restarting failed container web",
        ]
    );
    assert_eq!(
        a.logs,
        [
            (
                "web".to_owned(),
                "booting\nActiveRecord::ConnectionNotEstablished\n".to_owned()
            ),
            (
                "sidecar".to_owned(),
                "(logs unavailable: pods \"mastodon1-web-a\" not found)".to_owned()
            ),
        ]
    );
    let b = &diagnosis.pods[1];
    assert_eq!(
        (b.pod.as_str(), b.phase.as_str()),
        ("fedilab-main/mastodon1-web-b", "Unknown")
    );
    assert!(b.containers.is_empty() && b.events.is_empty() && b.logs.is_empty());
    assert_eq!(
        diagnosis.notes,
        ["cannot list events of mastodon1-web-b: the server is unavailable"]
    );
    let text = diagnosis.to_string();
    assert!(
        text.starts_with("  pod fedilab-main/mastodon1-web-a (Running):\n    init container"),
        "{text}"
    );
    assert!(
        text.contains("    last log lines of web:\n      | booting\n"),
        "{text}"
    );
    assert!(
        text.ends_with("  (cannot list events of mastodon1-web-b: the server is unavailable)\n"),
        "{text}"
    );
}

#[test]
fn pods_that_cannot_be_listed_are_a_note() {
    let objects = ComponentObjects {
        component: "mastodon1-web".to_owned(),
        list_error: Some("forbidden".to_owned()),
        ..ComponentObjects::default()
    };
    let diagnosis = summarize_component(&objects);
    assert_eq!(
        diagnosis.to_string(),
        "  no pod of mastodon1-web exists yet\n  (cannot list pods: forbidden)\n"
    );
}
