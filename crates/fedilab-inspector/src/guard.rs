//! The UI listener's guard against other web pages in the user's browser:
//! a `Host` check (defeats DNS rebinding) on every request and an
//! `Origin` / `Sec-Fetch-Site` check (defeats cross-site writes) on every
//! request that may change state. Refusals are `403` with an `ApiError`.
//!
//! Configured from the address the UI listener is bound to. It is no
//! access control: it must not be relied on to keep out anyone who can
//! reach the port directly (API.md, "Who may call the API").

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api_types::ApiError;

/// Which `Host` (and `Origin`) authorities the UI answers to.
#[derive(Clone, Debug)]
pub(crate) struct Guard {
    port: u16,
    /// Host names and IP literals (IPv6 in brackets), lower case.
    hosts: Vec<String>,
    /// Bound to `0.0.0.0` / `::`: any IP literal is one of ours. A
    /// rebinding attack needs a DNS name, so an IP literal is safe.
    any_ip: bool,
}

impl Guard {
    /// The guard for a UI listener bound to `addr` (after `local_addr()`,
    /// so the port is the real one).
    pub(crate) fn for_addr(addr: SocketAddr) -> Self {
        let ip = addr.ip();
        let mut hosts = vec![literal(ip)];
        if ip.is_loopback() || ip.is_unspecified() {
            for h in [
                "localhost".to_owned(),
                literal(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                literal(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ] {
                if !hosts.contains(&h) {
                    hosts.push(h);
                }
            }
        }
        Self {
            port: addr.port(),
            hosts,
            any_ip: ip.is_unspecified(),
        }
    }

    /// Whether `authority` (`host[:port]`, as in `Host` or after the
    /// scheme of `Origin`) names this listener.
    fn allows_authority(&self, authority: &str) -> bool {
        let Some((host, port)) = split_authority(authority) else {
            return false;
        };
        if port != self.port {
            return false;
        }
        let host = host.to_ascii_lowercase();
        self.hosts.contains(&host) || (self.any_ip && is_ip_literal(&host))
    }

    /// `Ok` when the request may be served, else why not.
    pub(crate) fn check(
        &self,
        method: &Method,
        uri_authority: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<(), &'static str> {
        let host = match headers.get(header::HOST) {
            Some(v) => v.to_str().ok(),
            None => uri_authority,
        };
        match host {
            Some(h) if self.allows_authority(h) => {}
            Some(_) => {
                return Err("Host is not this inspector's address (DNS rebinding?)");
            }
            None => return Err("the request has no Host"),
        }
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return Ok(());
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let same = origin
                .to_str()
                .ok()
                .and_then(|o| o.strip_prefix("http://"))
                .is_some_and(|a| self.allows_authority(a));
            return if same {
                Ok(())
            } else {
                Err("cross-origin request refused (Origin is not this inspector)")
            };
        }
        match headers.get("sec-fetch-site").map(|v| v.as_bytes()) {
            None | Some(b"same-origin") => Ok(()),
            Some(_) => Err("cross-site request refused (Sec-Fetch-Site)"),
        }
    }
}

/// The axum middleware: applies `guard` to every request of the router.
pub(crate) async fn layer(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let verdict = guard.check(
        req.method(),
        req.uri().authority().map(|a| a.as_str()),
        req.headers(),
    );
    match verdict {
        Ok(()) => next.run(req).await,
        Err(reason) => {
            tracing::warn!(
                method = %req.method(),
                path = req.uri().path(),
                reason,
                "the inspector UI refused a request"
            );
            (
                StatusCode::FORBIDDEN,
                axum::Json(ApiError {
                    error: reason.to_owned(),
                }),
            )
                .into_response()
        }
    }
}

/// An IP as it appears in a `Host`: IPv6 in brackets.
fn literal(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

fn is_ip_literal(host: &str) -> bool {
    host.parse::<Ipv4Addr>().is_ok()
        || host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .is_some_and(|h| h.parse::<Ipv6Addr>().is_ok())
}

/// `host[:port]` into the host (IPv6 keeps its brackets) and the port
/// (80 when absent: the scheme is http). `None` when malformed.
fn split_authority(authority: &str) -> Option<(&str, u16)> {
    let (host, rest) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        authority.split_at(end + 1)
    } else {
        match authority.rfind(':') {
            Some(i) => authority.split_at(i),
            None => (authority, ""),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = if rest.is_empty() {
        80
    } else {
        rest.strip_prefix(':')?.parse().ok()?
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.insert(*n, v.parse().expect("header value"));
        }
        h
    }

    fn verdict(g: &Guard, method: Method, pairs: &[(&'static str, &str)]) -> bool {
        g.check(&method, None, &headers(pairs)).is_ok()
    }

    #[test]
    fn loopback_bind_answers_to_loopback_names_on_its_port_only() {
        let g = Guard::for_addr("127.0.0.1:8081".parse().expect("addr"));
        for ok in [
            "127.0.0.1:8081",
            "localhost:8081",
            "LocalHost:8081",
            "[::1]:8081",
        ] {
            assert!(verdict(&g, Method::GET, &[("host", ok)]), "{ok}");
        }
        for bad in [
            "evil.example:8081",
            "localhost:8082",
            "localhost",
            "127.0.0.1:8081.evil.example",
            "10.0.0.1:8081",
            ":8081",
        ] {
            assert!(!verdict(&g, Method::GET, &[("host", bad)]), "{bad}");
        }
        assert!(!verdict(&g, Method::GET, &[]), "no Host");
    }

    #[test]
    fn other_binds() {
        let v6 = Guard::for_addr("[::1]:9000".parse().expect("addr"));
        assert!(verdict(&v6, Method::GET, &[("host", "[::1]:9000")]));
        assert!(verdict(&v6, Method::GET, &[("host", "localhost:9000")]));
        let lan = Guard::for_addr("192.168.1.5:80".parse().expect("addr"));
        assert!(verdict(&lan, Method::GET, &[("host", "192.168.1.5")]));
        assert!(!verdict(&lan, Method::GET, &[("host", "localhost")]));
        let any = Guard::for_addr("0.0.0.0:8081".parse().expect("addr"));
        assert!(verdict(&any, Method::GET, &[("host", "10.1.2.3:8081")]));
        assert!(verdict(&any, Method::GET, &[("host", "[fe80::1]:8081")]));
        assert!(!verdict(
            &any,
            Method::GET,
            &[("host", "evil.example:8081")]
        ));
    }

    #[test]
    fn writes_need_same_origin_or_no_browser_markers() {
        let g = Guard::for_addr("127.0.0.1:8081".parse().expect("addr"));
        let host = ("host", "127.0.0.1:8081");
        assert!(verdict(&g, Method::DELETE, &[host]), "curl");
        assert!(verdict(
            &g,
            Method::DELETE,
            &[host, ("origin", "http://localhost:8081")]
        ));
        assert!(verdict(
            &g,
            Method::POST,
            &[host, ("sec-fetch-site", "same-origin")]
        ));
        for (n, v) in [
            ("origin", "http://evil.example"),
            ("origin", "https://127.0.0.1:8081"),
            ("origin", "http://127.0.0.1:9999"),
            ("origin", "null"),
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-site", "same-site"),
        ] {
            assert!(!verdict(&g, Method::DELETE, &[host, (n, v)]), "{n}: {v}");
        }
        assert!(
            verdict(&g, Method::GET, &[host, ("origin", "http://evil.example")]),
            "reads are guarded by Host and the browser's same-origin policy"
        );
    }
}
