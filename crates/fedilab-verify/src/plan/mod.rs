//! The check plan: which pods run which script with which environment,
//! which host-side queries follow, what each check expects and what most
//! likely broke when it fails. Built from the
//! [`LabSpec`](fedilab_profile::LabSpec) and what is known of the host
//! side; never touches a cluster.
//!
//! The types are here; `build` fills them in, one check at a time.

mod build;

use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

pub use build::plan;

/// The activities of the federation round trip, in order, as the
/// inspector names them: A's Follow to B, B's Accept to A, B's Create to A.
/// The same for every kind: the inspector labels an activity by its `type`
/// (with an embedded object's type in parentheses, `Accept(Follow)`,
/// `Create(Note)`), and Mastodon, Misskey and GoToSocial all send these
/// three types.
pub const FEDERATION_ACTIVITIES: [&str; 3] = ["Follow", "Accept", "Create"];

/// What the plan needs beyond the lab spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanInputs {
    /// The host side of the lab (`fedilab serve`) as recorded in the lab
    /// state; `None` when none was recorded.
    pub host: Option<HostSide>,
    /// A unique text the federation check posts and looks for.
    pub nonce: String,
    /// How long one connection or DNS query may take in a check pod.
    pub probe_timeout_secs: u32,
    /// How long the federation check waits for the Accept, and then for the
    /// post to arrive.
    pub federation_wait_secs: u32,
}

/// Where the lab's host side listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSide {
    /// The node address the embedded DNS answers with.
    pub node_address: Option<IpAddr>,
    /// The embedded DNS.
    pub dns: SocketAddr,
    /// The inspector's UI and JSON API; `None` when the lab runs without the
    /// inspector.
    pub inspector: Option<SocketAddr>,
}

impl PlanInputs {
    /// Defaults (5 s probes, 60 s federation waits) with `nonce`.
    pub fn new(host: Option<HostSide>, nonce: &str) -> PlanInputs {
        PlanInputs {
            host,
            nonce: nonce.to_owned(),
            probe_timeout_secs: 5,
            federation_wait_secs: 60,
        }
    }
}

/// Every check of a lab.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyPlan {
    /// The lab.
    pub lab: String,
    /// Its namespace, where the check pods run.
    pub namespace: String,
    /// The checks, in the order they are reported.
    pub checks: Vec<Check>,
}

/// One check: its steps, expectations and likely causes of failure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// What it checks.
    pub id: CheckId,
    /// A one-line title.
    pub title: String,
    /// Why it cannot run in this lab (then it has no steps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// What runs: pod steps in parallel, then host steps in order.
    pub steps: Vec<Step>,
    /// What must be seen for the check to pass.
    pub expect: Vec<String>,
    /// What usually breaks it, by code; [`crate::evaluate`] names the one
    /// that fits what it saw.
    pub likely_causes: Vec<Cause>,
    /// Remarks on what the check leaves out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Check {
    /// The text of likely cause `code` (empty if the plan has none).
    pub fn cause(&self, code: &str) -> String {
        self.likely_causes
            .iter()
            .find(|c| c.code == code)
            .map(|c| c.text.clone())
            .unwrap_or_default()
    }
}

/// A likely cause of a failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cause {
    /// A stable code, such as `network_policy_not_enforced`.
    pub code: &'static str,
    /// What is wrong and how to confirm or fix it.
    pub text: String,
}

/// The four checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckId {
    /// Egress is closed.
    Egress,
    /// Lab names resolve inside the cluster and on the host.
    Names,
    /// Lab pods trust the lab CA, and only through it.
    Trust,
    /// Instances federate, one round trip per pair of kinds, through the
    /// inspector.
    Federation,
}

impl CheckId {
    /// The id as text (also the value of
    /// [`names::VERIFY_KEY`](fedilab_profile::names::VERIFY_KEY)).
    pub fn as_str(self) -> &'static str {
        match self {
            CheckId::Egress => "egress",
            CheckId::Names => "names",
            CheckId::Trust => "trust",
            CheckId::Federation => "federation",
        }
    }
}

impl std::fmt::Display for CheckId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Unique in the plan: `<check>@<instance>` for a pod,
    /// `<check>@<from>><to>` for a pod of one federation pair,
    /// `<check>@host` or `<check>@inspector` on the host, and
    /// `<check>@inspector:<from>><to>` for one pair's deliveries.
    pub id: String,
    /// What runs, and where.
    #[serde(flatten)]
    pub run: StepRun,
}

/// Where a step runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "where", rename_all = "snake_case")]
pub enum StepRun {
    /// A short-lived pod in the lab namespace.
    Pod(PodStep),
    /// A DNS query to the embedded DNS on the host.
    HostDns(HostDnsStep),
    /// Queries to the inspector's JSON API on the host.
    Inspector(InspectorStep),
}

/// A check pod: a Ruby script in a Mastodon image. For a Mastodon
/// instance, its own image and environment (from its ConfigMap and Secret)
/// plus `env`; for another kind (`client_only`), a Mastodon image with only
/// the lab trust bundle (`SSL_CERT_FILE`) and `env`: the pod is a client of
/// the instance's API, and the instance's own image has no Ruby.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PodStep {
    /// The pod's name.
    pub pod: String,
    /// Its namespace.
    pub namespace: String,
    /// The instance whose image, environment and trust bundle it uses.
    pub instance: String,
    /// The image.
    pub image: String,
    /// The script it runs with `ruby -e`.
    pub script: Script,
    /// Extra environment.
    pub env: Vec<EnvVar>,
    /// The instance runs no Mastodon: the pod gets the trust bundle and
    /// `env`, not the instance's environment.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub client_only: bool,
}

impl PodStep {
    /// The container's command.
    pub fn command(&self) -> Vec<String> {
        vec![
            "ruby".to_owned(),
            "-e".to_owned(),
            self.script.source().to_owned(),
        ]
    }

    /// The literal value of variable `name`, if it has one.
    pub fn env_value(&self, name: &str) -> Option<&str> {
        self.env.iter().find_map(|e| match &e.from {
            EnvSource::Value { value } if e.name == name => Some(value.as_str()),
            _ => None,
        })
    }
}

/// The Ruby scripts, under `scripts/` in this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Script {
    /// `egress.rb`.
    #[serde(rename = "egress.rb")]
    Egress,
    /// `names.rb`.
    #[serde(rename = "names.rb")]
    Names,
    /// `trust.rb`.
    #[serde(rename = "trust.rb")]
    Trust,
    /// `federation.rb`.
    #[serde(rename = "federation.rb")]
    Federation,
}

impl Script {
    /// Its file name.
    pub fn file_name(self) -> &'static str {
        match self {
            Script::Egress => "egress.rb",
            Script::Names => "names.rb",
            Script::Trust => "trust.rb",
            Script::Federation => "federation.rb",
        }
    }

    /// Its source.
    pub fn source(self) -> &'static str {
        match self {
            Script::Egress => include_str!("../../scripts/egress.rb"),
            Script::Names => include_str!("../../scripts/names.rb"),
            Script::Trust => include_str!("../../scripts/trust.rb"),
            Script::Federation => include_str!("../../scripts/federation.rb"),
        }
    }
}

/// One environment variable of a check pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvVar {
    /// Its name.
    pub name: String,
    /// Where its value comes from.
    pub from: EnvSource,
}

/// Where an environment value comes from. Credentials are always Secret
/// references, never literals in the pod spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EnvSource {
    /// A literal.
    Value {
        /// The value.
        value: String,
    },
    /// A key of a Secret in the lab namespace (`secretKeyRef`).
    SecretKeyRef {
        /// The Secret.
        secret: String,
        /// The key.
        key: String,
    },
    /// The ClusterIP of `kube-system/traefik`, read by the runner (empty
    /// when it has none).
    TraefikClusterIp,
}

/// A DNS query for each host to the embedded DNS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostDnsStep {
    /// The embedded DNS; `None` when the lab state records no host side.
    pub server: Option<SocketAddr>,
    /// The names to query (type A).
    pub hosts: Vec<String>,
    /// The address every answer must hold: the node address.
    pub expected: Option<IpAddr>,
}

/// Queries to the inspector for the federation round trip's deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InspectorStep {
    /// The inspector's UI and API; `None` when the lab state records no
    /// host side.
    pub api: Option<SocketAddr>,
    /// The id of the pod step whose deliveries these are: they are judged
    /// only when its round trip completed. `None`: every pod step of the
    /// check must have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_trip: Option<String>,
    /// One query per activity.
    pub queries: Vec<InspectorQuery>,
}

/// One activity the inspector must have recorded: an inbox POST to `to`,
/// sent by `from`, with a valid signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InspectorQuery {
    /// The activity type (`Follow`, `Accept`, `Create`).
    pub activity: String,
    /// The sending host.
    pub from: String,
    /// The receiving host.
    pub to: String,
    /// A text the exchange must contain (the post's nonce).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// The pair a federation step id names, `mastodon1 -> misskey1` for
/// `federation@mastodon1>misskey1` or `federation@inspector:mastodon1>misskey1`;
/// `None` for a step of no pair.
pub fn pair_of(step_id: &str) -> Option<String> {
    let tail = step_id.rsplit_once(['@', ':']).map_or(step_id, |(_, t)| t);
    let (from, to) = tail.split_once('>')?;
    Some(format!("{from} -> {to}"))
}

impl InspectorQuery {
    /// The API path and query for exchanges recorded after id `after`.
    /// `activity` is a substring filter (`Follow` also matches
    /// `Undo(Follow)`), so [`crate::evaluate`] picks the exact ones.
    pub fn path(&self, after: u64) -> String {
        format!("/api/exchanges?{}", self.query(after))
    }

    /// The query part of [`InspectorQuery::path`].
    pub fn query(&self, after: u64) -> String {
        let mut query = format!(
            "activity={}&instance={}&after={after}&limit=1000",
            self.activity, self.to
        );
        if let Some(text) = &self.text {
            query.push_str("&text=");
            query.push_str(&percent_encode(text));
        }
        query
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl VerifyPlan {
    /// Every pod step, with its check.
    pub fn pods(&self) -> impl Iterator<Item = (&Check, &Step, &PodStep)> {
        self.checks.iter().flat_map(|c| {
            c.steps.iter().filter_map(move |s| match &s.run {
                StepRun::Pod(p) => Some((c, s, p)),
                _ => None,
            })
        })
    }
}
