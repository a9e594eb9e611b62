//! The reverse proxy: accepts HTTP/1 connections, routes each request by its
//! Host header (and the longest matching path prefix) to the configured
//! upstream, forwards method, path, query,
//! headers and body unchanged (minus hop-by-hop fields, plus
//! X-Forwarded-For / X-Forwarded-Proto), passes WebSocket upgrades through,
//! and records every exchange into the store.
//!
//! Malformed requests get hyper's 400 (a bad request line or header) and
//! only that connection closes. No ActivityPub parsing happens here.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::capture::{
    Pending, RequestHead, ResponseHead, Side, TeeBody, record_headers, version_str,
};
use crate::exchange::UpgradeRecord;
use crate::routes::{SharedRoutes, Target};
use crate::store::Store;

/// What the proxy hands back to hyper.
pub(crate) type ProxyBody = BoxBody<Bytes, hyper::Error>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Shared by every connection.
#[derive(Debug)]
pub(crate) struct ProxyState {
    pub(crate) routes: SharedRoutes,
    client: Client<HttpConnector, TeeBody<Incoming>>,
    store: Arc<Store>,
    max_body: usize,
}

impl ProxyState {
    pub(crate) fn new(routes: SharedRoutes, store: Arc<Store>, max_body: usize) -> Self {
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
        }
    }
}

/// Accepts connections until `shutdown` flips; each connection is served
/// on its own task.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<ProxyState>,
    mut shutdown: watch::Receiver<bool>,
) {
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
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(handle(state, peer, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "proxy connection ended with an error");
            }
        });
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
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if keep_upgrade && name == header::UPGRADE {
            continue;
        }
        headers.remove(name);
    }
    for name in [
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    if !keep_upgrade {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
}

fn add_forwarded(headers: &mut HeaderMap, peer: SocketAddr) {
    let ip = peer.ip().to_string();
    let mut xff = String::new();
    for v in headers.get_all("x-forwarded-for") {
        if let Ok(s) = v.to_str() {
            xff.push_str(s);
            xff.push_str(", ");
        }
    }
    xff.push_str(&ip);
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert("x-forwarded-for", v);
    }
    if !headers.contains_key("x-forwarded-proto") {
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    }
}

fn full(body: Bytes) -> ProxyBody {
    Full::new(body).map_err(|never| match never {}).boxed()
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
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

fn bad_gateway(pending: &Pending, origin: &str, why: String) -> Response<ProxyBody> {
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

async fn handle(
    state: Arc<ProxyState>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let host = request_host(req.uri(), req.headers());
    let target = state.routes.load().lookup(&host, req.uri().path()).cloned();
    let pq = path_and_query(req.uri());
    let upgrade = is_upgrade(req.headers());
    let pending = Pending::new(
        Arc::clone(&state.store),
        RequestHead {
            started,
            client: Some(peer.to_string()),
            host,
            upstream: target.as_ref().map(|t| t.origin.clone()),
            method: req.method().as_str().to_owned(),
            uri: pq.as_str().to_owned(),
            version: version_str(req.version()),
            headers: record_headers(req.headers()),
            empty: req.body().is_end_stream(),
        },
    );
    let Some(target) = target else {
        let host = request_host(req.uri(), req.headers());
        return unknown_host(&state, &pending, &host, req.uri().path());
    };
    if upgrade {
        let on_upgrade = hyper::upgrade::on(&mut req);
        return proxy_upgrade(&state, pending, &target, req, on_upgrade, peer, pq).await;
    }

    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers, false);
    add_forwarded(&mut headers, peer);
    let uri = match Uri::builder()
        .scheme("http")
        .authority(target.authority.clone())
        .path_and_query(pq)
        .build()
    {
        Ok(u) => u,
        Err(e) => return bad_gateway(&pending, &target.origin, e.to_string()),
    };
    let mut out = Request::new(TeeBody::new(
        body,
        state.max_body,
        Side::Request,
        Arc::clone(&pending),
    ));
    *out.method_mut() = parts.method;
    *out.uri_mut() = uri;
    *out.headers_mut() = headers;

    match state.client.request(out).await {
        Ok(resp) => forward_response(&state, pending, resp),
        Err(e) => bad_gateway(&pending, &target.origin, error_chain(&e)),
    }
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
    peer: SocketAddr,
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
}
