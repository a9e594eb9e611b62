//! `down`: the lab leaves the cluster (everything labelled for it, its
//! CoreDNS key, the shared objects when it is the last lab), its host side
//! stops, and with `purge` its state and, once no lab uses the domain, its
//! CA leave this host.

use std::path::PathBuf;

use fedilab_ca::CaStore;
use fedilab_orchestrator::{Cluster, DownOptions, Timings};
use fedilab_profile::{Domain, LabName};
use fedilab_serve::daemon::{DaemonError, StopOutcome};

use crate::host::HostSide;
use fedilab_state::{LabDir, StateError, domain_in_use};

/// What `down` is asked to do.
#[derive(Debug, Clone)]
pub struct DownRequest {
    /// The data directory (state, CA).
    pub data_dir: PathBuf,
    /// The lab.
    pub lab: LabName,
    /// Also remove the lab's state and, when no other lab uses its domain,
    /// its CA.
    pub purge: bool,
    /// Time budget and polling pace on the cluster.
    pub options: DownOptions,
}

/// What `down` did.
#[derive(Debug)]
pub struct DownReport {
    /// On the cluster.
    pub cluster: fedilab_orchestrator::DownReport,
    /// The host side.
    pub serve: StopOutcome,
    /// The lab's state directory, when `purge` removed it.
    pub purged_state: Option<PathBuf>,
    /// The lab CA's directory, when `purge` removed it (no other lab uses
    /// the domain).
    pub purged_ca: Option<PathBuf>,
}

/// Why `down` did not finish.
#[derive(Debug, thiserror::Error)]
pub enum DownError {
    /// On the cluster.
    #[error(transparent)]
    Cluster(#[from] fedilab_orchestrator::DownError),
    /// Stopping the host side.
    #[error(transparent)]
    Serve(#[from] DaemonError),
    /// Removing the state.
    #[error(transparent)]
    State(#[from] StateError),
    /// Removing the CA.
    #[error("cannot remove the lab CA in {dir}")]
    Ca {
        /// The CA directory.
        dir: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Removes the lab from the cluster, stops its host side and, with
/// `purge`, removes its files from this host. A lab that does not exist is
/// not an error ([`fedilab_orchestrator::DownReport::existed`] is false).
///
/// # Errors
/// [`DownError`] from the step that failed; a rerun continues.
///
/// # Caveats
/// The cluster part is bounded by the request's [`DownOptions`].
pub async fn down(
    cluster: &Cluster,
    request: &DownRequest,
    host: &dyn HostSide,
    timings: &Timings,
) -> Result<DownReport, DownError> {
    let dir = LabDir::new(&request.data_dir, &request.lab);
    let on_cluster = timings
        .phase(
            "down",
            fedilab_orchestrator::down(cluster, &request.lab, &request.options),
        )
        .await?;
    // The recordings stay in the lab dir unless purged.
    let serve = host.stop(&dir)?;
    let (mut purged_state, mut purged_ca) = (None, None);
    if request.purge {
        let domain: Option<Domain> = dir
            .load_state()
            .ok()
            .flatten()
            .map(|s| s.domain)
            .or_else(|| on_cluster.domains.first().and_then(|d| d.parse().ok()));
        if dir.remove()? {
            purged_state = Some(dir.path().to_owned());
        }
        if let Some(domain) = domain
            && !domain_in_use(&request.data_dir, &domain, &request.lab)
        {
            let store = CaStore::new(&request.data_dir, &domain);
            let removed = store.remove().map_err(|source| DownError::Ca {
                dir: store.dir().to_owned(),
                source,
            })?;
            if removed {
                purged_ca = Some(store.dir().to_owned());
            }
        }
    }
    Ok(DownReport {
        cluster: on_cluster,
        serve,
        purged_state,
        purged_ca,
    })
}
