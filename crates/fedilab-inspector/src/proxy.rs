//! The reverse proxy: accepts HTTP/1 connections, routes each request by its
//! Host header (and the longest matching path prefix) to the configured
//! upstream, forwards method, path, query,
//! headers and body unchanged (minus hop-by-hop fields, plus
//! X-Forwarded-For / X-Forwarded-Proto), passes WebSocket upgrades through,
//! and records every exchange into the store.
//!
//! A connection starts on the fast path (`fast`), a small forwarder for
//! plain requests; this module's hyper path serves it from the first
//! request that is not plain. Malformed requests get hyper's 400 (a bad
//! request line or header) and only that connection closes. No
//! ActivityPub parsing happens here.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, StatusCode, Uri};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::capture::{
    Pending, RequestHead, ResponseHead, Side, Started, TeeBody, record_headers, version_str,
};
use crate::config::SignatureConfig;
use crate::exchange::{Body as ExBody, Exchange, Marks, UpgradeRecord};
use crate::fault::{Corrupt, Effect, Faults, Rule};
use crate::routes::{SharedRoutes, Target};
use crate::store::Store;
use crate::upstream::Upstreams;

/// What the proxy hands back to hyper.
pub(crate) type ProxyBody = BoxBody<Bytes, hyper::Error>;

pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request head (and stay idle
/// between requests).
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Shared by every connection.
#[derive(Debug)]
pub(crate) struct ProxyState {
    pub(crate) routes: SharedRoutes,
    client: Client<HttpConnector, TeeBody<OutBody>>,
    pub(crate) store: Arc<Store>,
    pub(crate) max_body: usize,
    pub(crate) faults: Arc<Faults>,
    signatures: SignatureConfig,
}

impl ProxyState {
    pub(crate) fn new(
        routes: SharedRoutes,
        store: Arc<Store>,
        max_body: usize,
        faults: Arc<Faults>,
        signatures: SignatureConfig,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(512)
            .build(connector);
        Self {
            routes,
            client,
            store,
            max_body,
            faults,
            signatures,
        }
    }
}

/// The body the proxy forwards: the client's stream as it comes, or read
/// (partly) first because a fault rule needed it. No allocation for the
/// stream case.
#[derive(Debug)]
pub(crate) enum OutBody {
    /// The client's body, untouched.
    Incoming(Incoming),
    /// Read whole (`None` once sent, or when empty).
    Full(Option<Bytes>),
    /// The first bytes, read; then the rest of the stream.
    Chain(Option<Bytes>, Incoming),
}

impl OutBody {
    /// Reads up to `cap` bytes: [`OutBody::Full`] when the body ended
    /// within them, else [`OutBody::Chain`] of what was read and the rest.
    async fn read_up_to(self, cap: usize) -> Result<Self, hyper::Error> {
        let OutBody::Incoming(mut body) = self else {
            return Ok(self);
        };
        let mut buf: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                buf.extend_from_slice(&data);
                if buf.len() > cap && !body.is_end_stream() {
                    return Ok(OutBody::Chain(Some(Bytes::from(buf)), body));
                }
            }
        }
        Ok(OutBody::Full((!buf.is_empty()).then(|| Bytes::from(buf))))
    }

    /// The same body with one letter's case flipped (the last letter inside
    /// a JSON string, so JSON stays JSON), of the same length.
    fn corrupted(self) -> Self {
        match self {
            OutBody::Full(Some(b)) => OutBody::Full(Some(corrupt_bytes(&b))),
            OutBody::Chain(Some(b), rest) => OutBody::Chain(Some(corrupt_bytes(&b)), rest),
            other => other,
        }
    }
}

/// Flips the case of the last ASCII letter that sits inside a JSON string
/// (any last letter when there is no string).
pub(crate) fn corrupt_bytes(body: &[u8]) -> Bytes {
    let mut out = body.to_vec();
    let mut in_string = false;
    let mut escaped = false;
    let mut last_in_string = None;
    let mut last_letter = None;
    for (i, &c) in body.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            } else if c.is_ascii_alphabetic() {
                last_in_string = Some(i);
            }
        } else if c == b'"' {
            in_string = true;
        }
        if c.is_ascii_alphabetic() {
            last_letter = Some(i);
        }
    }
    if let Some(c) = last_in_string.or(last_letter).and_then(|i| out.get_mut(i)) {
        *c ^= 0x20;
    }
    Bytes::from(out)
}

impl http_body::Body for OutBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut *self {
            OutBody::Incoming(b) => Pin::new(b).poll_frame(cx),
            OutBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            OutBody::Chain(first, rest) => match first.take() {
                Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                None => Pin::new(rest).poll_frame(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            OutBody::Incoming(b) => b.is_end_stream(),
            OutBody::Full(b) => b.is_none(),
            OutBody::Chain(first, rest) => first.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            OutBody::Incoming(b) => b.size_hint(),
            OutBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            OutBody::Chain(first, rest) => {
                let n = first.as_ref().map_or(0, |b| b.len() as u64);
                let r = rest.size_hint();
                let mut h = SizeHint::new();
                h.set_lower(r.lower() + n);
                if let Some(u) = r.upper() {
                    h.set_upper(u + n);
                }
                h
            }
        }
    }
}

/// Runs the proxy on `threads` threads of its own, each with a
/// single-threaded runtime accepting from the same listening socket, as
/// nginx runs workers: a connection lives on the thread that accepted it,
/// so no request is handed between threads, and the UI, the API and
/// signature checks (on the caller's runtime) never hold a connection up.
/// The handles finish when the threads do (after `shutdown` flips).
///
/// # Errors
/// When a runtime, the listener's registration or a thread cannot be made.
pub(crate) fn spawn(
    listener: TcpListener,
    state: &Arc<ProxyState>,
    shutdown: &watch::Receiver<bool>,
    threads: usize,
) -> std::io::Result<Vec<tokio::task::JoinHandle<()>>> {
    let listener = listener.into_std()?;
    let port = listener.local_addr()?.port();
    let mut handles = Vec::new();
    for i in 0..threads.max(1) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = {
            let _in = runtime.enter();
            TcpListener::from_std(listener.try_clone()?)?
        };
        let (state, shutdown) = (Arc::clone(state), shutdown.clone());
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            // Shown by `top -H` (at most 15 bytes).
            .name(proxy_thread_name(port, i))
            .spawn(move || {
                runtime.block_on(serve(listener, state, shutdown));
                // Connections still open end here, with their runtime.
                drop(runtime);
                let _ = done.send(());
            })?;
        handles.push(tokio::spawn(async move {
            let _ = finished.await;
        }));
    }
    Ok(handles)
}

/// The name of the proxy's `i`th thread on `port`.
fn proxy_thread_name(port: u16, i: usize) -> String {
    format!("proxy:{port}/{i}")
}

/// Accepts connections until `shutdown` flips; each connection is served
/// on its own task.
async fn serve(listener: TcpListener, state: Arc<ProxyState>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly
                // instead of spinning.
                tracing::warn!(error = %e, "proxy accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(crate::fast::connection(Arc::clone(&state), stream, peer));
    }
}

/// Serves the rest of a client connection with hyper, starting with the
/// bytes the fast path already read from it (`read`).
pub(crate) async fn serve_hyper(
    state: Arc<ProxyState>,
    stream: TcpStream,
    read: Bytes,
    client: Arc<Peer>,
) {
    let (upstreams, drivers) = Upstreams::new(CONNECT_TIMEOUT);
    let svc = {
        let client = Arc::clone(&client);
        service_fn(move |req| {
            let state = Arc::clone(&state);
            // An `Err` (a `reset` fault) ends the connection unanswered.
            handle(state, Arc::clone(&client), Arc::clone(&upstreams), req)
        })
    };
    let peer = client.text.clone();
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(
            TokioIo::new(ClientStream {
                stream,
                read,
                peer: client,
            }),
            svc,
        )
        .with_upgrades();
    if let Err(e) = drivers.beside(conn).await {
        tracing::debug!(%peer, error = %e, "proxy connection ended with an error");
    }
}

/// The Host a request is for: the authority of an absolute URI, else the
/// Host header; lower case, without port or trailing dot.
pub(crate) fn request_host(uri: &Uri, headers: &HeaderMap) -> String {
    let raw = uri
        .authority()
        .map(Authority::as_str)
        .or_else(|| headers.get(header::HOST).and_then(|v| v.to_str().ok()))
        .unwrap_or("");
    normal_host(raw)
}

/// A Host value as routes name it: lower case, without port or trailing
/// dot.
pub(crate) fn normal_host(raw: &str) -> String {
    strip_port(raw).trim_end_matches('.').to_ascii_lowercase()
}

fn strip_port(authority: &str) -> &str {
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if authority.starts_with('[') {
        return authority
            .find(']')
            .and_then(|i| authority.get(..=i))
            .unwrap_or(authority);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes hop-by-hop fields (RFC 9110 7.6.1), including those the
/// Connection field names. With `keep_upgrade`, Connection and Upgrade
/// stay (for WebSocket).
fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most requests carry none (HTTP/1.1 keeps connections alive without a
    // Connection field); most responses carry just `Connection:
    // keep-alive`. One pass over the names finds them, and only the names
    // present are removed (each removal is a hash lookup).
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let mut doomed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| headers.contains_key(n))
        .collect();
    doomed.extend(headers.keys().filter(|n| is_hop_by_hop(n)).cloned());
    for name in doomed {
        if keep_upgrade && (name == header::UPGRADE || name == header::CONNECTION) {
            continue;
        }
        headers.remove(name);
    }
}

/// A field that is only about the one connection it came on (those a
/// Connection field names are found through it).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    is_hop_by_hop_name(name.as_str())
}

/// The fields that are only about one connection (RFC 9110 7.6.1).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// [`is_hop_by_hop`] for a name in any case.
pub(crate) fn is_hop_by_hop_name(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// The client end of a proxied connection, formatted once per connection
/// (not per request).
#[derive(Debug)]
pub(crate) struct Peer {
    /// `ip:port`, as recorded.
    pub(crate) text: String,
    /// The address alone, as `X-Forwarded-For` gets it.
    pub(crate) ip: HeaderValue,
    /// A `reset` fault rule ends this connection with a TCP RST.
    reset: AtomicBool,
}

impl Peer {
    pub(crate) fn new(addr: SocketAddr) -> Self {
        let ip = addr.ip().to_string();
        Self {
            text: addr.to_string(),
            ip: HeaderValue::from_str(&ip).unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            reset: AtomicBool::new(false),
        }
    }
}

/// The client's connection, as hyper reads it: first the bytes the fast
/// path had read, then the socket. When a `reset` fault rule fired, it is
/// neither shut down nor closed gracefully: closing it with a zero linger
/// time sends a TCP RST, as a crashed or overloaded server's kernel would.
struct ClientStream {
    stream: TcpStream,
    read: Bytes,
    peer: Arc<Peer>,
}

impl ClientStream {
    fn resetting(&self) -> bool {
        self.peer.reset.load(Ordering::Relaxed)
    }
}

impl Drop for ClientStream {
    fn drop(&mut self) {
        if self.resetting() {
            let _ = rustix::net::sockopt::set_socket_linger(&self.stream, Some(Duration::ZERO));
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.read.is_empty() {
            let n = this.read.len().min(buf.remaining());
            buf.put_slice(&this.read.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.resetting() {
            // No FIN first: the close in `drop` resets.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

fn add_forwarded(headers: &mut HeaderMap, peer: &Peer) {
    if headers.contains_key(X_FORWARDED_FOR) {
        let mut xff = Vec::new();
        for v in headers.get_all(X_FORWARDED_FOR) {
            xff.extend_from_slice(v.as_bytes());
            xff.extend_from_slice(b", ");
        }
        xff.extend_from_slice(peer.ip.as_bytes());
        if let Ok(v) = HeaderValue::from_bytes(&xff) {
            headers.insert(X_FORWARDED_FOR, v);
        }
    } else {
        headers.insert(X_FORWARDED_FOR, peer.ip.clone());
    }
    if !headers.contains_key(X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
}

fn full(body: Bytes) -> ProxyBody {
    Full::new(body).map_err(|never| match never {}).boxed()
}

pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let _ = write!(out, ": {s}");
        src = s.source();
    }
    out
}

fn local_response(
    pending: &Pending,
    status: StatusCode,
    content_type: &'static str,
    body: String,
) -> Response<ProxyBody> {
    let body = Bytes::from(body);
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert("x-fedilab-inspector", HeaderValue::from_static("1"));
    pending.set_local_response(
        ResponseHead {
            status: status.as_u16(),
            version: "HTTP/1.1",
            headers: record_headers(&headers),
            empty: body.is_empty(),
        },
        &body,
    );
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn unknown_host(
    state: &ProxyState,
    pending: &Pending,
    host: &str,
    path: &str,
) -> Response<ProxyBody> {
    let hosts = state.routes.load().hosts();
    if hosts.iter().any(|h| h == host) {
        pending.set_error(format!("no route for path {path:?} of host {host:?}"));
    } else {
        pending.set_error(format!("no route for host {host:?}"));
    }
    let mut page = String::from(
        "<!doctype html><meta charset=utf-8><title>502 unknown host</title>\
         <h1>502: the fedilab inspector has no route for this host</h1>",
    );
    let _ = write!(
        page,
        "<p>Host: <code>{}</code></p><p>Known hosts:</p><ul>",
        html_escape(if host.is_empty() { "(none)" } else { host })
    );
    for h in &hosts {
        let _ = write!(page, "<li><code>{}</code></li>", html_escape(h));
    }
    page.push_str("</ul>\n");
    local_response(
        pending,
        StatusCode::BAD_GATEWAY,
        "text/html; charset=utf-8",
        page,
    )
}

pub(crate) fn bad_gateway(pending: &Pending, origin: &str, why: String) -> Response<ProxyBody> {
    let msg = format!("upstream {origin} failed: {why}");
    pending.set_error(msg.clone());
    local_response(
        pending,
        StatusCode::BAD_GATEWAY,
        "text/plain; charset=utf-8",
        msg + "\n",
    )
}

fn path_and_query(uri: &Uri) -> PathAndQuery {
    uri.path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"))
}

/// The connection ends without an answer: a `reset` fault rule.
#[derive(Debug, thiserror::Error)]
#[error("connection reset by fault rule {0}")]
pub(crate) struct FaultReset(u64);

async fn handle(
    state: Arc<ProxyState>,
    peer: Arc<Peer>,
    upstreams: Arc<Upstreams>,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, FaultReset> {
    let started = Started::now();
    let host = request_host(req.uri(), req.headers());
    let target = state.routes.load().lookup(&host, req.uri().path()).cloned();
    let pq = path_and_query(req.uri());
    let upgrade = is_upgrade(req.headers());
    let pending = Pending::new(
        Arc::clone(&state.store),
        RequestHead {
            started,
            client: Some(peer.text.clone()),
            host,
            upstream: target.as_ref().map(|t| t.origin.to_string()),
            method: req.method().as_str().to_owned(),
            uri: pq.as_str().to_owned(),
            version: version_str(req.version()),
            headers: record_headers(req.headers()),
            empty: req.body().is_end_stream(),
            marks: Marks::default(),
            notify: None,
        },
    );
    let Some(target) = target else {
        let host = request_host(req.uri(), req.headers());
        return Ok(unknown_host(&state, &pending, &host, req.uri().path()));
    };
    if upgrade {
        let on_upgrade = hyper::upgrade::on(&mut req);
        return Ok(proxy_upgrade(&state, pending, &target, req, on_upgrade, &peer, pq).await);
    }

    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers, false);
    add_forwarded(&mut headers, &peer);
    if !headers.contains_key(header::HOST)
        && let Ok(v) = HeaderValue::from_str(target.authority.as_str())
    {
        headers.insert(header::HOST, v);
    }
    // Origin form, as sent upstream.
    let uri = Uri::from(pq);
    let mut body = OutBody::Incoming(body);
    let mut duplicate = None;
    // The only cost without rules: one relaxed load.
    if state.faults.any()
        && state
            .faults
            .load()
            .rules
            .iter()
            .any(|r| r.head_matches(pending.host(), parts.method.as_str(), uri.path()))
    {
        let decided = match decide(&state, &pending, &parts.method, &uri, body).await {
            Ok(d) => d,
            Err(e) => {
                pending.set_error(format!("reading the request body failed: {e}"));
                return Ok(local_response(
                    &pending,
                    StatusCode::BAD_REQUEST,
                    "text/plain; charset=utf-8",
                    "the request body could not be read\n".to_owned(),
                ));
            }
        };
        body = decided.body;
        if let Some(rule) = decided.rule {
            pending.set_fault(rule.mark());
            match &rule.effect {
                Effect::Delay(d) if d.is_zero() => {}
                Effect::Delay(d) => tokio::time::sleep(*d).await,
                Effect::Status {
                    status,
                    body: text,
                    retry_after,
                } => {
                    drain(TeeBody::new(
                        body,
                        state.max_body,
                        Side::Request,
                        Arc::clone(&pending),
                    ))
                    .await;
                    return Ok(fault_response(
                        &pending,
                        rule.id,
                        *status,
                        text,
                        *retry_after,
                    ));
                }
                Effect::Reset => {
                    drain(TeeBody::new(
                        body,
                        state.max_body,
                        Side::Request,
                        Arc::clone(&pending),
                    ))
                    .await;
                    pending.set_error(format!("connection reset by fault rule {}", rule.id));
                    peer.reset.store(true, Ordering::Relaxed);
                    return Err(FaultReset(rule.id));
                }
                Effect::Corrupt(Corrupt::Body) => body = body.corrupted(),
                Effect::Corrupt(Corrupt::Signature) => {
                    if corrupt_signature(&mut headers) {
                        let mut first = true;
                        let recorded = pending
                            .request_headers()
                            .iter()
                            .map(|(n, v)| {
                                if first && n == "signature" {
                                    first = false;
                                    (n, corrupt_b64_run(v))
                                } else {
                                    (n, v.to_owned())
                                }
                            })
                            .collect();
                        pending.set_forwarded_headers(recorded);
                    }
                }
                Effect::Duplicate => {
                    if let OutBody::Full(whole) = &body {
                        duplicate = Some((
                            Outgoing {
                                host: pending.host().to_owned(),
                                method: parts.method.clone(),
                                uri: pending_uri(&uri),
                                headers: headers.clone(),
                                body: whole.clone().unwrap_or_default(),
                            },
                            rule.mark(),
                        ));
                    }
                }
            }
        }
    }
    let mut out = Request::new(TeeBody::new(
        body,
        state.max_body,
        Side::Request,
        Arc::clone(&pending),
    ));
    *out.method_mut() = parts.method;
    *out.uri_mut() = uri;
    *out.headers_mut() = headers;

    let answer = match upstreams.send(&target.authority, out).await {
        Ok(resp) => forward_response(&state, pending, resp),
        Err(e) => bad_gateway(&pending, &target.origin, error_chain(&e)),
    };
    if let Some((again, mark)) = duplicate {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let marks = Marks {
                fault: Some(mark),
                ..Marks::default()
            };
            if let Err(e) =
                send_recorded(&state, again, "fedilab-inspector (duplicate)", marks).await
            {
                tracing::debug!(error = %e, "the duplicate delivery failed");
            }
        });
    }
    Ok(answer)
}

fn pending_uri(uri: &Uri) -> String {
    path_and_query(uri).as_str().to_owned()
}

/// Reads a body to its end, keeping nothing (a [`TeeBody`] records it).
async fn drain<B: http_body::Body + Unpin>(mut body: B) {
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            break;
        }
    }
}

/// A `status` fault's answer, made without forwarding.
fn fault_response(
    pending: &Pending,
    rule: u64,
    status: StatusCode,
    text: &Option<String>,
    retry_after: Option<u64>,
) -> Response<ProxyBody> {
    let body = Bytes::from(text.clone().unwrap_or_default());
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert("x-fedilab-inspector", HeaderValue::from_static("1"));
    headers.insert("x-fedilab-fault", HeaderValue::from(rule));
    if let Some(secs) = retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    pending.set_local_response(
        ResponseHead {
            status: status.as_u16(),
            version: "HTTP/1.1",
            headers: record_headers(&headers),
            empty: body.is_empty(),
        },
        &body,
    );
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// What the rules decided for one request: the body to forward (read
/// whole when a rule needed it) and the rule that applies, if any.
struct Decision {
    body: OutBody,
    rule: Option<Arc<Rule>>,
}

async fn decide(
    state: &ProxyState,
    pending: &Pending,
    method: &http::Method,
    uri: &Uri,
    body: OutBody,
) -> Result<Decision, hyper::Error> {
    let set = state.faults.load();
    let now = state.faults.now();
    let host = pending.host();
    let candidates: Vec<&Arc<Rule>> = set
        .rules
        .iter()
        .filter(|r| r.head_matches(host, method.as_str(), uri.path()))
        .collect();
    if candidates.is_empty() {
        return Ok(Decision { body, rule: None });
    }
    let wants_body = candidates
        .iter()
        .any(|r| r.spec.matches_on_body() || r.spec.acts_on_body());
    let body = if wants_body {
        body.read_up_to(state.max_body).await?
    } else {
        body
    };
    let analysis = if candidates.iter().any(|r| r.spec.matches_on_body()) {
        Some(analyze_request(state, pending, host, method, uri, &body))
    } else {
        None
    };
    let rule = candidates.into_iter().find(|r| {
        let body_ok = !r.spec.matches_on_body()
            || analysis
                .as_ref()
                .is_some_and(|a| r.body_matches(a.from.as_deref(), a.activity.as_deref()));
        body_ok && r.take(now)
    });
    Ok(Decision {
        body,
        rule: rule.cloned(),
    })
}

/// The sender and the activity of a request, by the same analysis the
/// list shows (on a record made of the head and the body read so far).
fn analyze_request(
    state: &ProxyState,
    pending: &Pending,
    host: &str,
    method: &http::Method,
    uri: &Uri,
    body: &OutBody,
) -> crate::analysis::Analysis {
    let captured = match body {
        OutBody::Full(b) | OutBody::Chain(b, _) => b.clone().unwrap_or_default(),
        OutBody::Incoming(_) => Bytes::new(),
    };
    let whole = matches!(body, OutBody::Full(_));
    let ex = Exchange::unanswered(
        host,
        method.as_str(),
        &pending_uri(uri),
        pending.request_headers().clone(),
        ExBody {
            size: captured.len() as u64,
            truncated: !whole,
            complete: whole,
            captured,
        },
    );
    crate::analysis::analyze(&ex, &state.signatures)
}

/// Flips one character in the middle of the signature value of the first
/// `Signature` field; false when there is none.
fn corrupt_signature(headers: &mut HeaderMap) -> bool {
    let Some(value) = headers.get("signature").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    match HeaderValue::from_str(&corrupt_b64_run(value)) {
        Ok(v) => {
            headers.insert("signature", v);
            true
        }
        Err(_) => false,
    }
}

/// `value` with one character changed in the middle of its longest run of
/// base64 characters (the signature bytes, in both draft-cavage's
/// `signature="..."` and RFC 9421's `sig1=:...:`).
pub(crate) fn corrupt_b64_run(value: &str) -> String {
    let b64 = |c: u8| c.is_ascii_alphanumeric() || c == b'+' || c == b'/';
    let bytes = value.as_bytes();
    let (mut best, mut start) = ((0usize, 0usize), None);
    for (i, &c) in bytes.iter().chain(std::iter::once(&b'"')).enumerate() {
        match (b64(c), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if i - s > best.1 - best.0 {
                    best = (s, i);
                }
                start = None;
            }
            _ => {}
        }
    }
    let mut out = bytes.to_vec();
    if best.1 > best.0 {
        let mid = best.0 + (best.1 - best.0) / 2;
        if let Some(c) = out.get_mut(mid) {
            *c = if *c == b'A' { b'B' } else { b'A' };
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| value.to_owned())
}

/// A request the inspector sends itself (a replay, a duplicate delivery).
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) host: String,
    pub(crate) method: http::Method,
    /// Path and query.
    pub(crate) uri: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// Why the inspector could not send a request of its own.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// No route for the host and path any more.
    #[error("no route for {host}{path}")]
    NoRoute { host: String, path: String },
    /// Not a valid request.
    #[error("cannot build the request: {0}")]
    Build(String),
    /// The exchange was not stored in time.
    #[error("no answer from the upstream within {}s", .0.as_secs())]
    Timeout(Duration),
}

const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends `out` to its host's upstream and records it as a new exchange
/// (client `client`, with `marks`); answers its id and the upstream's
/// status. Fault rules are not consulted.
pub(crate) async fn send_recorded(
    state: &Arc<ProxyState>,
    out: Outgoing,
    client: &str,
    marks: Marks,
) -> Result<(u64, Option<u16>), SendError> {
    let path = out.uri.split('?').next().unwrap_or("/").to_owned();
    let Some(target) = state.routes.load().lookup(&out.host, &path).cloned() else {
        return Err(SendError::NoRoute {
            host: out.host,
            path,
        });
    };
    let uri = Uri::builder()
        .scheme("http")
        .authority(target.authority.clone())
        .path_and_query(out.uri.as_str())
        .build()
        .map_err(|e| SendError::Build(e.to_string()))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let status = {
        let pending = Pending::new(
            Arc::clone(&state.store),
            RequestHead {
                started: Started::now(),
                client: Some(client.to_owned()),
                host: out.host,
                upstream: Some(target.origin.to_string()),
                method: out.method.as_str().to_owned(),
                uri: out.uri,
                version: "HTTP/1.1",
                headers: record_headers(&out.headers),
                empty: out.body.is_empty(),
                marks,
                notify: Some(tx),
            },
        );
        let mut req = Request::new(TeeBody::new(
            OutBody::Full((!out.body.is_empty()).then_some(out.body)),
            state.max_body,
            Side::Request,
            Arc::clone(&pending),
        ));
        *req.method_mut() = out.method;
        *req.uri_mut() = uri;
        *req.headers_mut() = out.headers;
        let exchange = async {
            match state.client.request(req).await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    drain(forward_response(state, pending, resp).into_body()).await;
                    Some(status)
                }
                Err(e) => {
                    let _ = bad_gateway(&pending, &target.origin, error_chain(&e));
                    None
                }
            }
        };
        tokio::time::timeout(SEND_TIMEOUT, exchange)
            .await
            .map_err(|_| SendError::Timeout(SEND_TIMEOUT))?
    };
    let id = tokio::time::timeout(SEND_TIMEOUT, rx)
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or(SendError::Timeout(SEND_TIMEOUT))?;
    Ok((id, status))
}

fn forward_response(
    state: &ProxyState,
    pending: Arc<Pending>,
    resp: Response<Incoming>,
) -> Response<ProxyBody> {
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    pending.set_response(ResponseHead {
        status: parts.status.as_u16(),
        version: version_str(parts.version),
        headers: record_headers(&parts.headers),
        empty: body.is_end_stream(),
    });
    let body = TeeBody::new(body, state.max_body, Side::Response, pending);
    Response::from_parts(parts, body.boxed())
}

async fn proxy_upgrade(
    state: &ProxyState,
    pending: Arc<Pending>,
    target: &Target,
    req: Request<Incoming>,
    on_upgrade: hyper::upgrade::OnUpgrade,
    peer: &Peer,
    pq: PathAndQuery,
) -> Response<ProxyBody> {
    let (parts, _body) = req.into_parts();
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers, true);
    add_forwarded(&mut headers, peer);

    let stream = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect(target.authority.as_str()),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return bad_gateway(&pending, &target.origin, e.to_string()),
        Err(_) => return bad_gateway(&pending, &target.origin, "connect timed out".into()),
    };
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(x) => x,
        Err(e) => return bad_gateway(&pending, &target.origin, error_chain(&e)),
    };
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream upgrade connection ended with an error");
        }
    });
    let mut out = Request::new(Empty::<Bytes>::new());
    *out.method_mut() = parts.method;
    *out.uri_mut() = Uri::from(pq);
    *out.headers_mut() = headers;
    let mut resp = match sender.send_request(out).await {
        Ok(r) => r,
        Err(e) => return bad_gateway(&pending, &target.origin, error_chain(&e)),
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return forward_response(state, pending, resp);
    }
    let upstream_upgrade = hyper::upgrade::on(&mut resp);
    let (mut parts, _) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, true);
    pending.set_response(ResponseHead {
        status: parts.status.as_u16(),
        version: version_str(parts.version),
        headers: record_headers(&parts.headers),
        empty: true,
    });
    tokio::spawn(async move {
        let record = match tokio::try_join!(on_upgrade, upstream_upgrade) {
            Ok((client, upstream)) => {
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    Ok((up, down)) => UpgradeRecord {
                        bytes_to_upstream: up,
                        bytes_to_client: down,
                        error: None,
                    },
                    Err(e) => UpgradeRecord {
                        error: Some(e.to_string()),
                        ..UpgradeRecord::default()
                    },
                }
            }
            Err(e) => UpgradeRecord {
                error: Some(format!("upgrade failed: {}", error_chain(&e))),
                ..UpgradeRecord::default()
            },
        };
        pending.set_upgrade(record);
    });
    Response::from_parts(parts, Empty::new().map_err(|never| match never {}).boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_normalised() {
        let h = |host: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, HeaderValue::from_str(host).expect("value"));
            request_host(&Uri::from_static("/x"), &m)
        };
        assert_eq!(
            h("Mastodon1.Fediverse.Local:8080"),
            "mastodon1.fediverse.local"
        );
        assert_eq!(h("a.test."), "a.test");
        assert_eq!(h("[::1]:80"), "[::1]");
        assert_eq!(
            request_host(&Uri::from_static("http://B.test:1/x"), &HeaderMap::new()),
            "b.test"
        );
    }

    #[test]
    fn hop_by_hop_fields_go() {
        let mut m = HeaderMap::new();
        m.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        m.insert("x-secret", HeaderValue::from_static("1"));
        m.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        m.insert(header::DATE, HeaderValue::from_static("d"));
        strip_hop_by_hop(&mut m, false);
        assert_eq!(m.len(), 1);
        assert!(m.contains_key(header::DATE));
    }

    #[test]
    fn an_upgrade_keeps_connection_and_upgrade_only() {
        let mut m = HeaderMap::new();
        m.insert(
            header::CONNECTION,
            HeaderValue::from_static("Upgrade, x-secret"),
        );
        m.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        m.insert("x-secret", HeaderValue::from_static("1"));
        m.insert(header::TE, HeaderValue::from_static("trailers"));
        m.insert(header::DATE, HeaderValue::from_static("d"));
        strip_hop_by_hop(&mut m, true);
        let mut left: Vec<&str> = m.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["connection", "date", "upgrade"]);
    }
}
