//! Servers on this host as members of a running lab: [`attach`] makes one
//! `NAME.DOMAIN` (a leaf from the lab CA, its objects on the cluster, the
//! state files, the host side reloaded), [`detach`] takes all of it away.
//! [`with_attached`] keeps them members across `up`s.
//!
//! Each has a `prepare` step that reads and checks the local state, so a
//! refusal (a lab that is not up, a taken name) needs no cluster.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use fedilab_ca::{CaStore, HostName};
use fedilab_manifest::{BuildError, LabManifests};
use fedilab_orchestrator::{Cluster, ExecError, ExecTarget, MemberError, RemovedObject};
use fedilab_profile::names::Component;
use fedilab_profile::{
    Domain, ExternalUrl, InstanceName, InstanceSpec, InstanceSpecKind, LabName, LabSpec,
};
use fedilab_serve::daemon::{DaemonError, ServeStatus};
use fedilab_state::{AttachedServer, LabDir, LabState, StateError, StoredKind};

use crate::host::HostSide;
use crate::tls::{TlsError, lab_tls};

/// The profile's lab plus the servers `fedilab attach` added, as external
/// instances: they stay members, across `up`s, until `fedilab detach`.
///
/// # Errors
/// The text of the problem when the profile now has an instance of an
/// attached server's name.
pub fn with_attached(mut spec: LabSpec, attached: &[AttachedServer]) -> Result<LabSpec, String> {
    for server in attached {
        if spec.instance(server.name.as_str()).is_some() {
            return Err(format!(
                "the profile now has an instance called {name}, the name of a server attached \
                 to lab {lab}; `fedilab detach {name} --lab {lab}` first, or rename the instance",
                name = server.name,
                lab = spec.name
            ));
        }
        let instance =
            InstanceSpec::external(server.name.as_str(), &server.url.to_string(), &spec.domain)
                .map_err(|e| format!("attached server {}: {e}", server.name))?;
        spec.instances.push(instance);
    }
    Ok(spec)
}

/// The lab's saved state, or the refusal that says to run `up`.
pub(crate) fn lab_state(dir: &LabDir, lab: &LabName) -> Result<LabState, NotUp> {
    match dir.load_state() {
        Ok(Some(state)) => Ok(state),
        Ok(None) => Err(NotUp::Missing {
            lab: lab.clone(),
            file: dir.path().join("lab.json"),
        }),
        Err(e) => Err(NotUp::State(e)),
    }
}

/// The lab has no usable state on this host.
#[derive(Debug, thiserror::Error)]
pub enum NotUp {
    /// No `lab.json`.
    #[error("lab {lab} has no state on this host ({} is missing); run `fedilab up --lab {lab}` first", file.display())]
    Missing {
        /// The lab.
        lab: LabName,
        /// The missing file.
        file: PathBuf,
    },
    /// It cannot be read.
    #[error(transparent)]
    State(StateError),
}

/// What `attach` is asked to do.
#[derive(Debug, Clone)]
pub struct AttachRequest {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The lab.
    pub lab: LabName,
    /// The server's name in the lab (its host becomes NAME.DOMAIN).
    pub name: String,
    /// Where it listens on this host: `http://HOST:PORT`.
    pub url: String,
}

/// Why `attach` refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The lab is not up here.
    #[error(transparent)]
    NotUp(#[from] NotUp),
    /// The lab runs without the inspector.
    #[error(
        "lab {lab} runs without the inspector (`fedilab up --no-inspector`), and an attached \
         server is reachable from the cluster only through it; run `fedilab up --lab {lab}` \
         (without --no-inspector), then attach"
    )]
    NoInspector {
        /// The lab.
        lab: LabName,
    },
    /// A bad name or URL, every problem on its own line.
    #[error("{0}")]
    Invalid(String),
    /// The name is a profile instance's.
    #[error("{name} is already an instance of lab {lab} ({url}); pick another name")]
    Taken {
        /// The name.
        name: InstanceName,
        /// The lab.
        lab: LabName,
        /// The instance's URL.
        url: String,
    },
    /// The certificate.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The objects.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// On the cluster.
    #[error(transparent)]
    Cluster(Box<MemberError>),
    /// The state files.
    #[error(transparent)]
    State(#[from] StateError),
    /// The host side.
    #[error(transparent)]
    Serve(#[from] DaemonError),
    /// A limited-federation instance could not be told to allow the host.
    #[error(
        "{host} is attached, but {instance} (limited federation) could not be told to allow \
         it, so it refuses the server: {detail}; run `fedilab attach` again once \
         `fedilab status` shows {instance} ready"
    )]
    Allow {
        /// The attached host.
        host: String,
        /// The instance that did not allow it.
        instance: InstanceName,
        /// What went wrong.
        detail: String,
    },
}

boxed_from!(AttachError::Cluster(MemberError));

impl AttachError {
    /// Whether the user's input is at fault (the CLI exits 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            AttachError::NotUp(NotUp::Missing { .. })
                | AttachError::NoInspector { .. }
                | AttachError::Invalid(_)
                | AttachError::Taken { .. }
        )
    }
}

/// An attach whose local part is done: the server validated, its leaf
/// issued, its objects built.
#[derive(Debug)]
pub struct AttachPlan {
    dir: LabDir,
    state: LabState,
    spec: LabSpec,
    server: AttachedServer,
    proxy: SocketAddr,
    objects: LabManifests,
}

/// What `attach` did.
#[derive(Debug)]
pub struct AttachReport {
    /// The server's name.
    pub name: InstanceName,
    /// Its host in the lab.
    pub host: String,
    /// Where it listens.
    pub url: ExternalUrl,
    /// The inspector's proxy Traefik sends its requests to.
    pub proxy: SocketAddr,
    /// How many objects were applied.
    pub objects: usize,
    /// The lab's namespace.
    pub namespace: String,
    /// The host side after the reload.
    pub serve: ServeStatus,
    /// Whether something accepted a TCP connection at `url`.
    pub answers: bool,
    /// The limited-federation instances that now allow the host.
    pub allowed_on: Vec<InstanceName>,
}

impl AttachPlan {
    /// Checks the lab and the server and prepares its certificate and
    /// objects; touches no cluster.
    ///
    /// # Errors
    /// [`AttachError`]: a lab not up here or without the inspector, a bad
    /// name or URL, a name already taken, an unusable CA.
    pub fn prepare(request: AttachRequest) -> Result<AttachPlan, AttachError> {
        let lab = request.lab.clone();
        let dir = LabDir::new(&request.data_dir, &lab);
        let state = lab_state(&dir, &lab)?;
        let proxy = state
            .serve
            .as_ref()
            .and_then(|s| s.proxy)
            .ok_or_else(|| AttachError::NoInspector { lab: lab.clone() })?;
        let instance =
            InstanceSpec::external(&request.name, &request.url, &state.domain).map_err(|e| {
                let problems: Vec<String> = e.0.iter().map(ToString::to_string).collect();
                AttachError::Invalid(problems.join("\n"))
            })?;
        if let Some(taken) = state.instance(instance.name.as_str())
            && taken.kind != StoredKind::Attached
        {
            return Err(AttachError::Taken {
                name: instance.name.clone(),
                lab,
                url: taken.url.clone(),
            });
        }
        let InstanceSpecKind::External(external) = &instance.kind else {
            return Err(AttachError::Invalid(format!(
                "{} is not a server outside the cluster",
                instance.name
            )));
        };
        let server = AttachedServer {
            name: instance.name.clone(),
            url: external.url.clone(),
        };
        let spec = LabSpec {
            name: lab,
            domain: state.domain.clone(),
            egress_cidrs: Vec::new(),
            instances: vec![instance],
            inspector: Default::default(),
        };
        let (tls, _) = lab_tls(&spec, &request.data_dir)?;
        let instance = &spec.instances[0];
        let leaf = tls.leaves.get(&instance.name).ok_or_else(|| {
            AttachError::Invalid(format!(
                "the lab CA issued no certificate for {}",
                instance.name
            ))
        })?;
        let objects = fedilab_manifest::build_external(&spec, instance, leaf, proxy)?;
        Ok(AttachPlan {
            dir,
            state,
            spec,
            server,
            proxy,
            objects,
        })
    }
}

/// Applies the server's objects to the running lab, records it in the
/// state files and reloads the host side.
///
/// # Errors
/// [`AttachError`]: the lab is not on the cluster, the API refused, a
/// state file or the host side failed.
pub async fn attach(
    cluster: &Cluster,
    plan: AttachPlan,
    host: &dyn HostSide,
) -> Result<AttachReport, AttachError> {
    fedilab_orchestrator::attach(cluster, &plan.spec, &plan.objects).await?;
    let state = plan.dir.record_attached(plan.state, &plan.server)?;
    let serve = host.refresh(&plan.dir)?;
    let lab_host = plan.spec.instances[0].host.to_string();
    let allowed_on = allow(cluster, &state, &lab_host).await?;
    Ok(AttachReport {
        name: plan.server.name.clone(),
        host: lab_host,
        allowed_on,
        answers: answers(&plan.server.url),
        url: plan.server.url,
        proxy: plan.proxy,
        objects: plan.objects.objects.len(),
        namespace: state.namespace,
        serve,
    })
}

/// The lab's Mastodon instances in limited federation mode, each with the
/// command that allows `host` in it (a `DomainAllow` row): without it such
/// an instance refuses the newly attached server.
pub fn allow_on_limited(state: &LabState, host: &str) -> Vec<(InstanceName, Vec<String>)> {
    state
        .instances
        .iter()
        .filter(|i| i.kind == StoredKind::Mastodon && i.limited_federation)
        .map(|i| {
            (
                i.name.clone(),
                fedilab_manifest::allow_domains_command(&[host.to_owned()]),
            )
        })
        .collect()
}

/// Allows `host` on every limited-federation instance of the lab, one
/// `rails runner` in each web pod (idempotent, so a rerun is safe).
async fn allow(
    cluster: &Cluster,
    state: &LabState,
    host: &str,
) -> Result<Vec<InstanceName>, AttachError> {
    let mut allowed = Vec::new();
    for (instance, argv) in allow_on_limited(state, host) {
        let target = ExecTarget {
            lab: state.lab.clone(),
            instance: instance.clone(),
            component: Component::Web,
            container: None,
        };
        let failed = |detail: String| AttachError::Allow {
            host: host.to_owned(),
            instance: instance.clone(),
            detail,
        };
        let ran = fedilab_orchestrator::exec_capture(cluster, &target, &argv, None)
            .await
            .map_err(|e: ExecError| failed(e.to_string()))?;
        if ran.code != 0 {
            let stderr = String::from_utf8_lossy(&ran.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            return Err(failed(format!(
                "exit code {}: {}",
                ran.code,
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            )));
        }
        allowed.push(instance);
    }
    Ok(allowed)
}

/// Whether something accepts TCP connections where the server should be.
fn answers(url: &ExternalUrl) -> bool {
    let addrs: Vec<SocketAddr> = (url.host(), url.port())
        .to_socket_addrs()
        .map(Iterator::collect)
        .unwrap_or_default();
    addrs
        .iter()
        .any(|a| TcpStream::connect_timeout(a, Duration::from_millis(500)).is_ok())
}

/// Why `detach` refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum DetachError {
    /// The lab is not up here.
    #[error(transparent)]
    NotUp(#[from] NotUp),
    /// A bad name.
    #[error("{name:?}: {reason}")]
    Invalid {
        /// What was given.
        name: String,
        /// Why it is not a name.
        reason: String,
    },
    /// The name is a profile instance's.
    #[error(
        "{name} is an instance of lab {lab}'s profile, not an attached server; remove it \
         from the profile and run `fedilab up`, or `fedilab down` the lab"
    )]
    ProfileInstance {
        /// The name.
        name: InstanceName,
        /// The lab.
        lab: LabName,
    },
    /// On the cluster.
    #[error(transparent)]
    Cluster(Box<MemberError>),
    /// The state files.
    #[error(transparent)]
    State(#[from] StateError),
    /// The certificate could not be removed.
    #[error("cannot remove the server's certificate")]
    Ca(#[source] std::io::Error),
    /// The host side.
    #[error(transparent)]
    Serve(#[from] DaemonError),
}

boxed_from!(DetachError::Cluster(MemberError));

impl DetachError {
    /// Whether the user's input is at fault (the CLI exits 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            DetachError::NotUp(NotUp::Missing { .. })
                | DetachError::Invalid { .. }
                | DetachError::ProfileInstance { .. }
        )
    }
}

/// A detach whose local checks passed.
#[derive(Debug)]
pub struct DetachPlan {
    data_dir: PathBuf,
    dir: LabDir,
    state: LabState,
    lab: LabName,
    name: InstanceName,
}

/// What `detach` did.
#[derive(Debug)]
pub struct DetachReport {
    /// The server's name.
    pub name: InstanceName,
    /// The objects removed from the cluster.
    pub removed: Vec<RemovedObject>,
    /// Whether the lab state listed it.
    pub was_attached: bool,
    /// Whether its certificate was removed.
    pub leaf_removed: bool,
    /// The host side after the reload, when the state changed.
    pub serve: Option<ServeStatus>,
}

impl DetachPlan {
    /// Checks the name against the lab's state; touches no cluster.
    ///
    /// # Errors
    /// [`DetachError`]: a bad name, a lab not up here, the name of a
    /// profile instance.
    pub fn prepare(data_dir: PathBuf, lab: LabName, name: &str) -> Result<DetachPlan, DetachError> {
        let name: InstanceName = name.parse().map_err(|e| DetachError::Invalid {
            name: name.to_owned(),
            reason: format!("{e}"),
        })?;
        let dir = LabDir::new(&data_dir, &lab);
        let state = lab_state(&dir, &lab)?;
        if let Some(i) = state.instance(name.as_str())
            && i.kind != StoredKind::Attached
        {
            return Err(DetachError::ProfileInstance { name, lab });
        }
        Ok(DetachPlan {
            data_dir,
            dir,
            state,
            lab,
            name,
        })
    }
}

/// Removes the server's objects from the cluster, forgets it in the state
/// files, removes its certificate and reloads the host side. Nothing to
/// remove is not an error.
///
/// # Errors
/// [`DetachError`]: the API refused, a state file, the CA directory or
/// the host side failed.
pub async fn detach(
    cluster: &Cluster,
    plan: DetachPlan,
    host: &dyn HostSide,
) -> Result<DetachReport, DetachError> {
    let removed = fedilab_orchestrator::detach(cluster, &plan.lab, &plan.name).await?;
    let (state, was_attached) = plan.dir.forget_attached(plan.state, &plan.name)?;
    let leaf_removed = remove_leaf(&plan.data_dir, &state.domain, &plan.name)?;
    let serve = if was_attached {
        Some(host.refresh(&plan.dir)?)
    } else {
        None
    };
    Ok(DetachReport {
        name: plan.name,
        removed,
        was_attached,
        leaf_removed,
        serve,
    })
}

fn remove_leaf(
    data_dir: &std::path::Path,
    domain: &Domain,
    name: &InstanceName,
) -> Result<bool, DetachError> {
    let Ok(host) = HostName::new(&format!("{name}.{domain}"), domain) else {
        return Ok(false);
    };
    CaStore::new(data_dir, domain)
        .remove_leaf(&host)
        .map_err(DetachError::Ca)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_limited_mastodon_instances_must_allow_an_attached_host() {
        let spec = LabSpec::from_yaml(
            "instances:\n  - name: open\n  - {name: closed, mastodon: {limited_federation: true}}\n  \
             - {name: mine, kind: external, url: \"http://127.0.0.1:3000\"}\n",
            "test",
            &fedilab_profile::Overrides::default(),
        )
        .expect("valid");
        let state = LabState::from_spec(&spec, None);
        let allow = allow_on_limited(&state, "new.fediverse.local");
        assert_eq!(allow.len(), 1);
        assert_eq!(allow[0].0.as_str(), "closed");
        assert_eq!(
            allow[0].1[..2],
            ["env", "FEDILAB_ALLOW_DOMAINS=new.fediverse.local"]
        );
    }

    #[test]
    fn attached_servers_join_the_profile_unless_a_name_is_taken() {
        let spec = LabSpec::from_yaml(
            fedilab_profile::DEFAULT_PROFILE_YAML,
            "test",
            &fedilab_profile::Overrides::default(),
        )
        .expect("valid");
        let server = |name: &str| AttachedServer {
            name: name.parse().expect("name"),
            url: "http://127.0.0.1:3000".parse().expect("url"),
        };
        let joined = with_attached(spec.clone(), &[server("mine")]).expect("joins");
        let names: Vec<&str> = joined.instances.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["mastodon1", "mastodon2", "mine"]);
        assert_eq!(joined.instances[2].host.to_string(), "mine.fediverse.local");
        let err = with_attached(spec, &[server("mastodon2")]).expect_err("taken");
        assert!(err.contains("fedilab detach mastodon2 --lab main"), "{err}");
    }
}
