//! apply, status and down against a real API server, when
//! `FEDILAB_TEST_KUBECONFIG` names a kubeconfig (skipped with a printed
//! reason otherwise). They change the cluster: use a throwaway one (a k3s
//! VM, or any API server: pods need not start, these tests do not wait for
//! them).
//!
//! ```sh
//! FEDILAB_TEST_KUBECONFIG=/etc/rancher/k3s/k3s.yaml \
//!   cargo test -p fedilab-orchestrator --test real_cluster -- --test-threads 1
//! # and, on a k3s node that can pull images (minutes):
//! FEDILAB_TEST_KUBECONFIG=/etc/rancher/k3s/k3s.yaml \
//!   cargo test -p fedilab-orchestrator --test real_cluster -- --ignored --test-threads 1
//! ```

mod common;

use std::time::Duration;

use common::manifests;
use fedilab_manifest::{LabManifests, Manifest};
use fedilab_orchestrator::{
    Cluster, ConnectOptions, DownOptions, PreflightOptions, WaitOptions, apply, connect, down,
    preflight, status, wait_ready,
};
use fedilab_profile::{LabSpec, names};

async fn cluster() -> Option<Cluster> {
    let Some(path) = std::env::var_os("FEDILAB_TEST_KUBECONFIG") else {
        println!("skipped: set FEDILAB_TEST_KUBECONFIG to a throwaway cluster's kubeconfig to run");
        return None;
    };
    let options = ConnectOptions {
        kubeconfig: Some(path.into()),
        context: None,
    };
    Some(
        connect(&options)
            .await
            .expect("FEDILAB_TEST_KUBECONFIG is usable"),
    )
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

async fn up(cluster: &Cluster, spec: &LabSpec) -> Vec<(String, Option<String>)> {
    let m = objects_for(cluster, spec).await;
    let checked = preflight(cluster, spec, &m, PreflightOptions { force: true })
        .await
        .expect("preflight");
    let report = apply(cluster, spec, &m, &checked).await.expect("apply");
    report
        .objects
        .into_iter()
        .map(|o| (o.object, o.resource_version))
        .collect()
}

async fn labelled(cluster: &Cluster, spec: &LabSpec) -> usize {
    let s = status(cluster, &spec.name).await.expect("status");
    usize::from(s.exists) + s.instances.len()
}

fn quick_down() -> DownOptions {
    DownOptions {
        timeout: Duration::from_secs(180),
        poll_interval: Duration::from_secs(1),
    }
}

#[tokio::test]
async fn up_twice_keeps_every_resource_version_and_down_leaves_nothing() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let spec = common::spec("itest-a", "itest-a.test", 2);
    let timeout = Duration::from_secs(300);
    tokio::time::timeout(timeout, async {
        let first = up(&cluster, &spec).await;
        let second = up(&cluster, &spec).await;
        assert_eq!(first, second, "a second apply changes nothing");
        let report = down(&cluster, &spec.name, &quick_down())
            .await
            .expect("down");
        assert!(report.existed);
        assert_eq!(labelled(&cluster, &spec).await, 0);
        let again = down(&cluster, &spec.name, &quick_down())
            .await
            .expect("down again");
        assert!(!again.existed);
    })
    .await
    .expect("within 5 minutes");
}

#[tokio::test]
async fn two_labs_coexist_and_down_of_one_leaves_the_other() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let a = common::spec("itest-b", "itest-b.test", 1);
    let b = common::spec("itest-c", "itest-c.test", 1);
    tokio::time::timeout(Duration::from_secs(300), async {
        up(&cluster, &a).await;
        let before = up(&cluster, &b).await;
        down(&cluster, &a.name, &quick_down())
            .await
            .expect("down a");
        let s = status(&cluster, &b.name).await.expect("status b");
        assert!(s.exists);
        let key = s
            .lab_objects
            .iter()
            .find(|o| o.object.contains(&names::coredns_key(&b.name)))
            .expect("b's CoreDNS key listed");
        assert!(key.present, "b's key survives a's down");
        assert_eq!(up(&cluster, &b).await, before, "b untouched");
        down(&cluster, &b.name, &quick_down())
            .await
            .expect("down b");
    })
    .await
    .expect("within 5 minutes");
}

/// Needs a k3s node that can pull the Mastodon images; takes minutes.
#[tokio::test]
#[ignore = "needs a live k3s node with image pulls: FEDILAB_TEST_KUBECONFIG=... cargo test -p fedilab-orchestrator --test real_cluster -- --ignored"]
async fn a_lab_comes_up_on_k3s() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let spec = common::spec("itest-live", "itest-live.test", 1);
    tokio::time::timeout(Duration::from_secs(40 * 60), async {
        up(&cluster, &spec).await;
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
/// (lab `main`, domain fediverse.local) with its images pulled. Without a
/// recorded host side the names and federation checks report `fedilab
/// serve`; egress and trust must pass, and no check pod may be left.
#[tokio::test]
#[ignore = "needs a live lab: fedilab up --instances 2 on a k3s node"]
async fn verify_a_live_lab() {
    let Some(cluster) = cluster().await else {
        return;
    };
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
