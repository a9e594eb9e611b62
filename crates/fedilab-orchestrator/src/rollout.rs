//! Restarting a Deployment the way `kubectl rollout restart` does: a new
//! `restartedAt` annotation in its pod template, so its controller replaces
//! the pods. The one place that writes the annotation (CoreDNS after a key
//! change; an instance's workloads after a restore).

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams};

use fedilab_profile::names;

/// Patches Deployment `name` of `api` with a new restart annotation;
/// returns without waiting for the new pods.
///
/// # Errors
/// The API server's refusal (404 when there is no such Deployment).
pub(crate) async fn restart(api: &Api<Deployment>, name: &str) -> Result<Deployment, kube::Error> {
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now());
    let patch = serde_json::json!({
        "spec": { "template": { "metadata": { "annotations": {
            names::RESTARTED_AT_ANNOTATION: now.to_string()
        }}}}
    });
    let params = PatchParams {
        field_manager: Some(names::FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch(name, &params, &Patch::Merge(&patch)).await
}
