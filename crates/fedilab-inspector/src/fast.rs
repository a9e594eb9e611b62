//! The proxy's fast path: a small HTTP/1.1 forwarder for the requests a
//! federation lab is made of, and hyper for everything else.
//!
//! A request qualifies when it is HTTP/1.1 in origin form, has one Host
//! naming a routed host, a `Content-Length` body (or none) no longer than
//! the capture limit, no `Transfer-Encoding`, `Upgrade`, `Expect` or
//! `Connection` other than `keep-alive`, and no fault rule's head matches
//! it. Such a request is read whole, written upstream in one write, and the
//! response is relayed as the upstream framed it (length, chunked, or to
//! the close), all on the client connection's own task with its own
//! upstream connections. The first request that does not qualify (or that
//! httparse cannot parse) hands the connection to hyper, with the bytes
//! read so far, for the rest of its life: hyper answers malformed input,
//! streams large bodies, runs fault rules and upgrades.
//!
//! Why: profiled under `scripts/bench-inspector.sh`, hyper's server and
//! client (header maps built and written again, a body channel per
//! request) cost about as much CPU per request as the kernel's socket work,
//! and a lone forwarder on httparse served the same load with a quarter
//! less CPU than a bare hyper proxy. hyper's path records through a
//! `Pending`; this one keeps the bytes it saw (`crate::recorded`), parsed
//! when read by the functions here that it forwards with, so a record
//! reads the same whichever path served it.

use std::net::SocketAddr;
use std::ops::Range;
use std::pin::pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::uri::Authority;
use http_body_util::BodyExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, Interest};
use tokio::net::TcpStream;

use crate::capture::{Capture, ResponseHead, Started, record_fields};
use crate::exchange::Headers;
use crate::proxy::{
    self, CONNECT_TIMEOUT, HEADER_READ_TIMEOUT, Peer, ProxyBody, ProxyState, is_hop_by_hop_name,
};
use crate::recorded::Recording;
use crate::routes::Target;
use crate::upstream::UpstreamError;
use crate::watched::json_type;

/// A head longer than this goes to hyper (which has its own limit).
const MAX_HEAD: usize = 64 * 1024;
/// Header fields a head may have here (hyper's limit too).
const MAX_FIELDS: usize = 100;
/// Read at least this much at a time.
const READ_CHUNK: usize = 16 * 1024;

/// Where a field's name and value sit in a buffer.
pub(crate) type Field = (Range<usize>, Range<usize>);

/// Serves one client connection: here while its requests qualify, then
/// with hyper.
pub(crate) async fn connection(state: Arc<ProxyState>, stream: TcpStream, addr: SocketAddr) {
    let peer = Arc::new(Peer::new(addr));
    let mut conn = Conn {
        client: stream,
        buf: Vec::with_capacity(READ_CHUNK),
        fields: Vec::new(),
        out: Vec::with_capacity(READ_CHUNK),
        upstreams: Vec::new(),
    };
    if let Next::Hyper = conn.serve(&state, &peer).await {
        let read = Bytes::from(std::mem::take(&mut conn.buf));
        proxy::serve_hyper(state, conn.client, read, peer).await;
    }
}

/// How a connection goes on after the fast path.
enum Next {
    /// It is over (closed, timed out, or told to close).
    Close,
    /// hyper serves the rest, starting with the unforwarded bytes.
    Hyper,
}

struct Conn {
    client: TcpStream,
    /// Bytes read from the client and not yet forwarded.
    buf: Vec<u8>,
    /// The fields of the head being served (kept for its capacity).
    fields: Vec<Field>,
    /// What is written next, upstream or to the client.
    out: Vec<u8>,
    /// Upstream connections kept for the next request.
    upstreams: Vec<Upstream>,
}

struct Upstream {
    authority: Authority,
    stream: TcpStream,
    /// Bytes read from the upstream and not yet relayed.
    buf: Vec<u8>,
}

/// A qualifying request head, by positions in the client buffer.
pub(crate) struct Head {
    pub(crate) len: usize,
    pub(crate) method: Range<usize>,
    pub(crate) target: Range<usize>,
    pub(crate) host: Range<usize>,
    pub(crate) body: usize,
}

pub(crate) enum Parsed {
    Partial,
    Head(Head),
    Hyper,
}

/// How a response body is delimited (RFC 9112 6.3).
enum Framing {
    Empty,
    Length(u64),
    Chunked(Chunked),
    Close,
}

impl Conn {
    async fn serve(&mut self, state: &ProxyState, peer: &Arc<Peer>) -> Next {
        let mut idle = pin!(tokio::time::sleep(HEADER_READ_TIMEOUT));
        loop {
            // A whole head, within the idle timeout. The timer moves at
            // most once a second, not once per request.
            let head = loop {
                match parse_head(&self.buf, &mut self.fields) {
                    Parsed::Head(h) => break h,
                    Parsed::Hyper => return Next::Hyper,
                    Parsed::Partial => {}
                }
                let renew = tokio::time::Instant::now() + HEADER_READ_TIMEOUT;
                if renew.saturating_duration_since(idle.deadline()).as_secs() >= 1 {
                    idle.as_mut().reset(renew);
                }
                self.buf.reserve(READ_CHUNK);
                tokio::select! {
                    biased;
                    read = self.client.read_buf(&mut self.buf) => match read {
                        Ok(0) | Err(_) => return Next::Close,
                        Ok(_) => {}
                    },
                    () = &mut idle => return Next::Close,
                }
            };
            let started = Started::now();
            let text = |r: &Range<usize>| {
                self.buf
                    .get(r.clone())
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .unwrap_or("")
            };
            let host = proxy::normal_host(text(&head.host));
            let uri = text(&head.target);
            let path = uri.split_once('?').map_or(uri, |(p, _)| p);
            let method = text(&head.method);
            let Some(target) = state.routes.load().lookup(&host, path).cloned() else {
                return Next::Hyper;
            };
            if head.body > state.max_body
                || (state.faults.any()
                    && state
                        .faults
                        .load()
                        .rules
                        .iter()
                        .any(|r| r.head_matches(&host, method, path)))
            {
                return Next::Hyper;
            }
            let end = head.len + head.body;
            while self.buf.len() < end {
                self.buf.reserve(end - self.buf.len());
                match self.client.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return Next::Hyper,
                    Ok(_) => {}
                }
            }
            let head_request = self.buf.get(head.method.clone()) == Some(b"HEAD".as_slice());
            upstream_request(&mut self.out, &self.buf, &head, &self.fields, peer);
            // Sent before it is recorded: the upstream works on it while the
            // record is made.
            let sent = self.send(&target.authority).await;
            let request = self.buf.get(..end).unwrap_or_default();
            let recording = Recording::new(
                &state.store,
                started,
                request,
                &head,
                &self.fields,
                peer,
                &target.origin,
            );
            self.buf.drain(..end);
            if !self
                .exchange(state, sent, &target, recording, head_request)
                .await
            {
                return Next::Close;
            }
        }
    }

    /// Relays the response to the request `sent` to `target`, recording
    /// it into `rec`. False when the client connection cannot go on.
    async fn exchange(
        &mut self,
        state: &ProxyState,
        sent: Result<Upstream, UpstreamError>,
        target: &Target,
        mut rec: Recording<'_>,
        head_request: bool,
    ) -> bool {
        let mut up = match sent {
            Ok(up) => up,
            Err(e) => {
                return self.bad_gateway(rec, target, proxy::error_chain(&e)).await;
            }
        };
        // The response head (informational ones skipped).
        let (head_len, (mut framing, reuse)) = loop {
            let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
            let mut resp = httparse::Response::new(&mut fields);
            match resp.parse(&up.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let status = resp.code.unwrap_or(0);
                    if (100..200).contains(&status) && status != 101 {
                        up.buf.drain(..n);
                        continue;
                    }
                    if status == 101 {
                        let why = "it switched protocols unasked".to_owned();
                        return self.bad_gateway(rec, target, why).await;
                    }
                    match response_head(&mut self.out, &resp, head_request) {
                        Ok((framing, reuse, watched)) => {
                            let head = up.buf.get(..n).unwrap_or_default();
                            rec.response(head, status, head_request, watched.json, watched.encoded);
                            break (n, (framing, reuse));
                        }
                        Err(why) => return self.bad_gateway(rec, target, why).await,
                    }
                }
                Ok(httparse::Status::Partial) if up.buf.len() < MAX_HEAD => {}
                Ok(httparse::Status::Partial) => {
                    let why = "its response head is too long".to_owned();
                    return self.bad_gateway(rec, target, why).await;
                }
                Err(e) => {
                    let why = format!("invalid response head: {e}");
                    return self.bad_gateway(rec, target, why).await;
                }
            }
            up.buf.reserve(READ_CHUNK);
            match up.stream.read_buf(&mut up.buf).await {
                Ok(0) => {
                    let why = "the connection closed before the response".to_owned();
                    return self.bad_gateway(rec, target, why).await;
                }
                Err(e) => {
                    let why = format!("reading the response failed: {e}");
                    return self.bad_gateway(rec, target, why).await;
                }
                Ok(_) => {}
            }
        };
        let close_client = matches!(framing, Framing::Close);
        // The body, relayed as framed and captured up to the limit.
        let mut capture = Capture::new(state.max_body, &http_body::SizeHint::default());
        let mut at = head_len;
        let complete = loop {
            let avail = up.buf.get(at..).unwrap_or_default();
            let (used, done) = match &mut framing {
                Framing::Empty => (0, true),
                Framing::Length(left) => {
                    let n = avail
                        .len()
                        .min(usize::try_from(*left).unwrap_or(usize::MAX));
                    *left -= n as u64;
                    capture.push(avail.get(..n).unwrap_or_default());
                    (n, *left == 0)
                }
                Framing::Chunked(chunked) => match chunked.feed(avail, &mut |d| capture.push(d)) {
                    Ok(used) => (used, chunked.done()),
                    Err(()) => {
                        rec.error(format!(
                            "upstream {} failed: invalid chunked body",
                            target.origin
                        ));
                        break false;
                    }
                },
                Framing::Close => {
                    capture.push(avail);
                    (avail.len(), false)
                }
            };
            self.out
                .extend_from_slice(avail.get(..used).unwrap_or_default());
            at += used;
            if done {
                break true;
            }
            if self.client.write_all(&self.out).await.is_err() {
                break false;
            }
            self.out.clear();
            up.buf.clear();
            at = 0;
            up.buf.reserve(READ_CHUNK);
            match up.stream.read_buf(&mut up.buf).await {
                Ok(0) if close_client => break true,
                Ok(0) | Err(_) => break false,
                Ok(_) => {}
            }
        };
        let written = complete && self.client.write_all(&self.out).await.is_ok();
        self.out.clear();
        rec.response_body(capture.finish(complete));
        if complete && reuse && at == up.buf.len() {
            up.buf.clear();
            self.upstreams.push(up);
        }
        written && !close_client
    }

    /// Writes `out` to an open connection to `authority` (a kept one when
    /// it is still open, else a new one) and hands the connection back.
    async fn send(&mut self, authority: &Authority) -> Result<Upstream, UpstreamError> {
        if let Some(i) = self
            .upstreams
            .iter()
            .position(|u| &u.authority == authority)
        {
            let mut up = self.upstreams.swap_remove(i);
            // A write to a connection the upstream closed may still
            // succeed, so look first; once written, a request is never
            // sent again.
            if still_open(&up.stream) && up.stream.write_all(&self.out).await.is_ok() {
                self.out.clear();
                return Ok(up);
            }
        }
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(authority.as_str()))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout(CONNECT_TIMEOUT))?
            .map_err(UpstreamError::Connect)?;
        let _ = stream.set_nodelay(true);
        let mut up = Upstream {
            authority: authority.clone(),
            stream,
            buf: Vec::with_capacity(READ_CHUNK),
        };
        up.stream
            .write_all(&self.out)
            .await
            .map_err(UpstreamError::Connect)?;
        self.out.clear();
        Ok(up)
    }

    /// Answers 502 as the hyper path does, recording why.
    /// False when the client is gone.
    async fn bad_gateway(&mut self, rec: Recording<'_>, target: &Target, why: String) -> bool {
        self.out.clear();
        let Some(pending) = rec.into_pending() else {
            return false;
        };
        let resp = proxy::bad_gateway(&pending, &target.origin, why);
        write_response(&mut self.client, resp).await.is_ok()
    }
}

/// Whether a kept upstream connection is still open, from the readiness the
/// runtime already has (a system call only when the upstream sent
/// something: its close).
fn still_open(stream: &TcpStream) -> bool {
    match stream.ready(Interest::READABLE).now_or_never() {
        None => true,
        Some(Ok(ready)) if !ready.is_read_closed() => {
            let mut byte = [0u8; 1];
            matches!(stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        }
        Some(_) => false,
    }
}

/// Writes a response the proxy made itself.
async fn write_response(
    client: &mut TcpStream,
    resp: http::Response<ProxyBody>,
) -> std::io::Result<()> {
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut out = Vec::with_capacity(256 + body.len());
    let reason = parts.status.canonical_reason().unwrap_or("");
    status_line(&mut out, parts.status.as_u16(), reason);
    for (name, value) in &parts.headers {
        push_field(&mut out, name.as_str().as_bytes(), value.as_bytes());
    }
    push_field(
        &mut out,
        b"content-length",
        body.len().to_string().as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    client.write_all(&out).await
}

/// Where `part`, a slice of `buf`, sits in it.
fn span(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize);
    start..start + part.len()
}

/// `HTTP/1.1 {status} {reason}`, as the client gets it.
fn status_line(out: &mut Vec<u8>, status: u16, reason: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Parses the head at the start of `buf`, keeping its fields' positions in
/// `fields`; `Hyper` for anything this path leaves to hyper.
pub(crate) fn parse_head(buf: &[u8], fields: &mut Vec<Field>) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Parsed::Partial,
        _ => return Parsed::Hyper,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Parsed::Hyper;
    };
    if !target.starts_with('/') || method == "CONNECT" {
        return Parsed::Hyper;
    }
    let at = |s: &[u8]| span(buf, s);
    fields.clear();
    let (mut body, mut host) = (None, None);
    for h in req.headers.iter() {
        let is = |n: &str| h.name.eq_ignore_ascii_case(n);
        if is("content-length") {
            match (body, content_length(h.value)) {
                (None, Some(n)) => body = Some(n),
                _ => return Parsed::Hyper,
            }
        } else if is("host") {
            if host.is_some() {
                return Parsed::Hyper;
            }
            host = Some(at(h.value));
        } else if is("transfer-encoding")
            || is("upgrade")
            || is("expect")
            || is("te")
            || (is("connection") && !h.value.eq_ignore_ascii_case(b"keep-alive"))
        {
            return Parsed::Hyper;
        }
        fields.push((at(h.name.as_bytes()), at(h.value)));
    }
    let Some(host) = host else {
        return Parsed::Hyper;
    };
    Parsed::Head(Head {
        len,
        method: at(method.as_bytes()),
        target: at(target.as_bytes()),
        host,
        body: body.unwrap_or(0),
    })
}

/// A `Content-Length` value: digits only.
fn content_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The request as it goes upstream, into `out`: the head without
/// hop-by-hop fields, `X-Forwarded-For` and `X-Forwarded-Proto` as the
/// hyper path sets them, and the body.
fn upstream_request(out: &mut Vec<u8>, buf: &[u8], head: &Head, fields: &[Field], peer: &Peer) {
    let get = |r: &Range<usize>| buf.get(r.clone()).unwrap_or_default();
    out.clear();
    out.extend_from_slice(get(&head.method));
    out.push(b' ');
    out.extend_from_slice(get(&head.target));
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut forwarded_for: Vec<&[u8]> = Vec::new();
    let mut has_proto = false;
    for (name, value) in fields {
        let name = get(name);
        let text = std::str::from_utf8(name).unwrap_or("");
        if is_hop_by_hop_name(text) {
            continue;
        }
        if text.eq_ignore_ascii_case("x-forwarded-for") {
            forwarded_for.push(get(value));
            continue;
        }
        has_proto |= text.eq_ignore_ascii_case("x-forwarded-proto");
        push_field(out, name, get(value));
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    for v in forwarded_for {
        out.extend_from_slice(v);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(peer.ip.as_bytes());
    out.extend_from_slice(b"\r\n");
    if !has_proto {
        out.extend_from_slice(b"x-forwarded-proto: http\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(get(&(head.len..head.len + head.body)));
}

/// How a response is relayed, read from its head.
struct Relay<'b> {
    status: u16,
    http10: bool,
    framing: Framing,
    /// The upstream connection can carry another request.
    reuse: bool,
    /// The tokens of its `Connection` fields.
    connection: Vec<&'b [u8]>,
}

impl Relay<'_> {
    /// Whether a field is relayed and recorded: not hop-by-hop, not named
    /// by `Connection`, and not a `Content-Length` beside chunked framing
    /// (which would contradict it). `Transfer-Encoding` is relayed (the
    /// body goes as it came) but, as on hyper's path, not recorded.
    fn keeps(&self, name: &str) -> bool {
        let named = self
            .connection
            .iter()
            .any(|c| c.eq_ignore_ascii_case(name.as_bytes()));
        let stale_length = matches!(self.framing, Framing::Chunked(_))
            && name.eq_ignore_ascii_case("content-length");
        !is_hop_by_hop_name(name) && !named && !stale_length
    }
}

/// Reads how a response is relayed from its head (RFC 9112 6.3), or why
/// it cannot be.
fn relay<'b>(resp: &httparse::Response<'_, 'b>, head_request: bool) -> Result<Relay<'b>, String> {
    let status = resp.code.unwrap_or(0);
    let http10 = resp.version == Some(0);
    let mut connection: Vec<&[u8]> = Vec::new();
    let mut chunked = None;
    let mut length: Option<u64> = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            connection.extend(h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii));
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .map(<[u8]>::trim_ascii);
            chunked = Some(last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n = content_length(h.value).map(|n| n as u64);
            if n.is_none() || length.is_some_and(|l| Some(l) != n) {
                return Err("its Content-Length is invalid".to_owned());
            }
            length = n;
        }
    }
    let framing = if head_request || status == 204 || status == 304 {
        Framing::Empty
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked(Chunked::default()),
            (Some(false), _) | (None, None) => Framing::Close,
            (None, Some(0)) => Framing::Empty,
            (None, Some(n)) => Framing::Length(n),
        }
    };
    let token = |t: &[u8]| connection.iter().any(|c| c.eq_ignore_ascii_case(t));
    let reuse =
        !matches!(framing, Framing::Close) && !token(b"close") && (!http10 || token(b"keep-alive"));
    Ok(Relay {
        status,
        http10,
        framing,
        reuse,
        connection,
    })
}

/// What the key watcher's test reads of a response head: its (first)
/// recorded `Content-Type` mentions JSON; it has a `Content-Encoding`.
#[derive(Clone, Copy)]
struct Watched {
    json: bool,
    encoded: bool,
}

/// Writes the head the client gets into `out`. Returns how the body is
/// framed, whether the upstream connection can carry another request and
/// what the key watcher reads, or why the head cannot be relayed.
fn response_head(
    out: &mut Vec<u8>,
    resp: &httparse::Response<'_, '_>,
    head_request: bool,
) -> Result<(Framing, bool, Watched), String> {
    let relay = relay(resp, head_request)?;
    let mut watched = Watched {
        json: false,
        encoded: false,
    };
    let mut typed = false;
    out.clear();
    status_line(out, relay.status, resp.reason.unwrap_or(""));
    for h in resp.headers.iter() {
        let kept = relay.keeps(h.name);
        if kept && !typed && h.name.eq_ignore_ascii_case("content-type") {
            typed = true;
            watched.json = json_type(h.value);
        }
        watched.encoded |= kept && h.name.eq_ignore_ascii_case("content-encoding");
        if kept || h.name.eq_ignore_ascii_case("transfer-encoding") {
            push_field(out, h.name.as_bytes(), h.value);
        }
    }
    if matches!(relay.framing, Framing::Close) {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok((relay.framing, relay.reuse, watched))
}

/// The record of a response head the fast path relayed (`head`, as
/// received), as [`response_head`] relayed it.
pub(crate) fn recorded_response(head: &[u8], head_request: bool) -> ResponseHead {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut resp = httparse::Response::new(&mut fields);
    let parsed = resp.parse(head).is_ok_and(|s| s.is_complete());
    match relay(&resp, head_request) {
        Ok(relay) if parsed => {
            let at = |s: &[u8]| span(head, s);
            let fields: Vec<Field> = resp
                .headers
                .iter()
                .map(|h| (at(h.name.as_bytes()), at(h.value)))
                .collect();
            ResponseHead {
                status: relay.status,
                version: if relay.http10 { "HTTP/1.0" } else { "HTTP/1.1" },
                headers: record_head(head, &fields, |n| relay.keeps(n)),
                empty: matches!(relay.framing, Framing::Empty),
            }
        }
        // It was relayed, so it parses; this is never reached.
        _ => ResponseHead {
            status: resp.code.unwrap_or(0),
            version: "HTTP/1.1",
            headers: Headers::default(),
            empty: false,
        },
    }
}

/// The fields to record, in the order hyper's `HeaderMap` keeps them (a
/// name's fields together, names in order of first appearance), so a
/// record reads the same whichever path served it.
pub(crate) fn record_head(buf: &[u8], fields: &[Field], keep: impl Fn(&str) -> bool) -> Headers {
    let text = |r: &Range<usize>| buf.get(r.clone()).unwrap_or_default();
    let names: Vec<&str> = fields
        .iter()
        .map(|f| std::str::from_utf8(text(&f.0)).unwrap_or(""))
        .collect();
    let mut order = Vec::with_capacity(fields.len());
    for (i, &n) in names.iter().enumerate() {
        let seen = || names.iter().take(i).any(|m| m.eq_ignore_ascii_case(n));
        if !keep(n) || seen() {
            continue;
        }
        order.push(i);
        let same = names.iter().enumerate().skip(i + 1);
        order.extend(
            same.filter(|(_, m)| m.eq_ignore_ascii_case(n))
                .map(|(j, _)| j),
        );
    }
    record_fields(order.len(), || {
        order.iter().filter_map(|&i| {
            let name = names.get(i)?;
            Some((*name, text(&fields.get(i)?.1)))
        })
    })
}

/// Finds the end of a chunked body (RFC 9112 7.1) fed in pieces, handing
/// out the data it carries.
#[derive(Default)]
struct Chunked {
    state: ChunkState,
    /// The size being read, then what is left of the chunk.
    left: u64,
    digits: u8,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    EndLf,
    Done,
}

impl Chunked {
    fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Reads from `input` up to the body's end; returns how many bytes it
    /// took.
    fn feed(&mut self, input: &[u8], data: &mut impl FnMut(&[u8])) -> Result<usize, ()> {
        use ChunkState as S;
        let mut i = 0;
        while i < input.len() && self.state != S::Done {
            if self.state == S::Data {
                let n = (input.len() - i).min(usize::try_from(self.left).unwrap_or(usize::MAX));
                data(input.get(i..i + n).unwrap_or_default());
                self.left -= n as u64;
                i += n;
                if self.left == 0 {
                    self.state = S::DataCr;
                }
                continue;
            }
            let b = input.get(i).copied().unwrap_or(0);
            i += 1;
            self.state = match (self.state, b) {
                (S::Size, b) if b.is_ascii_hexdigit() => {
                    let d = (b as char).to_digit(16).unwrap_or(0);
                    self.digits += 1;
                    if self.digits > 15 {
                        return Err(());
                    }
                    self.left = self.left * 16 + u64::from(d);
                    S::Size
                }
                (S::Size, b';' | b' ' | b'\t') if self.digits > 0 => S::Extension,
                (S::Size, b'\r') if self.digits > 0 => S::SizeLf,
                (S::Extension, b'\r') => S::SizeLf,
                (S::Extension, b'\n') => return Err(()),
                (S::Extension, _) => S::Extension,
                (S::SizeLf, b'\n') if self.left == 0 => S::TrailerStart,
                (S::SizeLf, b'\n') => S::Data,
                (S::DataCr, b'\r') => S::DataLf,
                (S::DataLf, b'\n') => {
                    self.digits = 0;
                    S::Size
                }
                (S::TrailerStart, b'\r') => S::EndLf,
                (S::TrailerStart | S::Trailer, b'\n') => S::TrailerStart,
                (S::TrailerStart | S::Trailer, _) => S::Trailer,
                (S::EndLf, b'\n') => S::Done,
                _ => return Err(()),
            };
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dechunk(pieces: &[&[u8]]) -> Result<(Vec<u8>, usize, bool), ()> {
        let mut c = Chunked::default();
        let mut data = Vec::new();
        let mut used = 0;
        for p in pieces {
            used += c.feed(p, &mut |d| data.extend_from_slice(d))?;
        }
        Ok((data, used, c.done()))
    }

    #[test]
    fn chunked_bodies_end_where_they_end() {
        let body: &[u8] = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\nNEXT";
        let (data, used, done) = dechunk(&[body]).unwrap_or_default();
        assert_eq!(data, b"hello, world");
        assert_eq!(used, body.len() - 4, "stops before the next message");
        assert!(done);
        // Fed a byte at a time, the same.
        let bytes: Vec<&[u8]> = body[..body.len() - 4].chunks(1).collect();
        let (data, _, done) = dechunk(&bytes).unwrap_or_default();
        assert_eq!((data.as_slice(), done), (b"hello, world".as_slice(), true));
        // Trailer fields are passed over.
        let (data, _, done) = dechunk(&[b"3\r\nabc\r\n0\r\nx-t: 1\r\n\r\n"]).unwrap_or_default();
        assert_eq!((data.as_slice(), done), (b"abc".as_slice(), true));
        // Unfinished is not done.
        let (_, _, done) = dechunk(&[b"3\r\nab"]).unwrap_or_default();
        assert!(!done);
    }

    #[test]
    fn malformed_chunks_are_refused() {
        for bad in [
            b"x\r\n".as_slice(),
            b"\r\n",
            b"3\r\nabcd\r\n",
            b"fffffffffffffffff\r\n",
            b"3\nabc",
        ] {
            assert!(
                dechunk(&[bad]).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn parsed(head: &[u8]) -> Option<Head> {
        match parse_head(head, &mut Vec::new()) {
            Parsed::Head(h) => Some(h),
            _ => None,
        }
    }

    #[test]
    fn what_the_fast_path_takes_and_what_it_leaves() {
        let ok = b"POST /inbox HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2\r\n\r\n{}";
        let head = parsed(ok).map(|h| (h.len, h.body));
        assert_eq!(head, Some((ok.len() - 2, 2)));
        assert!(matches!(
            parse_head(&ok[..20], &mut Vec::new()),
            Parsed::Partial
        ));
        for hyper in [
            b"POST /i HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".as_slice(),
            b"POST /i HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            b"POST /i HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
            b"GET /i HTTP/1.0\r\nHost: a\r\n\r\n",
            b"GET /i HTTP/1.1\r\n\r\n",
            b"GET /i HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET http://a/i HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /i HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"PUT /i HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            b"GET /i HTTP/1.1\r\nHost a\r\n\r\n",
        ] {
            assert!(
                matches!(parse_head(hyper, &mut Vec::new()), Parsed::Hyper),
                "{}",
                String::from_utf8_lossy(hyper)
            );
        }
    }

    #[test]
    fn a_record_lists_fields_as_hyper_does() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nAccept: x\r\nX-A: 1\r\naccept: y\r\n\r\n";
        let mut fields = Vec::new();
        assert!(matches!(parse_head(head, &mut fields), Parsed::Head(_)));
        let recorded: Vec<(String, String)> = record_head(head, &fields, |_| true)
            .iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        let mut map = http::HeaderMap::new();
        for (n, v) in [
            ("Host", "a"),
            ("Accept", "x"),
            ("X-A", "1"),
            ("accept", "y"),
        ] {
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(n.as_bytes()),
                http::HeaderValue::from_str(v),
            ) {
                map.append(n, v);
            }
        }
        let by_hyper: Vec<(String, String)> = crate::capture::record_headers(&map)
            .iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(recorded, by_hyper);
        assert_eq!(recorded.get(2).map(|f| f.1.as_str()), Some("y"));
    }
}
