//! The command-line interface: every subcommand, flag and help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use fedilab_profile::{
    DEFAULT_PROFILE_YAML, InstanceCounts, LabSpec, Overrides, ParseOrValidationError,
};

use crate::UsageError;

/// Provision an isolated fediverse lab on k3s: real Mastodon servers that
/// federate with each other over HTTPS, and with nobody else.
#[derive(Debug, Parser)]
#[command(name = "fedilab", version, about, long_about = None)]
#[command(
    after_help = "Start with `fedilab render --instances 2` to see what a lab is made of.\n\
Set FEDILAB_LOG=debug for detailed logs."
)]
pub struct Cli {
    /// More log output on stderr (-v: info, -vv: debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print every Kubernetes object of a lab, in apply order, without
    /// touching a cluster.
    Render(crate::cmd::render::RenderArgs),
    /// The lab's own certificate authority: create it, inspect it, issue
    /// certificates, make this host trust it.
    #[command(long_about = crate::cmd::ca::LONG_ABOUT)]
    Ca(crate::cmd::ca::CaArgs),
    /// The lab's DNS on this host: serve the lab domain, hook it into
    /// systemd-resolved.
    Dns(crate::cmd::dns::DnsArgs),
    /// Run the recording proxy and its live UI in front of fediverse
    /// servers, without a lab.
    Inspect(crate::cmd::inspect::InspectArgs),
    /// Delay, fail, reset, corrupt or duplicate matching requests in a
    /// running inspector (add, list, remove, clear fault rules).
    #[command(long_about = crate::cmd::fault::LONG_ABOUT)]
    Fault(crate::cmd::fault::FaultArgs),
    /// Run a lab's DNS and inspector in the foreground, from its state
    /// (`fedilab up` starts it in the background).
    #[command(long_about = crate::cmd::serve::LONG_ABOUT)]
    Serve(crate::cmd::serve::ServeArgs),
    /// Put a lab on the cluster, wait until every instance works, print how
    /// to log in. Running it again applies only what changed.
    Up(crate::cmd::up::UpArgs),
    /// Show labs on the cluster: per instance its phase, ready pods, URL and
    /// age, and the lab-level objects.
    Status(crate::cmd::status::StatusArgs),
    /// Print each instance's URL, admin login, password and API token.
    Creds(crate::cmd::creds::CredsArgs),
    /// Make a server running on this host a member of a running lab, as
    /// NAME.DOMAIN, routed through the inspector.
    Attach(crate::cmd::attach::AttachArgs),
    /// Remove a server `fedilab attach` added, leaving nothing of it.
    Detach(crate::cmd::attach::DetachArgs),
    /// Remove a lab from the cluster (and with --purge its state and CA
    /// here).
    Down(crate::cmd::down::DownArgs),
    /// Run a command (default: a shell) in an instance's pod.
    Exec(crate::cmd::exec::ExecArgs),
    /// Run Mastodon's tootctl in an instance's web pod.
    Tootctl(crate::cmd::exec::TootctlArgs),
    /// Write one instance's state (database, media, secrets) to an archive
    /// file.
    Backup(crate::cmd::backup::BackupArgs),
    /// Bring an instance back to the state of an archive of `fedilab
    /// backup`.
    Restore(crate::cmd::backup::RestoreArgs),
    /// Bring a real Mastodon's data (env file secrets, pg_dump, media) into
    /// a lab instance.
    Import(crate::cmd::backup::ImportArgs),
    /// Check in the live lab that it is isolated, named, trusted and
    /// federating; print a checklist with evidence (`--plan`: only print
    /// the checks).
    Verify(crate::cmd::verify::VerifyArgs),
    /// Install k3s on a fresh VM, with the settings fedilab needs.
    Bootstrap(crate::cmd::bootstrap::BootstrapArgs),
    /// Return instances to the state right after setup (`fresh`) or to a
    /// named snapshot: database, Redis, media; in seconds, pods kept.
    Reset(crate::cmd::snapshot::ResetArgs),
    /// Save, list and delete named snapshots of the lab's state (kept in
    /// the cluster; `down` removes them).
    Snapshot(crate::cmd::snapshot::SnapshotArgs),
}

/// Which cluster: found like kubectl finds it.
#[derive(Debug, Clone, Args)]
pub struct KubeArgs {
    /// The kubeconfig. Default: the files in KUBECONFIG, else
    /// ~/.kube/config, else k3s's /etc/rancher/k3s/k3s.yaml.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context (default: its current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

impl KubeArgs {
    /// As the orchestrator's options.
    pub fn options(&self) -> fedilab_orchestrator::ConnectOptions {
        fedilab_orchestrator::ConnectOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
        }
    }
}

/// Which lab: a profile file, flags that override it, or both.
#[derive(Debug, Clone, Args)]
pub struct LabArgs {
    /// A lab profile (YAML). Without one, the built-in default: two Mastodon
    /// servers, as in lab-profiles/mastodon-pair.yaml.
    #[arg(short, long, value_name = "FILE")]
    pub profile: Option<PathBuf>,

    /// How many instances: N keeps the profile's first N and adds Mastodon
    /// instances named mastodonK up to N; KIND=N,... (kinds mastodon,
    /// misskey, gotosocial), such as mastodon=2,misskey=1,gotosocial=1, does
    /// the same per kind (names mastodonK, misskeyK, gtsK).
    #[arg(short = 'n', long, value_name = "N|KIND=N,...")]
    pub instances: Option<InstanceCounts>,

    /// The lab's DNS domain (default fediverse.local; fediverse.test avoids
    /// mDNS on hosts that claim .local).
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,

    /// The lab's name; it names the namespace fedilab-NAME (default main).
    #[arg(long, value_name = "NAME")]
    pub lab: Option<String>,
}

impl LabArgs {
    /// Reads the profile (or the built-in default), applies the flags and
    /// validates the result.
    ///
    /// # Errors
    /// A [`UsageError`] listing every problem with its path when the profile
    /// cannot be read or is invalid.
    pub fn load(&self) -> anyhow::Result<LabSpec> {
        let overrides = Overrides {
            lab: self.lab.clone(),
            domain: self.domain.clone(),
            instances: self.instances.clone(),
        };
        let (text, origin) = match &self.profile {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    UsageError(format!("cannot read the profile {}: {e}", path.display()))
                })?;
                (text, path.display().to_string())
            }
            None => (
                DEFAULT_PROFILE_YAML.to_owned(),
                "the built-in profile".to_owned(),
            ),
        };
        LabSpec::from_yaml(&text, &origin, &overrides).map_err(|e| match e {
            ParseOrValidationError::Parse(e) => UsageError(e.to_string()).into(),
            ParseOrValidationError::Invalid(e) => UsageError(format!(
                "{e}\n(in {origin}; nothing was rendered or applied)"
            ))
            .into(),
        })
    }
}

/// Warns about fault rules whose `host` or `from` no instance of `spec`
/// has (they are kept: a server attached later may have that name).
pub fn warn_unknown_rule_hosts(spec: &LabSpec) {
    for unknown in spec.fault_rules_naming_no_instance() {
        eprintln!("warning: {unknown}");
    }
}
