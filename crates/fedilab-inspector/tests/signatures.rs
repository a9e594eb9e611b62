//! HTTP signatures end to end: requests signed here with a real RSA key
//! (draft-cavage and RFC 9421) go through the proxy; the inspector fetches
//! the actor's key through the upstream and gives its verdict.

mod common;

use common::*;
use fedilab_inspector::signature::{DigestStatus, ProblemCode, Scheme};
use fedilab_inspector::{KeySource, Kind, Verdict, Verification};

async fn deliver(
    lab: &mut Lab,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> (fedilab_inspector::Analysis, Verification) {
    let reply = lab.send("POST", M2, INBOX, &headers, body).await;
    assert_eq!(reply.status, 202);
    let entry = lab.next_record().await;
    let analyzer = lab.inspector.analyzer();
    let a = (*analyzer.analysis(entry.exchange(), entry.cache())).clone();
    let v = (*within(
        "verification",
        analyzer.verification(entry.exchange(), entry.cache()),
    )
    .await)
        .clone();
    (a, v)
}

fn codes(v: &Verification) -> Vec<ProblemCode> {
    v.problems.iter().map(|p| p.code).collect()
}

#[tokio::test]
async fn a_cavage_signed_create_note_is_valid() {
    let mut lab = lab(|_| {}).await;
    let alice = key(ALICE_KEY);
    let body = create_note(1);
    let (a, v) = deliver(
        &mut lab,
        inbox_cavage(&alice, &body).headers(),
        body.clone(),
    )
    .await;
    assert_eq!(a.kind, Kind::InboxPost);
    assert_eq!(a.activity.as_deref(), Some("Create(Note)"));
    assert_eq!(a.actor.as_deref(), Some(ALICE));
    assert_eq!(
        a.object.as_deref(),
        Some(format!("{ALICE}/statuses/1").as_str())
    );
    assert_eq!(a.from.as_deref(), Some(M1));
    let sig = a.signature.as_ref().expect("signature");
    assert_eq!(sig.scheme, Scheme::DraftCavage);
    assert_eq!(
        sig.components,
        ["(request-target)", "host", "date", "digest", "content-type"]
    );
    assert_eq!(
        sig.digest.as_ref().map(|d| d.status),
        Some(DigestStatus::Match)
    );
    assert!(sig.skew_secs.is_some_and(|s| s.abs() < 60));
    assert_eq!(v.verdict, Verdict::Valid, "{:?}", v.problems);
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!(v.key_owner.as_deref(), Some(ALICE));
    assert_eq!(v.key_source, Some(KeySource::Fetched));

    // The next verdict reuses the fetched key.
    let body = create_note(12);
    let (_, v) = deliver(&mut lab, inbox_cavage(&alice, &body).headers(), body).await;
    assert_eq!(v.verdict, Verdict::Valid, "{:?}", v.problems);
    assert_eq!(v.key_source, Some(KeySource::Cache));
}

#[tokio::test]
async fn an_hs2019_signature_is_valid() {
    let mut lab = lab(|_| {}).await;
    let alice = key(ALICE_KEY);
    let body = create_note(2);
    let mut c = inbox_cavage(&alice, &body);
    c.algorithm = "hs2019";
    let (_, v) = deliver(&mut lab, c.headers(), body.clone()).await;
    assert_eq!(v.verdict, Verdict::Valid, "{:?}", v.problems);
}

#[tokio::test]
async fn an_rfc9421_signature_is_valid() {
    let mut lab = lab(|_| {}).await;
    let alice = key(ALICE_KEY);
    let body = create_note(3);
    let headers = rfc9421_headers(&alice, ALICE_KEY_ID, M2, INBOX, &body, now_secs());
    let (a, v) = deliver(&mut lab, headers, body).await;
    let sig = a.signature.as_ref().expect("signature");
    assert_eq!(sig.scheme, Scheme::Rfc9421);
    assert_eq!(sig.label.as_deref(), Some("sig1"));
    assert_eq!(
        sig.components,
        ["@method", "@target-uri", "content-digest", "content-type"]
    );
    assert_eq!(
        sig.digest.as_ref().map(|d| d.status),
        Some(DigestStatus::Match)
    );
    assert_eq!(v.verdict, Verdict::Valid, "{:?}", v.problems);
    assert_eq!(a.activity.as_deref(), Some("Create(Note)"));
}

#[tokio::test]
async fn a_tampered_body_is_flagged_as_a_digest_mismatch() {
    let mut lab = lab(|_| {}).await;
    let alice = key(ALICE_KEY);
    let signed = create_note(4);
    let sent = String::from_utf8(signed.clone())
        .expect("utf8")
        .replace("Hello", "Hullo")
        .into_bytes();
    let (_, v) = deliver(
        &mut lab,
        inbox_cavage(&alice, &signed).headers(),
        sent.clone(),
    )
    .await;
    assert_eq!(v.verdict, Verdict::Invalid);
    assert_eq!(codes(&v), [ProblemCode::DigestMismatch], "{:?}", v.problems);
    assert_eq!(v.summary, "signature valid, body changed after signing");

    let headers = rfc9421_headers(&alice, ALICE_KEY_ID, M2, INBOX, &signed, now_secs());
    let (_, v) = deliver(&mut lab, headers, sent).await;
    assert_eq!(v.verdict, Verdict::Invalid);
    assert_eq!(codes(&v), [ProblemCode::DigestMismatch], "{:?}", v.problems);
    assert_eq!(v.summary, "signature valid, body changed after signing");
}

#[tokio::test]
async fn a_stale_date_is_flagged() {
    let mut lab = lab(|_| {}).await;
    let alice = key(ALICE_KEY);
    let body = create_note(5);
    let mut c = inbox_cavage(&alice, &body);
    c.date = http_date(13 * 3600);
    let (a, v) = deliver(&mut lab, c.headers(), body.clone()).await;
    assert_eq!(v.verdict, Verdict::Invalid);
    assert_eq!(codes(&v), [ProblemCode::DateStale], "{:?}", v.problems);
    assert!(
        v.problems[0].message.contains("13h"),
        "{}",
        v.problems[0].message
    );
    assert!(
        a.signature
            .and_then(|s| s.skew_secs)
            .is_some_and(|s| s >= 13 * 3600)
    );
    let policy = v.policy.as_deref().unwrap_or("");
    assert!(
        policy.starts_with("invalid; Mastodon rejects its date (signed 13h"),
        "{policy}"
    );

    let headers = rfc9421_headers(
        &alice,
        ALICE_KEY_ID,
        M2,
        INBOX,
        &body,
        now_secs() - 13 * 3600,
    );
    let (_, v) = deliver(&mut lab, headers, body.clone()).await;
    assert_eq!(codes(&v), [ProblemCode::DateStale], "{:?}", v.problems);

    let mut c = inbox_cavage(&alice, &body);
    c.date = http_date(-2 * 3600);
    let (_, v) = deliver(&mut lab, c.headers(), body).await;
    assert_eq!(codes(&v), [ProblemCode::DateInFuture], "{:?}", v.problems);
}

#[tokio::test]
async fn a_wrong_key_is_flagged_as_a_bad_signature() {
    let mut lab = lab(|_| {}).await;
    let mallory = key(MALLORY_KEY);
    let body = create_note(6);
    let (_, v) = deliver(
        &mut lab,
        inbox_cavage(&mallory, &body).headers(),
        body.clone(),
    )
    .await;
    assert_eq!(v.verdict, Verdict::Invalid);
    assert_eq!(codes(&v), [ProblemCode::BadSignature], "{:?}", v.problems);

    let headers = rfc9421_headers(&mallory, ALICE_KEY_ID, M2, INBOX, &body, now_secs());
    let (_, v) = deliver(&mut lab, headers, body).await;
    assert_eq!(codes(&v), [ProblemCode::BadSignature], "{:?}", v.problems);
}

#[tokio::test]
async fn keys_on_unrouted_hosts_are_unverifiable_not_invalid() {
    let mut lab = lab(|_| {}).await;
    let alice = key(ALICE_KEY);
    let body = create_note(7);
    let mut c = inbox_cavage(&alice, &body);
    c.key_id = "https://outside.example/users/x#main-key";
    let (_, v) = deliver(&mut lab, c.headers(), body).await;
    assert_eq!(v.verdict, Verdict::Unverifiable);
    assert!(
        codes(&v).contains(&ProblemCode::KeyHostUnknown),
        "{:?}",
        v.problems
    );
}

#[tokio::test]
async fn a_signed_header_that_was_changed_breaks_the_signature() {
    let mut lab = lab(|_| {}).await;
    let alice = key(ALICE_KEY);
    let body = create_note(8);
    let mut headers = inbox_cavage(&alice, &body).headers();
    for (n, v) in &mut headers {
        if n == "content-type" {
            *v = "application/ld+json".into();
        }
    }
    let (_, v) = deliver(&mut lab, headers, body).await;
    assert_eq!(codes(&v), [ProblemCode::BadSignature], "{:?}", v.problems);
}

#[tokio::test]
async fn unsigned_posts_are_reported_unsigned() {
    let mut lab = lab(|_| {}).await;
    let (a, v) = deliver(
        &mut lab,
        vec![("content-type".into(), "application/activity+json".into())],
        create_note(9),
    )
    .await;
    assert!(a.federation);
    assert_eq!(v.verdict, Verdict::Unsigned);
}

#[tokio::test]
async fn the_verdict_names_the_receivers_date_window() {
    let mut lab = lab(|_| {}).await;
    let alice = key(ALICE_KEY);
    let body = create_note(10);
    let (_, v) = deliver(
        &mut lab,
        inbox_cavage(&alice, &body).headers(),
        body.clone(),
    )
    .await;
    assert_eq!(
        v.policy.as_deref(),
        Some("valid; Mastodon accepts it; so would a server with a 1 h window")
    );
    assert!(
        v.summary.starts_with("valid; verified with rsa-sha256"),
        "{}",
        v.summary
    );

    let mut c = inbox_cavage(&alice, &body);
    c.date = http_date(3 * 3600);
    let (_, v) = deliver(&mut lab, c.headers(), body).await;
    assert_eq!(v.verdict, Verdict::Valid, "{:?}", v.problems);
    let policy = v.policy.as_deref().unwrap_or("");
    assert!(
        policy.starts_with(
            "valid; Mastodon accepts it; a server with a 1 h window would not (signed 3h00m"
        ),
        "{policy}"
    );
}

#[tokio::test]
async fn a_host_signed_with_its_port_is_named_as_the_cause() {
    let mut lab = lab(|_| {}).await;
    let alice = key(ALICE_KEY);
    let body = create_note(11);
    let with_port = format!("{M2}:443");
    let mut c = inbox_cavage(&alice, &body);
    c.host = &with_port;
    let (_, v) = deliver(&mut lab, c.headers(), body.clone()).await;
    assert_eq!(codes(&v), [ProblemCode::BadSignature], "{:?}", v.problems);
    assert!(
        v.problems[0]
            .message
            .contains("the signer signed the host with its port"),
        "{}",
        v.problems[0].message
    );

    // RFC 9421 over `@target-uri` with the port the request lacks.
    let headers = rfc9421_headers(&alice, ALICE_KEY_ID, &with_port, INBOX, &body, now_secs());
    let (_, v) = deliver(&mut lab, headers, body).await;
    assert_eq!(codes(&v), [ProblemCode::BadSignature], "{:?}", v.problems);
    assert!(
        v.problems[0].message.contains("with its port"),
        "{}",
        v.problems[0].message
    );
}

#[tokio::test]
async fn a_target_signed_with_its_fragment_is_named_as_the_cause() {
    use base64::Engine as _;
    use sha2::{Digest as _, Sha256};
    let mut lab = lab(|_| {}).await;
    let alice = key(ALICE_KEY);
    let date = http_date(0);
    // A signed fetch of the key URL, fragment and all, as a buggy signer
    // makes it; HTTP sends the path without the fragment.
    let signing = format!("(request-target): get /users/alice#main-key\nhost: {M1}\ndate: {date}");
    let sig = alice
        .sign(
            rsa::Pkcs1v15Sign::new::<Sha256>(),
            &Sha256::digest(signing.as_bytes()),
        )
        .expect("sign");
    let headers = vec![
        ("accept".to_owned(), "application/activity+json".to_owned()),
        ("date".to_owned(), date),
        (
            "signature".to_owned(),
            format!(
                "keyId=\"{ALICE_KEY_ID}\",algorithm=\"rsa-sha256\",headers=\"(request-target) host date\",signature=\"{}\"",
                base64::engine::general_purpose::STANDARD.encode(sig)
            ),
        ),
    ];
    let reply = lab
        .send("GET", M1, "/users/alice", &headers, Vec::new())
        .await;
    assert_eq!(reply.status, 200);
    let entry = lab.next_record().await;
    let v = within(
        "verification",
        lab.inspector
            .analyzer()
            .verification(entry.exchange(), entry.cache()),
    )
    .await;
    assert_eq!(codes(&v), [ProblemCode::BadSignature], "{:?}", v.problems);
    assert!(
        v.problems[0].message.contains("ends in #main-key"),
        "{}",
        v.problems[0].message
    );
}
