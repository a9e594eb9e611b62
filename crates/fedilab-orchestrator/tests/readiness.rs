//! The readiness predicates on YAML fixtures of objects as the API server
//! returns them.

use fedilab_orchestrator::WaitError;
use fedilab_orchestrator::readiness::{
    ImagePullFailure, InstanceObjects, InstanceProgress, JobState, Phase, image_pull_failure,
    instance_progress, instance_pull_failure, is_deployment_available, is_job_complete,
    is_job_failed, is_statefulset_ready, job_state,
};
use fedilab_profile::InstanceName;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;

fn fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = format!("{}/tests/fixtures/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn deployments() {
    let available: Deployment = fixture("deployment-available");
    let rolling: Deployment = fixture("deployment-rolling");
    let crashing: Deployment = fixture("deployment-crashloop");
    assert!(is_deployment_available(Some(&available)));
    assert!(
        !is_deployment_available(Some(&rolling)),
        "an old replica is left"
    );
    assert!(!is_deployment_available(Some(&crashing)));
    assert!(!is_deployment_available(None));

    let mut unobserved = available.clone();
    unobserved.metadata.generation = Some(3);
    assert!(
        !is_deployment_available(Some(&unobserved)),
        "new generation not seen yet"
    );
    let mut no_status = available;
    no_status.status = None;
    assert!(!is_deployment_available(Some(&no_status)));
}

#[test]
fn statefulsets() {
    let ready: StatefulSet = fixture("statefulset-ready");
    let starting: StatefulSet = fixture("statefulset-starting");
    assert!(is_statefulset_ready(Some(&ready)));
    assert!(!is_statefulset_ready(Some(&starting)));
    assert!(!is_statefulset_ready(None));
    let mut updating = ready;
    if let Some(s) = updating.status.as_mut() {
        s.update_revision = Some("mastodon1-postgres-new".to_owned());
    }
    assert!(
        !is_statefulset_ready(Some(&updating)),
        "revision rolling out"
    );
}

#[test]
fn jobs() {
    let complete: Job = fixture("job-complete");
    let running: Job = fixture("job-running");
    let failed: Job = fixture("job-failed");
    assert!(is_job_complete(Some(&complete)));
    assert_eq!(
        job_state(Some(&running)),
        JobState::Running,
        "one failure is a retry"
    );
    assert!(is_job_failed(Some(&failed)));
    assert_eq!(
        job_state(Some(&failed)),
        JobState::Failed {
            reason: "BackoffLimitExceeded".to_owned(),
            message: "Job has reached the specified backoff limit".to_owned(),
        }
    );
    assert_eq!(job_state(None), JobState::Missing);

    // A server that sets no condition: the failure count decides.
    let mut old_server = failed;
    if let Some(s) = old_server.status.as_mut() {
        s.conditions = None;
    }
    assert!(is_job_failed(Some(&old_server)));
}

#[test]
fn instance_phases_follow_the_first_unready_object() {
    let pg: StatefulSet = fixture("statefulset-ready");
    let pg_starting: StatefulSet = fixture("statefulset-starting");
    let up: Deployment = fixture("deployment-available");
    let down: Deployment = fixture("deployment-crashloop");
    let done: Job = fixture("job-complete");
    let running: Job = fixture("job-running");
    let failed: Job = fixture("job-failed");

    let waiting = |phase| InstanceProgress::Waiting { phase };
    let mut objects = InstanceObjects::default();
    assert_eq!(instance_progress(&objects), waiting(Phase::Database));
    objects.postgres = Some(&pg_starting);
    objects.redis = Some(&up);
    assert_eq!(instance_progress(&objects), waiting(Phase::Database));
    objects.postgres = Some(&pg);
    assert_eq!(instance_progress(&objects), waiting(Phase::Setup));
    objects.setup = Some(&running);
    objects.web = Some(&up);
    objects.streaming = Some(&up);
    objects.sidekiq = Some(&up);
    assert_eq!(
        instance_progress(&objects),
        waiting(Phase::Setup),
        "setup gates services"
    );
    objects.setup = Some(&done);
    objects.sidekiq = Some(&down);
    assert_eq!(instance_progress(&objects), waiting(Phase::Services));
    objects.sidekiq = Some(&up);
    assert_eq!(instance_progress(&objects), InstanceProgress::Ready);
    objects.setup = Some(&failed);
    assert!(matches!(
        instance_progress(&objects),
        InstanceProgress::Failed {
            phase: Phase::Setup,
            ..
        }
    ));
}

/// Each kind is waited for on its own components: a GoToSocial instance
/// has no Redis, streaming or Sidekiq, a Misskey one no streaming or
/// Sidekiq; Mastodon's are all required.
#[test]
fn each_kind_waits_only_for_the_components_it_runs() {
    use fedilab_profile::InstanceKind;
    use fedilab_profile::names::components_of;
    let pg: StatefulSet = fixture("statefulset-ready");
    let up: Deployment = fixture("deployment-available");
    let done: Job = fixture("job-complete");
    let gts = InstanceObjects {
        postgres: Some(&pg),
        setup: Some(&done),
        web: Some(&up),
        runs: Some(components_of(InstanceKind::Gotosocial)),
        ..InstanceObjects::default()
    };
    assert_eq!(instance_progress(&gts), InstanceProgress::Ready);
    let misskey = InstanceObjects {
        runs: Some(components_of(InstanceKind::Misskey)),
        ..gts
    };
    assert_eq!(
        instance_progress(&misskey),
        InstanceProgress::Waiting {
            phase: Phase::Database
        },
        "Misskey needs its Redis"
    );
    let misskey = InstanceObjects {
        redis: Some(&up),
        ..misskey
    };
    assert_eq!(instance_progress(&misskey), InstanceProgress::Ready);
    let mastodon = InstanceObjects {
        runs: Some(components_of(InstanceKind::Mastodon)),
        ..misskey
    };
    assert_eq!(
        mastodon.pending_in(Phase::Services).len(),
        2,
        "streaming and Sidekiq"
    );
}

/// Issue 12: a tag that does not exist must fail `up` at once, naming the
/// image, not after the phase's budget.
#[test]
fn issue_12_image_pull_failures_name_the_image() {
    let backoff: Pod = fixture("pod-imagepullbackoff");
    let err: Pod = fixture("pod-errimagepull");
    let running: Pod = fixture("pod-running");

    let failure = image_pull_failure(Some(&backoff)).expect("a pull failure");
    assert_eq!(
        failure,
        ImagePullFailure {
            pod: "mastodon1-streaming-7d9f8-x2k4q".to_owned(),
            container: "trust-bundle".to_owned(),
            image: "ghcr.io/mastodon/mastodon-streaming:v4.5.99".to_owned(),
            reason: "ImagePullBackOff".to_owned(),
            message: "Back-off pulling image \"ghcr.io/mastodon/mastodon-streaming:v4.5.99\""
                .to_owned(),
        }
    );
    let failure = image_pull_failure(Some(&err)).expect("a pull failure");
    assert_eq!(failure.reason, "ErrImagePull");
    assert!(
        failure.message.ends_with("not found"),
        "{}",
        failure.message
    );
    assert_eq!(image_pull_failure(Some(&running)), None);
    assert_eq!(image_pull_failure(None), None);

    // Only the instance's own pods count.
    let pods = vec![running.clone(), err.clone()];
    let mastodon1: InstanceName = "mastodon1".parse().expect("valid");
    let mastodon2: InstanceName = "mastodon2".parse().expect("valid");
    assert_eq!(
        instance_pull_failure(&pods, &mastodon1).map(|f| f.pod),
        Some("mastodon1-setup-abcde".to_owned())
    );
    assert_eq!(instance_pull_failure(&pods, &mastodon2), None);

    // The message says which image and how to choose another release.
    let text = WaitError::ImagePull {
        instance: mastodon1,
        namespace: "fedilab-main".to_owned(),
        failure: image_pull_failure(Some(&err)).expect("a pull failure"),
    }
    .to_string();
    for wanted in [
        "ghcr.io/mastodon/mastodon:v4.5.99",
        "ErrImagePull",
        "not found",
        "`version:`",
        "mastodon.version",
        "kubectl -n fedilab-main describe pod mastodon1-setup-abcde",
    ] {
        assert!(text.contains(wanted), "{wanted:?} missing from:\n{text}");
    }
}
