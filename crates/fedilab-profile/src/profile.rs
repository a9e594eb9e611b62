//! The raw lab profile: exactly what a YAML file says, nothing resolved.
//!
//! Every field is optional here; [`crate::LabSpec::resolve`] decides the
//! defaults and reports what is wrong. Unknown fields are errors, so a typo
//! never silently falls back to a default. The doc comments on these types
//! become the descriptions in `lab-profiles/schema.json`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A lab: a set of fediverse servers that federate only with each other.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "fedilab lab profile")]
pub struct LabProfile {
    /// The lab's name: a DNS-1123 label of at most 40 characters. It names
    /// the lab's namespace (`fedilab-<name>`) and labels every object.
    /// Default: `main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The DNS domain under which every instance gets its host name
    /// (`<instance>.<domain>`). Default: `fediverse.local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Network isolation settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkProfile>,
    /// Defaults for every instance of kind `mastodon`; an instance's own
    /// fields win.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mastodon: Option<MastodonProfile>,
    /// The servers of the lab, at least one. `--instances N` keeps the first
    /// N and adds default Mastodon instances up to N; `--instances
    /// mastodon=2,misskey=1` keeps, per kind, the first ones listed here and
    /// adds default ones up to the count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<Vec<InstanceProfile>>,
    /// The inspector that `fedilab serve` runs in front of the instances
    /// (unless `up --no-inspector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inspector: Option<InspectorProfile>,
}

/// The lab's inspector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InspectorProfile {
    /// Fault rules in force from the moment `fedilab serve` starts the
    /// inspector, each as `POST /api/faults` takes it: `{match: {...},
    /// action: {...}}` with one action (`delay_ms`, `status`, `reset`,
    /// `corrupt`, `duplicate`). `fedilab fault list` shows them and
    /// `fedilab fault remove` removes them, like any rule; an `up` with
    /// changed rules replaces the previous ones. `up --no-inspector` warns
    /// that they will not apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<Vec<fedilab_fault::RuleSpec>>,
}

/// Where lab pods may send traffic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkProfile {
    /// The only networks lab pods may reach, as CIDRs inside the private
    /// ranges. Default: `[10.42.0.0/15]`, k3s's pod and service networks,
    /// which include CoreDNS, Traefik and the other instances. Mastodon's
    /// `ALLOWED_PRIVATE_ADDRESSES` is set to the same list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_cidrs: Option<Vec<String>>,
}

/// The kind of server an instance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InstanceKind {
    /// Mastodon.
    Mastodon,
    /// Misskey (Node.js; its own API beside ActivityPub).
    Misskey,
    /// GoToSocial (Go; requires signed fetches).
    Gotosocial,
    /// A server running outside the cluster, such as the one you are
    /// developing on the host: set `url`. Reachable from the lab only
    /// through the inspector.
    External,
}

impl InstanceKind {
    /// The kind as written in a profile.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceKind::Mastodon => "mastodon",
            InstanceKind::Misskey => "misskey",
            InstanceKind::Gotosocial => "gotosocial",
            InstanceKind::External => "external",
        }
    }

    /// Every kind, in the order `--instances KIND=N` lists them in help.
    pub const ALL: [InstanceKind; 4] = [
        InstanceKind::Mastodon,
        InstanceKind::Misskey,
        InstanceKind::Gotosocial,
        InstanceKind::External,
    ];

    /// The start of an unnamed instance's default name, followed by its
    /// number among the lab's instances of the kind: `mastodon1`,
    /// `misskey1`, `gts1`.
    pub fn name_prefix(self) -> &'static str {
        match self {
            InstanceKind::Gotosocial => "gts",
            other => other.as_str(),
        }
    }
}

impl std::str::FromStr for InstanceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        InstanceKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s || k.name_prefix() == s)
            .ok_or_else(|| {
                format!("{s:?} is not a server kind; use mastodon, misskey or gotosocial")
            })
    }
}

/// One server of the lab.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceProfile {
    /// The instance's name and the first label of its host name: a DNS-1035
    /// label of at most 40 characters. Default: the kind and its position,
    /// such as `mastodon2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the instance runs. Default: `mastodon`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<InstanceKind>,
    /// The release to run: a Mastodon tag such as `v4.5.18`, a Misskey one
    /// such as `2026.6.0`, a GoToSocial one such as `0.20.2`. Default: for
    /// Mastodon the lab's `mastodon.version`; else the release fedilab is
    /// tested with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The image repository, without a tag (the tag is the version). For
    /// Mastodon the streaming server's image is this repository with
    /// `-streaming` appended. Default: for Mastodon the lab's
    /// `mastodon.image`, else `ghcr.io/mastodon/mastodon`;
    /// `docker.io/misskey/misskey`; `docker.io/superseriousbusiness/gotosocial`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Mastodon settings for this instance (kind `mastodon` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mastodon: Option<MastodonProfile>,
    /// CPU and memory per component, replacing the defaults field by field.
    /// Misskey has `web` (the Node.js server), `postgres` and `redis`;
    /// GoToSocial `web` and `postgres`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourcesProfile>,
    /// Where the server listens, for kind `external` only (and required
    /// there): `http://HOST:PORT` as seen from the host, such as
    /// `http://127.0.0.1:3000`. Plain HTTP with an explicit port and no
    /// path: Traefik terminates TLS with the instance's certificate and the
    /// inspector forwards to this address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// Mastodon settings, for the lab (defaults) or one instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MastodonProfile {
    /// The Mastodon release (lab level only; per instance use `version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The image repository (lab level only; per instance use `image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Require HTTP signatures on every ActivityPub fetch (Mastodon's
    /// `AUTHORIZED_FETCH`, also called secure mode). Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorized_fetch: Option<bool>,
    /// Federate only with explicitly allowed domains (Mastodon's
    /// `LIMITED_FEDERATION_MODE`). Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limited_federation: Option<bool>,
}

/// CPU and memory for each component of a Mastodon instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourcesProfile {
    /// The Puma web server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<ComponentResourcesProfile>,
    /// The Node.js streaming server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streaming: Option<ComponentResourcesProfile>,
    /// The Sidekiq job runner (federation deliveries run here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidekiq: Option<ComponentResourcesProfile>,
    /// PostgreSQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<ComponentResourcesProfile>,
    /// Redis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<ComponentResourcesProfile>,
}

/// Kubernetes quantities for one container. CPU is a request only (no CPU
/// limit, so nothing is throttled); memory has a request and a limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComponentResourcesProfile {
    /// CPU request, such as `250m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Memory request, such as `512Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Memory limit, such as `1Gi`; at least the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<String>,
}

/// A profile that is not well-formed YAML of the profile's shape.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ParseError {
    /// Where the text came from, such as a file path.
    pub origin: String,
    /// What the YAML reader said, with line and column.
    pub message: String,
}

impl LabProfile {
    /// Reads a profile from YAML text. `origin` names the text in errors
    /// (usually the file path).
    ///
    /// # Errors
    /// [`ParseError`] when the text is not YAML, has an unknown field or a
    /// value of the wrong type.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, ParseError> {
        serde_saphyr::from_str(text).map_err(|e| ParseError {
            origin: origin.to_owned(),
            message: e.to_string(),
        })
    }

    /// The JSON Schema of the profile format, as checked in at
    /// `lab-profiles/schema.json`.
    pub fn json_schema() -> schemars::Schema {
        schemars::schema_for!(LabProfile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_errors() {
        let err = LabProfile::from_yaml("name: a\ninstances:\n  - nme: x\n", "t.yaml")
            .expect_err("typo must fail");
        let text = err.to_string();
        assert!(text.starts_with("t.yaml: "), "{text}");
        assert!(text.contains("nme"), "{text}");
    }

    #[test]
    fn kinds_read_as_lowercase_words() {
        let p = LabProfile::from_yaml(
            "instances:\n  - kind: gotosocial\n  - kind: external\n  - {}\n",
            "t",
        )
        .expect("valid");
        let kinds: Vec<_> = p
            .instances
            .unwrap_or_default()
            .iter()
            .map(|i| i.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                Some(InstanceKind::Gotosocial),
                Some(InstanceKind::External),
                None
            ]
        );
    }

    #[test]
    fn yaml_1_1_booleans_read_as_booleans_only_in_bool_fields() {
        // serde-saphyr reads `yes` as true where a bool is expected, and as
        // the string "yes" where a string is expected: the field decides.
        let p = LabProfile::from_yaml("name: yes\nmastodon:\n  authorized_fetch: yes\n", "t")
            .expect("valid");
        assert_eq!(p.mastodon.and_then(|m| m.authorized_fetch), Some(true));
        assert_eq!(p.name.as_deref(), Some("yes"));
        assert!(LabProfile::from_yaml("mastodon:\n  authorized_fetch: maybe\n", "t").is_err());
    }
}
