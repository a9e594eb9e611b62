//! A lab whose profile has `inspector.faults`: the state `up` saves from
//! it carries the rules, and the inspector `fedilab serve` starts has them
//! in force (seen through its API, and on a request through its proxy); a
//! reload replaces them when the profile's rules changed, keeping rules
//! added through the API.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use fedilab_inspector::{RuleSpec, client};
use fedilab_profile::{LabSpec, Overrides};
use fedilab_serve::{RunError, Serving};
use fedilab_state::{LabDir, LabState, ServeSettings, StoredUpstream};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(10);

const PROFILE: &str = r#"
name: faulty
instances: [{}, {}]
inspector:
  faults:
    - match: { host: mastodon2, method: GET }
      action: { status: 503, retry_after: 7 }
    - match: { path_prefix: /inbox, activity: Create, count: 2 }
      action: { delay_ms: 250 }
"#;

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// The state `up` would save for `PROFILE`, served on loopback ports the
/// kernel picks, with mastodon2 routed to a port where nothing listens
/// (a rule that answers itself never forwards).
fn state() -> LabState {
    let spec = LabSpec::from_yaml(PROFILE, "faulty.yaml", &Overrides::default()).expect("profile");
    let mut state = LabState::from_spec(&spec, Some([127, 0, 0, 1].into()));
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    state.serve = Some(ServeSettings {
        dns: any,
        proxy: Some(any),
        ui: Some(any),
    });
    state.instances[1].upstreams = vec![StoredUpstream {
        path_prefix: "/".to_owned(),
        url: "http://127.0.0.1:9".parse().expect("url"),
    }];
    state
}

/// `GET /users/bob` with `Host: mastodon2.fediverse.local` through the
/// proxy; the raw answer.
async fn get_through(proxy: SocketAddr) -> String {
    within("a request through the proxy", async {
        let mut s = TcpStream::connect(proxy).await.expect("connect");
        s.write_all(
            b"GET /users/bob HTTP/1.1\r\nhost: mastodon2.fediverse.local\r\nconnection: close\r\n\r\n",
        )
        .await
        .expect("write");
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.expect("read");
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
}

/// The rules the API lists, as specs, with their ids.
async fn rules(ui: SocketAddr) -> Vec<(u64, RuleSpec)> {
    let list = within("GET /api/faults", client::faults(ui, LIMIT))
        .await
        .expect("faults");
    list.rules
        .into_iter()
        .map(|r| {
            (
                r.id,
                RuleSpec {
                    matcher: r.matcher,
                    action: r.action,
                },
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_with_the_profiles_fault_rules_and_a_reload_replaces_them() {
    let data = tempfile::tempdir().expect("tempdir");
    let state = state();
    assert_eq!(state.faults.len(), 2, "lab.json carries the rules");
    let lab = LabDir::new(data.path(), &state.lab);
    lab.save_state(&state).expect("save");
    let saved = std::fs::read_to_string(lab.path().join("lab.json")).expect("lab.json");
    assert!(saved.contains(r#""retry_after": 7"#), "{saved}");

    let mut serving = within("serve start", Serving::start(&lab))
        .await
        .expect("serve starts");
    let addresses = serving.info().addresses;
    let (ui, proxy) = (addresses.ui.expect("ui"), addresses.proxy.expect("proxy"));

    let listed = rules(ui).await;
    let specs: Vec<&RuleSpec> = listed.iter().map(|(_, r)| r).collect();
    assert_eq!(specs, state.faults.iter().collect::<Vec<_>>());
    let changes = within("GET /api/faults", client::faults(ui, LIMIT))
        .await
        .expect("faults")
        .changes;
    assert_eq!(
        changes.len(),
        2,
        "each rule is on the timeline: {changes:?}"
    );

    // In force: the 503 is the rule's, not the dead upstream's 502.
    let answer = get_through(proxy).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 7"),
        "{answer}"
    );

    // A rule from the API, then the profile's rules change: the old
    // profile rules go, the new one comes, the API's stays.
    let api_rule: RuleSpec = "host=mastodon1,reset".parse().expect("rule");
    let added = within("POST /api/faults", client::add_fault(ui, &api_rule, LIMIT))
        .await
        .expect("add");
    let mut changed = state.clone();
    changed.faults = vec!["activity=Accept(Follow),duplicate".parse().expect("rule")];
    lab.save_state(&changed).expect("save");
    let report = serving.reload().expect("reload");
    assert_eq!(report.faults_replaced, Some(1));
    let after: Vec<RuleSpec> = rules(ui).await.into_iter().map(|(_, r)| r).collect();
    assert_eq!(after, [api_rule.clone(), changed.faults[0].clone()]);
    assert!(
        rules(ui).await.iter().any(|(id, _)| *id == added.id),
        "the API's rule keeps its id"
    );

    // Unchanged rules: a reload leaves the rules alone.
    let report = serving.reload().expect("reload");
    assert_eq!(report.faults_replaced, None);
    assert_eq!(rules(ui).await.len(), 2);

    // A rule that cannot be applied (lab.json edited by hand): the reload
    // fails naming it, and the rules in force stay.
    let mut broken = changed.clone();
    broken.faults.push(RuleSpec::default());
    lab.save_state(&broken).expect("save");
    let err = serving.reload().expect_err("an invalid rule");
    assert!(
        matches!(
            &err,
            RunError::Inspector(fedilab_inspector::StartError::Fault { index: 1, .. })
        ),
        "{err:?}"
    );
    assert_eq!(rules(ui).await.len(), 2);

    within("serve stop", serving.stop()).await.expect("stop");
}
