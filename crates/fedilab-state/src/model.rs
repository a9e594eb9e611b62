//! What is saved about a lab, as typed values: [`LabState`] (`lab.json`),
//! its instances and upstreams, where the host side listens
//! ([`ServeSettings`]) and the servers `fedilab attach` added
//! ([`AttachedServer`]). Every name and address is parsed on load
//! (`serde` through the types' `FromStr`), so no reader re-parses strings.
//!
//! Pure: no files (see [`crate::LabDir`] for those).

use std::net::{IpAddr, SocketAddr};

use fedilab_profile::{
    Domain, ExternalUrl, FaultRule, Fqdn, InstanceKind, InstanceName, InstanceSpecKind, LabName,
    LabSpec, names,
};
use serde::{Deserialize, Serialize};

/// What `status`, `creds`, `down` and `serve` need to know about a lab.
/// (`PartialEq` only: a fault rule's probability is a float.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabState {
    /// The lab's name.
    pub lab: LabName,
    /// Its domain.
    pub domain: Domain,
    /// Its namespace (always [`names::namespace`] of `lab`; saved for
    /// readers of the file).
    pub namespace: String,
    /// The node address Traefik listens on (for host DNS).
    pub node_address: Option<IpAddr>,
    /// Its instances, attached servers included.
    pub instances: Vec<StoredInstance>,
    /// Where the host side (`fedilab serve`) listens; absent in labs saved
    /// by older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serve: Option<ServeSettings>,
    /// The profile's `inspector.faults`: fault rules `fedilab serve` puts
    /// in force when it starts the inspector (and replaces on a reload
    /// when they changed). Absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultRule>,
}

/// One instance in [`LabState`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredInstance {
    /// Its name.
    pub name: InstanceName,
    /// Its host name.
    pub host: Fqdn,
    /// `https://<host>/`.
    pub url: String,
    /// What runs behind it.
    #[serde(default)]
    pub kind: StoredKind,
    /// A Mastodon instance in `LIMITED_FEDERATION_MODE`: every lab host it
    /// federates with needs a `DomainAllow` row (`attach` adds one).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub limited_federation: bool,
    /// Where the inspector sends requests for `host`: the longest matching
    /// path prefix wins. Empty until `up` has read the Services' addresses,
    /// and when Traefik routes straight to the instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<StoredUpstream>,
}

/// What runs behind a [`StoredInstance`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoredKind {
    /// Mastodon in the cluster.
    #[default]
    Mastodon,
    /// Misskey in the cluster.
    Misskey,
    /// GoToSocial in the cluster.
    #[serde(rename = "gotosocial")]
    GoToSocial,
    /// A server outside the cluster, declared in the profile
    /// (`kind: external`).
    External,
    /// A server outside the cluster, added by `fedilab attach`.
    Attached,
}

impl StoredKind {
    /// Whether fedilab runs the server in the cluster (and holds its
    /// admin's credentials).
    pub fn runs_in_cluster(self) -> bool {
        self.in_cluster_kind().is_some()
    }

    /// `mastodon`, `misskey`, `gotosocial`, `external` or `attached`, as
    /// saved.
    pub fn as_str(self) -> &'static str {
        match self {
            StoredKind::Mastodon => "mastodon",
            StoredKind::Misskey => "misskey",
            StoredKind::GoToSocial => "gotosocial",
            StoredKind::External => "external",
            StoredKind::Attached => "attached",
        }
    }

    /// The profile's kind of a server fedilab runs in the cluster (`None`
    /// for servers outside it, which a profile declares as `external` or
    /// `attach` added).
    pub fn in_cluster_kind(self) -> Option<InstanceKind> {
        match self {
            StoredKind::Mastodon => Some(InstanceKind::Mastodon),
            StoredKind::Misskey => Some(InstanceKind::Misskey),
            StoredKind::GoToSocial => Some(InstanceKind::Gotosocial),
            StoredKind::External | StoredKind::Attached => None,
        }
    }
}

/// One upstream of a [`StoredInstance`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredUpstream {
    /// `/` or a prefix such as `/api/v1/streaming`.
    pub path_prefix: String,
    /// `http://ADDRESS:PORT`.
    pub url: ExternalUrl,
}

/// Where the lab's host side listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServeSettings {
    /// The embedded DNS (UDP and TCP), normally on loopback.
    pub dns: SocketAddr,
    /// The inspector's proxy, on the node address so Traefik reaches it;
    /// `None` when the lab runs without the inspector (`up --no-inspector`).
    pub proxy: Option<SocketAddr>,
    /// The inspector's UI and JSON API, on loopback; `None` without the
    /// inspector.
    pub ui: Option<SocketAddr>,
}

/// A host server made a member of the lab by `fedilab attach`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedServer {
    /// Its instance name (`<name>.<domain>` is its host).
    pub name: InstanceName,
    /// Where it listens on the host: `http://127.0.0.1:PORT`.
    pub url: ExternalUrl,
}

impl ServeSettings {
    /// Where a lab's host side listens on `node`: the `saved` addresses
    /// when the inspector choice is unchanged (ports kept, the proxy moved
    /// to `node`), else [`ServeSettings::choose`] against `others` (the
    /// other labs' settings on this host).
    pub fn for_lab(
        saved: Option<&ServeSettings>,
        node: IpAddr,
        inspector: bool,
        others: &[ServeSettings],
    ) -> ServeSettings {
        if let Some(saved) = saved
            && saved.proxy.is_some() == inspector
        {
            return ServeSettings {
                proxy: saved.proxy.map(|p| SocketAddr::new(node, p.port())),
                ..saved.clone()
            };
        }
        ServeSettings::choose(node, inspector, others)
    }

    /// The host side's addresses for a lab: the default ports
    /// ([`names::SERVE_DNS_PORT`] and the next ones), or the first block of
    /// [`names::SERVE_PORT_STRIDE`] above them that no lab in `taken` uses.
    /// The proxy listens on `node` (Traefik reaches it there), the DNS and
    /// the UI on loopback. Without the inspector there is no proxy or UI.
    pub fn choose(node: IpAddr, inspector: bool, taken: &[ServeSettings]) -> ServeSettings {
        let used: Vec<u16> = taken
            .iter()
            .flat_map(|s| [Some(s.dns), s.proxy, s.ui])
            .flatten()
            .map(|a| a.port())
            .collect();
        let loopback = IpAddr::from([127, 0, 0, 1]);
        let mut block = 0u16;
        loop {
            let offset = block.saturating_mul(names::SERVE_PORT_STRIDE);
            let ports = [
                names::SERVE_DNS_PORT,
                names::SERVE_PROXY_PORT,
                names::SERVE_UI_PORT,
            ]
            .map(|p| p.saturating_add(offset));
            if offset > 1000 || !ports.iter().any(|p| used.contains(p)) {
                let [dns, proxy, ui] = ports;
                return ServeSettings {
                    dns: SocketAddr::new(loopback, dns),
                    proxy: inspector.then_some(SocketAddr::new(node, proxy)),
                    ui: inspector.then_some(SocketAddr::new(loopback, ui)),
                };
            }
            block += 1;
        }
    }
}

impl StoredInstance {
    /// An attached server's entry: routed by the inspector to its URL.
    pub fn attached(server: &AttachedServer, domain: &Domain) -> StoredInstance {
        let host = Fqdn::new(&server.name, domain);
        StoredInstance {
            name: server.name.clone(),
            url: format!("https://{host}/"),
            host,
            kind: StoredKind::Attached,
            limited_federation: false,
            upstreams: vec![StoredUpstream {
                path_prefix: "/".to_owned(),
                url: server.url.clone(),
            }],
        }
    }
}

impl LabState {
    /// The state of `spec` with the node address preflight found; no
    /// upstreams and no host-side settings yet.
    pub fn from_spec(spec: &LabSpec, node_address: Option<IpAddr>) -> LabState {
        LabState {
            lab: spec.name.clone(),
            domain: spec.domain.clone(),
            namespace: names::namespace(&spec.name),
            node_address,
            instances: spec
                .instances
                .iter()
                .map(|i| StoredInstance {
                    name: i.name.clone(),
                    host: i.host.clone(),
                    url: format!("https://{}/", i.host),
                    kind: match i.kind {
                        InstanceSpecKind::Mastodon(_) => StoredKind::Mastodon,
                        InstanceSpecKind::Misskey(_) => StoredKind::Misskey,
                        InstanceSpecKind::GoToSocial(_) => StoredKind::GoToSocial,
                        InstanceSpecKind::External(_) => StoredKind::External,
                    },
                    limited_federation: matches!(
                        &i.kind,
                        InstanceSpecKind::Mastodon(m) if m.limited_federation
                    ),
                    upstreams: match &i.kind {
                        InstanceSpecKind::Mastodon(_)
                        | InstanceSpecKind::Misskey(_)
                        | InstanceSpecKind::GoToSocial(_) => Vec::new(),
                        InstanceSpecKind::External(e) => vec![StoredUpstream {
                            path_prefix: "/".to_owned(),
                            url: e.url.clone(),
                        }],
                    },
                })
                .collect(),
            serve: None,
            faults: spec.inspector.faults.clone(),
        }
    }

    /// Sets the in-cluster instances' upstreams (keyed by instance name)
    /// and marks the external instances that `fedilab attach` added as
    /// attached.
    pub fn route(
        &mut self,
        upstreams: &std::collections::BTreeMap<InstanceName, Vec<StoredUpstream>>,
        attached: &[AttachedServer],
    ) {
        for instance in &mut self.instances {
            if let Some(u) = upstreams.get(&instance.name)
                && instance.kind.runs_in_cluster()
            {
                instance.upstreams.clone_from(u);
            }
            if instance.kind == StoredKind::External
                && attached.iter().any(|a| a.name == instance.name)
            {
                instance.kind = StoredKind::Attached;
            }
        }
    }

    /// The instance called `name`, if any.
    pub fn instance(&self, name: &str) -> Option<&StoredInstance> {
        self.instances.iter().find(|i| i.name.as_str() == name)
    }
}
