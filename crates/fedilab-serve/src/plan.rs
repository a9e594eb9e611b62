//! What `fedilab serve` serves, computed from the lab state: the zone's
//! inputs, the inspector's routes and fault rules, and the listen
//! addresses.
//!
//! Pure: no files, no sockets.

use std::net::{IpAddr, SocketAddr};

use fedilab_dns::{Zone, ZoneError};
use fedilab_inspector::{ConfigError, Route, RuleSpec, ServerKind};
use fedilab_state::{LabState, StoredKind};

/// Why a lab state cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The state has no `serve` section (saved by an older fedilab, or by an
    /// `up` that did not get that far).
    #[error(
        "lab {lab:?} has no host-side addresses in its state; run `fedilab up --lab {lab}` first"
    )]
    NoServeSettings {
        /// The lab.
        lab: String,
    },
    /// The state has no node address to answer DNS queries with.
    #[error(
        "lab {lab:?} has no node address in its state, so its DNS has nothing to answer; \
         run `fedilab up --lab {lab}` first"
    )]
    NoNodeAddress {
        /// The lab.
        lab: String,
    },
    /// An upstream the inspector cannot use.
    #[error("lab {lab:?}: the upstream of {host} is unusable; run `fedilab up --lab {lab}`")]
    Upstream {
        /// The lab.
        lab: String,
        /// The instance host.
        host: String,
        /// Why.
        #[source]
        source: ConfigError,
    },
}

/// Everything `fedilab serve` runs, from a [`LabState`].
#[derive(Debug, Clone, PartialEq)]
pub struct ServePlan {
    /// The lab's name.
    pub lab: String,
    /// The zone's domain.
    pub domain: String,
    /// Every instance host, external and attached servers included, in the
    /// state's order.
    pub hosts: Vec<String>,
    /// What the DNS answers every lab name with: the node address.
    pub answers: Vec<IpAddr>,
    /// The inspector's routes: each instance's upstreams, path prefixes
    /// kept, with the instance's kind.
    pub routes: Vec<Route>,
    /// Where the DNS listens (UDP and TCP).
    pub dns: SocketAddr,
    /// Where the inspector's proxy listens; `None`: no inspector.
    pub proxy: Option<SocketAddr>,
    /// Where the inspector's UI and API listen; `None`: no UI.
    pub ui: Option<SocketAddr>,
    /// The profile's fault rules, in force from the inspector's start
    /// (none without the inspector).
    pub faults: Vec<RuleSpec>,
}

impl ServePlan {
    /// The plan of `state`.
    ///
    /// # Errors
    /// [`PlanError`] when the state has no `serve` section or node address
    /// (both say to run `fedilab up`), or an unusable upstream.
    pub fn from_state(state: &LabState) -> Result<ServePlan, PlanError> {
        let lab = state.lab.to_string();
        let serve = state
            .serve
            .as_ref()
            .ok_or_else(|| PlanError::NoServeSettings { lab: lab.clone() })?;
        let answer = state
            .node_address
            .ok_or_else(|| PlanError::NoNodeAddress { lab: lab.clone() })?;
        let mut routes = Vec::new();
        for instance in &state.instances {
            let kind = match instance.kind {
                StoredKind::Mastodon | StoredKind::Misskey | StoredKind::GoToSocial => {
                    ServerKind::Instance
                }
                StoredKind::External => ServerKind::External,
                StoredKind::Attached => ServerKind::Attached,
            };
            for upstream in &instance.upstreams {
                let route = Route::new(
                    instance.host.as_str(),
                    &upstream.path_prefix,
                    &upstream.url.to_string(),
                )
                .map_err(|source| PlanError::Upstream {
                    lab: lab.clone(),
                    host: instance.host.to_string(),
                    source,
                })?;
                routes.push(route.with_kind(kind));
            }
        }
        // Without the proxy there is nothing to route: Traefik goes
        // straight to the instances.
        let mut faults = state.faults.clone();
        if serve.proxy.is_none() {
            routes.clear();
            faults.clear();
        }
        Ok(ServePlan {
            lab,
            domain: state.domain.to_string(),
            hosts: state.instances.iter().map(|i| i.host.to_string()).collect(),
            answers: vec![answer],
            routes,
            dns: serve.dns,
            proxy: serve.proxy,
            ui: serve.proxy.and(serve.ui),
            faults,
        })
    }

    /// The zone this plan serves.
    ///
    /// # Errors
    /// [`ZoneError`], for instance a host that is not directly under the
    /// domain.
    pub fn zone(&self) -> Result<Zone, ZoneError> {
        fedilab_dns::zone_for_hosts(
            &self.domain,
            self.hosts.iter().map(String::as_str),
            &self.answers,
        )
    }
}

#[cfg(test)]
mod tests {
    use fedilab_state::{ServeSettings, StoredInstance, StoredUpstream};

    use super::*;

    fn instance(name: &str, kind: StoredKind, upstreams: &[(&str, &str)]) -> StoredInstance {
        StoredInstance {
            name: name.parse().expect("name"),
            host: format!("{name}.fediverse.local").parse().expect("host"),
            url: format!("https://{name}.fediverse.local/"),
            kind,
            limited_federation: false,
            upstreams: upstreams
                .iter()
                .map(|(p, u)| StoredUpstream {
                    path_prefix: (*p).to_owned(),
                    url: u.parse().expect("url"),
                })
                .collect(),
        }
    }

    fn state() -> LabState {
        LabState {
            lab: "main".parse().expect("lab"),
            domain: "fediverse.local".parse().expect("domain"),
            namespace: "fedilab-main".to_owned(),
            node_address: Some([192, 0, 2, 10].into()),
            instances: vec![
                instance(
                    "mastodon1",
                    StoredKind::Mastodon,
                    &[
                        ("/", "http://10.43.0.10:3000"),
                        ("/api/v1/streaming", "http://10.43.0.20:4000"),
                    ],
                ),
                instance(
                    "mine",
                    StoredKind::Attached,
                    &[("/", "http://127.0.0.1:3000")],
                ),
                instance("pending", StoredKind::Mastodon, &[]),
            ],
            serve: Some(ServeSettings {
                dns: "127.0.0.1:5300".parse().expect("addr"),
                proxy: Some("192.0.2.10:8480".parse().expect("addr")),
                ui: Some("127.0.0.1:8481".parse().expect("addr")),
            }),
            faults: vec!["host=mastodon1,status=503".parse().expect("rule")],
        }
    }

    #[test]
    fn the_plan_has_every_host_route_and_address() {
        let plan = ServePlan::from_state(&state()).expect("plan");
        assert_eq!(
            plan.hosts,
            [
                "mastodon1.fediverse.local",
                "mine.fediverse.local",
                "pending.fediverse.local"
            ]
        );
        assert_eq!(plan.answers, ["192.0.2.10".parse::<IpAddr>().expect("ip")]);
        let routes: Vec<(String, &str, ServerKind)> = plan
            .routes
            .iter()
            .map(|r| (r.target(), r.upstream.authority.as_str(), r.kind))
            .collect();
        assert_eq!(
            routes,
            [
                (
                    "mastodon1.fediverse.local".to_owned(),
                    "10.43.0.10:3000",
                    ServerKind::Instance
                ),
                (
                    "mastodon1.fediverse.local/api/v1/streaming".to_owned(),
                    "10.43.0.20:4000",
                    ServerKind::Instance
                ),
                (
                    "mine.fediverse.local".to_owned(),
                    "127.0.0.1:3000",
                    ServerKind::Attached
                ),
            ]
        );
        assert_eq!(plan.dns.port(), 5300);
        assert_eq!(plan.proxy.map(|a| a.port()), Some(8480));
        assert_eq!(plan.ui.map(|a| a.port()), Some(8481));
        assert_eq!(plan.faults, state().faults, "the profile's rules");
        let zone = plan.zone().expect("zone").to_zone_file();
        assert!(
            zone.contains("mine.fediverse.local. 60 IN A 192.0.2.10"),
            "{zone}"
        );
    }

    #[test]
    fn without_the_inspector_there_are_no_routes_and_no_ui() {
        let mut s = state();
        s.serve = Some(ServeSettings {
            dns: "127.0.0.1:5300".parse().expect("addr"),
            proxy: None,
            ui: Some("127.0.0.1:8481".parse().expect("addr")),
        });
        let plan = ServePlan::from_state(&s).expect("plan");
        assert!(plan.routes.is_empty());
        assert!(plan.faults.is_empty(), "no inspector to put them in force");
        assert_eq!(plan.proxy, None);
        assert_eq!(plan.ui, None);
    }

    #[test]
    fn missing_pieces_say_to_run_up() {
        let mut s = state();
        s.serve = None;
        let err = ServePlan::from_state(&s).expect_err("no serve");
        assert!(matches!(err, PlanError::NoServeSettings { .. }));
        assert!(err.to_string().contains("fedilab up --lab main"), "{err}");

        let mut s = state();
        s.node_address = None;
        let err = ServePlan::from_state(&s).expect_err("no node");
        assert!(matches!(err, PlanError::NoNodeAddress { .. }));
        assert!(err.to_string().contains("fedilab up"), "{err}");
        // A node address that is not an IP address, or an upstream that
        // is not http://HOST:PORT, no longer reaches the plan: the state
        // refuses it on load (fedilab-state's damaged-file tests).
    }
}
