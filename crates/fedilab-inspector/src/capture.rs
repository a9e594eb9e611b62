//! Recording on the hot path: a body wrapper that forwards every frame
//! untouched while copying the first bytes (up to a cap), and the pending
//! exchange that becomes a store record when its last part is done.
//!
//! Nothing here parses or analyses what it records; the only work per frame
//! is a bounded `memcpy`.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::exchange::{
    Body, Exchange, Headers, Marks, RequestRecord, ResponseRecord, UpgradeRecord,
};
use crate::fault::FaultMark;
use crate::store::Store;

/// Total bytes of header names and values kept per head; the rest is
/// forwarded but not recorded.
pub(crate) const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Copies a header map for the record, bounded by [`MAX_HEADER_BYTES`].
pub(crate) fn record_headers(map: &http::HeaderMap) -> Headers {
    record_fields(map.len(), || {
        map.iter().map(|(n, v)| (n.as_str(), v.as_bytes()))
    })
}

/// Copies `count` header fields (each call of `fields` yields them, in
/// order) for the record, names
/// in lower case, values lossily decoded, bounded by [`MAX_HEADER_BYTES`]
/// (a field beyond is replaced by one saying so).
pub(crate) fn record_fields<'a, I>(count: usize, fields: impl Fn() -> I) -> Headers
where
    I: Iterator<Item = (&'a str, &'a [u8])>,
{
    // Sized once: the head is one buffer.
    let bytes: usize = fields()
        .map(|(n, v)| n.len() + v.len())
        .sum::<usize>()
        .min(MAX_HEADER_BYTES);
    let mut out = Headers::with_capacity(count, bytes);
    let mut budget = MAX_HEADER_BYTES;
    for (name, value) in fields() {
        let cost = name.len() + value.len();
        if cost > budget {
            out.push("x-inspector-truncated", "further headers not recorded");
            break;
        }
        budget -= cost;
        match std::str::from_utf8(value) {
            Ok(s) => out.push_lower(name, s),
            Err(_) => out.push_lower(name, &String::from_utf8_lossy(value)),
        }
    }
    out
}

/// `HTTP/1.1` for a version.
pub(crate) fn version_str(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// A bounded copy of a body's first bytes.
#[derive(Debug)]
pub(crate) struct Capture {
    buf: Vec<u8>,
    size: u64,
    cap: usize,
}

impl Capture {
    pub(crate) fn new(cap: usize, hint: &SizeHint) -> Self {
        let want = hint.exact().unwrap_or(hint.lower()).min(cap as u64) as usize;
        Self {
            buf: Vec::with_capacity(want),
            size: 0,
            cap,
        }
    }

    pub(crate) fn push(&mut self, data: &[u8]) {
        self.size += data.len() as u64;
        let room = self.cap.saturating_sub(self.buf.len());
        let take = room.min(data.len());
        if let Some(head) = data.get(..take) {
            self.buf.extend_from_slice(head);
        }
    }

    pub(crate) fn finish(&mut self, complete: bool) -> Body {
        let buf = std::mem::take(&mut self.buf);
        Body {
            truncated: (buf.len() as u64) < self.size,
            captured: Bytes::from(buf),
            size: self.size,
            complete,
        }
    }
}

/// Which body of the exchange a [`TeeBody`] carries.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Side {
    Request,
    Response,
}

/// Forwards an inner body frame by frame and records its first bytes into a
/// [`Pending`] exchange when it ends or is dropped.
#[derive(Debug)]
pub(crate) struct TeeBody<B> {
    inner: B,
    capture: Capture,
    side: Side,
    pending: Option<Arc<Pending>>,
}

impl<B: HttpBody<Data = Bytes> + Unpin> TeeBody<B> {
    pub(crate) fn new(inner: B, cap: usize, side: Side, pending: Arc<Pending>) -> Self {
        let capture = Capture::new(cap, &inner.size_hint());
        Self {
            inner,
            capture,
            side,
            pending: Some(pending),
        }
    }

    fn done(&mut self, complete: bool) {
        if let Some(pending) = self.pending.take() {
            pending.set_body(self.side, self.capture.finish(complete));
        }
    }
}

impl<B: HttpBody<Data = Bytes> + Unpin> HttpBody for TeeBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.capture.push(data);
                }
                if this.inner.is_end_stream() {
                    this.done(true);
                }
            }
            Poll::Ready(None) => this.done(true),
            Poll::Ready(Some(Err(_))) => this.done(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for TeeBody<B> {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            // Never polled to the end: complete only if nothing was left
            // (the proxy marks empty bodies by their size hint).
            let complete = self.capture.size == 0 && pending.empty_ok(self.side);
            pending.set_body(self.side, self.capture.finish(complete));
        }
    }
}

/// The response head as received from the upstream (or made by the proxy).
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub(crate) status: u16,
    pub(crate) version: &'static str,
    pub(crate) headers: Headers,
    /// The body is known to be empty (no frames will come).
    pub(crate) empty: bool,
}

/// An exchange in flight. Each part is filled once; when the last holder
/// (the handler, either body, the upgrade task) lets go, `Drop` assembles
/// the record and pushes it into the store.
#[derive(Debug)]
pub(crate) struct Pending {
    store: Arc<Store>,
    started: Instant,
    started_us: i64,
    client: Option<String>,
    host: String,
    upstream: Option<String>,
    method: String,
    uri: String,
    version: &'static str,
    request_headers: Headers,
    request_empty: bool,
    request_body: OnceLock<Body>,
    response_head: OnceLock<ResponseHead>,
    response_body: OnceLock<Body>,
    headers_at: OnceLock<Duration>,
    error: OnceLock<String>,
    upgrade: OnceLock<UpgradeRecord>,
    marks: Marks,
    fault: OnceLock<FaultMark>,
    /// The request headers as forwarded, when a fault changed them.
    forwarded_headers: OnceLock<Headers>,
    notify: Option<tokio::sync::oneshot::Sender<u64>>,
}

/// When a request arrived, on both clocks (read together, before anything
/// is sent on).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Started {
    /// For durations.
    pub(crate) at: Instant,
    /// Wall-clock microseconds since the Unix epoch, for the record.
    pub(crate) unix_us: i64,
}

impl Started {
    pub(crate) fn now() -> Self {
        Self {
            at: Instant::now(),
            unix_us: jiff::Timestamp::now().as_microsecond(),
        }
    }
}

/// The request head, as the proxy read it.
#[derive(Debug)]
pub(crate) struct RequestHead {
    /// When the request arrived.
    pub(crate) started: Started,
    pub(crate) client: Option<String>,
    pub(crate) host: String,
    pub(crate) upstream: Option<String>,
    pub(crate) method: String,
    pub(crate) uri: String,
    pub(crate) version: &'static str,
    pub(crate) headers: Headers,
    /// The request body is known to be empty.
    pub(crate) empty: bool,
    /// Marks known from the start (a replay).
    pub(crate) marks: Marks,
    /// Gets the id once the exchange is stored.
    pub(crate) notify: Option<tokio::sync::oneshot::Sender<u64>>,
}

impl Pending {
    pub(crate) fn new(store: Arc<Store>, head: RequestHead) -> Arc<Self> {
        Arc::new(Self {
            store,
            started: head.started.at,
            started_us: head.started.unix_us,
            client: head.client,
            host: head.host,
            upstream: head.upstream,
            method: head.method,
            uri: head.uri,
            version: head.version,
            request_headers: head.headers,
            request_empty: head.empty,
            request_body: OnceLock::new(),
            response_head: OnceLock::new(),
            response_body: OnceLock::new(),
            headers_at: OnceLock::new(),
            error: OnceLock::new(),
            upgrade: OnceLock::new(),
            marks: head.marks,
            fault: OnceLock::new(),
            forwarded_headers: OnceLock::new(),
            notify: head.notify,
        })
    }

    /// The request's host.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// The request headers as received.
    pub(crate) fn request_headers(&self) -> &Headers {
        &self.request_headers
    }

    /// Marks the exchange with the fault rule that touched it.
    pub(crate) fn set_fault(&self, mark: FaultMark) {
        let _ = self.fault.set(mark);
    }

    /// Records the request headers as forwarded, when a fault changed them.
    pub(crate) fn set_forwarded_headers(&self, headers: Headers) {
        let _ = self.forwarded_headers.set(headers);
    }

    fn empty_ok(&self, side: Side) -> bool {
        match side {
            Side::Request => self.request_empty,
            Side::Response => self.response_head.get().is_some_and(|h| h.empty),
        }
    }

    /// Records the response head and the time to it.
    pub(crate) fn set_response(&self, head: ResponseHead) {
        let _ = self.headers_at.set(self.started.elapsed());
        let _ = self.response_head.set(head);
    }

    /// Records one body as it crossed the proxy (the first setting wins).
    pub(crate) fn set_body(&self, side: Side, body: Body) {
        let slot = match side {
            Side::Request => &self.request_body,
            Side::Response => &self.response_body,
        };
        let _ = slot.set(body);
    }

    /// Records a response the proxy made itself, with its body.
    pub(crate) fn set_local_response(&self, head: ResponseHead, body: &Bytes) {
        self.set_body(
            Side::Response,
            Body {
                captured: body.clone(),
                size: body.len() as u64,
                truncated: false,
                complete: true,
            },
        );
        self.set_response(head);
    }

    pub(crate) fn set_error(&self, error: String) {
        let _ = self.error.set(error);
    }

    pub(crate) fn set_upgrade(&self, record: UpgradeRecord) {
        let _ = self.upgrade.set(record);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let response = self.response_head.take().map(|h| ResponseRecord {
            status: h.status,
            version: h.version.to_owned(),
            headers: h.headers,
            body: self.response_body.take().unwrap_or(Body {
                complete: h.empty,
                ..Body::default()
            }),
        });
        let exchange = Exchange {
            id: 0,
            started_us: self.started_us,
            client: self.client.take(),
            host: std::mem::take(&mut self.host),
            upstream: self.upstream.take(),
            request: RequestRecord {
                method: std::mem::take(&mut self.method),
                uri: std::mem::take(&mut self.uri),
                version: self.version.to_owned(),
                headers: self
                    .forwarded_headers
                    .take()
                    .unwrap_or_else(|| std::mem::take(&mut self.request_headers)),
                body: self.request_body.take().unwrap_or(Body {
                    complete: self.request_empty,
                    ..Body::default()
                }),
            },
            response,
            error: self.error.take(),
            headers_us: self
                .headers_at
                .take()
                .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            total_us: u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            upgrade: self.upgrade.take(),
        };
        let mut marks = std::mem::take(&mut self.marks);
        if let Some(f) = self.fault.take() {
            marks.fault = Some(f);
        }
        let id = self.store.push_marked(exchange, marks);
        if let Some(tx) = self.notify.take() {
            let _ = tx.send(id);
        }
    }
}
