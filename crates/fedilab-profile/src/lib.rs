//! Lab profiles for fedilab: what a lab is, before anything is built from it.
//!
//! The flow is `YAML -> LabProfile (raw) -> LabSpec (validated)`:
//! [`LabProfile`] mirrors the YAML file with `Option`s and rejects unknown
//! fields; [`LabSpec::resolve`] applies command-line [`Overrides`], resolves
//! every default once and returns every problem at once, each with a path
//! such as `instances[1].name`. The [`names`] module is the one place that
//! spells label keys, the field manager and object names.
//!
//! This crate does no I/O: callers read files and pass text in.
#![warn(missing_docs, clippy::print_stdout, clippy::dbg_macro)]

pub mod names;
mod profile;
mod quantity;
mod spec;
mod types;

/// The fault rule type of `inspector.faults` (the inspector's own, from
/// `fedilab-fault`).
pub use fedilab_fault::{RuleError as FaultRuleError, RuleSpec as FaultRule};
pub use profile::{
    ComponentResourcesProfile, InspectorProfile, InstanceKind, InstanceProfile, LabProfile,
    MastodonProfile, NetworkProfile, ParseError, ResourcesProfile,
};
pub use quantity::parse_quantity;
pub use spec::{
    AppResources, ComponentResources, DEFAULT_DOMAIN, DEFAULT_EGRESS_CIDR,
    DEFAULT_GOTOSOCIAL_IMAGE, DEFAULT_GOTOSOCIAL_VERSION, DEFAULT_LAB_NAME, DEFAULT_MASTODON_IMAGE,
    DEFAULT_MASTODON_VERSION, DEFAULT_MISSKEY_IMAGE, DEFAULT_MISSKEY_VERSION, ExternalSpec,
    GoToSocialSpec, InspectorSpec, InstanceCounts, InstanceSpec, InstanceSpecKind, LabSpec,
    MAX_INSTANCES, MastodonResources, MastodonSpec, MisskeySpec, OLDEST_GOTOSOCIAL, OLDEST_MISSKEY,
    Overrides, ParseOrValidationError, UnknownRuleHost, ValidationError, ValidationErrors,
};
pub use types::{
    Cidr, CidrError, Domain, ExternalUrl, Fqdn, InstanceName, LabName, MastodonVersion, NameError,
    Quantity, Release,
};

/// The default lab profile (two Mastodon servers), as shipped in
/// `lab-profiles/mastodon-pair.yaml`. Used when neither a profile nor
/// `--instances` is given.
pub const DEFAULT_PROFILE_YAML: &str = include_str!("../../../lab-profiles/mastodon-pair.yaml");
