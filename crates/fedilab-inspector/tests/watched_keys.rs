//! Keys learned by watching, end to end: an upstream that refuses unsigned
//! fetches of its actors (401, as Mastodon with AUTHORIZED_FETCH and
//! GoToSocial do) still gets `valid` verdicts once its actor document has
//! crossed the proxy; a rotated key is used from the rotation on; Ed25519
//! (RFC 9421 `alg="ed25519"` and FEP-8b32 proofs) verifies against a
//! Multikey learned the same way, with keys generated here by ring.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use fedilab_inspector::signature::{ProblemCode, jcs};
use fedilab_inspector::{InspectorConfig, KeySource, ProofStatus, Verdict, Verification};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use rsa::RsaPublicKey;
use rsa::pkcs8::{EncodePublicKey as _, LineEnding};
use sha2::{Digest as _, Sha256};
use tokio::net::TcpListener;

const ED_KEY_ID: &str = "https://mastodon1.fediverse.local/users/alice#ed25519-key";

/// What the strict upstream serves as alice's keys right now.
#[derive(Default)]
struct Keys {
    pem: String,
    multikey: Option<String>,
}

type Shared = Arc<Mutex<Keys>>;

async fn strict_actor(
    State(keys): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> impl IntoResponse {
    if !headers.contains_key("signature") {
        return (
            StatusCode::UNAUTHORIZED,
            [("content-type", "text/plain")],
            String::new(),
        );
    }
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("unknown");
    let id = format!("https://{host}/users/{name}");
    let keys = keys.lock().expect("keys");
    let mut doc = serde_json::json!({
        "@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"],
        "id": id,
        "type": "Person",
        "inbox": format!("{id}/inbox"),
        "publicKey": { "id": format!("{id}#main-key"), "owner": id, "publicKeyPem": keys.pem },
    });
    if let Some(mk) = &keys.multikey {
        doc["assertionMethod"] = serde_json::json!([{
            "id": format!("{id}#ed25519-key"),
            "type": "Multikey",
            "controller": id,
            "publicKeyMultibase": mk,
        }]);
    }
    (
        StatusCode::OK,
        [("content-type", "application/activity+json")],
        doc.to_string(),
    )
}

/// An upstream that answers 401 to unsigned GETs of actors.
async fn strict_upstream(keys: Shared) -> SocketAddr {
    let app = Router::new()
        .route("/users/{name}", get(strict_actor))
        .route(
            "/users/{name}/inbox",
            post(|| async { StatusCode::ACCEPTED }),
        )
        .with_state(keys);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

async fn strict_lab(keys: Shared) -> Lab {
    let upstream = strict_upstream(keys).await;
    let config = InspectorConfig {
        routes: vec![route(M1, upstream), route(M2, upstream)],
        ..InspectorConfig::default()
    };
    start_inspector(config, upstream).await
}

fn public_pem(private_pem: &str) -> String {
    RsaPublicKey::from(&key(private_pem))
        .to_public_key_pem(LineEnding::LF)
        .expect("pem")
}

/// Mastodon 2's signed fetch of alice's actor, through the proxy (the
/// upstream only checks that a signature is there).
async fn signed_actor_fetch(lab: &mut Lab) {
    let headers = vec![
        ("accept".to_owned(), "application/activity+json".to_owned()),
        (
            "signature".to_owned(),
            "keyId=\"https://mastodon2.fediverse.local/actor#main-key\",headers=\"(request-target) host date\",signature=\"AA==\"".to_owned(),
        ),
        ("date".to_owned(), http_date(0)),
    ];
    let reply = lab
        .send("GET", M1, "/users/alice", &headers, Vec::new())
        .await;
    assert_eq!(reply.status, 200);
    lab.next_record().await;
}

async fn deliver(lab: &mut Lab, headers: Vec<(String, String)>, body: Vec<u8>) -> u64 {
    let reply = lab.send("POST", M2, INBOX, &headers, body).await;
    assert_eq!(reply.status, 202);
    lab.next_record().await.exchange().id
}

async fn verdict(lab: &Lab, id: u64) -> Verification {
    let entry = lab.inspector.store().get(id).expect("entry");
    let analyzer = lab.inspector.analyzer();
    (*within(
        "verification",
        analyzer.verification(entry.exchange(), entry.cache()),
    )
    .await)
        .clone()
}

fn codes(v: &Verification) -> Vec<ProblemCode> {
    v.problems.iter().map(|p| p.code).collect()
}

#[tokio::test]
async fn a_server_refusing_unsigned_fetches_gets_valid_verdicts_from_watched_keys() {
    let keys: Shared = Arc::new(Mutex::new(Keys {
        pem: ALICE_PUB.to_owned(),
        multikey: None,
    }));
    let mut lab = strict_lab(Arc::clone(&keys)).await;
    let alice = key(ALICE_KEY);

    // Nothing watched yet: the inspector's own fetch gets the 401.
    let body = create_note(1);
    let first = deliver(&mut lab, inbox_cavage(&alice, &body).headers(), body).await;
    let v = verdict(&lab, first).await;
    assert_eq!(v.verdict, Verdict::Unverifiable);
    assert_eq!(codes(&v), [ProblemCode::KeyFetchFailed], "{:?}", v.problems);
    assert!(v.problems[0].message.contains("401"), "{:?}", v.problems);

    signed_actor_fetch(&mut lab).await;
    let body = create_note(2);
    let second = deliver(&mut lab, inbox_cavage(&alice, &body).headers(), body).await;
    let v = verdict(&lab, second).await;
    assert_eq!(v.verdict, Verdict::Valid, "{:?}", v.problems);
    assert_eq!(v.key_source, Some(KeySource::Watched));
    assert_eq!(v.key_owner.as_deref(), Some(ALICE));

    // The first one (a fetch failure is not cached) now verifies too: no
    // key was seen before it ended, so the first one seen after is used.
    let v = verdict(&lab, first).await;
    assert_eq!(v.verdict, Verdict::Valid, "{:?}", v.problems);
    assert_eq!(v.key_source, Some(KeySource::Watched));

    // The list shows where the key came from.
    let list = lab.api("GET", "/api/exchanges").await.json();
    let posted = list["exchanges"]
        .as_array()
        .expect("exchanges")
        .iter()
        .find(|x| x["id"] == second)
        .cloned()
        .expect("listed");
    assert_eq!(posted["key_source"], "watched");
}

/// Issue 14: a fetch that a server requiring signed GETs refuses because it
/// is unsigned is marked as such in the list; a signed one is not.
#[tokio::test]
async fn an_unsigned_fetch_refused_by_a_strict_server_is_marked() {
    let keys: Shared = Arc::new(Mutex::new(Keys {
        pem: ALICE_PUB.to_owned(),
        multikey: None,
    }));
    let mut lab = strict_lab(Arc::clone(&keys)).await;
    let accept = vec![("accept".to_owned(), "application/activity+json".to_owned())];
    let reply = lab
        .send("GET", M1, "/users/alice", &accept, Vec::new())
        .await;
    assert_eq!(reply.status, 401);
    let refused = lab.next_record_id().await;
    signed_actor_fetch(&mut lab).await;
    let list = lab.api("GET", "/api/exchanges").await.json();
    let rows = list["exchanges"].as_array().expect("exchanges");
    let detail = |id: u64| {
        rows.iter()
            .find(|x| x["id"] == id)
            .map(|x| x["detail"].clone())
            .expect("listed")
    };
    assert_eq!(
        detail(refused),
        "refused unsigned (401): the server requires signed fetches"
    );
    let signed = rows
        .iter()
        .find(|x| x["id"] != refused)
        .expect("the signed fetch");
    assert!(signed["detail"].is_null(), "{signed}");
}

#[tokio::test]
async fn a_rotated_key_is_used_from_the_rotation_on() {
    let keys: Shared = Arc::new(Mutex::new(Keys {
        pem: ALICE_PUB.to_owned(),
        multikey: None,
    }));
    let mut lab = strict_lab(Arc::clone(&keys)).await;
    let alice = key(ALICE_KEY);
    let mallory = key(MALLORY_KEY);

    signed_actor_fetch(&mut lab).await;
    let body = create_note(1);
    let before = deliver(&mut lab, inbox_cavage(&alice, &body).headers(), body).await;

    // Alice's server rotates her key; its new actor document crosses the
    // proxy.
    keys.lock().expect("keys").pem = public_pem(MALLORY_KEY);
    signed_actor_fetch(&mut lab).await;

    let body = create_note(2);
    let new_key = deliver(&mut lab, inbox_cavage(&mallory, &body).headers(), body).await;
    let v = verdict(&lab, new_key).await;
    assert_eq!(v.verdict, Verdict::Valid, "{:?}", v.problems);
    assert_eq!(v.key_source, Some(KeySource::Watched));

    let body = create_note(3);
    let old_key = deliver(&mut lab, inbox_cavage(&alice, &body).headers(), body).await;
    let v = verdict(&lab, old_key).await;
    assert_eq!(v.verdict, Verdict::Invalid);
    assert_eq!(codes(&v), [ProblemCode::BadSignature], "{:?}", v.problems);
    assert_eq!(v.key_source, Some(KeySource::Watched));

    // Read only now, the exchange from before the rotation keeps the old
    // key.
    let v = verdict(&lab, before).await;
    assert_eq!(v.verdict, Verdict::Valid, "{:?}", v.problems);
}

fn base58(bytes: &[u8]) -> String {
    const A: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut digits: Vec<u8> = Vec::new();
    for &b in bytes {
        let mut carry = u32::from(b);
        for d in &mut digits {
            carry += u32::from(*d) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let mut s = "1".repeat(bytes.iter().take_while(|&&b| b == 0).count());
    s.extend(digits.iter().rev().map(|&d| A[usize::from(d)] as char));
    s
}

fn ed25519_key() -> Ed25519KeyPair {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("generate");
    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key pair")
}

fn multikey(pair: &Ed25519KeyPair) -> String {
    let mut bytes = vec![0xed, 0x01];
    bytes.extend_from_slice(pair.public_key().as_ref());
    format!("z{}", base58(&bytes))
}

/// A FEP-8b32 `eddsa-jcs-2022` proof on `doc`, made here.
fn with_proof(pair: &Ed25519KeyPair, mut doc: serde_json::Value) -> serde_json::Value {
    let options = serde_json::json!({
        "type": "DataIntegrityProof",
        "cryptosuite": "eddsa-jcs-2022",
        "verificationMethod": ED_KEY_ID,
        "proofPurpose": "assertionMethod",
        "created": "2026-01-01T00:00:00Z",
    });
    let mut data = Sha256::digest(jcs::canonicalize(&options).as_bytes()).to_vec();
    data.extend_from_slice(&Sha256::digest(jcs::canonicalize(&doc).as_bytes()));
    let mut proof = options;
    proof["proofValue"] = format!("z{}", base58(pair.sign(&data).as_ref())).into();
    doc["proof"] = proof;
    doc
}

/// RFC 9421 headers with `alg="ed25519"`, signed here.
fn rfc9421_ed25519(pair: &Ed25519KeyPair, body: &[u8]) -> Vec<(String, String)> {
    let cd = format!("sha-256=:{}:", sha256_b64(body));
    let ct = "application/activity+json";
    let params = format!(
        "(\"@method\" \"@target-uri\" \"content-digest\" \"content-type\");created={};keyid=\"{ED_KEY_ID}\";alg=\"ed25519\"",
        now_secs()
    );
    let base = format!(
        "\"@method\": POST\n\"@target-uri\": http://{M2}{INBOX}\n\"content-digest\": {cd}\n\"content-type\": {ct}\n\"@signature-params\": {params}"
    );
    let sig = STANDARD.encode(pair.sign(base.as_bytes()));
    vec![
        ("content-digest".into(), cd),
        ("content-type".into(), ct.into()),
        ("signature-input".into(), format!("sig1={params}")),
        ("signature".into(), format!("sig1=:{sig}:")),
    ]
}

#[tokio::test]
async fn ed25519_signatures_and_proofs_verify_with_a_watched_multikey() {
    let pair = ed25519_key();
    let keys: Shared = Arc::new(Mutex::new(Keys {
        pem: ALICE_PUB.to_owned(),
        multikey: Some(multikey(&pair)),
    }));
    let mut lab = strict_lab(Arc::clone(&keys)).await;
    signed_actor_fetch(&mut lab).await;

    let doc: serde_json::Value = serde_json::from_slice(&create_note(1)).expect("note");
    let body = with_proof(&pair, doc.clone()).to_string().into_bytes();
    let id = deliver(&mut lab, rfc9421_ed25519(&pair, &body), body).await;
    let v = verdict(&lab, id).await;
    assert_eq!(v.verdict, Verdict::Valid, "{:?}", v.problems);
    assert_eq!(v.algorithm.as_deref(), Some("ed25519"));
    assert_eq!(v.key_source, Some(KeySource::Watched));
    assert_eq!(v.proofs.len(), 1);
    assert_eq!(v.proofs[0].suite, "eddsa-jcs-2022");
    assert_eq!(v.proofs[0].status, ProofStatus::Valid, "{:?}", v.proofs);
    assert_eq!(v.proofs[0].key_source, Some(KeySource::Watched));

    // The proof over a changed document, and a signature by another key.
    let mut changed = with_proof(&pair, doc.clone());
    changed["object"]["content"] = "<p>changed</p>".into();
    let body = changed.to_string().into_bytes();
    let other = ed25519_key();
    let id = deliver(&mut lab, rfc9421_ed25519(&other, &body), body).await;
    let v = verdict(&lab, id).await;
    assert_eq!(v.verdict, Verdict::Invalid);
    assert_eq!(codes(&v), [ProblemCode::BadSignature], "{:?}", v.problems);
    assert_eq!(v.proofs[0].status, ProofStatus::Invalid, "{:?}", v.proofs);

    // An LD signature (as Mastodon puts on relayed activities) is
    // reported, not verified.
    let mut relayed = doc;
    relayed["signature"] = serde_json::json!({
        "type": "RsaSignature2017",
        "creator": "https://mastodon1.fediverse.local/users/alice#main-key",
        "created": "2026-01-01T00:00:00Z",
        "signatureValue": "AAAA",
    });
    let body = relayed.to_string().into_bytes();
    let id = deliver(&mut lab, rfc9421_ed25519(&pair, &body), body).await;
    let v = verdict(&lab, id).await;
    assert_eq!(v.verdict, Verdict::Valid, "{:?}", v.problems);
    assert_eq!(v.proofs.len(), 1);
    assert_eq!(v.proofs[0].suite, "RsaSignature2017");
    assert_eq!(v.proofs[0].status, ProofStatus::NotVerified);
    assert!(
        v.proofs[0].message.contains("not verified"),
        "{:?}",
        v.proofs
    );
}
