//! What the fast path keeps of an exchange: the bytes it saw (the request
//! and the response head, as received), the response body as captured,
//! and a few numbers. It becomes an [`Exchange`] only when something reads
//! it (the API, the UI, a verdict, the persistence thread), parsed by the
//! same code the fast path forwards with, so a record reads the same
//! whichever path served it.
//!
//! Why: profiled under `scripts/bench-inspector.sh`, storing the built
//! record was about a sixth of the proxy thread's CPU per request.
//! Building it meant a dozen allocations and both heads parsed again,
//! lower-cased and reordered; evicting it, long after and from memory no
//! longer in cache, meant a cache miss for each of those allocations, most
//! with a TLB miss too. Kept as bytes, a record is its store entry and a
//! copy, and the parsing happens on the reader's thread, for the records
//! someone reads.
//!
//! The bytes go into chunks of [`CHUNK`] that each proxy thread fills in
//! turn (a `bytes` slice per record), so evicting a record touches only
//! its entry and its chunk's count, never the memory it was copied to: a
//! chunk is freed whole once the last record in it goes. Records are
//! stored in the order they finish, so a chunk is shared by a run of
//! neighbours in the store; one that finishes after its chunk was retired
//! is copied into the current chunk, so no chunk outlives its run.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::capture::{Pending, RequestHead, Side, Started};
use crate::exchange::{Body, Exchange, Marks, RequestRecord, ResponseRecord};
use crate::fast::{self, Field, Head, Parsed};
use crate::proxy::{self, Peer};
use crate::store::Store;
use crate::watched::{Part, Signals, json_type};

/// The size of a chunk of kept bytes.
const CHUNK: usize = 256 * 1024;
/// Bytes larger than this get an allocation of their own.
const OWN_ALLOCATION: usize = CHUNK / 8;
/// The generation of bytes in an allocation of their own.
const OWN: u64 = u64::MAX;

/// A proxy thread's current chunk, and how many it filled before.
struct Arena {
    chunk: BytesMut,
    generation: u64,
}

thread_local! {
    static ARENA: RefCell<Arena> = RefCell::new(Arena {
        chunk: BytesMut::new(),
        generation: 0,
    });
}

/// Copies `data` into this thread's current chunk (a new one when it is
/// full); returns the copy and the chunk's generation.
fn keep(data: &[u8]) -> (Bytes, u64) {
    if data.len() > OWN_ALLOCATION {
        return (Bytes::copy_from_slice(data), OWN);
    }
    ARENA.with(|arena| {
        let mut arena = arena.borrow_mut();
        if arena.chunk.capacity() - arena.chunk.len() < data.len() {
            arena.chunk = BytesMut::with_capacity(CHUNK);
            arena.generation += 1;
        }
        arena.chunk.extend_from_slice(data);
        (arena.chunk.split().freeze(), arena.generation)
    })
}

/// `kept` (of chunk `generation`), copied into the current chunk if its
/// own was retired since.
fn keep_current(kept: Bytes, generation: u64) -> Bytes {
    let current = ARENA.with(|arena| arena.borrow().generation);
    if generation == OWN || generation == current || kept.is_empty() {
        kept
    } else {
        keep(&kept).0
    }
}

/// An exchange as the fast path saw it.
#[derive(Debug)]
pub(crate) struct Recorded {
    /// The request head and body as received.
    request: Bytes,
    /// The response head as received (empty when there is none).
    response_head: Bytes,
    /// Where the request head ends.
    head_len: u32,
    method: (u32, u32),
    request_json: bool,
    request_encoded: bool,
    started_us: i64,
    total_us: u64,
    headers_us: Option<u64>,
    client: Arc<Peer>,
    upstream: Arc<str>,
    response: Option<KeptResponse>,
    error: Option<String>,
}

#[derive(Debug)]
struct KeptResponse {
    /// It answered a HEAD request (so its body is empty whatever the head
    /// says).
    head_request: bool,
    status: u16,
    json: bool,
    encoded: bool,
    body: Body,
}

impl Recorded {
    /// The bytes charged to the store: what is kept, and what reading it
    /// adds (the parsed record is cached beside it; its bodies share the
    /// kept bytes).
    pub(crate) fn approx_size(&self) -> usize {
        let body = self.response.as_ref().map_or(0, |r| r.body.captured.len());
        let heads = self.head_len as usize + self.response_head.len();
        self.request.len()
            + self.response_head.len()
            + body
            + heads
            + std::mem::size_of::<Exchange>()
    }

    /// What the key watcher's cheap test reads.
    pub(crate) fn signals(&self) -> Signals<'_> {
        let method = self
            .request
            .get(self.method.0 as usize..self.method.1 as usize)
            .unwrap_or_default();
        Signals {
            method: std::str::from_utf8(method).unwrap_or(""),
            request: Part {
                json: self.request_json,
                encoded: self.request_encoded,
                body: self
                    .request
                    .get(self.head_len as usize..)
                    .unwrap_or_default(),
            },
            response: self.response.as_ref().map(|r| {
                (
                    r.status,
                    Part {
                        json: r.json,
                        encoded: r.encoded,
                        body: &r.body.captured,
                    },
                )
            }),
        }
    }

    /// The record, parsed from the kept bytes.
    pub(crate) fn exchange(&self, id: u64) -> Exchange {
        let (request, host) = self.request_record();
        let response = self.response.as_ref().map(|kept| {
            let parsed = fast::recorded_response(&self.response_head, kept.head_request);
            ResponseRecord {
                status: parsed.status,
                version: parsed.version.to_owned(),
                headers: parsed.headers,
                body: kept.body.clone(),
            }
        });
        Exchange {
            id,
            started_us: self.started_us,
            client: Some(self.client.text.clone()),
            host,
            upstream: Some(self.upstream.to_string()),
            request,
            response,
            error: self.error.clone(),
            headers_us: self.headers_us,
            total_us: self.total_us,
            upgrade: None,
        }
    }

    /// The request part of the record, and the host it was routed by.
    fn request_record(&self) -> (RequestRecord, String) {
        let head = self
            .request
            .get(..self.head_len as usize)
            .unwrap_or_default();
        let mut fields = Vec::new();
        let text = |r: std::ops::Range<usize>| {
            head.get(r)
                .and_then(|b| std::str::from_utf8(b).ok())
                .unwrap_or("")
        };
        let body = self.request.slice(self.head_len as usize..);
        let body = Body {
            size: body.len() as u64,
            captured: body,
            truncated: false,
            complete: true,
        };
        // The head parsed when it was forwarded, so it parses again.
        let Parsed::Head(h) = fast::parse_head(head, &mut fields) else {
            let request = RequestRecord {
                method: String::new(),
                uri: String::new(),
                version: "HTTP/1.1".to_owned(),
                headers: Default::default(),
                body,
            };
            return (request, String::new());
        };
        let request = RequestRecord {
            method: text(h.method.clone()).to_owned(),
            uri: text(h.target.clone()).to_owned(),
            version: "HTTP/1.1".to_owned(),
            headers: fast::record_head(head, &fields, |_| true),
            body,
        };
        (request, proxy::normal_host(text(h.host.clone())))
    }
}

/// The record of the exchange the fast path is serving: it goes to the
/// store when it is dropped, as a [`Pending`] does.
pub(crate) struct Recording<'a> {
    store: &'a Arc<Store>,
    started: Started,
    /// The chunks the request and the response head were kept in.
    generations: (u64, u64),
    kept: Option<Recorded>,
}

impl<'a> Recording<'a> {
    /// Starts the record of `request` (a whole request, with `head` and
    /// `fields` parsed from it), bound for `upstream`.
    pub(crate) fn new(
        store: &'a Arc<Store>,
        started: Started,
        request: &[u8],
        head: &Head,
        fields: &[Field],
        client: &Arc<Peer>,
        upstream: &Arc<str>,
    ) -> Self {
        let (request_kept, generation) = keep(request);
        let named = |field: &&Field, name: &[u8]| {
            request
                .get(field.0.clone())
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        };
        let encoded = fields.iter().any(|f| named(&f, b"content-encoding"));
        let json = fields
            .iter()
            .find(|f| named(f, b"content-type"))
            .and_then(|f| request.get(f.1.clone()))
            .is_some_and(json_type);
        let pos = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Self {
            store,
            started,
            generations: (generation, OWN),
            kept: Some(Recorded {
                head_len: pos(head.len),
                request: request_kept,
                response_head: Bytes::new(),
                method: (pos(head.method.start), pos(head.method.end)),
                request_json: json,
                request_encoded: encoded,
                started_us: started.unix_us,
                total_us: 0,
                headers_us: None,
                client: Arc::clone(client),
                upstream: Arc::clone(upstream),
                response: None,
                error: None,
            }),
        }
    }

    /// Records the response head (`head`, as received; `json` and
    /// `encoded` as the key watcher's test reads them) and the time to it.
    pub(crate) fn response(
        &mut self,
        head: &[u8],
        status: u16,
        head_request: bool,
        json: bool,
        encoded: bool,
    ) {
        let at = elapsed_us(self.started.at);
        if let Some(r) = &mut self.kept {
            let (kept, generation) = keep(head);
            r.response_head = kept;
            self.generations.1 = generation;
            r.headers_us = Some(at);
            r.response = Some(KeptResponse {
                head_request,
                status,
                json,
                encoded,
                body: Body::default(),
            });
        }
    }

    /// Records the response body as captured.
    pub(crate) fn response_body(&mut self, body: Body) {
        if let Some(r) = self.kept.as_mut().and_then(|r| r.response.as_mut()) {
            r.body = body;
        }
    }

    /// Records why the exchange failed.
    pub(crate) fn error(&mut self, why: String) {
        if let Some(r) = &mut self.kept {
            r.error = Some(why);
        }
    }

    /// The record as a [`Pending`], for the paths that answer with a
    /// response of the proxy's own (the request recorded; nothing else
    /// yet). Recorded when the `Pending` is dropped.
    pub(crate) fn into_pending(mut self) -> Option<Arc<Pending>> {
        let kept = self.kept.take()?;
        let (request, host) = kept.request_record();
        let pending = Pending::new(
            Arc::clone(self.store),
            RequestHead {
                started: self.started,
                client: Some(kept.client.text.clone()),
                host,
                upstream: Some(kept.upstream.to_string()),
                method: request.method,
                uri: request.uri,
                version: "HTTP/1.1",
                headers: request.headers,
                empty: request.body.captured.is_empty(),
                marks: Marks::default(),
                notify: None,
            },
        );
        pending.set_body(Side::Request, request.body);
        Some(pending)
    }
}

impl Drop for Recording<'_> {
    fn drop(&mut self) {
        if let Some(mut kept) = self.kept.take() {
            kept.total_us = elapsed_us(self.started.at);
            let (request, response) = self.generations;
            kept.request = keep_current(kept.request, request);
            kept.response_head = keep_current(kept.response_head, response);
            self.store.push_recorded(kept);
        }
    }
}

fn elapsed_us(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StoreLimits;
    use crate::exchange::header;

    #[test]
    fn an_answer_of_the_proxys_own_is_recorded_from_the_requests_start() {
        // A 502 after a slow connect: the record starts when the request
        // arrived, not when the proxy gave up, so the list (ordered by
        // start) shows it where it happened.
        let store = Store::new(StoreLimits {
            max_exchanges: 10,
            max_bytes: 1 << 20,
        });
        let request: &[u8] = b"GET /users/b HTTP/1.1\r\nHost: m2.test\r\n\r\n";
        let mut fields = Vec::new();
        let Parsed::Head(head) = fast::parse_head(request, &mut fields) else {
            panic!("a plain request")
        };
        let waited = std::time::Duration::from_secs(5);
        let arrived = Started {
            at: Instant::now()
                .checked_sub(waited)
                .unwrap_or_else(Instant::now),
            unix_us: jiff::Timestamp::now().as_microsecond() - 5_000_000,
        };
        let peer = Arc::new(Peer::new(([127, 0, 0, 1], 4000).into()));
        let upstream: Arc<str> = "http://127.0.0.1:9".into();
        let rec = Recording::new(&store, arrived, request, &head, &fields, &peer, &upstream);
        drop(rec.into_pending());
        let entries = store.snapshot();
        let [entry] = entries.as_slice() else {
            panic!("one record")
        };
        let ex = entry.exchange();
        assert_eq!(ex.started_us, arrived.unix_us);
        assert!(ex.total_us >= 5_000_000, "{}", ex.total_us);
    }

    #[test]
    fn a_kept_record_reads_as_it_was_seen() {
        let store = Store::new(StoreLimits {
            max_exchanges: 10,
            max_bytes: 1 << 20,
        });
        let request: &[u8] = b"POST /users/b/inbox?x=1 HTTP/1.1\r\nHost: M2.test:8080\r\n\
            Content-Type: application/activity+json\r\nX-Two: 1\r\nContent-Length: 9\r\n\
            x-two: 2\r\n\r\n{\"a\":\"b\"}";
        let mut fields = Vec::new();
        let Parsed::Head(head) = fast::parse_head(request, &mut fields) else {
            panic!("a plain request")
        };
        let peer = Arc::new(Peer::new(([127, 0, 0, 1], 4000).into()));
        let upstream: Arc<str> = "http://127.0.0.1:9".into();
        {
            let mut rec = Recording::new(
                &store,
                Started::now(),
                request,
                &head,
                &fields,
                &peer,
                &upstream,
            );
            rec.response(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                  Connection: keep-alive\r\nContent-Length: 2\r\n\r\n",
                200,
                false,
                true,
                false,
            );
            rec.response_body(Body {
                captured: Bytes::from_static(b"{}"),
                size: 2,
                truncated: false,
                complete: true,
            });
        }
        let entries = store.snapshot();
        let [entry] = entries.as_slice() else {
            panic!("one record")
        };
        let ex = entry.exchange();
        assert_eq!(ex.id, entry.id());
        assert_eq!(
            (
                ex.request.method.as_str(),
                ex.request.uri.as_str(),
                ex.host.as_str()
            ),
            ("POST", "/users/b/inbox?x=1", "m2.test")
        );
        let names: Vec<&str> = ex.request.headers.iter().map(|(n, _)| n).collect();
        // Lower case, a name's fields together, as hyper's path records.
        assert_eq!(
            names,
            ["host", "content-type", "x-two", "x-two", "content-length"]
        );
        assert_eq!(&ex.request.body.captured[..], b"{\"a\":\"b\"}");
        assert_eq!(ex.client.as_deref(), Some("127.0.0.1:4000"));
        assert_eq!(ex.upstream.as_deref(), Some("http://127.0.0.1:9"));
        let response = ex.response.as_ref().expect("a response");
        assert_eq!(response.status, 200);
        assert_eq!(header(&response.headers, "connection"), None, "hop-by-hop");
        assert_eq!(header(&response.headers, "content-length"), Some("2"));
        assert_eq!(&response.body.captured[..], b"{}");
        // The key watcher's test reads the same from the bytes as from the
        // parsed record.
        assert_eq!(
            format!("{:?}", entry.signals()),
            format!("{:?}", Signals::of(ex))
        );
    }

    /// Each test runs on its own thread, so it has an arena of its own.
    #[test]
    fn bytes_share_a_chunk_until_it_is_full() {
        let (a, ga) = keep(b"first");
        let (b, gb) = keep(b"second");
        assert_eq!((&a[..], &b[..]), (&b"first"[..], &b"second"[..]));
        assert_eq!(ga, gb, "both in the current chunk");
        // Neighbours in one chunk: the second starts where the first ends.
        assert_eq!(a.as_ptr().wrapping_add(a.len()), b.as_ptr());
        let filler = vec![7u8; OWN_ALLOCATION];
        let mut generation = gb;
        for _ in 0..CHUNK / OWN_ALLOCATION + 1 {
            generation = keep(&filler).1;
        }
        assert!(generation > gb, "a full chunk is replaced");
    }

    #[test]
    fn large_bytes_get_their_own_allocation() {
        let big = vec![1u8; OWN_ALLOCATION + 1];
        let (kept, generation) = keep(&big);
        assert_eq!(generation, OWN);
        assert_eq!(kept.len(), big.len());
        let again = keep_current(kept.clone(), generation);
        assert_eq!(again.as_ptr(), kept.as_ptr(), "never copied again");
    }

    #[test]
    fn bytes_of_a_retired_chunk_are_copied_into_the_current_one() {
        let (early, generation) = keep(b"kept before the chunk filled");
        let same = keep_current(early.clone(), generation);
        assert_eq!(same.as_ptr(), early.as_ptr(), "still current: not copied");
        let filler = vec![0u8; OWN_ALLOCATION];
        while keep(&filler).1 == generation {}
        let moved = keep_current(early.clone(), generation);
        assert_eq!(moved, early);
        assert_ne!(
            moved.as_ptr(),
            early.as_ptr(),
            "copied out of the retired chunk"
        );
        let current = ARENA.with(|a| a.borrow().generation);
        let (next, g) = keep(b"x");
        assert_eq!(g, current);
        assert_eq!(moved.as_ptr().wrapping_add(moved.len()), next.as_ptr());
    }
}
