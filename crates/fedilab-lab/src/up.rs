//! `up`: the whole bring-up of a lab. [`UpPlan::prepare`] does what needs
//! no cluster (attached servers, generated secrets, certificates, the saved
//! state); [`up`] then reads the node address and the cluster's facts
//! (domain, IPv6 networks), builds the objects, runs
//! preflight, applies them inside the apply-pending marker, reads the
//! inspector's upstreams, saves `lab.json`, starts or reloads the host side
//! and waits for every instance, ending with the credentials.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use fedilab_manifest::{BuildError, ClusterFacts, LabManifests, LabSecrets, Routing, TlsMaterial};
use fedilab_orchestrator::{
    ApplyError, ApplyReport, Cluster, CredsError, InstanceCredentials, MemberError, Preflight,
    PreflightError, PreflightOptions, PreflightWarning, Timings, WaitError, WaitOptions,
};
use fedilab_profile::{Domain, InstanceName, LabName, LabSpec};
use fedilab_serve::daemon::{DaemonError, ServeStatus};
use fedilab_state::{
    AttachedServer, LabDir, LabState, ServeSettings, StateError, other_serve_settings,
};

use crate::host::HostSide;
use crate::members::with_attached;
use crate::tls::{TlsError, lab_tls};

/// What `up` is asked to do.
#[derive(Debug, Clone)]
pub struct UpRequest {
    /// The data directory (state, CA).
    pub data_dir: PathBuf,
    /// The lab from its profile and flags (attached servers are added).
    pub spec: LabSpec,
    /// Route Traefik through the inspector on this host.
    pub inspector: bool,
    /// Apply even when the lab does not fit the node's free memory.
    pub force: bool,
    /// Wait for the instances with these budgets; `None`: return after
    /// apply.
    pub wait: Option<WaitOptions>,
}

/// A bring-up whose local inputs are ready: [`up`] needs only a cluster.
#[derive(Debug)]
pub struct UpPlan {
    request: UpRequest,
    dir: LabDir,
    spec: LabSpec,
    attached: Vec<AttachedServer>,
    secrets: LabSecrets,
    tls: TlsMaterial,
    saved: Option<LabState>,
    ca_created: Option<PathBuf>,
}

/// Something `up` tells while it works.
#[derive(Debug)]
pub enum Event<'a> {
    /// A lab CA was created for the lab's domain.
    CaCreated {
        /// The domain it signs for.
        domain: &'a Domain,
        /// Its directory.
        dir: &'a Path,
    },
    /// Preflight passed with a warning.
    Warning(&'a PreflightWarning),
    /// Every object was applied.
    Applied {
        /// What apply did.
        report: &'a ApplyReport,
    },
    /// The host side runs (or not) with the saved state.
    Serve(&'a ServeStatus),
    /// The wait begins for these instances (the ones fedilab runs).
    Waiting(&'a [InstanceName]),
}

/// Where `up` reports: its events, and each instance's progress during
/// the wait.
pub trait Progress: fedilab_orchestrator::Progress {
    /// One event.
    fn event(&self, event: &Event<'_>);
}

/// What `up` did.
#[derive(Debug)]
pub struct UpReport {
    /// The lab as applied (attached servers included).
    pub spec: LabSpec,
    /// The saved state.
    pub state: LabState,
    /// The node address Traefik listens on.
    pub node: IpAddr,
    /// Whether it waited until every instance worked.
    pub waited: bool,
    /// Each instance's way in.
    pub credentials: Vec<InstanceCredentials>,
}

/// Why `up` stopped.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// `--no-inspector` with attached servers.
    #[error(
        "lab {lab} has attached servers ({servers}), which the cluster reaches only through the \
         inspector; `fedilab detach` them first, or run `fedilab up` without --no-inspector"
    )]
    AttachedNeedInspector {
        /// The lab.
        lab: LabName,
        /// The attached servers, comma-separated.
        servers: String,
    },
    /// The profile now clashes with an attached server.
    #[error("{0}")]
    Attached(String),
    /// A state file could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// The lab's certificates.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The node has no address Traefik could be reached at.
    #[error(
        "no Ready node of {server} has an InternalIP, so Traefik's address is unknown; \
         check `kubectl get nodes -o wide`"
    )]
    NoNodeAddress {
        /// The API server.
        server: String,
    },
    /// `kind: external` instances without the inspector.
    #[error("{0}; run `fedilab up` without --no-inspector")]
    ExternalNeedsInspector(#[source] BuildError),
    /// The objects could not be built.
    #[error(transparent)]
    Build(BuildError),
    /// Preflight refused.
    #[error(transparent)]
    Preflight(Box<PreflightError>),
    /// Apply failed.
    #[error(transparent)]
    Apply(Box<ApplyError>),
    /// The Services' addresses could not be read.
    #[error(transparent)]
    Upstreams(Box<MemberError>),
    /// The host side did not start.
    #[error(transparent)]
    Serve(#[from] DaemonError),
    /// An instance did not become ready.
    #[error(transparent)]
    Wait(Box<WaitError>),
    /// The credentials could not be read back.
    #[error(transparent)]
    Creds(#[from] CredsError),
    /// The state was saved but is not there.
    #[error("the lab state was just saved in {0} but cannot be read back")]
    Vanished(PathBuf),
}

boxed_from!(UpError::Preflight(PreflightError));
boxed_from!(UpError::Apply(ApplyError));
boxed_from!(UpError::Upstreams(MemberError));
boxed_from!(UpError::Wait(WaitError));

impl UpError {
    /// Whether the user's input is at fault (the CLI exits 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            UpError::AttachedNeedInspector { .. }
                | UpError::Attached(_)
                | UpError::ExternalNeedsInspector(_)
        )
    }
}

impl UpPlan {
    /// Prepares everything that needs no cluster: the attached servers join
    /// the spec, secrets are generated once (or read), certificates issued
    /// (or reused).
    ///
    /// # Errors
    /// [`UpError`]: attached servers without the inspector, a profile that
    /// now clashes with one, an unusable state or CA directory.
    pub fn prepare(request: UpRequest) -> Result<UpPlan, UpError> {
        let dir = LabDir::new(&request.data_dir, &request.spec.name);
        let attached = dir.attached()?;
        if !request.inspector && !attached.is_empty() {
            return Err(UpError::AttachedNeedInspector {
                lab: request.spec.name.clone(),
                servers: attached
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let spec = with_attached(request.spec.clone(), &attached).map_err(UpError::Attached)?;
        let secrets = dir.secrets(&spec)?;
        let (tls, ca_created) = lab_tls(&spec, &request.data_dir)?;
        let saved = dir.load_state()?;
        Ok(UpPlan {
            request,
            dir,
            spec,
            attached,
            secrets,
            tls,
            saved,
            ca_created,
        })
    }

    /// The lab as it will be applied (attached servers included).
    pub fn spec(&self) -> &LabSpec {
        &self.spec
    }

    /// The lab's state directory.
    pub fn dir(&self) -> &LabDir {
        &self.dir
    }

    /// Where the host side listens on `node`: the saved ports, else the
    /// first free block past the other labs'.
    fn serve_settings(&self, node: IpAddr) -> ServeSettings {
        let others = other_serve_settings(&self.request.data_dir, &self.spec.name);
        ServeSettings::for_lab(
            self.saved.as_ref().and_then(|s| s.serve.as_ref()),
            node,
            self.request.inspector,
            &others,
        )
    }

    fn build(&self, serve: &ServeSettings, facts: &ClusterFacts) -> Result<LabManifests, UpError> {
        let routing = match serve.proxy {
            Some(proxy) => Routing::Inspector { proxy },
            None => Routing::Direct,
        };
        fedilab_manifest::build_on(&self.spec, &self.secrets, &self.tls, &routing, facts).map_err(
            |e| match e {
                BuildError::ExternalNeedsInspector(_) => UpError::ExternalNeedsInspector(e),
                other => UpError::Build(other),
            },
        )
    }
}

/// Brings the lab up: see the module doc for the order. Timings are kept
/// per phase in `timings`.
///
/// # Errors
/// [`UpError`] from the step that failed; everything before it stays done
/// (a rerun finishes the job: apply is idempotent and the apply-pending
/// marker makes it restart CoreDNS after an interrupted apply).
///
/// # Caveats
/// The wait is bounded by the request's [`WaitOptions`]; each API request
/// by the client's own timeouts.
pub async fn up(
    cluster: &Cluster,
    plan: &UpPlan,
    host: &dyn HostSide,
    progress: &dyn Progress,
    timings: &Timings,
) -> Result<UpReport, UpError> {
    if let Some(dir) = &plan.ca_created {
        progress.event(&Event::CaCreated {
            domain: &plan.spec.domain,
            dir,
        });
    }
    let node = timings
        .phase("node", fedilab_orchestrator::node_address(cluster))
        .await?
        .and_then(|n| n.parse::<IpAddr>().ok())
        .ok_or_else(|| UpError::NoNodeAddress {
            server: cluster.server.clone(),
        })?;
    // What the objects depend on in this cluster: its domain (the CNAME
    // target of the lab names) and its IPv6 networks (egress, Mastodon's
    // private-address allowance).
    let facts = timings
        .phase("facts", fedilab_orchestrator::cluster_facts(cluster))
        .await?;
    let serve = plan.serve_settings(node);
    let manifests = plan.build(&serve, &facts)?;
    let checked = timings
        .phase(
            "preflight",
            fedilab_orchestrator::preflight(
                cluster,
                &plan.spec,
                &manifests,
                PreflightOptions {
                    force: plan.request.force,
                },
            ),
        )
        .await?;
    for warning in &checked.warnings {
        progress.event(&Event::Warning(warning));
    }
    apply(cluster, plan, &manifests, checked, progress, timings).await?;
    let upstreams = if serve.proxy.is_some() {
        timings
            .phase(
                "upstreams",
                fedilab_orchestrator::instance_upstreams(cluster, &plan.spec),
            )
            .await?
    } else {
        BTreeMap::new()
    };
    let mut state = LabState::from_spec(&plan.spec, Some(node));
    state.route(&upstreams, &plan.attached);
    state.serve = Some(serve);
    plan.dir.save_state(&state)?;
    // The host side starts before the wait, so the setup traffic is
    // recorded too.
    let serving = host.refresh(&plan.dir)?;
    progress.event(&Event::Serve(&serving));
    if let Some(options) = &plan.request.wait {
        let ours: Vec<InstanceName> = plan
            .spec
            .instances
            .iter()
            .filter(|i| i.kind.runs_in_cluster())
            .map(|i| i.name.clone())
            .collect();
        progress.event(&Event::Waiting(&ours));
        timings
            .phase(
                "wait",
                fedilab_orchestrator::wait_ready(cluster, &plan.spec, options, progress),
            )
            .await?;
    }
    let (state, credentials) = fedilab_orchestrator::credentials_from_state(&plan.dir)?
        .ok_or_else(|| UpError::Vanished(plan.dir.path().to_owned()))?;
    Ok(UpReport {
        spec: plan.spec.clone(),
        state,
        node,
        waited: plan.request.wait.is_some(),
        credentials,
    })
}

/// Applies inside the apply-pending marker: a rerun after an interrupted
/// apply restarts CoreDNS even if the lab's key already looks applied.
async fn apply(
    cluster: &Cluster,
    plan: &UpPlan,
    manifests: &LabManifests,
    mut checked: Preflight,
    progress: &dyn Progress,
    timings: &Timings,
) -> Result<(), UpError> {
    checked.coredns_restart_pending = plan.dir.apply_pending()?;
    plan.dir.start_apply()?;
    let report = timings
        .phase(
            "apply",
            fedilab_orchestrator::apply(cluster, &plan.spec, manifests, &checked),
        )
        .await?;
    plan.dir.finish_apply()?;
    timings.record_waves(&report.waves);
    progress.event(&Event::Applied { report: &report });
    Ok(())
}
