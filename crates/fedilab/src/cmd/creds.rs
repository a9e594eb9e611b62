//! `fedilab creds`: each instance's URL, admin login, password and API
//! token, from the lab's saved state, else from its Secrets on the cluster.

use std::process::ExitCode;

use clap::Args;
use fedilab_orchestrator::{credentials_from_cluster, credentials_from_state, select_instance};
use fedilab_state::LabDir;

use crate::UsageError;
use crate::cli::KubeArgs;
use crate::common::{LabSelect, Threads, connect_checked, runtime};
use crate::output::{CredsFormat, print_credentials};

/// Arguments of `fedilab creds`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
fedilab creds                       # every instance of lab main\n  \
fedilab creds mastodon2 -o json | jq -r '.[0].api_token'\n  \
curl -H \"Authorization: Bearer $TOKEN\" https://mastodon1.fediverse.local/api/v1/accounts/verify_credentials\n\n\
Read from the lab's state on this host (no cluster needed); for a lab made elsewhere, from its\n\
admin Secrets on the cluster.")]
pub struct CredsArgs {
    /// Only this instance (such as mastodon1).
    #[arg(value_name = "INSTANCE")]
    pub instance: Option<String>,

    #[command(flatten)]
    pub lab: LabSelect,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: CredsFormat,

    #[command(flatten)]
    pub kube: KubeArgs,
}

/// Runs `fedilab creds`.
///
/// # Errors
/// An unknown lab or instance, or an unreadable state or cluster.
pub fn run(args: &CredsArgs) -> anyhow::Result<ExitCode> {
    let lab = &args.lab.lab;
    let dir = LabDir::new(&crate::paths::data_dir()?, lab);
    let all = match credentials_from_state(&dir)? {
        Some((_, creds)) if !creds.is_empty() => creds,
        _ => runtime(Threads::One)?.block_on(async {
            let cluster = connect_checked(&args.kube).await?;
            anyhow::Ok(credentials_from_cluster(&cluster, lab).await?)
        })?,
    };
    if all.is_empty() {
        return Err(UsageError(format!(
            "no lab {lab} here or on the cluster; `fedilab up --lab {lab}` creates it"
        ))
        .into());
    }
    let picked = select_instance(lab.as_str(), all, args.instance.as_deref())
        .map_err(|e| UsageError(e.to_string()))?;
    print_credentials(&picked, args.output)?;
    Ok(ExitCode::SUCCESS)
}
