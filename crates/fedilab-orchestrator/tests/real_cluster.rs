//! apply, status and down against a real API server (a throwaway k3s, or
//! any kube-apiserver with controllers: pods need not start for the first
//! two tests). They change the cluster, so they are `#[ignore]`d; run them
//! with a kubeconfig:
//!
//! ```sh
//! FEDILAB_TEST_KUBECONFIG=$HOME/k8slab/kubeconfig \
//!   cargo test -p fedilab-orchestrator --test real_cluster -- --ignored --test-threads 1
//! ```
//!
//! Without `FEDILAB_TEST_KUBECONFIG` each test prints why it skips and
//! passes. What they compare is what fedilab owns: the fields its managers
//! own (managedFields) and the objects' generations, never the
//! resourceVersions that controllers bump when they write status. A guard
//! runs `down` for each lab a test made, also when the test panics.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use common::manifests;
use fedilab_manifest::{LabManifests, Manifest};
use fedilab_orchestrator::{
    ApplyReport, Cluster, ConnectOptions, DownOptions, Outcome, PreflightOptions, WaitOptions,
    apply, connect, down, preflight, status, wait_ready,
};
use fedilab_profile::{LabName, LabSpec, names};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use serde_json::Value;

const NEEDS: &str = "FEDILAB_TEST_KUBECONFIG";

fn kubeconfig() -> Option<PathBuf> {
    let path = std::env::var_os(NEEDS).map(PathBuf::from);
    if path.is_none() {
        println!("skipped: set {NEEDS} to a throwaway cluster's kubeconfig to run this test");
    }
    path
}

async fn cluster(kubeconfig: &std::path::Path) -> Cluster {
    let options = ConnectOptions {
        kubeconfig: Some(kubeconfig.to_owned()),
        context: None,
    };
    connect(&options)
        .await
        .expect("FEDILAB_TEST_KUBECONFIG is usable")
}

fn quick_down() -> DownOptions {
    DownOptions {
        timeout: Duration::from_secs(180),
        poll_interval: Duration::from_secs(1),
    }
}

/// Runs `down` of its lab when dropped, whether the test passed or
/// panicked, on a thread and runtime of its own (the test's runtime may be
/// unwinding).
struct DownOnDrop {
    kubeconfig: PathBuf,
    lab: LabName,
}

impl DownOnDrop {
    fn new(kubeconfig: &std::path::Path, spec: &LabSpec) -> Self {
        DownOnDrop {
            kubeconfig: kubeconfig.to_owned(),
            lab: spec.name.clone(),
        }
    }
}

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let kubeconfig = self.kubeconfig.clone();
        let lab = self.lab.clone();
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let cluster = cluster(&kubeconfig).await;
                tokio::time::timeout(
                    Duration::from_secs(240),
                    down(&cluster, &lab, &quick_down()),
                )
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|e| e.to_string())
            })
        })
        .join();
        match outcome {
            Ok(Ok(report)) if report.existed => println!("cleanup: removed lab {}", self.lab),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => eprintln!("cleanup: down of lab {} failed: {e}", self.lab),
            Err(_) => eprintln!("cleanup: down of lab {} panicked", self.lab),
        }
    }
}

/// The lab's objects, without k3s's CRD objects when the server lacks them
/// (a plain API server).
async fn objects_for(cluster: &Cluster, spec: &LabSpec) -> LabManifests {
    let mut m = manifests(spec);
    if cluster
        .client
        .list_api_group_resources("helm.cattle.io/v1")
        .await
        .is_err()
    {
        println!("note: no helm.cattle.io/v1 here; leaving the HelmChartConfig out");
        m.objects.retain(|o| !matches!(o, Manifest::Dynamic(_)));
    }
    m
}

async fn up(cluster: &Cluster, spec: &LabSpec, m: &LabManifests) -> ApplyReport {
    let checked = preflight(cluster, spec, m, PreflightOptions { force: true })
        .await
        .expect("preflight");
    let report = apply(cluster, spec, m, &checked).await.expect("apply");
    for w in &report.waves {
        println!(
            "{}: wave {:<16} {:>3} objects {:>7.1} ms {:>3} requests",
            spec.name,
            w.wave,
            w.objects,
            w.wall.as_secs_f64() * 1000.0,
            w.requests
        );
    }
    report
}

/// What fedilab owns of one object: its generation and, per field manager
/// of fedilab's, the fields it owns and when it last changed them.
#[derive(Debug, PartialEq)]
struct Owned {
    generation: Option<i64>,
    fields: Vec<(String, Option<String>, Value, Option<String>)>,
}

fn api_for(cluster: &Cluster, object: &Manifest) -> Api<DynamicObject> {
    let (group, version) = object
        .api_version()
        .split_once('/')
        .unwrap_or(("", object.api_version()));
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, object.kind()),
        common::plural(object.kind()),
    );
    match object.namespace() {
        Some(ns) => Api::namespaced_with(cluster.client.clone(), ns, &resource),
        None => Api::all_with(cluster.client.clone(), &resource),
    }
}

/// [`Owned`] for every object of `m` that `keep` selects, by
/// `Kind/namespace/name`.
async fn owned(
    cluster: &Cluster,
    spec: &LabSpec,
    m: &LabManifests,
    keep: impl Fn(&Manifest) -> bool,
) -> BTreeMap<String, Owned> {
    let managers = [
        names::FIELD_MANAGER.to_owned(),
        names::lab_field_manager(&spec.name),
    ];
    let mut out = BTreeMap::new();
    for object in m.objects.iter().filter(|o| keep(o)) {
        let live = api_for(cluster, object)
            .get(object.name())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", object.describe()));
        let fields = live
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter(|f| f.manager.as_ref().is_some_and(|m| managers.contains(m)))
            .map(|f| {
                (
                    f.manager.clone().unwrap_or_default(),
                    f.operation.clone(),
                    f.fields_v1
                        .as_ref()
                        .map(|v| v.0.clone())
                        .unwrap_or_default(),
                    f.time.as_ref().map(|t| t.0.to_string()),
                )
            })
            .collect::<Vec<_>>();
        assert!(
            !fields.is_empty(),
            "{}: fedilab owns no field of it",
            object.describe()
        );
        out.insert(
            object.describe(),
            Owned {
                generation: live.metadata.generation,
                fields,
            },
        );
    }
    out
}

fn in_lab_namespace(spec: &LabSpec) -> impl Fn(&Manifest) -> bool {
    let namespace = names::namespace(&spec.name);
    move |o: &Manifest| o.namespace().is_none_or(|ns| ns == namespace)
}

async fn coredns_custom(cluster: &Cluster) -> BTreeMap<String, String> {
    Api::<ConfigMap>::namespaced(cluster.client.clone(), names::KUBE_SYSTEM)
        .get_opt(names::COREDNS_CUSTOM_CONFIGMAP)
        .await
        .expect("read coredns-custom")
        .and_then(|c| c.data)
        .unwrap_or_default()
}

async fn labelled(cluster: &Cluster, spec: &LabSpec) -> usize {
    let s = status(cluster, &spec.name).await.expect("status");
    usize::from(s.exists) + s.instances.len()
}

#[tokio::test]
#[ignore = "needs a cluster: FEDILAB_TEST_KUBECONFIG=… cargo test -p fedilab-orchestrator --test real_cluster -- --ignored --test-threads 1"]
async fn up_twice_changes_nothing_fedilab_owns_and_down_leaves_nothing() {
    let Some(path) = kubeconfig() else {
        return;
    };
    let cluster = cluster(&path).await;
    let spec = common::spec("itest-a", "itest-a.test", 2);
    let _cleanup = DownOnDrop::new(&path, &spec);
    tokio::time::timeout(Duration::from_secs(300), async {
        let m = objects_for(&cluster, &spec).await;
        up(&cluster, &spec, &m).await;
        let before = owned(&cluster, &spec, &m, |_| true).await;
        let second = up(&cluster, &spec, &m).await;
        assert!(!second.coredns_restarted, "an unchanged key does not");
        assert!(
            second.objects.iter().all(|o| o.outcome == Outcome::Applied),
            "nothing replaced: {:?}",
            second.objects
        );
        let after = owned(&cluster, &spec, &m, |_| true).await;
        assert_eq!(before.len(), m.objects.len());
        for (object, owned) in &before {
            assert_eq!(
                after.get(object),
                Some(owned),
                "{object}: a second apply changes nothing fedilab owns"
            );
        }

        let report = down(&cluster, &spec.name, &quick_down())
            .await
            .expect("down");
        assert!(report.existed);
        assert_eq!(labelled(&cluster, &spec).await, 0);
        assert!(
            !coredns_custom(&cluster)
                .await
                .contains_key(&names::coredns_key(&spec.name)),
            "the lab's CoreDNS key is gone"
        );
        let again = down(&cluster, &spec.name, &quick_down())
            .await
            .expect("down again");
        assert!(!again.existed);
    })
    .await
    .expect("within 5 minutes");
}

#[tokio::test]
#[ignore = "needs a cluster: FEDILAB_TEST_KUBECONFIG=… cargo test -p fedilab-orchestrator --test real_cluster -- --ignored --test-threads 1"]
async fn two_labs_coexist_and_down_of_one_leaves_the_other() {
    let Some(path) = kubeconfig() else {
        return;
    };
    let cluster = cluster(&path).await;
    let a = common::spec("itest-b", "itest-b.test", 1);
    let b = common::spec("itest-c", "itest-c.test", 1);
    let _cleanup_a = DownOnDrop::new(&path, &a);
    let _cleanup_b = DownOnDrop::new(&path, &b);
    tokio::time::timeout(Duration::from_secs(300), async {
        let ma = objects_for(&cluster, &a).await;
        let mb = objects_for(&cluster, &b).await;
        up(&cluster, &a, &ma).await;
        up(&cluster, &b, &mb).await;
        let b_key = names::coredns_key(&b.name);
        let b_objects = owned(&cluster, &b, &mb, in_lab_namespace(&b)).await;
        let b_shared = owned(&cluster, &b, &mb, |o| {
            o.name() == names::COREDNS_CUSTOM_CONFIGMAP
        })
        .await;
        let b_block = coredns_custom(&cluster).await.get(&b_key).cloned();
        assert!(b_block.is_some(), "b's CoreDNS key is there");

        down(&cluster, &a.name, &quick_down())
            .await
            .expect("down a");
        assert_eq!(labelled(&cluster, &a).await, 0, "a is gone");
        let data = coredns_custom(&cluster).await;
        assert!(
            !data.contains_key(&names::coredns_key(&a.name)),
            "a's key is gone"
        );
        assert_eq!(data.get(&b_key), b_block.as_ref(), "b's key is untouched");
        // b's manager still owns exactly b's key, as before a's down.
        let shared_after = owned(&cluster, &b, &mb, |o| {
            o.name() == names::COREDNS_CUSTOM_CONFIGMAP
        })
        .await;
        let lab_manager = names::lab_field_manager(&b.name);
        let of_b = |o: &BTreeMap<String, Owned>| {
            o.values()
                .flat_map(|v| v.fields.iter())
                .filter(|f| f.0 == lab_manager)
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(of_b(&shared_after), of_b(&b_shared));
        assert_eq!(
            owned(&cluster, &b, &mb, in_lab_namespace(&b)).await,
            b_objects,
            "b's own objects are untouched"
        );
        assert!(status(&cluster, &b.name).await.expect("status b").exists);

        down(&cluster, &b.name, &quick_down())
            .await
            .expect("down b");
        assert_eq!(labelled(&cluster, &b).await, 0);
    })
    .await
    .expect("within 5 minutes");
}

/// Needs a cluster whose pods run (k3s pulling the Mastodon images, or a
/// stand-in kubelet that marks pods ready); takes minutes on k3s.
#[tokio::test]
#[ignore = "needs a cluster: FEDILAB_TEST_KUBECONFIG=… (pods must run) cargo test -p fedilab-orchestrator --test real_cluster -- --ignored"]
async fn a_lab_comes_up() {
    let Some(path) = kubeconfig() else {
        return;
    };
    let cluster = cluster(&path).await;
    let spec = common::spec("itest-live", "itest-live.test", 1);
    let _cleanup = DownOnDrop::new(&path, &spec);
    tokio::time::timeout(Duration::from_secs(40 * 60), async {
        let m = objects_for(&cluster, &spec).await;
        up(&cluster, &spec, &m).await;
        wait_ready(&cluster, &spec, &WaitOptions::default(), &())
            .await
            .expect("ready");
        let s = status(&cluster, &spec.name).await.expect("status");
        assert_eq!(s.instances[0].phase, "ready");
        down(&cluster, &spec.name, &quick_down())
            .await
            .expect("down");
    })
    .await
    .expect("within 40 minutes");
}

/// Issue 8: `verify` on a live lab made by `fedilab up --instances 2`
/// (lab `main`, domain fediverse.local) on a k3s node with its images
/// pulled; also needs `FEDILAB_TEST_LIVE_LAB=1`. Without a recorded host
/// side the names and federation checks report `fedilab serve`; egress and
/// trust must pass, and no check pod may be left.
#[tokio::test]
#[ignore = "needs a cluster: FEDILAB_TEST_KUBECONFIG=… and FEDILAB_TEST_LIVE_LAB=1 with a live lab (fedilab up --instances 2 on k3s)"]
async fn verify_a_live_lab() {
    let Some(path) = kubeconfig() else {
        return;
    };
    if std::env::var_os("FEDILAB_TEST_LIVE_LAB").is_none() {
        println!(
            "skipped: set FEDILAB_TEST_LIVE_LAB=1 once `fedilab up --instances 2` runs on a k3s node"
        );
        return;
    }
    let cluster = cluster(&path).await;
    let spec = common::spec("main", "fediverse.local", 2);
    let plan = fedilab_verify::plan(
        &spec,
        &fedilab_verify::PlanInputs::new(None, "real-cluster"),
    );
    let run = fedilab_orchestrator::verify(
        &cluster,
        &spec,
        &plan,
        &fedilab_orchestrator::VerifyOptions::default(),
        std::future::pending(),
    )
    .await
    .expect("verify ran");
    for check in &run.report.checks {
        println!("{:?} {}: {:#?}", check.outcome, check.id, check);
    }
    for id in [
        fedilab_verify::CheckId::Egress,
        fedilab_verify::CheckId::Trust,
    ] {
        let check = run
            .report
            .checks
            .iter()
            .find(|c| c.id == id)
            .expect("check");
        assert_eq!(check.outcome, fedilab_verify::Outcome::Pass, "{check:#?}");
    }
    assert!(run.not_deleted.is_empty());
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(cluster.client.clone(), &plan.namespace);
    let left = pods
        .list(&kube::api::ListParams::default().labels(&names::verify_selector(&spec.name)))
        .await
        .expect("list");
    assert!(
        left.items
            .iter()
            .all(|p| p.metadata.deletion_timestamp.is_some()),
        "check pods left: {:?}",
        left.items
            .iter()
            .map(|p| &p.metadata.name)
            .collect::<Vec<_>>()
    );
}

/// Issue 14: the objects of Misskey and GoToSocial instances beside a
/// Mastodon are accepted by a real API server, a second apply changes
/// nothing, and `down` leaves nothing.
#[tokio::test]
#[ignore = "needs a cluster: FEDILAB_TEST_KUBECONFIG=… cargo test -p fedilab-orchestrator --test real_cluster -- --ignored --test-threads 1"]
async fn a_mixed_lab_applies_and_goes() {
    let Some(path) = kubeconfig() else {
        return;
    };
    let cluster = cluster(&path).await;
    let spec = LabSpec::from_yaml(
        "name: itest-mixed\ndomain: itest-mixed.test\n\
         instances: [{}, {kind: misskey}, {kind: gotosocial}]\n",
        "mixed",
        &fedilab_profile::Overrides::default(),
    )
    .expect("valid");
    let _cleanup = DownOnDrop::new(&path, &spec);
    tokio::time::timeout(Duration::from_secs(300), async {
        let m = objects_for(&cluster, &spec).await;
        let first = up(&cluster, &spec, &m).await;
        assert_eq!(first.objects.len(), m.objects.len());
        let second = up(&cluster, &spec, &m).await;
        assert!(
            second.objects.iter().all(|o| o.outcome == Outcome::Applied),
            "nothing replaced: {:?}",
            second.objects
        );
        let report = down(&cluster, &spec.name, &quick_down())
            .await
            .expect("down");
        assert!(report.existed);
        assert_eq!(labelled(&cluster, &spec).await, 0);
    })
    .await
    .expect("within 5 minutes");
}
