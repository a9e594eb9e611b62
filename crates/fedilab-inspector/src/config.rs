//! Inspector configuration: routes (`HOST=URL`, `HOST/PREFIX=URL`), capture
//! and store limits,
//! signature-check windows, and the size syntax (`64MiB`) the CLI accepts.
//!
//! Parsing and validation only; nothing here binds or connects.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// One route: requests whose Host is `host` and whose path starts with
/// `path_prefix` go to `upstream`. Of a host's routes, the longest matching
/// prefix wins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Lower case, no port: `mastodon1.fediverse.local`.
    pub host: String,
    /// `/` (everything), or a prefix such as `/api/v1/streaming` (no
    /// trailing slash) that matches that path and the paths below it,
    /// whole segments only: `/api/v1/streaming/user` but not
    /// `/api/v1/streamingx`.
    pub path_prefix: String,
    /// Where to send them.
    pub upstream: Upstream,
    /// What runs behind the host, for the server list in the UI and API.
    pub kind: ServerKind,
}

/// What runs behind a routed host; display only, routing ignores it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    /// A lab instance in the cluster.
    #[default]
    Instance,
    /// A server outside the cluster, declared in the lab profile.
    External,
    /// A server on this host, added to the lab by `fedilab attach`.
    Attached,
}

impl ServerKind {
    /// `instance`, `external` or `attached`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerKind::Instance => "instance",
            ServerKind::External => "external",
            ServerKind::Attached => "attached",
        }
    }
}

impl std::fmt::Display for ServerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An upstream origin: `http://HOST:PORT`, no path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// `host:port` to connect to.
    pub authority: String,
}

impl Upstream {
    /// `http://host:port`, for display and request URIs.
    pub fn origin(&self) -> String {
        format!("http://{}", self.authority)
    }
}

/// Why a route or size did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `--route` without `=`.
    #[error(
        "route {0:?} is not HOST=URL or HOST/PREFIX=URL (for example \
         mastodon1.fediverse.local=http://10.43.0.10:3000 or \
         mastodon1.fediverse.local/api/v1/streaming=http://10.43.0.20:4000)"
    )]
    RouteSyntax(String),
    /// A path prefix the proxy cannot match on.
    #[error("route {route:?}: path prefix {prefix:?} {why}")]
    RoutePrefix {
        /// The whole route.
        route: String,
        /// The prefix part.
        prefix: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A host that is not a DNS name.
    #[error("route {route:?}: {host:?} is not a host name")]
    RouteHost {
        /// The whole route.
        route: String,
        /// The host part.
        host: String,
    },
    /// A URL the proxy cannot use as an upstream.
    #[error("route {route:?}: upstream {url:?} {why}")]
    RouteUrl {
        /// The whole route.
        route: String,
        /// The URL part.
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Two routes for one host (and one path prefix): `HOST` or
    /// `HOST/PREFIX`.
    #[error("{0} is routed twice")]
    DuplicateHost(String),
    /// A size like `64MiB` that did not parse.
    #[error("{0:?} is not a size (examples: 1000000, 512KiB, 64MiB, 1GiB)")]
    Size(String),
    /// Limits that cannot hold one exchange.
    #[error(
        "the store byte limit ({max_bytes}) must be at least four times the per-body capture limit ({max_body})"
    )]
    LimitsTooSmall {
        /// Store limit.
        max_bytes: usize,
        /// Capture limit per body.
        max_body: usize,
    },
}

impl Route {
    /// A route for `host` (a DNS name; case and a trailing dot do not
    /// matter) and the paths under `path_prefix` (`/` for all) to `url`
    /// (`http://HOST[:PORT]`, no path), of kind [`ServerKind::Instance`].
    ///
    /// # Errors
    /// [`ConfigError::RouteHost`], [`ConfigError::RoutePrefix`] or
    /// [`ConfigError::RouteUrl`], naming the route as `HOST/PREFIX=URL`.
    pub fn new(host: &str, path_prefix: &str, url: &str) -> Result<Route, ConfigError> {
        let route = if path_prefix.is_empty() || path_prefix == "/" {
            format!("{host}={url}")
        } else {
            format!("{host}{path_prefix}={url}")
        };
        Route::parse_parts(&route, host, path_prefix, url)
    }

    /// The same route with another kind.
    #[must_use]
    pub fn with_kind(mut self, kind: ServerKind) -> Route {
        self.kind = kind;
        self
    }

    /// `HOST` or `HOST/PREFIX`, as the CLI writes it.
    pub fn target(&self) -> String {
        if self.path_prefix == "/" {
            self.host.clone()
        } else {
            format!("{}{}", self.host, self.path_prefix)
        }
    }

    fn parse_parts(route: &str, host: &str, prefix: &str, url: &str) -> Result<Route, ConfigError> {
        let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !host_ok {
            return Err(ConfigError::RouteHost {
                route: route.to_owned(),
                host,
            });
        }
        let path_prefix = normalize_prefix(prefix).map_err(|why| ConfigError::RoutePrefix {
            route: route.to_owned(),
            prefix: prefix.to_owned(),
            why,
        })?;
        let url_err = |why| ConfigError::RouteUrl {
            route: route.to_owned(),
            url: url.to_owned(),
            why,
        };
        let uri: http::Uri = url.trim().parse().map_err(|_| url_err("is not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(_) => {
                return Err(url_err(
                    "must be http:// (the inspector sits behind the TLS terminator)",
                ));
            }
            None => return Err(url_err("needs a scheme, as in http://HOST:PORT")),
        }
        if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
            return Err(url_err("must not have a path or query"));
        }
        let authority = uri.authority().ok_or_else(|| url_err("needs a host"))?;
        let authority = if authority.port().is_some() {
            authority.as_str().to_owned()
        } else {
            format!("{}:80", authority.host())
        };
        if authority.parse::<http::uri::Authority>().is_err() {
            return Err(url_err("has an unusable host or port"));
        }
        Ok(Route {
            host,
            path_prefix,
            upstream: Upstream { authority },
            kind: ServerKind::Instance,
        })
    }
}

/// `""` and `/` give `/`; otherwise a path starting with `/`, without
/// query, fragment or trailing slash.
fn normalize_prefix(prefix: &str) -> Result<String, &'static str> {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok("/".to_owned());
    }
    if !trimmed.starts_with('/') {
        return Err("must start with /");
    }
    if trimmed.contains("//") {
        return Err("must not contain an empty segment (//)");
    }
    if !trimmed
        .bytes()
        .all(|b| b.is_ascii_graphic() && !matches!(b, b'?' | b'#' | b'='))
    {
        return Err("must be a plain path (no spaces, ?, # or =)");
    }
    Ok(trimmed.to_owned())
}

/// `HOST=URL` or `HOST/PREFIX=URL`.
impl FromStr for Route {
    type Err = ConfigError;

    fn from_str(route: &str) -> Result<Self, Self::Err> {
        let (target, url) = route
            .split_once('=')
            .ok_or_else(|| ConfigError::RouteSyntax(route.to_owned()))?;
        let target = target.trim();
        let (host, prefix) = match target.find('/') {
            Some(i) => target.split_at(i),
            None => (target, "/"),
        };
        Route::parse_parts(route, host, prefix, url)
    }
}

/// Checks that no host (and path prefix) is routed twice.
///
/// # Errors
/// [`ConfigError::DuplicateHost`] naming the first repeated one.
pub fn check_routes(routes: &[Route]) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for r in routes {
        if !seen.insert((r.host.as_str(), r.path_prefix.as_str())) {
            return Err(ConfigError::DuplicateHost(r.target()));
        }
    }
    Ok(())
}

/// How much the store keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreLimits {
    /// At most this many exchanges.
    pub max_exchanges: usize,
    /// At most about this many bytes of records (headers, captured bodies,
    /// bookkeeping).
    pub max_bytes: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            max_exchanges: 10_000,
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Everything the inspector needs besides its sockets.
#[derive(Clone, Debug)]
pub struct InspectorConfig {
    /// Routes; each host and path prefix at most once.
    pub routes: Vec<Route>,
    /// Store limits.
    pub limits: StoreLimits,
    /// Bytes captured per body (request and response each); the rest is
    /// forwarded but not kept.
    pub max_body_bytes: usize,
    /// Append-only JSON-lines file, reloaded on start.
    pub persist: Option<PathBuf>,
    /// Signature-check settings.
    pub signatures: SignatureConfig,
    /// Fault rules in force from the start (`fedilab inspect --fault`).
    pub faults: Vec<crate::fault::RuleSpec>,
    /// Threads the proxy's connections run on, each with its own
    /// single-threaded runtime (0 counts as 1). One carries tens of
    /// thousands of requests a second, far more than a lab makes.
    pub proxy_threads: usize,
}

impl Default for InspectorConfig {
    fn default() -> Self {
        Self {
            routes: Vec::new(),
            limits: StoreLimits::default(),
            max_body_bytes: 1024 * 1024,
            persist: None,
            signatures: SignatureConfig::default(),
            faults: Vec::new(),
            proxy_threads: 1,
        }
    }
}

impl InspectorConfig {
    /// Checks that routes are unique ([`check_routes`]) and the limits can
    /// hold an exchange.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_routes(&self.routes)?;
        if self.limits.max_bytes < self.max_body_bytes.saturating_mul(4) {
            return Err(ConfigError::LimitsTooSmall {
                max_bytes: self.limits.max_bytes,
                max_body: self.max_body_bytes,
            });
        }
        Ok(())
    }
}

/// How signatures are judged.
#[derive(Clone, Debug)]
pub struct SignatureConfig {
    /// A Date (or `created`) older than this is stale. Mastodon: 12 h.
    pub max_age: Duration,
    /// A Date (or `created`) further in the future than this is rejected.
    /// Mastodon: 1 h.
    pub max_future: Duration,
    /// Budget for fetching an actor's key through the upstream.
    pub key_fetch_timeout: Duration,
    /// How long a fetched key is reused.
    pub key_ttl: Duration,
}

impl Default for SignatureConfig {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(12 * 3600),
            max_future: Duration::from_secs(3600),
            key_fetch_timeout: Duration::from_secs(5),
            key_ttl: Duration::from_secs(300),
        }
    }
}

/// Parses `1000`, `512KiB`, `64MiB`, `1GiB`, `10MB`, `1kb` (SI units are
/// powers of 1000, IEC units of 1024).
///
/// # Errors
/// [`ConfigError::Size`] for anything else.
pub fn parse_size(text: &str) -> Result<u64, ConfigError> {
    let err = || ConfigError::Size(text.to_owned());
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| err())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1024 * 1024,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1024 * 1024 * 1024,
        _ => return Err(err()),
    };
    n.checked_mul(mult).ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse() {
        let r: Route = "Mastodon1.Fediverse.Local=http://127.0.0.1:3000"
            .parse()
            .expect("route");
        assert_eq!(r.host, "mastodon1.fediverse.local");
        assert_eq!(r.upstream.authority, "127.0.0.1:3000");
        let r: Route = "a.test=http://svc/".parse().expect("route");
        assert_eq!(r.upstream.authority, "svc:80");
        for bad in [
            "nohost",
            "=http://x",
            "a b=http://x",
            "a=https://x",
            "a=x:80",
            "a=http://x/p",
            "a/x?y=http://x",
            "a/x//y=http://x",
        ] {
            assert!(bad.parse::<Route>().is_err(), "{bad}");
        }
    }

    #[test]
    fn path_prefix_routes_parse() {
        let r: Route = "M1.Fediverse.Local/api/v1/streaming/=http://10.43.0.20:4000"
            .parse()
            .expect("route");
        assert_eq!(r.host, "m1.fediverse.local");
        assert_eq!(r.path_prefix, "/api/v1/streaming");
        assert_eq!(r.upstream.authority, "10.43.0.20:4000");
        assert_eq!(r.kind, ServerKind::Instance);
        assert_eq!(r.target(), "m1.fediverse.local/api/v1/streaming");
        let plain: Route = "a.test=http://x:1".parse().expect("route");
        assert_eq!(plain.path_prefix, "/");
        assert_eq!(
            Route::new("a.test", "/", "http://x:1").expect("route"),
            plain
        );
        let err = Route::new("a.test", "api", "http://x:1").expect_err("relative");
        assert!(err.to_string().contains("must start with /"), "{err}");
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("2 kb"), Ok(2000));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }

    #[test]
    fn validate_rejects_duplicates_and_tiny_limits() {
        let mut c = InspectorConfig {
            routes: vec![
                "a.test=http://x:1".parse().expect("route"),
                "A.test=http://y:1".parse().expect("route"),
            ],
            ..InspectorConfig::default()
        };
        assert_eq!(
            c.validate(),
            Err(ConfigError::DuplicateHost("a.test".into()))
        );
        c.routes.pop();
        c.routes
            .push("a.test/api=http://y:1".parse().expect("route"));
        assert_eq!(c.validate(), Ok(()));
        c.limits.max_bytes = 1000;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::LimitsTooSmall { .. })
        ));
    }
}
