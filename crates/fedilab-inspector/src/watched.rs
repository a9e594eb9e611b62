//! Keys learned by watching: every actor (or key) document that crosses the
//! proxy — a 2xx JSON answer to a GET, or an actor embedded in a POSTed
//! activity (`Update(Person)`) by its own server — leaves its `publicKey`s
//! and Multikey `assertionMethod`s here, so signatures verify when the
//! key's server refuses unsigned fetches (Mastodon's AUTHORIZED_FETCH,
//! GoToSocial).
//!
//! Rotation, ordered on the inspector's clock: a key version takes effect
//! when the exchange that carried it completed (a response) or arrived (a
//! request body). An exchange is checked against the version in effect
//! when it arrived, then against versions learned while it was in flight
//! (the receiver's own refetch of a rotated key happens then); only when
//! no version was learned before it ended, against the first one seen
//! after. So exchanges started before a rotation keep the old key.
//!
//! [`KeyWatch`] follows the store's events (and scans what a restart
//! reloaded); it never touches the proxy's hot path: the store only sends
//! an id, and a background tick or a verdict's read does the parsing.
//! Bounded: at most [`MAX_KEYS`] key ids, [`MAX_VERSIONS`] versions each.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::Value;

use crate::analysis::json_body;
use crate::exchange::{Exchange, Headers, header};
use crate::keys::{ActorKey, document_keys};
use crate::store::Store;
use crate::view::url_of;

/// Key ids remembered at most (the oldest learned is forgotten first).
pub const MAX_KEYS: usize = 4096;
/// Versions remembered per key id.
pub const MAX_VERSIONS: usize = 8;

#[derive(Debug)]
struct Version {
    learned_us: i64,
    key: Arc<ActorKey>,
}

#[derive(Debug, Default)]
struct Index {
    by_key: HashMap<String, Vec<Version>>,
    /// Actor ids and document URLs (without fragment) to their key ids.
    by_doc: HashMap<String, Vec<String>>,
    order: VecDeque<String>,
}

/// The index of watched keys.
#[derive(Debug, Default)]
pub(crate) struct WatchedKeys {
    index: Mutex<Index>,
}

fn without_fragment(s: &str) -> &str {
    s.split('#').next().unwrap_or(s)
}

fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    rest.split(['/', '?', '#']).next()
}

/// Whether a (not content-encoded) body may hold keys: the cheap test
/// that spares parsing every activity.
fn mentions_keys(bytes: &[u8]) -> bool {
    use memchr::memmem::Finder;
    static FINDERS: std::sync::LazyLock<[Finder<'static>; 2]> =
        std::sync::LazyLock::new(|| [Finder::new(b"publicKey"), Finder::new(b"assertionMethod")]);
    FINDERS.iter().any(|f| f.find(bytes).is_some())
}

/// What the watcher's cheap test reads of an exchange. The store computes
/// it as it records, from a record or from the bytes the fast path kept
/// (`crate::recorded`), so the test never needs the record parsed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Signals<'a> {
    pub(crate) method: &'a str,
    pub(crate) request: Part<'a>,
    /// The response's status and part, if there was one.
    pub(crate) response: Option<(u16, Part<'a>)>,
}

/// One side of [`Signals`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Part<'a> {
    /// Its (first) `Content-Type` mentions JSON.
    pub(crate) json: bool,
    /// It has a `Content-Encoding` (so its captured bytes cannot be
    /// scanned).
    pub(crate) encoded: bool,
    /// The captured body.
    pub(crate) body: &'a [u8],
}

impl<'a> Signals<'a> {
    /// The signals of a record.
    pub(crate) fn of(ex: &'a Exchange) -> Self {
        let part = |headers: &Headers, body: &'a Bytes| Part {
            json: header(headers, "content-type").is_some_and(|ct| json_type(ct.as_bytes())),
            encoded: header(headers, "content-encoding").is_some(),
            body,
        };
        Signals {
            method: &ex.request.method,
            request: part(&ex.request.headers, &ex.request.body.captured),
            response: ex
                .response
                .as_ref()
                .map(|r| (r.status, part(&r.headers, &r.body.captured))),
        }
    }
}

/// Whether a `Content-Type` value names JSON (any `+json` type too).
pub(crate) fn json_type(content_type: &[u8]) -> bool {
    content_type.windows(4).any(|w| w == b"json")
}

/// A successful JSON answer to a GET that may be an actor document.
fn may_be_actor_document(s: &Signals<'_>) -> bool {
    (s.method == "GET" || s.method == "HEAD")
        && s.response.is_some_and(|(status, r)| {
            (200..300).contains(&status) && r.json && (r.encoded || mentions_keys(r.body))
        })
}

/// A POST whose body may embed an actor with its keys.
fn may_embed_actor(s: &Signals<'_>) -> bool {
    s.method == "POST" && (s.request.encoded || mentions_keys(s.request.body))
}

/// Whether an exchange may carry keys to learn: the store hands the
/// watcher only these (a scan of the captured body at most, on the
/// recording thread).
pub(crate) fn may_carry_keys(s: &Signals<'_>) -> bool {
    may_be_actor_document(s) || may_embed_actor(s)
}

impl WatchedKeys {
    /// Learns the keys an exchange carries, if any.
    pub(crate) fn observe(&self, ex: &Exchange) {
        let req = &ex.request;
        let signals = Signals::of(ex);
        if may_be_actor_document(&signals)
            && let Some(r) = &ex.response
            && let Some(doc) = json_body(&r.body, &r.headers)
        {
            let at = ex
                .started_us
                .saturating_add(i64::try_from(ex.total_us).unwrap_or(0));
            self.learn(&doc, Some(url_of(ex)), at);
        }
        if may_embed_actor(&signals)
            && let Some(doc) = json_body(&req.body, &req.headers)
        {
            // An actor embedded by its own server: `object` of an
            // Update(Person), or an `actor` given as an object.
            let sender = match doc.get("actor") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Object(o)) => o.get("id").and_then(Value::as_str).map(str::to_owned),
                _ => None,
            };
            for embedded in [doc.get("object"), doc.get("actor")].into_iter().flatten() {
                let id = embedded.get("id").and_then(Value::as_str);
                let same_server = match (id, sender.as_deref()) {
                    (Some(id), Some(sender)) => host_of(id) == host_of(sender),
                    _ => false,
                };
                if embedded.is_object() && same_server {
                    self.learn(embedded, None, ex.started_us);
                }
            }
        }
    }

    /// Learns the keys of one document, seen at `at_us`.
    pub(crate) fn learn(&self, doc: &Value, url: Option<String>, at_us: i64) {
        let keys = document_keys(doc);
        if keys.is_empty() {
            return;
        }
        let doc_id = doc.get("id").and_then(Value::as_str).map(str::to_owned);
        let mut ix = self.index.lock().unwrap_or_else(|e| e.into_inner());
        let mut ids = Vec::new();
        for k in keys {
            let Some(id) = k.id.clone().or_else(|| url.clone()) else {
                continue;
            };
            ids.push(id.clone());
            if !ix.by_key.contains_key(&id) {
                if ix.by_key.len() >= MAX_KEYS
                    && let Some(old) = ix.order.pop_front()
                {
                    ix.by_key.remove(&old);
                }
                ix.order.push_back(id.clone());
            }
            let versions = ix.by_key.entry(id).or_default();
            // The version in effect at `at_us`: an unchanged key is no
            // new version.
            let current = versions.iter().rev().find(|v| v.learned_us <= at_us);
            if current.is_some_and(|v| v.key.key == k.key.key) {
                continue;
            }
            versions.push(Version {
                learned_us: at_us,
                key: Arc::new(k.key),
            });
            versions.sort_by_key(|v| v.learned_us);
            if versions.len() > MAX_VERSIONS {
                versions.remove(0);
            }
        }
        for doc in doc_id.iter().chain(url.iter()) {
            if ix.by_doc.len() >= MAX_KEYS {
                ix.by_doc.clear();
            }
            ix.by_doc
                .insert(without_fragment(doc).to_owned(), ids.clone());
        }
    }

    /// The watched keys to try for `key_id` on an exchange that arrived at
    /// `start_us` and ended at `end_us`, in order (see the module
    /// documentation). Empty when none was watched.
    pub(crate) fn candidates(
        &self,
        key_id: &str,
        start_us: i64,
        end_us: i64,
    ) -> Vec<Arc<ActorKey>> {
        let ix = self.index.lock().unwrap_or_else(|e| e.into_inner());
        let ids: Vec<&String> = if let Some((id, _)) = ix.by_key.get_key_value(key_id) {
            vec![id]
        } else if let Some((id, _)) = ix.by_key.get_key_value(without_fragment(key_id)) {
            vec![id]
        } else {
            ix.by_doc
                .get(without_fragment(key_id))
                .map(|ids| ids.iter().collect())
                .unwrap_or_default()
        };
        let mut out = Vec::new();
        for id in ids {
            let Some(versions) = ix.by_key.get(id) else {
                continue;
            };
            let in_effect = versions.iter().rev().find(|v| v.learned_us <= start_us);
            let in_flight = versions
                .iter()
                .filter(|v| start_us < v.learned_us && v.learned_us <= end_us);
            let before_end: Vec<&Version> = in_effect.into_iter().chain(in_flight).collect();
            if before_end.is_empty() {
                out.extend(versions.first().map(|v| Arc::clone(&v.key)));
            } else {
                out.extend(before_end.into_iter().map(|v| Arc::clone(&v.key)));
            }
        }
        out
    }
}

/// Feeds [`WatchedKeys`] from the store: the exchanges that may carry
/// keys, queued by the store as they are recorded (its
/// [`Store::watch`](crate::store::Store::watch) queue), read in batches.
///
/// Not a cursor over the store: under load that read thousands of entries
/// a tick under the store's lock, and the proxy's thread waited for it
/// whenever the reader lost its core holding the lock (p99 latency under
/// `bench-inspector.sh` was 2.5 times what it is with no watcher).
#[derive(Debug)]
pub(crate) struct KeyWatch {
    pub(crate) keys: WatchedKeys,
    store: Arc<Store>,
    /// Held while a batch is learned: a verdict's catch-up that finds the
    /// queue just taken by the tick waits for the tick to finish learning.
    learning: Mutex<()>,
}

impl KeyWatch {
    /// Learns from what `store` holds already (a reloaded capture file),
    /// then from what the store queues for it.
    pub(crate) fn new(store: Arc<Store>) -> Self {
        let watch = Self {
            keys: WatchedKeys::default(),
            store,
            learning: Mutex::new(()),
        };
        for e in watch.store.watch(may_carry_keys) {
            watch.keys.observe(e.exchange());
        }
        watch
    }

    /// Learns from every exchange queued since the last call. Called
    /// before each verdict (so a verdict sees every actor document recorded
    /// before it is read) and on a background tick.
    pub(crate) fn catch_up(&self) {
        let _learning = self.learning.lock().unwrap_or_else(|e| e.into_inner());
        for e in self.store.watched() {
            self.keys.observe(e.exchange());
        }
    }

    /// Exchanges that may carry keys, dropped from the queue unread
    /// because the watcher fell behind.
    pub(crate) fn missed(&self) -> u64 {
        self.store.watch_dropped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::PublicKey;

    fn actor(key: [u8; 32]) -> Value {
        let mut mk = vec![0xed, 0x01];
        mk.extend_from_slice(&key);
        serde_json::json!({
            "id": "https://a.test/users/u",
            "type": "Person",
            "assertionMethod": [{
                "id": "https://a.test/users/u#ed",
                "type": "Multikey",
                "controller": "https://a.test/users/u",
                "publicKeyMultibase": format!("z{}", base58(&mk)),
            }],
        })
    }

    fn base58(bytes: &[u8]) -> String {
        // Test-only encoder (the crate decodes only).
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
        let zeros = bytes.iter().take_while(|&&b| b == 0).count();
        let mut s = "1".repeat(zeros);
        s.extend(digits.iter().rev().map(|&d| A[d as usize] as char));
        s
    }

    fn ed(k: &ActorKey) -> [u8; 32] {
        match k.key {
            PublicKey::Ed25519(b) => b,
            PublicKey::Rsa(_) => [0; 32],
        }
    }

    #[test]
    fn rotation_takes_effect_from_when_it_was_seen() {
        let w = WatchedKeys::default();
        w.learn(&actor([1; 32]), None, 100);
        w.learn(&actor([1; 32]), None, 150);
        w.learn(&actor([2; 32]), None, 200);
        let id = "https://a.test/users/u#ed";
        let keys = |s, e| {
            w.candidates(id, s, e)
                .iter()
                .map(|k| ed(k))
                .collect::<Vec<_>>()
        };
        // Before anything was seen: the first version.
        assert_eq!(keys(10, 20), [[1; 32]]);
        // In effect at the start.
        assert_eq!(keys(120, 130), [[1; 32]]);
        assert_eq!(keys(250, 260), [[2; 32]]);
        // Started before the rotation, which happened in flight: old
        // first, then the new one.
        assert_eq!(keys(180, 220), [[1; 32], [2; 32]]);
        // The actor id (no fragment) finds its keys too.
        assert_eq!(w.candidates("https://a.test/users/u", 250, 260).len(), 1);
        assert!(
            w.candidates("https://b.test/users/u#ed", 250, 260)
                .is_empty()
        );
    }

    /// An Update(Person) POST carrying `actor` with `key`.
    fn update(key: [u8; 32]) -> Exchange {
        let body = serde_json::json!({
            "type": "Update",
            "actor": "https://a.test/users/u",
            "object": actor(key),
        })
        .to_string();
        Exchange {
            started_us: 1,
            total_us: 1,
            ..Exchange::test_request(
                "b.test",
                "POST",
                "/inbox",
                &[("content-type", "application/activity+json")],
                body.as_bytes(),
            )
        }
    }

    #[test]
    fn the_watch_learns_what_the_store_queues_even_once_evicted_and_counts_what_it_dropped() {
        let store = Store::new(crate::StoreLimits {
            max_exchanges: 2,
            max_bytes: usize::MAX,
        });
        store.push(update([1; 32]));
        let watch = KeyWatch::new(Arc::clone(&store));
        let id = "https://a.test/users/u#ed";
        let learned = |from: i64, to: i64| -> Vec<[u8; 32]> {
            watch
                .keys
                .candidates(id, from, to)
                .iter()
                .map(|k| ed(k))
                .collect()
        };
        assert_eq!(learned(0, 2), [[1; 32]], "what the store held");
        // Nothing new, nothing missed; an exchange without keys is not
        // queued at all.
        watch.catch_up();
        store.push(Exchange::test_request(
            "b.test",
            "POST",
            "/inbox",
            &[],
            b"{}",
        ));
        assert!(store.watched().is_empty());
        // Four more in a store of two: learned all the same.
        for k in 2..=5 {
            store.push(update([k; 32]));
        }
        assert_eq!(store.stats().evicted, 4);
        watch.catch_up();
        assert_eq!(watch.missed(), 0);
        assert_eq!(learned(10, 20), [[5; 32]], "the newest from then on");
        // A watcher far behind: the oldest beyond the queue are dropped
        // and counted, the newest kept.
        for _ in 0..crate::store::WATCH_QUEUE + 3 {
            store.push(update([6; 32]));
        }
        store.push(update([7; 32]));
        watch.catch_up();
        assert_eq!(watch.missed(), 4);
        assert_eq!(learned(10, 20), [[7; 32]]);
    }

    #[test]
    fn key_ids_are_found_with_and_without_fragments() {
        let w = WatchedKeys::default();
        // GoToSocial: the key id is a URL without fragment.
        let mut gts = actor([3; 32]);
        gts["id"] = "https://g.test/users/u".into();
        gts["assertionMethod"][0]["id"] = "https://g.test/users/u/main-key".into();
        w.learn(&gts, Some("https://g.test/users/u".into()), 10);
        assert_eq!(
            w.candidates("https://g.test/users/u/main-key", 20, 30)
                .len(),
            1
        );
        // A fragment the document does not use: the fragment-less part is
        // the key id (GoToSocial) or the actor (Mastodon-style keyIds).
        assert_eq!(
            w.candidates("https://g.test/users/u/main-key#x", 20, 30)
                .len(),
            1
        );
        w.learn(&actor([4; 32]), None, 10);
        assert_eq!(
            w.candidates("https://a.test/users/u#main-key", 20, 30)
                .len(),
            1
        );
    }
}
