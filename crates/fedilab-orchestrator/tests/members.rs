//! The inspector's upstreams, `attach` and `detach` against the fake API
//! server: the exact requests, the objects created and removed, and that
//! the rest of the lab is untouched.

mod common;

use std::net::SocketAddr;

use common::{Behaviour, Fake, bounded, fixture_tls, manifests, object_path, spec};
use fedilab_orchestrator::{
    MemberError, PreflightOptions, apply, attach, detach, instance_upstreams, preflight,
};
use fedilab_profile::{InstanceSpec, LabSpec, names};

const APPLY: &str = "application/apply-patch+yaml";

fn proxy() -> SocketAddr {
    "192.0.2.10:8480".parse().expect("address")
}

/// Preflight and apply, as `up` does.
async fn apply_lab(fake: &Fake, spec: &LabSpec, manifests: &fedilab_manifest::LabManifests) {
    let checked = bounded(preflight(
        &fake.cluster,
        spec,
        manifests,
        PreflightOptions::default(),
    ))
    .await
    .expect("preflight");
    bounded(apply(&fake.cluster, spec, manifests, &checked))
        .await
        .expect("apply");
}

async fn lab_up(fake: &Fake) -> LabSpec {
    let spec = spec("main", "fediverse.local", 1);
    apply_lab(fake, &spec, &manifests(&spec)).await;
    fake.clear_log();
    spec
}

/// The lab as `attach` sees it: the running lab's name and domain, with
/// the one server to attach.
fn attaching(lab: &LabSpec, name: &str, url: &str) -> (LabSpec, fedilab_manifest::LabManifests) {
    let server = InstanceSpec::external(name, url, &lab.domain).expect("valid server");
    let spec = LabSpec {
        instances: vec![server],
        ..lab.clone()
    };
    let tls = fixture_tls(&spec);
    let objects = fedilab_manifest::build_external(
        &spec,
        &spec.instances[0],
        &tls.leaves[&spec.instances[0].name],
        proxy(),
    )
    .expect("builds");
    (spec, objects)
}

#[tokio::test]
async fn upstreams_are_the_web_and_streaming_services_cluster_addresses() {
    let fake = Fake::start(Behaviour::default());
    let spec = lab_up(&fake).await;
    let upstreams = bounded(instance_upstreams(&fake.cluster, &spec))
        .await
        .expect("listed");
    let lines: Vec<String> = fake.log().iter().map(|r| r.line()).collect();
    assert_eq!(
        lines,
        [format!(
            "GET /api/v1/namespaces/fedilab-main/services?&labelSelector={}",
            names::lab_selector(&spec.name)
        )]
    );
    let web = fake
        .object("services", Some("fedilab-main"), "mastodon1-web")
        .expect("web Service");
    let streaming = fake
        .object("services", Some("fedilab-main"), "mastodon1-streaming")
        .expect("streaming Service");
    let mastodon1: fedilab_profile::InstanceName = "mastodon1".parse().expect("name");
    let routes: Vec<(String, String)> = upstreams[&mastodon1]
        .iter()
        .map(|u| (u.path_prefix.clone(), u.url.to_string()))
        .collect();
    assert_eq!(
        routes,
        [
            (
                "/".to_owned(),
                format!(
                    "http://{}:3000",
                    web["spec"]["clusterIP"].as_str().expect("ip")
                )
            ),
            (
                names::MASTODON_STREAMING_PATH.to_owned(),
                format!(
                    "http://{}:4000",
                    streaming["spec"]["clusterIP"].as_str().expect("ip")
                )
            ),
        ]
    );
}

#[tokio::test]
async fn attach_applies_four_objects_and_detach_removes_exactly_them() {
    let fake = Fake::start(Behaviour::default());
    let lab = lab_up(&fake).await;
    let before = fake.resource_versions();
    let (spec, objects) = attaching(&lab, "mine", "http://127.0.0.1:3000");

    let report = bounded(attach(&fake.cluster, &spec, &objects))
        .await
        .expect("attached");
    assert_eq!(report.objects.len(), 4);
    let log = fake.log();
    assert_eq!(log[0].line(), "GET /api/v1/namespaces/fedilab-main");
    let patches: Vec<String> = log[1..].iter().map(|r| r.line()).collect();
    let expected: Vec<String> = objects
        .objects
        .iter()
        .map(|o| {
            format!(
                "PATCH {}?&force=true&fieldManager=fedilab",
                object_path(o.api_version(), o.kind(), o.namespace(), o.name())
            )
        })
        .collect();
    assert_eq!(patches, expected);
    assert!(
        log[1..]
            .iter()
            .all(|r| r.content_type.as_deref() == Some(APPLY))
    );
    let slice = fake
        .object("endpointslices", Some("fedilab-main"), "mine-inspector")
        .expect("the EndpointSlice");
    assert_eq!(slice["endpoints"][0]["addresses"][0], "192.0.2.10");
    assert_eq!(slice["ports"][0]["port"], 8480);
    assert_eq!(fake.count_labelled(names::INSTANCE_KEY, "mine"), 4);

    fake.clear_log();
    let removed = bounded(detach(&fake.cluster, &lab.name, &spec.instances[0].name))
        .await
        .expect("detached");
    let mut kinds: Vec<&str> = removed.iter().map(|o| o.kind.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["EndpointSlice", "Ingress", "Secret", "Service"]);
    let deletes: Vec<String> = fake
        .log()
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        deletes,
        [
            "/apis/networking.k8s.io/v1/namespaces/fedilab-main/ingresses/mine",
            "/apis/discovery.k8s.io/v1/namespaces/fedilab-main/endpointslices/mine-inspector",
            "/api/v1/namespaces/fedilab-main/services/mine-inspector",
            "/api/v1/namespaces/fedilab-main/secrets/mine-tls",
        ]
    );
    assert_eq!(fake.count_labelled(names::INSTANCE_KEY, "mine"), 0);
    assert_eq!(
        fake.resource_versions(),
        before,
        "the lab's own objects are as before attach"
    );

    // Detaching again finds nothing and is fine.
    let again = bounded(detach(&fake.cluster, &lab.name, &spec.instances[0].name))
        .await
        .expect("detached");
    assert!(again.is_empty());
}

#[tokio::test]
async fn attach_to_a_lab_that_is_not_up_says_to_run_up() {
    let fake = Fake::start(Behaviour::default());
    let lab = spec("main", "fediverse.local", 1);
    let (spec, objects) = attaching(&lab, "mine", "http://127.0.0.1:3000");
    let err = bounded(attach(&fake.cluster, &spec, &objects))
        .await
        .expect_err("no lab");
    assert!(matches!(err, MemberError::NoLab { .. }), "{err:?}");
    assert!(err.to_string().contains("fedilab up --lab main"), "{err}");
    assert!(fake.log().iter().all(|r| r.method == "GET"));
}
