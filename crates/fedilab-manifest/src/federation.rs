//! Limited federation: the domains a Mastodon instance in
//! `LIMITED_FEDERATION_MODE` must allow, and the command that allows them
//! in a running instance (for `attach`, which adds a domain to a lab that
//! is up). Pure: it builds values and argument lists, runs nothing.
//!
//! In that mode Mastodon refuses every domain without a `DomainAllow` row
//! (`DomainControlHelper#domain_not_allowed?`), so a lab instance in it
//! federates with nobody until the lab's other hosts are allowed.

use fedilab_profile::{InstanceSpec, InstanceSpecKind, LabSpec};

/// The Ruby that allows the domains of [`ALLOW_DOMAINS_ENV`]; run it with
/// `rails runner` in the instance's Mastodon image. Idempotent.
pub const ALLOW_DOMAINS_RB: &str = include_str!("../scripts/allow_domains.rb");

/// The environment variable [`ALLOW_DOMAINS_RB`] reads: comma-separated
/// domains.
pub const ALLOW_DOMAINS_ENV: &str = "FEDILAB_ALLOW_DOMAINS";

/// The hosts `instance` must allow: every other instance of `spec`
/// (Mastodon or external), sorted, when `instance` is a Mastodon instance
/// in limited federation mode; empty otherwise (nothing to allow).
pub fn allowed_domains(spec: &LabSpec, instance: &InstanceSpec) -> Vec<String> {
    let limited = matches!(&instance.kind, InstanceSpecKind::Mastodon(m) if m.limited_federation);
    if !limited {
        return Vec::new();
    }
    let mut domains: Vec<String> = spec
        .instances
        .iter()
        .filter(|other| other.name != instance.name)
        .map(|other| other.host.to_string())
        .collect();
    domains.sort();
    domains.dedup();
    domains
}

/// The command that allows `domains` in a running Mastodon container (its
/// working directory is the app's, as in the web and Sidekiq pods), for
/// `kubectl exec` or the API's exec: `env FEDILAB_ALLOW_DOMAINS=a,b bundle
/// exec rails runner <ALLOW_DOMAINS_RB>`. The domains are lab host names
/// (validated DNS names), passed as one environment value, never parsed by
/// a shell.
pub fn allow_domains_command(domains: &[String]) -> Vec<String> {
    vec![
        "env".to_owned(),
        format!("{ALLOW_DOMAINS_ENV}={}", domains.join(",")),
        "bundle".to_owned(),
        "exec".to_owned(),
        "rails".to_owned(),
        "runner".to_owned(),
        ALLOW_DOMAINS_RB.to_owned(),
    ]
}
