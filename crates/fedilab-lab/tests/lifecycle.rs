//! The life cycle end to end against the fake API server: `up` (prepare,
//! apply, upstreams, state, host side, wait, credentials), `attach`,
//! `detach` and `down --purge`, with a host side that records when it is
//! asked and what state it finds.

#[path = "../../fedilab-orchestrator/tests/common/mod.rs"]
mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::{Behaviour, Fake, bounded, spec};
use fedilab_lab::{
    AttachPlan, AttachRequest, DetachPlan, DownRequest, Event, HostSide, UpError, UpPlan, UpRequest,
};
use fedilab_orchestrator::readiness::InstanceProgress;
use fedilab_orchestrator::{DownOptions, Timings, WaitOptions};
use fedilab_profile::{InstanceName, LabSpec, names};
use fedilab_serve::daemon::{DaemonError, ServeStatus, StopOutcome};
use fedilab_state::{AttachedServer, LabDir, LabState, StoredKind};

/// A host side that remembers each call and the lab state saved at the
/// time, and reports itself stopped.
#[derive(Default)]
struct Host {
    calls: Mutex<Vec<(&'static str, Option<LabState>)>>,
}

impl Host {
    fn calls(&self) -> Vec<(&'static str, Option<LabState>)> {
        self.calls.lock().expect("lock").clone()
    }
}

impl HostSide for Host {
    fn refresh(&self, dir: &LabDir) -> Result<ServeStatus, DaemonError> {
        let state = dir.load_state().expect("readable state");
        self.calls.lock().expect("lock").push(("refresh", state));
        Ok(ServeStatus::Stopped)
    }

    fn stop(&self, dir: &LabDir) -> Result<StopOutcome, DaemonError> {
        let state = dir.load_state().expect("readable state");
        self.calls.lock().expect("lock").push(("stop", state));
        Ok(StopOutcome::NotRunning)
    }
}

/// Records the events' names in order.
#[derive(Default)]
struct Seen(Mutex<Vec<String>>);

impl fedilab_orchestrator::Progress for Seen {
    fn update(&self, instance: &InstanceName, progress: &InstanceProgress) {
        if matches!(progress, InstanceProgress::Ready) {
            self.0
                .lock()
                .expect("lock")
                .push(format!("ready {instance}"));
        }
    }
}

impl fedilab_lab::Progress for Seen {
    fn event(&self, event: &Event<'_>) {
        let name = match event {
            Event::CaCreated { .. } => "ca".to_owned(),
            Event::Warning(w) => format!("warning {w}"),
            Event::Applied { report } => format!("applied {}", report.objects.len()),
            Event::Serve(_) => "serve".to_owned(),
            Event::Waiting(i) => format!("waiting {}", i.len()),
        };
        self.0.lock().expect("lock").push(name);
    }
}

fn request(data: &std::path::Path, spec: LabSpec, inspector: bool) -> UpRequest {
    UpRequest {
        data_dir: data.to_owned(),
        spec,
        inspector,
        force: false,
        wait: Some(WaitOptions {
            poll_interval: Duration::from_millis(5),
            ..WaitOptions::default()
        }),
    }
}

async fn up(fake: &Fake, data: &std::path::Path, host: &Host) -> fedilab_lab::UpReport {
    let plan =
        UpPlan::prepare(request(data, spec("main", "fediverse.local", 2), true)).expect("prepared");
    let timings = Timings::new(fake.cluster.counter.clone());
    bounded(fedilab_lab::up(
        &fake.cluster,
        &plan,
        host,
        &Seen::default(),
        &timings,
    ))
    .await
    .expect("up")
}

#[tokio::test]
async fn up_applies_saves_the_routes_then_starts_the_host_side_and_returns_credentials() {
    let fake = Fake::start(Behaviour::default());
    let data = tempfile::tempdir().expect("temp dir");
    let host = Host::default();
    let plan = UpPlan::prepare(request(
        data.path(),
        spec("main", "fediverse.local", 2),
        true,
    ))
    .expect("prepared");
    let seen = Seen::default();
    let timings = Timings::new(fake.cluster.counter.clone());
    let report = bounded(fedilab_lab::up(
        &fake.cluster,
        &plan,
        &host,
        &seen,
        &timings,
    ))
    .await
    .expect("up");

    // Events in order: a CA made, every object applied, the host side
    // asked, the wait until both instances are ready.
    let events = seen.0.lock().expect("lock").clone();
    assert_eq!(events[0], "ca");
    assert!(events[1].starts_with("applied "), "{events:?}");
    assert_eq!(events[2..4], ["serve", "waiting 2"]);
    assert!(events.contains(&"ready mastodon1".to_owned()), "{events:?}");
    let phases: Vec<String> = timings.phases().into_iter().map(|p| p.phase).collect();
    assert_eq!(
        phases,
        ["node", "facts", "preflight", "apply", "upstreams", "wait"]
    );
    let waves: Vec<String> = timings.waves().into_iter().map(|w| w.wave).collect();
    assert_eq!(waves, ["namespace", "network-policies", "objects", "jobs"]);

    // The host side was asked once, after the state with the routes was
    // saved: every instance's web Service at `/`, streaming at its prefix.
    let calls = host.calls();
    assert_eq!(calls.len(), 1);
    let (call, state) = &calls[0];
    assert_eq!(*call, "refresh");
    let state = state.as_ref().expect("saved before the host side is asked");
    for name in ["mastodon1", "mastodon2"] {
        let web = fake
            .object("services", Some("fedilab-main"), &format!("{name}-web"))
            .expect("web Service");
        let saved = state.instance(name).expect("in the state");
        assert_eq!(
            saved.upstreams[0].url.to_string(),
            format!(
                "http://{}:3000",
                web["spec"]["clusterIP"].as_str().expect("ip")
            )
        );
        assert_eq!(
            saved.upstreams[1].path_prefix,
            names::MASTODON_STREAMING_PATH
        );
    }
    let serve = state.serve.as_ref().expect("host-side addresses");
    assert_eq!(
        serve.proxy.map(|p| p.to_string()).as_deref(),
        Some("192.0.2.10:8480")
    );
    assert_eq!(report.node.to_string(), "192.0.2.10");

    // The credentials are the generated ones, and no apply is pending.
    let dir = LabDir::new(data.path(), &"main".parse().expect("lab"));
    assert!(!dir.apply_pending().expect("marker"));
    assert_eq!(report.credentials.len(), 2);
    for c in &report.credentials {
        let (password, token) = dir
            .admin_secrets(&c.instance)
            .expect("read")
            .expect("saved");
        assert_eq!((&c.password, &c.api_token), (&password, &token));
        assert_eq!(c.username, names::ADMIN_USERNAME);
    }
    assert!(report.waited);
}

#[tokio::test]
async fn up_twice_reuses_secrets_ports_and_certificates() {
    let fake = Fake::start(Behaviour::default());
    let data = tempfile::tempdir().expect("temp dir");
    let host = Host::default();
    let first = up(&fake, data.path(), &host).await;
    let versions = fake.resource_versions();
    let second = up(&fake, data.path(), &host).await;
    assert_eq!(first.credentials, second.credentials);
    assert_eq!(first.state, second.state);
    assert_eq!(
        fake.resource_versions(),
        versions,
        "nothing changed on the cluster"
    );
}

#[tokio::test]
async fn refusals_come_before_any_cluster_and_say_what_to_do() {
    let data = tempfile::tempdir().expect("temp dir");
    let dir = LabDir::new(data.path(), &"main".parse().expect("lab"));
    dir.save_attached(&[AttachedServer {
        name: "mine".parse().expect("name"),
        url: "http://127.0.0.1:3000".parse().expect("url"),
    }])
    .expect("saved");
    let err = UpPlan::prepare(request(
        data.path(),
        spec("main", "fediverse.local", 1),
        false,
    ))
    .expect_err("attached servers need the inspector");
    assert!(
        matches!(err, UpError::AttachedNeedInspector { .. }),
        "{err}"
    );
    assert!(err.is_usage());
    assert!(
        err.to_string().contains("`fedilab detach` them first"),
        "{err}"
    );

    // Attach and detach refuse a lab that is not up here.
    let other = "exp".parse().expect("lab");
    let err = AttachPlan::prepare(AttachRequest {
        data_dir: data.path().to_owned(),
        lab: other,
        name: "mine".to_owned(),
        url: "http://127.0.0.1:3000".to_owned(),
    })
    .expect_err("not up");
    assert!(err.is_usage());
    assert!(
        err.to_string().contains("run `fedilab up --lab exp` first"),
        "{err}"
    );
    let err = DetachPlan::prepare(data.path().to_owned(), "exp".parse().expect("lab"), "mine")
        .expect_err("not up");
    assert!(err.is_usage(), "{err}");
}

#[tokio::test]
async fn attach_and_detach_keep_the_state_files_and_the_cluster_in_step() {
    let fake = Fake::start(Behaviour::default());
    let data = tempfile::tempdir().expect("temp dir");
    let host = Host::default();
    up(&fake, data.path(), &host).await;
    let lab: fedilab_profile::LabName = "main".parse().expect("lab");

    // A profile instance's name is refused without touching the cluster.
    let taken = AttachPlan::prepare(AttachRequest {
        data_dir: data.path().to_owned(),
        lab: lab.clone(),
        name: "mastodon1".to_owned(),
        url: "http://127.0.0.1:3000".to_owned(),
    })
    .expect_err("taken");
    assert!(
        taken.is_usage() && taken.to_string().contains("pick another name"),
        "{taken}"
    );

    let plan = AttachPlan::prepare(AttachRequest {
        data_dir: data.path().to_owned(),
        lab: lab.clone(),
        name: "mine".to_owned(),
        url: "http://127.0.0.1:9".to_owned(),
    })
    .expect("prepared");
    let attached = bounded(fedilab_lab::attach(&fake.cluster, plan, &host))
        .await
        .expect("attached");
    assert_eq!(attached.objects, 4);
    assert!(
        fake.object("ingresses", Some("fedilab-main"), "mine")
            .is_some()
    );
    let dir = LabDir::new(data.path(), &lab);
    assert_eq!(dir.attached().expect("attached").len(), 1);
    let (call, state) = host.calls().pop().expect("asked");
    assert_eq!(call, "refresh");
    let mine = state
        .as_ref()
        .and_then(|s| s.instance("mine").cloned())
        .expect("in the state");
    assert_eq!(mine.kind, StoredKind::Attached);

    // A profile instance cannot be detached; the attached server can.
    let err = DetachPlan::prepare(data.path().to_owned(), lab.clone(), "mastodon2")
        .expect_err("profile instance");
    assert!(
        err.is_usage() && err.to_string().contains("not an attached server"),
        "{err}"
    );
    let plan = DetachPlan::prepare(data.path().to_owned(), lab.clone(), "mine").expect("plan");
    let detached = bounded(fedilab_lab::detach(&fake.cluster, plan, &host))
        .await
        .expect("detached");
    assert_eq!(detached.removed.len(), 4);
    assert!(detached.was_attached && detached.leaf_removed);
    assert!(
        fake.object("ingresses", Some("fedilab-main"), "mine")
            .is_none()
    );
    assert_eq!(dir.attached().expect("attached"), vec![]);
    assert!(
        dir.load_state()
            .expect("state")
            .expect("saved")
            .instance("mine")
            .is_none()
    );
}

#[tokio::test]
async fn down_with_purge_stops_the_host_side_and_leaves_nothing_here_or_there() {
    let fake = Fake::start(Behaviour::default());
    let data = tempfile::tempdir().expect("temp dir");
    let host = Host::default();
    up(&fake, data.path(), &host).await;
    assert!(data.path().join("ca/fediverse.local/ca.pem").exists());
    let request = DownRequest {
        data_dir: data.path().to_owned(),
        lab: "main".parse().expect("lab"),
        purge: true,
        options: DownOptions {
            timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(5),
        },
    };
    let timings = Timings::new(fake.cluster.counter.clone());
    let report = bounded(fedilab_lab::down(&fake.cluster, &request, &host, &timings))
        .await
        .expect("down");
    assert!(report.cluster.existed);
    assert_eq!(fake.count_labelled(names::LAB_KEY, "main"), 0);
    let (call, state) = host.calls().pop().expect("asked");
    assert_eq!(call, "stop");
    assert!(state.is_some(), "stopped before the state went");
    assert_eq!(report.purged_state, Some(data.path().join("labs/main")));
    assert_eq!(
        report.purged_ca,
        Some(data.path().join("ca/fediverse.local"))
    );
    assert!(!data.path().join("labs/main").exists());
    assert!(!data.path().join("ca/fediverse.local").exists());
}

/// Issue 14: a lab of Mastodon, Misskey and GoToSocial applies each kind's
/// objects, waits for each on its own components (no Redis, streaming or
/// Sidekiq for GoToSocial), routes each through its web Service's port,
/// returns credentials for every kind, and `down` leaves nothing.
#[tokio::test]
async fn a_mixed_lab_comes_up_per_kind_and_goes_down_without_a_trace() {
    let fake = Fake::start(Behaviour::default());
    let data = tempfile::tempdir().expect("temp dir");
    let host = Host::default();
    let spec = LabSpec::from_yaml(
        "instances: [{}, {kind: misskey}, {kind: gotosocial}]\n",
        "mixed",
        &fedilab_profile::Overrides::default(),
    )
    .expect("valid");
    let plan = UpPlan::prepare(request(data.path(), spec, true)).expect("prepared");
    let seen = Seen::default();
    let timings = Timings::new(fake.cluster.counter.clone());
    let report = bounded(fedilab_lab::up(
        &fake.cluster,
        &plan,
        &host,
        &seen,
        &timings,
    ))
    .await
    .expect("up");

    let events = seen.0.lock().expect("lock").clone();
    assert!(events.contains(&"waiting 3".to_owned()), "{events:?}");
    for name in ["mastodon1", "misskey1", "gts1"] {
        assert!(events.contains(&format!("ready {name}")), "{events:?}");
    }
    let ns = Some("fedilab-main");
    assert!(fake.object("deployments", ns, "misskey1-redis").is_some());
    for absent in [
        "gts1-redis",
        "gts1-streaming",
        "gts1-sidekiq",
        "misskey1-sidekiq",
    ] {
        assert!(fake.object("deployments", ns, absent).is_none(), "{absent}");
    }
    let config = fake
        .object("secrets", ns, "misskey1-secrets")
        .expect("Misskey's config Secret");
    assert!(config["data"]["default.yml"].is_string());

    let state = host.calls()[0].1.clone().expect("state saved");
    let gts = state.instance("gts1").expect("gts1 in the state");
    assert_eq!(gts.kind, StoredKind::GoToSocial);
    assert_eq!(gts.upstreams.len(), 1, "one server, no streaming");
    assert_eq!(
        gts.upstreams[0].url.to_string().rsplit(':').next(),
        Some("8080")
    );
    let misskey = state.instance("misskey1").expect("misskey1 in the state");
    assert_eq!(misskey.kind, StoredKind::Misskey);

    let mut creds: Vec<(String, usize)> = report
        .credentials
        .iter()
        .map(|c| (c.instance.clone(), c.api_token.len()))
        .collect();
    creds.sort();
    assert_eq!(
        creds,
        [
            ("gts1".to_owned(), 43),
            ("mastodon1".to_owned(), 43),
            ("misskey1".to_owned(), 16)
        ],
        "every kind has credentials; Misskey's token is its native 16 characters"
    );

    let request = DownRequest {
        data_dir: data.path().to_owned(),
        lab: "main".parse().expect("lab"),
        purge: true,
        options: DownOptions {
            timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(5),
        },
    };
    let timings = Timings::new(fake.cluster.counter.clone());
    bounded(fedilab_lab::down(&fake.cluster, &request, &host, &timings))
        .await
        .expect("down");
    assert_eq!(fake.count_labelled(names::LAB_KEY, "main"), 0);
}
