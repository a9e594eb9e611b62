//! The API's documents as types: what the inspector serves parses as the
//! types of `api_types` (the list through `client`), and `API.md` names
//! every field they send.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use fedilab_inspector::analysis::{Kind, Verdict};
use fedilab_inspector::api_types::{
    ApiError, ExchangeDetail, ExchangeList, FaultList, ReplayAnswer, ServerList, StatsView,
};
use fedilab_inspector::client;
use fedilab_inspector::fault::RuleView;
use fedilab_inspector::signature::ProblemCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

const API_MD: &str = include_str!("../API.md");

/// Every object key in `v`, except inside bodies' parsed `json` (the
/// recorded documents, not the API's fields).
fn keys(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                out.insert(k.clone());
                if k != "json" {
                    keys(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
        _ => {}
    }
}

/// `path`'s answer as `T`, and the keys `T` sends.
async fn fetch<T: DeserializeOwned + serde::Serialize>(
    lab: &Lab,
    path: &str,
    out: &mut BTreeSet<String>,
) -> T {
    let reply = lab.api("GET", path).await;
    let typed: T = serde_json::from_slice(&reply.body).expect(path);
    keys(&serde_json::to_value(&typed).expect("serialises"), out);
    typed
}

fn undocumented(fields: &BTreeSet<String>) -> Vec<&String> {
    fields
        .iter()
        .filter(|f| !API_MD.contains(&format!("\"{f}\"")) && !API_MD.contains(&format!("`{f}`")))
        .collect()
}

#[tokio::test]
async fn every_document_parses_as_its_type_and_api_md_names_every_field() {
    let mut lab = lab(|_| {}).await;
    let create = lab.post_signed_create(ALICE_KEY, 1).await.exchange().id;
    ws_echo(lab.proxy(), "hello").await;
    let upgraded = lab.next_record().await.exchange().id;

    let mut fields = BTreeSet::new();
    let list = within(
        "the client",
        client::exchanges(lab.ui(), "all=1", Duration::from_secs(5)),
    )
    .await
    .expect("the list parses as an ExchangeList");
    assert_eq!(
        list.exchanges.iter().map(|x| x.id).collect::<Vec<_>>(),
        [create, upgraded]
    );
    assert_eq!(list.last_id, Some(upgraded));
    keys(&serde_json::to_value(&list).expect("json"), &mut fields);

    let detail: ExchangeDetail =
        fetch(&lab, &format!("/api/exchanges/{create}"), &mut fields).await;
    assert_eq!(detail.summary.activity.as_deref(), Some("Create(Note)"));
    assert!(detail.analysis.signature.is_some());
    let ws: ExchangeDetail = fetch(&lab, &format!("/api/exchanges/{upgraded}"), &mut fields).await;
    assert!(ws.summary.upgrade.is_some());
    let stats: StatsView = fetch(&lab, "/api/stats", &mut fields).await;
    assert_eq!(stats.stats.count, 2);
    let servers: ServerList = fetch(&lab, "/api/servers", &mut fields).await;
    assert!(!servers.servers.is_empty());
    let missing: ApiError = fetch(&lab, "/api/exchanges/999", &mut fields).await;
    assert!(missing.error.contains("999"));
    // Fault rules, a marked exchange, replays (plain and edited).
    let rule = lab
        .api_json(
            "POST",
            "/api/faults",
            r#"{"match": {"host": "mastodon2", "activity": "Create", "count": 1},
                "action": {"status": 503, "body": "busy", "retry_after": 5}}"#,
        )
        .await;
    let rule: RuleView = serde_json::from_slice(&rule.body).expect("a RuleView");
    keys(&serde_json::to_value(&rule).expect("json"), &mut fields);
    let faulted = lab.post_signed_create(ALICE_KEY, 2).await.exchange().id;
    let replay = lab
        .api("POST", &format!("/api/exchanges/{create}/replay"))
        .await;
    let replay: ReplayAnswer = serde_json::from_slice(&replay.body).expect("a ReplayAnswer");
    keys(&serde_json::to_value(&replay).expect("json"), &mut fields);
    let edited = lab
        .api_json(
            "POST",
            &format!("/api/exchanges/{create}/replay"),
            r#"{"body": "{}", "headers": {"x-a": "b"}}"#,
        )
        .await;
    let edited: ReplayAnswer = serde_json::from_slice(&edited.body).expect("a ReplayAnswer");
    let faults: FaultList = fetch(&lab, "/api/faults", &mut fields).await;
    assert_eq!(faults.rules.len(), 1);
    let marked: ExchangeList = fetch(&lab, "/api/exchanges?all=1", &mut fields).await;
    let by_id = |id: u64| {
        marked
            .exchanges
            .iter()
            .find(|x| x.id == id)
            .expect("listed")
    };
    assert_eq!(
        by_id(faulted).marks.fault.as_ref().map(|f| f.rule),
        Some(rule.id)
    );
    assert_eq!(by_id(replay.id).marks.replay_of, Some(create));
    assert!(by_id(edited.id).marks.edited);

    // A text body, its parsed JSON, and a binary one.
    for optional in ["text", "json", "base64"] {
        fields.insert(optional.to_owned());
    }

    assert!(fields.len() > 60, "{fields:?}");
    assert_eq!(undocumented(&fields), Vec::<&String>::new());
}

#[test]
fn api_names_match_serde_names() {
    let name = |v: Value| v.as_str().map(str::to_owned).expect("a string");
    for kind in [
        Kind::InboxPost,
        Kind::ActorFetch,
        Kind::ObjectFetch,
        Kind::Webfinger,
        Kind::Nodeinfo,
        Kind::Other,
    ] {
        assert_eq!(name(serde_json::json!(kind)), kind.as_str());
        assert!(API_MD.contains(&format!("`{}`", kind.as_str())));
    }
    for verdict in [
        Verdict::Unsigned,
        Verdict::Valid,
        Verdict::Invalid,
        Verdict::Unverifiable,
    ] {
        assert_eq!(name(serde_json::json!(verdict)), verdict.as_str());
        assert!(API_MD.contains(&format!("`{}`", verdict.as_str())));
    }
    use ProblemCode as P;
    for code in [
        P::Malformed,
        P::UnsupportedAlgorithm,
        P::UnsupportedComponent,
        P::MissingComponent,
        P::DigestMismatch,
        P::DigestMissing,
        P::DigestNotSigned,
        P::DateNotSigned,
        P::DateStale,
        P::DateInFuture,
        P::Expired,
        P::TargetNotSigned,
        P::BodyNotCaptured,
        P::KeyHostUnknown,
        P::KeyFetchFailed,
        P::KeyInvalid,
        P::BadSignature,
        P::ActorMismatch,
    ] {
        assert_eq!(name(serde_json::json!(code)), code.as_str());
        assert!(
            API_MD.contains(&format!("| `{}` |", code.as_str())),
            "{code:?} in API.md's table"
        );
    }
}
