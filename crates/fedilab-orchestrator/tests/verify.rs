//! `verify` against the fake API server: the check pods it creates (method,
//! path, body essentials), the logs it reads, and that it deletes every
//! pod whether checks pass, fail, time out or the run is cancelled.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Behaviour, Fake, bounded, spec};
use fedilab_orchestrator::{VerifyError, VerifyOptions, VerifyRun, verify};
use fedilab_verify::{CheckId, Outcome, PlanInputs, VerifyPlan, plan};
use serde_json::json;

const NS: &str = "fedilab-main";
const PODS: [&str; 5] = [
    "verify-egress-mastodon1",
    "verify-names-mastodon1",
    "verify-trust-mastodon1",
    "verify-trust-mastodon2",
    "verify-federation-mastodon1-to-mastodon2",
];

fn fast() -> VerifyOptions {
    VerifyOptions {
        pod_timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(5),
        host_timeout: Duration::from_millis(200),
    }
}

/// Runs every check of [`the_plan`] with nothing cancelling it.
async fn run_to_the_end(fake: &Fake) -> VerifyRun {
    let (spec, plan) = the_plan();
    bounded(verify(
        &fake.cluster,
        &spec,
        &plan,
        &fast(),
        std::future::pending(),
    ))
    .await
    .expect("ran")
}

fn the_plan() -> (fedilab_profile::LabSpec, VerifyPlan) {
    let spec = spec("main", "fediverse.local", 2);
    // No host side recorded: host steps are reported, not attempted.
    let plan = plan(&spec, &PlanInputs::new(None, "n0nce"));
    (spec, plan)
}

fn passing_logs() -> BTreeMap<String, (String, i32, String)> {
    let ok = |log: &str| ("Succeeded".to_owned(), 0, log.to_owned());
    let m = |n: u8| format!("mastodon{n}.fediverse.local");
    let https = |host: String| {
        format!(
            "{{\"probe\":\"https\",\"host\":\"{host}\",\"bundle\":\"lab\",\"status\":200,\"verify_error\":false,\"detail\":\"HTTP 200\"}}\n\
             {{\"probe\":\"https\",\"host\":\"{host}\",\"bundle\":\"system\",\"status\":null,\"verify_error\":true,\"detail\":\"certificate verify failed\"}}"
        )
    };
    BTreeMap::from([
        (
            PODS[0].to_owned(),
            ok(concat!(
                r#"{"probe":"blocked_tcp","target":"1.1.1.1:443","connected":false,"detail":"timed out"}"#,
                "\n",
                r#"{"probe":"blocked_tcp","target":"9.9.9.9:443","connected":false,"detail":"timed out"}"#,
                "\n",
                r#"{"probe":"blocked_dns","target":"8.8.8.8:53","connected":false,"detail":"no answer"}"#,
                "\n",
                r#"{"probe":"allowed_tcp","target":"mastodon2-web.fedilab-main.svc.cluster.local:3000","connected":true,"detail":"connected"}"#
            )),
        ),
        (
            PODS[1].to_owned(),
            ok(&format!(
                "{{\"probe\":\"resolve\",\"host\":\"{}\",\"addresses\":[\"10.43.0.20\"],\"expected\":\"10.43.0.20\",\"detail\":\"10.43.0.20\"}}\n\
                 {{\"probe\":\"resolve\",\"host\":\"{}\",\"addresses\":[\"10.43.0.20\"],\"expected\":\"10.43.0.20\",\"detail\":\"10.43.0.20\"}}",
                m(1),
                m(2)
            )),
        ),
        (PODS[2].to_owned(), ok(&https(m(2)))),
        (PODS[3].to_owned(), ok(&https(m(1)))),
        (
            PODS[4].to_owned(),
            ok(concat!(
                r#"{"step":"env","ok":true,"allowed_private_addresses":"10.42.0.0/15"}"#,
                "\n",
                r#"{"step":"resolve","ok":true,"detail":"found"}"#,
                "\n",
                r#"{"step":"follow","ok":true,"detail":"ok"}"#,
                "\n",
                r#"{"step":"accepted","ok":true,"detail":"following"}"#,
                "\n",
                r#"{"step":"post","ok":true,"detail":"posted"}"#,
                "\n",
                r#"{"step":"delivered","ok":true,"detail":"arrived"}"#
            )),
        ),
    ])
}

fn assert_all_deleted(fake: &Fake) {
    let log = fake.log();
    for pod in PODS {
        let path = format!("/api/v1/namespaces/{NS}/pods/{pod}");
        assert!(
            log.iter()
                .any(|r| r.method == "DELETE" && r.path.starts_with(&path)),
            "{pod} deleted"
        );
        assert_eq!(fake.object("pods", Some(NS), pod), None, "{pod} gone");
    }
}

#[tokio::test]
async fn creates_the_pods_reads_their_logs_and_deletes_them() {
    // k3s's Traefik Service is seeded (10.43.0.20): the names pod gets it.
    let fake = Fake::start(Behaviour {
        check_pods: passing_logs(),
        ..Behaviour::default()
    });
    let run = run_to_the_end(&fake).await;
    let outcome = |id| {
        run.report
            .checks
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.outcome)
    };
    assert_eq!(
        outcome(CheckId::Egress),
        Some(Outcome::Pass),
        "{:#?}",
        run.report
    );
    assert_eq!(
        outcome(CheckId::Trust),
        Some(Outcome::Pass),
        "{:#?}",
        run.report
    );
    // The pods passed, but no host side is recorded: names and federation
    // say `fedilab serve` is not running.
    for id in [CheckId::Names, CheckId::Federation] {
        let c = run
            .report
            .checks
            .iter()
            .find(|c| c.id == id)
            .expect("check");
        assert_eq!(c.outcome, Outcome::Fail);
        assert!(
            c.explanation
                .as_deref()
                .unwrap_or("")
                .contains("fedilab serve"),
            "{c:#?}"
        );
    }
    assert!(!run.report.passed());
    assert!(run.not_deleted.is_empty());

    let log = fake.log();
    assert_eq!(
        log[0].line(),
        format!(
            "GET /api/v1/namespaces/{NS}/pods?&labelSelector=app.kubernetes.io/managed-by=fedilab,fedilab.dev/lab=main,fedilab.dev/verify"
        )
    );
    assert_eq!(
        log[1].line(),
        "GET /api/v1/namespaces/kube-system/services/traefik"
    );
    let creates: Vec<_> = log.iter().filter(|r| r.method == "POST").collect();
    assert_eq!(creates.len(), PODS.len());
    for request in &creates {
        let path = request.path.trim_end_matches('?');
        assert_eq!(path, format!("/api/v1/namespaces/{NS}/pods"));
        let body = request.body.as_ref().expect("a pod");
        let name = body["metadata"]["name"].as_str().expect("name");
        assert!(PODS.contains(&name), "{name}");
        let labels = &body["metadata"]["labels"];
        assert_eq!(labels["fedilab.dev/lab"], "main");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "fedilab");
        assert!(labels["fedilab.dev/instance"].is_string());
        assert!(labels["fedilab.dev/verify"].is_string());
        let pod = &body["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert_eq!(pod["initContainers"][0]["name"], "trust-bundle");
        let c = &pod["containers"][0];
        assert_eq!(c["name"], "check");
        assert_eq!(c["image"], "ghcr.io/mastodon/mastodon:v4.5.18");
        assert_eq!(c["command"][0], "ruby");
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
        // The instance's environment, so SSL_CERT_FILE is the lab bundle.
        assert!(c["envFrom"][0]["configMapRef"]["name"].is_string());
    }
    let names_pod = creates
        .iter()
        .find_map(|r| r.body.as_ref().filter(|b| b["metadata"]["name"] == PODS[1]))
        .expect("names pod");
    let env = names_pod["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env");
    assert!(env.contains(&json!({"name": "FEDILAB_TRAEFIK_IP", "value": "10.43.0.20"})));
    let federation = creates
        .iter()
        .find_map(|r| r.body.as_ref().filter(|b| b["metadata"]["name"] == PODS[4]))
        .expect("federation pod");
    let env = federation["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env");
    assert!(
        env.contains(&json!({"name": "FEDILAB_TO_TOKEN", "valueFrom":
        {"secretKeyRef": {"name": "mastodon2-admin", "key": "api-token"}}}))
    );
    for pod in PODS {
        assert!(
            log.iter().any(|r| r.line()
                == format!("GET /api/v1/namespaces/{NS}/pods/{pod}/log?&container=check")),
            "{pod}'s log read"
        );
    }
    assert_all_deleted(&fake);
}

#[tokio::test]
async fn a_failing_check_still_deletes_every_pod() {
    let mut pods = passing_logs();
    pods.insert(
        PODS[0].to_owned(),
        (
            "Succeeded".to_owned(),
            0,
            r#"{"probe":"blocked_tcp","target":"1.1.1.1:443","connected":true,"detail":"connected"}"#
                .to_owned(),
        ),
    );
    pods.insert(
        PODS[2].to_owned(),
        ("Failed".to_owned(), 1, "trust.rb: boom".to_owned()),
    );
    let fake = Fake::start(Behaviour {
        check_pods: pods,
        ..Behaviour::default()
    });
    let run = run_to_the_end(&fake).await;
    let egress = &run.report.checks[0];
    assert_eq!(egress.outcome, Outcome::Fail);
    assert!(
        egress
            .explanation
            .as_deref()
            .unwrap_or("")
            .contains("--disable-network-policy")
    );
    assert_eq!(run.report.checks[2].outcome, Outcome::Fail);
    assert_all_deleted(&fake);
}

#[tokio::test]
async fn pods_that_never_finish_time_out_and_are_deleted() {
    let fake = Fake::start(Behaviour::default()); // every pod stays Pending
    let (spec, plan) = the_plan();
    let options = VerifyOptions {
        pod_timeout: Duration::from_millis(100),
        ..fast()
    };
    let run = bounded(verify(
        &fake.cluster,
        &spec,
        &plan,
        &options,
        std::future::pending(),
    ))
    .await
    .expect("ran");
    for check in &run.report.checks {
        assert_eq!(check.outcome, Outcome::Fail, "{check:#?}");
    }
    assert!(
        run.report.checks[0]
            .explanation
            .as_deref()
            .unwrap_or("")
            .contains("verify-egress-mastodon1")
    );
    assert_all_deleted(&fake);
}

#[tokio::test]
async fn cancelling_deletes_the_pods() {
    let fake = Fake::start(Behaviour::default());
    let (spec, plan) = the_plan();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let cancel = async move {
        let _ = rx.await;
    };
    let state = fake.state.clone();
    let trigger = tokio::spawn(async move {
        // Cancel once every pod exists.
        loop {
            let created = state
                .lock()
                .map(|s| s.log.iter().filter(|r| r.method == "POST").count())
                .unwrap_or(0);
            if created == PODS.len() {
                let _ = tx.send(());
                return;
            }
            tokio::task::yield_now().await;
        }
    });
    let err = bounded(verify(&fake.cluster, &spec, &plan, &fast(), cancel))
        .await
        .expect_err("interrupted");
    assert!(matches!(err, VerifyError::Interrupted { ref not_deleted } if not_deleted.is_empty()));
    trigger.await.expect("trigger");
    assert_all_deleted(&fake);
}

#[tokio::test]
async fn leftovers_of_an_interrupted_run_are_removed_first() {
    let fake = Fake::start(Behaviour {
        check_pods: passing_logs(),
        ..Behaviour::default()
    });
    fake.seed(
        "pods",
        Some(NS),
        PODS[0],
        "create",
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": PODS[0], "namespace": NS, "labels": {
                   "app.kubernetes.io/managed-by": "fedilab", "fedilab.dev/lab": "main",
                   "fedilab.dev/verify": "egress"}}}),
    );
    let (spec, plan) = the_plan();
    bounded(verify(
        &fake.cluster,
        &spec,
        &plan,
        &fast(),
        std::future::pending(),
    ))
    .await
    .expect("ran");
    let lines: Vec<String> = fake.log().iter().map(|r| r.line()).collect();
    assert_eq!(
        lines[1],
        format!("DELETE /api/v1/namespaces/{NS}/pods/{}", PODS[0])
    );
    assert_eq!(
        fake.log()[1]
            .body
            .as_ref()
            .map(|b| b["gracePeriodSeconds"].clone()),
        Some(json!(0)),
        "check pods go without a grace period"
    );
    // The new pod has the same name: wait until the old one is gone.
    assert_eq!(lines[2], lines[0], "listed again until no leftover remains");
    assert_all_deleted(&fake);
}

/// Issue 14: a mixed lab's federation pods, one per ordered pair of kinds.
/// A Mastodon A's pod runs as today (its image and environment); a Misskey
/// or GoToSocial A's pod is a client in the Mastodon image, with the lab
/// trust bundle and no instance environment, labelled for its instance.
#[tokio::test]
async fn issue_14_mixed_lab_federation_pods() {
    use fedilab_profile::{InstanceCounts, InstanceKind, LabSpec, Overrides};
    let spec = LabSpec::from_yaml(
        fedilab_profile::DEFAULT_PROFILE_YAML,
        "test",
        &Overrides {
            instances: Some(InstanceCounts::PerKind(vec![
                (InstanceKind::Mastodon, 1),
                (InstanceKind::Misskey, 1),
                (InstanceKind::Gotosocial, 1),
            ])),
            ..Overrides::default()
        },
    )
    .expect("valid");
    let plan = plan(&spec, &PlanInputs::new(None, "n0nce"));
    let fake = Fake::start(Behaviour::default()); // every pod stays Pending
    let options = VerifyOptions {
        pod_timeout: Duration::from_millis(100),
        ..fast()
    };
    let run = bounded(verify(
        &fake.cluster,
        &spec,
        &plan,
        &options,
        std::future::pending(),
    ))
    .await
    .expect("ran");
    let federation = run
        .report
        .checks
        .iter()
        .find(|c| c.id == CheckId::Federation)
        .expect("federation");
    assert_eq!(federation.outcome, Outcome::Fail);

    let log = fake.log();
    let created: BTreeMap<String, serde_json::Value> = log
        .iter()
        .filter(|r| r.method == "POST")
        .filter_map(|r| r.body.clone())
        .filter_map(|b| Some((b["metadata"]["name"].as_str()?.to_owned(), b)))
        .collect();
    let pairs = [
        "mastodon1-to-misskey1",
        "misskey1-to-mastodon1",
        "mastodon1-to-gts1",
        "gts1-to-mastodon1",
        "misskey1-to-gts1",
        "gts1-to-misskey1",
    ];
    let names: Vec<&str> = created.keys().map(String::as_str).collect();
    for pair in pairs {
        let pod = format!("verify-federation-{pair}");
        assert!(names.contains(&pod.as_str()), "{pod} in {names:?}");
    }
    assert_eq!(created.len(), 3 + pairs.len(), "{names:?}");

    // A Mastodon A: its own environment, as before.
    let from_mastodon = &created["verify-federation-mastodon1-to-misskey1"];
    let c = &from_mastodon["spec"]["containers"][0];
    assert_eq!(
        c["envFrom"][0]["configMapRef"]["name"], "mastodon1-env",
        "{c:#}"
    );
    assert_eq!(
        from_mastodon["metadata"]["labels"]["app.kubernetes.io/name"],
        "mastodon"
    );

    // A Misskey or GoToSocial A: a client in the Mastodon image.
    for (pod, instance, kind) in [
        ("verify-federation-misskey1-to-gts1", "misskey1", "misskey"),
        ("verify-federation-gts1-to-mastodon1", "gts1", "gotosocial"),
    ] {
        let body = &created[pod];
        let labels = &body["metadata"]["labels"];
        assert_eq!(labels["fedilab.dev/instance"], instance);
        assert_eq!(labels["app.kubernetes.io/name"], kind);
        assert_eq!(labels["fedilab.dev/verify"], "federation");
        let spec = &body["spec"];
        assert_eq!(spec["restartPolicy"], "Never");
        assert_eq!(spec["securityContext"]["runAsUser"], 991);
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
        assert_eq!(spec["automountServiceAccountToken"], false);
        let init = &spec["initContainers"][0];
        assert_eq!(init["name"], "trust-bundle");
        assert_eq!(init["image"], "ghcr.io/mastodon/mastodon:v4.5.18");
        let volumes: Vec<&str> = spec["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .filter_map(|v| v["name"].as_str())
            .collect();
        assert_eq!(volumes, ["trust", "lab-ca"]);
        let c = &spec["containers"][0];
        assert_eq!(c["name"], "check");
        assert_eq!(c["image"], "ghcr.io/mastodon/mastodon:v4.5.18");
        assert_eq!(c["command"][0], "ruby");
        assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
        assert!(c.get("envFrom").is_none(), "no instance environment: {c:#}");
        let env = c["env"].as_array().expect("env");
        assert_eq!(
            env[0],
            json!({"name": "SSL_CERT_FILE", "value": "/etc/fedilab/trust/ca-certificates.crt"})
        );
        assert!(
            env.contains(&json!({"name": "FEDILAB_FROM_TOKEN", "valueFrom":
            {"secretKeyRef": {"name": format!("{instance}-admin"), "key": "api-token"}}}))
        );
        assert!(env.contains(&json!({"name": "FEDILAB_FROM_KIND", "value": kind})));
        let mounts: Vec<&str> = c["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .filter_map(|m| m["mountPath"].as_str())
            .collect();
        assert_eq!(mounts, ["/etc/fedilab/trust", "/etc/fedilab/ca"]);
    }
    for pod in created.keys() {
        assert_eq!(fake.object("pods", Some(NS), pod), None, "{pod} gone");
    }
}
