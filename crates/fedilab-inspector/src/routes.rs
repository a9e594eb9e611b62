//! The route table: host -> path prefixes -> upstream, looked up on every
//! request (longest prefix first) and swapped whole at runtime
//! ([`crate::Inspector::set_routes`]) without touching the store.
//!
//! Built from validated [`Route`]s; no I/O.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::uri::Authority;

use crate::config::{Route, ServerKind};

/// One upstream, parsed for the hot path.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) authority: Authority,
    /// Shared: every record kept by the fast path holds it.
    pub(crate) origin: Arc<str>,
}

/// One host's routes, longest prefix first.
#[derive(Debug)]
pub(crate) struct HostRoutes {
    pub(crate) kind: ServerKind,
    pub(crate) prefixes: Vec<(String, Target)>,
}

/// Every route, by host.
#[derive(Debug, Default)]
pub(crate) struct RouteTable {
    hosts: HashMap<String, HostRoutes>,
}

/// The table the proxy, the key fetcher and the API share.
pub(crate) type SharedRoutes = Arc<ArcSwap<RouteTable>>;

impl RouteTable {
    /// The table of `routes` (already checked for duplicates); a host takes
    /// the kind of its first route.
    pub(crate) fn new(routes: &[Route]) -> Self {
        let mut hosts: HashMap<String, HostRoutes> = HashMap::new();
        for r in routes {
            // Route validated the authority; skip rather than panic if not.
            let Ok(authority) = r.upstream.authority.parse::<Authority>() else {
                continue;
            };
            let entry = hosts.entry(r.host.clone()).or_insert_with(|| HostRoutes {
                kind: r.kind,
                prefixes: Vec::new(),
            });
            entry.prefixes.push((
                r.path_prefix.clone(),
                Target {
                    authority,
                    origin: r.upstream.origin().into(),
                },
            ));
        }
        for h in hosts.values_mut() {
            h.prefixes
                .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        }
        Self { hosts }
    }

    /// A shareable handle on `self`.
    pub(crate) fn shared(self) -> SharedRoutes {
        Arc::new(ArcSwap::from_pointee(self))
    }

    /// Where a request for `host` and `path` goes: the longest prefix of
    /// the host's routes that matches whole segments of `path`.
    pub(crate) fn lookup(&self, host: &str, path: &str) -> Option<&Target> {
        self.hosts
            .get(host)?
            .prefixes
            .iter()
            .find(|(prefix, _)| prefix_matches(prefix, path))
            .map(|(_, t)| t)
    }

    /// The routed hosts, sorted.
    pub(crate) fn hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self.hosts.keys().cloned().collect();
        hosts.sort();
        hosts
    }

    /// The hosts with their routes, sorted by host.
    pub(crate) fn servers(&self) -> Vec<(&str, &HostRoutes)> {
        let mut all: Vec<(&str, &HostRoutes)> =
            self.hosts.iter().map(|(h, r)| (h.as_str(), r)).collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        all
    }
}

/// `/` matches everything; `/a/b` matches `/a/b` and `/a/b/...`, not
/// `/a/bc`.
pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(routes: &[&str]) -> RouteTable {
        let routes: Vec<Route> = routes.iter().map(|r| r.parse().expect("route")).collect();
        RouteTable::new(&routes)
    }

    #[test]
    fn the_longest_whole_segment_prefix_wins() {
        let t = table(&[
            "m1.test=http://10.0.0.1:3000",
            "m1.test/api/v1/streaming=http://10.0.0.2:4000",
            "m1.test/api=http://10.0.0.3:3000",
        ]);
        let to = |path| t.lookup("m1.test", path).map(|t| &*t.origin);
        assert_eq!(to("/users/alice"), Some("http://10.0.0.1:3000"));
        assert_eq!(to("/api/v1/streaming"), Some("http://10.0.0.2:4000"));
        assert_eq!(to("/api/v1/streaming/health"), Some("http://10.0.0.2:4000"));
        assert_eq!(to("/api/v1/streamingx"), Some("http://10.0.0.3:3000"));
        assert_eq!(to("/api"), Some("http://10.0.0.3:3000"));
        assert_eq!(to("/apix"), Some("http://10.0.0.1:3000"));
        assert!(t.lookup("m2.test", "/").is_none());
    }

    #[test]
    fn a_host_with_only_a_prefix_route_has_no_catch_all() {
        let t = table(&["m1.test/api=http://10.0.0.3:3000"]);
        assert!(t.lookup("m1.test", "/api/x").is_some());
        assert!(t.lookup("m1.test", "/about").is_none());
    }
}
