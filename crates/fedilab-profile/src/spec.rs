//! The validated lab: every default resolved once, every name a strong type.
//!
//! [`LabSpec::resolve`] turns a raw [`LabProfile`] plus command-line
//! [`Overrides`] into a [`LabSpec`], or into every problem at once, each with
//! the path of the field (or flag) it concerns. Later code never checks a
//! name or walks a default chain again.

use std::collections::BTreeMap;
use std::fmt;

use crate::profile::{
    ComponentResourcesProfile, InstanceKind, InstanceProfile, LabProfile, MastodonProfile,
};
use crate::types::{
    Cidr, Domain, ExternalUrl, Fqdn, InstanceName, LabName, MastodonVersion, Quantity, Release,
};

/// The lab name when a profile names none.
pub const DEFAULT_LAB_NAME: &str = "main";
/// The lab domain when a profile names none.
pub const DEFAULT_DOMAIN: &str = "fediverse.local";
/// k3s's default pod (10.42.0.0/16) and service (10.43.0.0/16) networks.
pub const DEFAULT_EGRESS_CIDR: &str = "10.42.0.0/15";
/// The Mastodon release fedilab's manifests were checked against: the
/// newest 4.5 patch release with public evidence (mastodon/mastodon#40519,
/// "Bump version to v4.5.18", merged). The streaming image is
/// `ghcr.io/mastodon/mastodon-streaming` with the same tag (split off in 4.3).
pub const DEFAULT_MASTODON_VERSION: &str = "v4.5.18";
/// The Mastodon image repository (the streaming image appends `-streaming`).
pub const DEFAULT_MASTODON_IMAGE: &str = "ghcr.io/mastodon/mastodon";
/// The Misskey release fedilab's manifests were written for: 2026.6.0 (the
/// `misskey/misskey` Docker tag a Renovate update moved to, with its
/// release notes: walnuts1018/infra#3591). 2026.5.2's container start was
/// broken.
pub const DEFAULT_MISSKEY_VERSION: &str = "2026.6.0";
/// Misskey's image repository.
pub const DEFAULT_MISSKEY_IMAGE: &str = "docker.io/misskey/misskey";
/// The oldest Misskey with `setupPassword` (2024.10), which the first
/// admin's creation needs.
pub const OLDEST_MISSKEY: (u32, u32, u32) = (2024, 10, 0);
/// The GoToSocial release fedilab's manifests were written for: 0.20.2
/// (release notes in openSUSE's gotosocial.changes, 2025-11-17; the image
/// tag carries no `v`, gotosocial PR #3832).
pub const DEFAULT_GOTOSOCIAL_VERSION: &str = "0.20.2";
/// GoToSocial's image repository.
pub const DEFAULT_GOTOSOCIAL_IMAGE: &str = "docker.io/superseriousbusiness/gotosocial";
/// The oldest GoToSocial fedilab configures (0.19: the config keys and
/// admin commands it uses).
pub const OLDEST_GOTOSOCIAL: (u32, u32, u32) = (0, 19, 0);
/// The most instances one lab may have. Each Mastodon needs about 1 GiB, so
/// the node runs out long before this; `up` checks the node's capacity.
pub const MAX_INSTANCES: usize = 256;

/// The private ranges an egress CIDR must lie within: a lab must never be
/// able to reach public addresses.
const PRIVATE_RANGES: &[&str] = &[
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
];

/// Values given on the command line, which win over the profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--lab NAME`.
    pub lab: Option<String>,
    /// `--domain D`.
    pub domain: Option<String>,
    /// `--instances N` or `--instances KIND=N,...`.
    pub instances: Option<InstanceCounts>,
}

/// How many instances `--instances` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceCounts {
    /// `N`: the profile's first N instances, then default Mastodon ones up
    /// to N.
    Total(usize),
    /// `mastodon=2,misskey=1,gotosocial=1`: for each kind in this order, the
    /// profile's first instances of that kind, then default ones up to the
    /// count. Kinds not named are left out.
    PerKind(Vec<(InstanceKind, usize)>),
}

impl From<usize> for InstanceCounts {
    fn from(n: usize) -> Self {
        InstanceCounts::Total(n)
    }
}

impl std::str::FromStr for InstanceCounts {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(n) = s.trim().parse::<usize>() {
            return Ok(InstanceCounts::Total(n));
        }
        let mut counts: Vec<(InstanceKind, usize)> = Vec::new();
        for part in s.split(',') {
            let Some((kind, n)) = part.split_once('=') else {
                return Err(format!(
                    "{part:?} is neither a number nor KIND=N; write --instances 2 or \
                     --instances mastodon=2,misskey=1,gotosocial=1"
                ));
            };
            let kind: InstanceKind = kind.trim().parse()?;
            if kind == InstanceKind::External {
                return Err(
                    "external servers join a lab with `fedilab attach NAME --url URL`, \
                     not --instances"
                        .to_owned(),
                );
            }
            let n: usize = n
                .trim()
                .parse()
                .map_err(|_| format!("{n:?} in {part:?} is not a count"))?;
            if counts.iter().any(|(k, _)| *k == kind) {
                return Err(format!("{} is counted twice", kind.as_str()));
            }
            counts.push((kind, n));
        }
        Ok(InstanceCounts::PerKind(counts))
    }
}

impl InstanceCounts {
    /// The number of instances asked for.
    pub fn total(&self) -> usize {
        match self {
            InstanceCounts::Total(n) => *n,
            InstanceCounts::PerKind(counts) => counts.iter().map(|(_, n)| n).sum(),
        }
    }

    /// The instances to resolve, each with the path its errors name: the
    /// profile's `listed` ones kept, then defaults.
    fn select(&self, listed: &[InstanceProfile]) -> Vec<(String, InstanceProfile)> {
        let kept = |i: usize, p: &InstanceProfile| (format!("instances[{i}]"), p.clone());
        match self {
            InstanceCounts::Total(n) => {
                let mut out: Vec<_> = listed
                    .iter()
                    .take(*n)
                    .enumerate()
                    .map(|(i, p)| kept(i, p))
                    .collect();
                for i in out.len()..*n {
                    out.push((
                        format!("--instances (instance {})", i + 1),
                        InstanceProfile::default(),
                    ));
                }
                out
            }
            InstanceCounts::PerKind(counts) => {
                let mut out = Vec::new();
                for &(kind, n) in counts {
                    let mut of_kind: Vec<_> = listed
                        .iter()
                        .enumerate()
                        .filter(|(_, p)| p.kind.unwrap_or(InstanceKind::Mastodon) == kind)
                        .take(n)
                        .map(|(i, p)| kept(i, p))
                        .collect();
                    let have = of_kind.len();
                    out.append(&mut of_kind);
                    for j in have..n {
                        out.push((
                            format!("--instances ({} {})", kind.as_str(), j + 1),
                            InstanceProfile {
                                kind: Some(kind),
                                ..InstanceProfile::default()
                            },
                        ));
                    }
                }
                out
            }
        }
    }
}

/// One problem in a profile, at a path such as `instances[1].name` or, for a
/// value that came from a flag, `--domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// Where the problem is.
    pub path: String,
    /// What is wrong, and what to do.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in a profile, in the order of the fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "the lab profile has {n} problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// A validated lab, ready to build manifests from.
#[derive(Debug, Clone, PartialEq)]
pub struct LabSpec {
    /// The lab's name.
    pub name: LabName,
    /// The lab's DNS domain.
    pub domain: Domain,
    /// The only networks lab pods may reach.
    pub egress_cidrs: Vec<Cidr>,
    /// The servers, in profile order, with unique names and hosts.
    pub instances: Vec<InstanceSpec>,
    /// The inspector's settings.
    pub inspector: InspectorSpec,
}

/// The validated `inspector` section.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InspectorSpec {
    /// Fault rules in force from the inspector's start, each valid
    /// ([`fedilab_fault::RuleSpec::check`]), in profile order.
    pub faults: Vec<fedilab_fault::RuleSpec>,
}

/// One validated server of the lab.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceSpec {
    /// Its name.
    pub name: InstanceName,
    /// Its host name, `<name>.<domain>`.
    pub host: Fqdn,
    /// What it runs, with that kind's settings.
    pub kind: InstanceSpecKind,
}

/// What an instance runs: one variant per server kind.
#[derive(Debug, Clone, PartialEq)]
// One value per instance, built once: boxing Mastodon's settings would only
// make every match on them noisier.
#[allow(clippy::large_enum_variant)]
pub enum InstanceSpecKind {
    /// A Mastodon server.
    Mastodon(MastodonSpec),
    /// A Misskey server.
    Misskey(MisskeySpec),
    /// A GoToSocial server.
    GoToSocial(GoToSocialSpec),
    /// A server outside the cluster (profile `kind: external`, or added by
    /// `fedilab attach`): no pods, no generated secrets; the cluster reaches
    /// it only through the inspector.
    External(ExternalSpec),
}

impl InstanceSpecKind {
    /// The kind as written in a profile.
    pub fn kind(&self) -> InstanceKind {
        match self {
            InstanceSpecKind::Mastodon(_) => InstanceKind::Mastodon,
            InstanceSpecKind::Misskey(_) => InstanceKind::Misskey,
            InstanceSpecKind::GoToSocial(_) => InstanceKind::Gotosocial,
            InstanceSpecKind::External(_) => InstanceKind::External,
        }
    }

    /// Whether fedilab runs the server in the cluster (and generates its
    /// secrets): every kind but `external`.
    pub fn runs_in_cluster(&self) -> bool {
        !matches!(self, InstanceSpecKind::External(_))
    }
}

/// A Misskey instance's resolved settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MisskeySpec {
    /// The release.
    pub version: Release,
    /// The image, with its tag.
    pub image: String,
    /// CPU and memory: `web` is the Node.js server; `redis` is set.
    pub resources: AppResources,
}

/// A GoToSocial instance's resolved settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GoToSocialSpec {
    /// The release.
    pub version: Release,
    /// The image, with its tag.
    pub image: String,
    /// CPU and memory: `web` is the server; no `redis`.
    pub resources: AppResources,
}

/// CPU and memory of a server that is one process beside its database
/// (Misskey, GoToSocial).
#[derive(Debug, Clone, PartialEq)]
pub struct AppResources {
    /// The server.
    pub web: ComponentResources,
    /// PostgreSQL.
    pub postgres: ComponentResources,
    /// Redis, for kinds that use one.
    pub redis: Option<ComponentResources>,
}

impl AppResources {
    /// The summed memory requests, in bytes.
    pub fn memory_requests(&self) -> f64 {
        [Some(&self.web), Some(&self.postgres), self.redis.as_ref()]
            .into_iter()
            .flatten()
            .map(|c| c.memory.value())
            .sum()
    }
}

/// A server outside the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalSpec {
    /// Where it listens, as the inspector reaches it from the host.
    pub url: ExternalUrl,
}

impl InstanceSpec {
    /// An external instance `name` listening at `url`, in a lab of
    /// `domain`: what `fedilab attach` adds. Validated as a profile's
    /// `kind: external` instance; the error paths are `name` and `url`.
    /// Whether the name is free in the lab is the caller's check.
    ///
    /// # Errors
    /// [`ValidationErrors`] with every problem of `name` and `url`.
    pub fn external(
        name: &str,
        url: &str,
        domain: &Domain,
    ) -> Result<InstanceSpec, ValidationErrors> {
        let mut errs = Errors::default();
        let name = errs.check("name", name.parse::<InstanceName>());
        let url = check_external_url("url", url, &mut errs);
        match (name, url) {
            (Some(name), Some(url)) if errs.0.is_empty() => Ok(InstanceSpec {
                host: Fqdn::new(&name, domain),
                name,
                kind: InstanceSpecKind::External(ExternalSpec { url }),
            }),
            _ => Err(ValidationErrors(errs.0)),
        }
    }
}

/// A Mastodon instance's resolved settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MastodonSpec {
    /// The release.
    pub version: MastodonVersion,
    /// The web and Sidekiq image, with its tag.
    pub image: String,
    /// The streaming server's image, with its tag.
    pub streaming_image: String,
    /// `AUTHORIZED_FETCH`.
    pub authorized_fetch: bool,
    /// `LIMITED_FEDERATION_MODE`.
    pub limited_federation: bool,
    /// CPU and memory per component.
    pub resources: MastodonResources,
}

/// CPU and memory for each component of a Mastodon instance.
#[derive(Debug, Clone, PartialEq)]
pub struct MastodonResources {
    /// Puma.
    pub web: ComponentResources,
    /// Node.js streaming.
    pub streaming: ComponentResources,
    /// Sidekiq.
    pub sidekiq: ComponentResources,
    /// PostgreSQL.
    pub postgres: ComponentResources,
    /// Redis.
    pub redis: ComponentResources,
}

/// Resolved quantities for one container.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentResources {
    /// CPU request.
    pub cpu: Quantity,
    /// Memory request.
    pub memory: Quantity,
    /// Memory limit.
    pub memory_limit: Quantity,
}

impl ComponentResources {
    /// Quantities from constants of fedilab's own.
    ///
    /// # Panics
    /// A constant is not a quantity (a bug caught by every test).
    fn new(cpu: &str, memory: &str, limit: &str) -> Self {
        let q = |text: &str| {
            text.parse()
                .unwrap_or_else(|e| panic!("fedilab's constant {text:?}: {e}"))
        };
        ComponentResources {
            cpu: q(cpu),
            memory: q(memory),
            memory_limit: q(limit),
        }
    }
}

impl MastodonResources {
    /// The defaults, sized for a developer VM: about 1.1 GiB of requests per
    /// instance.
    pub fn defaults() -> Self {
        let r = ComponentResources::new;
        MastodonResources {
            web: r("250m", "512Mi", "1Gi"),
            streaming: r("50m", "64Mi", "256Mi"),
            sidekiq: r("250m", "384Mi", "1Gi"),
            postgres: r("100m", "128Mi", "512Mi"),
            redis: r("50m", "32Mi", "256Mi"),
        }
    }

    /// The summed memory requests, in bytes.
    pub fn memory_requests(&self) -> f64 {
        [
            &self.web,
            &self.streaming,
            &self.sidekiq,
            &self.postgres,
            &self.redis,
        ]
        .iter()
        .map(|c| c.memory.value())
        .sum()
    }
}

impl LabSpec {
    /// Validates `profile` with `overrides` applied and resolves every
    /// default.
    ///
    /// # Errors
    /// [`ValidationErrors`] with every problem found, never just the first.
    pub fn resolve(
        profile: &LabProfile,
        overrides: &Overrides,
    ) -> Result<LabSpec, ValidationErrors> {
        let mut errs = Errors::default();

        let (lab, lab_path) = pick(&overrides.lab, &profile.name, "--lab", "name");
        let name = errs.check(lab_path, lab.unwrap_or(DEFAULT_LAB_NAME).parse::<LabName>());

        let (domain, domain_path) = pick(&overrides.domain, &profile.domain, "--domain", "domain");
        let domain = errs.check(
            domain_path,
            domain.unwrap_or(DEFAULT_DOMAIN).parse::<Domain>(),
        );

        let egress_cidrs = resolve_cidrs(profile, &mut errs);

        let lab_mastodon = profile.mastodon.clone().unwrap_or_default();
        if lab_mastodon.version.is_some() || lab_mastodon.image.is_some() {
            // Checked once here; instances inherit the value as text and
            // would otherwise report the same problem once each.
            if let Some(v) = &lab_mastodon.version {
                errs.check("mastodon.version", v.parse::<MastodonVersion>());
            }
            if let Some(image) = &lab_mastodon.image {
                errs.check("mastodon.image", check_image(image));
            }
        }

        let listed = profile.instances.clone().unwrap_or_default();
        let instances: Vec<(String, InstanceProfile)> = match &overrides.instances {
            Some(counts) => counts.select(&listed),
            None => listed
                .into_iter()
                .enumerate()
                .map(|(i, p)| (format!("instances[{i}]"), p))
                .collect(),
        };
        let count_path = if overrides.instances.is_some() {
            "--instances"
        } else {
            "instances"
        };
        if instances.is_empty() {
            errs.push(count_path, "a lab needs at least one instance".to_owned());
        } else if instances.len() > MAX_INSTANCES {
            errs.push(
                count_path,
                format!(
                    "{} instances is more than the {MAX_INSTANCES} one lab may have",
                    instances.len()
                ),
            );
        }

        let mut resolved = Vec::with_capacity(instances.len());
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (index, (path, instance)) in instances.iter().enumerate() {
            let kind = instance.kind.unwrap_or(InstanceKind::Mastodon);
            let nth = instances[..index]
                .iter()
                .filter(|(_, p)| p.kind.unwrap_or(InstanceKind::Mastodon) == kind)
                .count()
                + 1;
            let default_name = format!("{}{nth}", kind.name_prefix());
            let raw_name = instance.name.clone().unwrap_or(default_name);
            let inst_name = errs.check(&format!("{path}.name"), raw_name.parse::<InstanceName>());
            if let Some(first) = seen.get(&raw_name) {
                errs.push(
                    &format!("{path}.name"),
                    format!("{raw_name:?} is already the name of {first}; names must be unique"),
                );
            } else {
                seen.insert(raw_name.clone(), path.clone());
            }
            let kind = resolve_kind(path, kind, instance, &lab_mastodon, &mut errs);
            if let (Some(name), Some(domain), Some(kind)) = (inst_name, &domain, kind) {
                resolved.push(InstanceSpec {
                    host: Fqdn::new(&name, domain),
                    name,
                    kind,
                });
            }
        }

        let inspector = resolve_inspector(profile, &mut errs);

        match (errs.0.is_empty(), name, domain) {
            (true, Some(name), Some(domain)) => Ok(LabSpec {
                name,
                domain,
                egress_cidrs,
                instances: resolved,
                inspector,
            }),
            _ => Err(ValidationErrors(errs.0)),
        }
    }

    /// Parses a YAML profile and resolves it in one step.
    ///
    /// # Errors
    /// The parse error, or every validation problem, as text for the user.
    pub fn from_yaml(
        text: &str,
        origin: &str,
        overrides: &Overrides,
    ) -> Result<LabSpec, crate::ParseOrValidationError> {
        let profile = LabProfile::from_yaml(text, origin)?;
        Ok(LabSpec::resolve(&profile, overrides)?)
    }

    /// The instance called `name`, if any.
    pub fn instance(&self, name: &str) -> Option<&InstanceSpec> {
        self.instances.iter().find(|i| i.name.as_str() == name)
    }

    /// The profile's fault rules whose `host` or `from` names no instance
    /// of the lab: a typo, most likely, since such a rule never fires
    /// (unless a server attached later has that name).
    pub fn fault_rules_naming_no_instance(&self) -> Vec<UnknownRuleHost<'_>> {
        let known = |name: &str| {
            self.instances
                .iter()
                .any(|i| fedilab_fault::host_is(i.host.as_str(), name))
        };
        let mut out = Vec::new();
        for (index, rule) in self.inspector.faults.iter().enumerate() {
            let m = &rule.matcher;
            for (field, name) in [("host", &m.host), ("from", &m.from)] {
                if let Some(name) = name.as_deref()
                    && !known(name)
                {
                    out.push(UnknownRuleHost { index, field, name });
                }
            }
        }
        out
    }
}

/// A fault rule's `host` or `from` that no instance of the lab has
/// ([`LabSpec::fault_rules_naming_no_instance`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRuleHost<'a> {
    /// The rule's position in `inspector.faults`.
    pub index: usize,
    /// `host` or `from`.
    pub field: &'static str,
    /// The name the rule gives.
    pub name: &'a str,
}

impl std::fmt::Display for UnknownRuleHost<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "inspector.faults[{}].match.{}: {:?} is no instance of this lab, so the rule never fires",
            self.index, self.field, self.name
        )
    }
}

/// Either failure of [`LabSpec::from_yaml`].
#[derive(Debug, thiserror::Error)]
pub enum ParseOrValidationError {
    /// The text is not a profile.
    #[error(transparent)]
    Parse(#[from] crate::ParseError),
    /// The profile is not valid.
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
}

fn pick<'a>(
    flag: &'a Option<String>,
    field: &'a Option<String>,
    flag_path: &'static str,
    field_path: &'static str,
) -> (Option<&'a str>, &'static str) {
    match (flag, field) {
        (Some(v), _) => (Some(v), flag_path),
        (None, Some(v)) => (Some(v), field_path),
        (None, None) => (None, field_path),
    }
}

/// The inspector section: every fault rule checked the way the inspector
/// checks one it is given, each problem at the rule's field.
fn resolve_inspector(profile: &LabProfile, errs: &mut Errors) -> InspectorSpec {
    let faults = profile
        .inspector
        .as_ref()
        .and_then(|i| i.faults.clone())
        .unwrap_or_default();
    for (i, rule) in faults.iter().enumerate() {
        if let Err(e) = rule.check() {
            let path = match e.field() {
                "" => format!("inspector.faults[{i}]"),
                field => format!("inspector.faults[{i}].{field}"),
            };
            errs.push(&path, format!("{e}, in {}", rule_text(rule)));
        }
    }
    InspectorSpec { faults }
}

/// A rule as its JSON, for messages.
fn rule_text(rule: &fedilab_fault::RuleSpec) -> String {
    serde_json::to_string(rule).unwrap_or_else(|_| "?".to_owned())
}

fn resolve_cidrs(profile: &LabProfile, errs: &mut Errors) -> Vec<Cidr> {
    let private: Vec<Cidr> = PRIVATE_RANGES
        .iter()
        .filter_map(|r| r.parse().ok())
        .collect();
    let given = profile
        .network
        .as_ref()
        .and_then(|n| n.egress_cidrs.clone());
    let Some(given) = given else {
        return DEFAULT_EGRESS_CIDR.parse().into_iter().collect();
    };
    if given.is_empty() {
        errs.push(
            "network.egress_cidrs",
            format!("list at least one network, such as {DEFAULT_EGRESS_CIDR} (k3s's pod and service networks)"),
        );
    }
    let mut out = Vec::new();
    for (i, text) in given.iter().enumerate() {
        let path = format!("network.egress_cidrs[{i}]");
        let Some(cidr) = errs.check(&path, text.parse::<Cidr>()) else {
            continue;
        };
        if !private.iter().any(|range| cidr.is_within(range)) {
            errs.push(
                &path,
                format!(
                    "{cidr} is not inside a private range ({}); a lab must not reach public addresses",
                    PRIVATE_RANGES.join(", ")
                ),
            );
            continue;
        }
        out.push(cidr);
    }
    out
}

fn resolve_kind(
    path: &str,
    kind: InstanceKind,
    instance: &InstanceProfile,
    lab: &MastodonProfile,
    errs: &mut Errors,
) -> Option<InstanceSpecKind> {
    match kind {
        InstanceKind::Mastodon => {
            resolve_mastodon(path, instance, lab, errs).map(InstanceSpecKind::Mastodon)
        }
        InstanceKind::External => {
            resolve_external(path, instance, errs).map(InstanceSpecKind::External)
        }
        InstanceKind::Misskey => {
            let app = resolve_app(path, instance, &MISSKEY, errs)?;
            Some(InstanceSpecKind::Misskey(MisskeySpec {
                version: app.0,
                image: app.1,
                resources: app.2,
            }))
        }
        InstanceKind::Gotosocial => {
            let app = resolve_app(path, instance, &GOTOSOCIAL, errs)?;
            Some(InstanceSpecKind::GoToSocial(GoToSocialSpec {
                version: app.0,
                image: app.1,
                resources: app.2,
            }))
        }
    }
}

/// What resolving a one-process server kind needs to know about it.
struct AppKind {
    server: &'static str,
    default_version: &'static str,
    oldest: (u32, u32, u32),
    default_image: &'static str,
    /// Default (cpu, memory, limit) of the server, PostgreSQL and Redis.
    web: (&'static str, &'static str, &'static str),
    redis: bool,
}

const MISSKEY: AppKind = AppKind {
    server: "Misskey",
    default_version: DEFAULT_MISSKEY_VERSION,
    oldest: OLDEST_MISSKEY,
    default_image: DEFAULT_MISSKEY_IMAGE,
    // Migrations run on every start and want about 2 GB.
    web: ("250m", "1Gi", "3Gi"),
    redis: true,
};

const GOTOSOCIAL: AppKind = AppKind {
    server: "GoToSocial",
    default_version: DEFAULT_GOTOSOCIAL_VERSION,
    oldest: OLDEST_GOTOSOCIAL,
    default_image: DEFAULT_GOTOSOCIAL_IMAGE,
    web: ("100m", "256Mi", "1Gi"),
    redis: false,
};

fn resolve_app(
    path: &str,
    instance: &InstanceProfile,
    kind: &AppKind,
    errs: &mut Errors,
) -> Option<(Release, String, AppResources)> {
    let misplaced = [
        (
            "url",
            instance.url.is_some(),
            "only an instance of kind external has a url",
        ),
        (
            "mastodon",
            instance.mastodon.is_some(),
            "mastodon settings apply to kind mastodon only",
        ),
    ];
    for (field, set, why) in misplaced {
        if set {
            errs.push(
                &format!("{path}.{field}"),
                format!("{why}; remove the field"),
            );
        }
    }
    let version = errs.check(
        &format!("{path}.version"),
        Release::parse(
            instance.version.as_deref().unwrap_or(kind.default_version),
            kind.server,
            kind.default_version,
            kind.oldest,
        ),
    );
    let image = match &instance.image {
        Some(i) => errs.check(&format!("{path}.image"), check_image(i)),
        None => Some(kind.default_image.to_owned()),
    };
    let resources = resolve_app_resources(path, instance, kind, errs);
    let (version, image, resources) = (version?, image?, resources?);
    let image = format!("{image}:{}", version.tag());
    Some((version, image, resources))
}

fn resolve_app_resources(
    path: &str,
    instance: &InstanceProfile,
    kind: &AppKind,
    errs: &mut Errors,
) -> Option<AppResources> {
    let given = instance.resources.clone().unwrap_or_default();
    let before = errs.0.len();
    let mut foreign = vec![
        ("streaming", given.streaming.is_some()),
        ("sidekiq", given.sidekiq.is_some()),
    ];
    if !kind.redis {
        foreign.push(("redis", given.redis.is_some()));
    }
    for (field, set) in foreign {
        if set {
            errs.push(
                &format!("{path}.resources.{field}"),
                format!("{} has no {field}; remove it", kind.server),
            );
        }
    }
    let defaults = MastodonResources::defaults();
    let (cpu, memory, limit) = kind.web;
    let web_default = ComponentResources::new(cpu, memory, limit);
    let resources = AppResources {
        web: resolve_component(path, "web", &given.web, web_default, errs),
        postgres: resolve_component(path, "postgres", &given.postgres, defaults.postgres, errs),
        redis: kind
            .redis
            .then(|| resolve_component(path, "redis", &given.redis, defaults.redis, errs)),
    };
    (errs.0.len() == before).then_some(resources)
}

fn resolve_external(
    path: &str,
    instance: &InstanceProfile,
    errs: &mut Errors,
) -> Option<ExternalSpec> {
    // Settings of servers fedilab runs mean nothing for one it does not.
    let misplaced = [
        ("version", instance.version.is_some()),
        ("image", instance.image.is_some()),
        ("mastodon", instance.mastodon.is_some()),
        ("resources", instance.resources.is_some()),
    ];
    for (field, set) in misplaced {
        if set {
            errs.push(
                &format!("{path}.{field}"),
                format!(
                    "an external server runs outside the lab, so fedilab does not choose its \
                     {field}; remove the field (or use kind: mastodon)"
                ),
            );
        }
    }
    let Some(url) = &instance.url else {
        errs.push(
            &format!("{path}.url"),
            "an external instance needs the address its server listens on, \
             such as url: http://127.0.0.1:3000"
                .to_owned(),
        );
        return None;
    };
    check_external_url(&format!("{path}.url"), url, errs).map(|url| ExternalSpec { url })
}

fn check_external_url(path: &str, text: &str, errs: &mut Errors) -> Option<ExternalUrl> {
    errs.check(path, text.parse::<ExternalUrl>())
}

fn resolve_mastodon(
    path: &str,
    instance: &InstanceProfile,
    lab: &MastodonProfile,
    errs: &mut Errors,
) -> Option<MastodonSpec> {
    if instance.url.is_some() {
        errs.push(
            &format!("{path}.url"),
            "only an instance of kind external has a url; remove it, or set kind: external \
             for a server you run yourself"
                .to_owned(),
        );
    }
    let own = instance.mastodon.clone().unwrap_or_default();
    if own.version.is_some() {
        errs.push(
            &format!("{path}.mastodon.version"),
            format!("set the instance's release as {path}.version"),
        );
    }
    if own.image.is_some() {
        errs.push(
            &format!("{path}.mastodon.image"),
            format!("set the instance's image as {path}.image"),
        );
    }
    // An inherited value was checked at lab level: only report it there.
    let version = match &instance.version {
        Some(v) => errs.check(&format!("{path}.version"), v.parse::<MastodonVersion>()),
        None => lab
            .version
            .as_deref()
            .unwrap_or(DEFAULT_MASTODON_VERSION)
            .parse::<MastodonVersion>()
            .ok(),
    };
    let image = match &instance.image {
        Some(i) => errs.check(&format!("{path}.image"), check_image(i)),
        None => Some(
            lab.image
                .clone()
                .unwrap_or_else(|| DEFAULT_MASTODON_IMAGE.to_owned()),
        ),
    };
    let resources = resolve_resources(path, instance, errs);
    let (version, image, resources) = (version?, image?, resources?);
    Some(MastodonSpec {
        image: format!("{image}:{}", version.tag()),
        streaming_image: format!("{image}-streaming:{}", version.tag()),
        version,
        authorized_fetch: own
            .authorized_fetch
            .or(lab.authorized_fetch)
            .unwrap_or(false),
        limited_federation: own
            .limited_federation
            .or(lab.limited_federation)
            .unwrap_or(false),
        resources,
    })
}

fn check_image(image: &str) -> Result<String, String> {
    let ok = !image.is_empty()
        && !image.contains(':') // the tag comes from the version
        && !image.contains('@')
        && image
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"./-_".contains(&b));
    if ok {
        Ok(image.to_owned())
    } else {
        Err(format!(
            "{image:?} is not an image repository such as ghcr.io/mastodon/mastodon \
             (lowercase, no tag: the tag comes from the version)"
        ))
    }
}

fn resolve_resources(
    path: &str,
    instance: &InstanceProfile,
    errs: &mut Errors,
) -> Option<MastodonResources> {
    let defaults = MastodonResources::defaults();
    let Some(given) = &instance.resources else {
        return Some(defaults);
    };
    let before = errs.0.len();
    let resources = MastodonResources {
        web: resolve_component(path, "web", &given.web, defaults.web, errs),
        streaming: resolve_component(
            path,
            "streaming",
            &given.streaming,
            defaults.streaming,
            errs,
        ),
        sidekiq: resolve_component(path, "sidekiq", &given.sidekiq, defaults.sidekiq, errs),
        postgres: resolve_component(path, "postgres", &given.postgres, defaults.postgres, errs),
        redis: resolve_component(path, "redis", &given.redis, defaults.redis, errs),
    };
    (errs.0.len() == before).then_some(resources)
}

/// One component's quantities: the given ones over `default`, the limit at
/// least the request.
fn resolve_component(
    path: &str,
    name: &str,
    given: &Option<ComponentResourcesProfile>,
    default: ComponentResources,
    errs: &mut Errors,
) -> ComponentResources {
    let Some(given) = given else { return default };
    let p = format!("{path}.resources.{name}");
    let mut q = |field: &str, text: &Option<String>, default: crate::Quantity| match text {
        Some(t) => errs
            .check(&format!("{p}.{field}"), t.parse())
            .unwrap_or(default),
        None => default,
    };
    let resolved = ComponentResources {
        cpu: q("cpu", &given.cpu, default.cpu),
        memory: q("memory", &given.memory, default.memory),
        memory_limit: q("memory_limit", &given.memory_limit, default.memory_limit),
    };
    if resolved.memory_limit.value() < resolved.memory.value() {
        errs.push(
            &format!("{p}.memory_limit"),
            format!(
                "{} is below the memory request {}; raise the limit or lower the request",
                resolved.memory_limit.as_str(),
                resolved.memory.as_str()
            ),
        );
    }
    resolved
}

#[derive(Default)]
struct Errors(Vec<ValidationError>);

impl Errors {
    fn push(&mut self, path: &str, message: String) {
        self.0.push(ValidationError {
            path: path.to_owned(),
            message,
        });
    }

    fn check<T, E: fmt::Display>(&mut self, path: &str, result: Result<T, E>) -> Option<T> {
        result.map_err(|e| self.push(path, e.to_string())).ok()
    }
}
