//! Pod building blocks every server kind uses: env vars, mounts, resource
//! requests, probes and the restricted security contexts. Kind-specific
//! objects (Mastodon's in `mastodon.rs`) are assembled from these.
//!
//! Pure: typed k8s-openapi values, no I/O.

use std::collections::BTreeMap;

use fedilab_profile::ComponentResources;
use k8s_openapi::api::core::v1::{
    Capabilities, EnvVar, EnvVarSource, ExecAction, HTTPGetAction, PodSecurityContext, Probe,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext, TCPSocketAction,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub(crate) fn s(v: &str) -> String {
    v.to_owned()
}

pub(crate) fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: s(name),
        value: Some(s(value)),
        value_from: None,
    }
}

pub(crate) fn env_from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: s(name),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: s(secret),
                key: s(key),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
    }
}

pub(crate) fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: s(name),
        mount_path: s(path),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

pub(crate) fn resources(r: &ComponentResources) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            (s("cpu"), K8sQuantity(s(r.cpu.as_str()))),
            (s("memory"), K8sQuantity(s(r.memory.as_str()))),
        ])),
        limits: Some(BTreeMap::from([(
            s("memory"),
            K8sQuantity(s(r.memory_limit.as_str())),
        )])),
        ..ResourceRequirements::default()
    }
}

/// Resources of the small shell init containers (trust bundle, waits).
pub(crate) fn init_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            (s("cpu"), K8sQuantity(s("10m"))),
            (s("memory"), K8sQuantity(s("16Mi"))),
        ])),
        limits: Some(BTreeMap::from([(s("memory"), K8sQuantity(s("64Mi")))])),
        ..ResourceRequirements::default()
    }
}

pub(crate) fn http_probe(path: &str, port: i32, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(s(path)),
            port: IntOrString::Int(port),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(5),
        ..Probe::default()
    }
}

pub(crate) fn exec_probe(command: &[&str], period: i32, failures: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(command.iter().map(|c| s(c)).collect()),
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(5),
        ..Probe::default()
    }
}

pub(crate) fn tcp_probe(port: i32, period: i32, failures: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(port),
            host: None,
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(5),
        ..Probe::default()
    }
}

/// A startup probe allowing `minutes` before the container must be up:
/// first boots on a small VM are slow (image pull aside), and a restart in
/// the middle of initdb or a migration corrupts state.
pub(crate) fn startup(mut probe: Probe, minutes: i32) -> Probe {
    probe.period_seconds = Some(5);
    probe.failure_threshold = Some(minutes * 12);
    probe
}

pub(crate) fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec![s("ALL")]),
            add: None,
        }),
        ..SecurityContext::default()
    }
}

pub(crate) fn pod_security(uid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group: Some(uid),
        run_as_non_root: Some(true),
        seccomp_profile: Some(SeccompProfile {
            type_: s("RuntimeDefault"),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}
