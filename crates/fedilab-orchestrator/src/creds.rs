//! Each instance's URL and admin credentials: from the lab's saved state
//! (no cluster needed), or from its admin Secrets on the cluster (a lab
//! made on another host).

use std::collections::BTreeMap;

use fedilab_profile::{LabName, names};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use kube::api::ListParams;

use crate::Cluster;
use fedilab_state::{LabDir, LabState, StateError};

/// One instance's way in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstanceCredentials {
    /// The instance.
    pub instance: String,
    /// `https://<host>/`.
    pub url: String,
    /// The admin's username.
    pub username: String,
    /// The admin's password.
    pub password: String,
    /// An API token with read, write, follow, push and admin scopes.
    pub api_token: String,
}

/// Why credentials could not be found.
#[derive(Debug, thiserror::Error)]
pub enum CredsError {
    /// Local state unreadable.
    #[error(transparent)]
    State(#[from] StateError),
    /// Cluster read failed.
    #[error("cannot read the admin Secrets of lab {lab}")]
    Api {
        /// The lab.
        lab: String,
        /// kube's error.
        #[source]
        source: kube::Error,
    },
    /// No such instance.
    #[error("lab {lab} has no instance {instance}; it has: {known}")]
    NoInstance {
        /// The lab.
        lab: String,
        /// The instance asked for.
        instance: String,
        /// The instances it has.
        known: String,
    },
}

/// Credentials from the saved state of a lab; `Ok(None)` when nothing is
/// saved for it.
///
/// # Errors
/// [`CredsError::State`] when the files cannot be read.
pub fn credentials_from_state(
    dir: &LabDir,
) -> Result<Option<(LabState, Vec<InstanceCredentials>)>, CredsError> {
    let Some(state) = dir.load_state()? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    // Servers outside the cluster have no admin that fedilab created.
    let ours = state.instances.iter().filter(|i| i.kind.runs_in_cluster());
    for instance in ours {
        if let Some((password, api_token)) = dir.admin_secrets(instance.name.as_str())? {
            out.push(InstanceCredentials {
                instance: instance.name.to_string(),
                url: instance.url.clone(),
                username: names::ADMIN_USERNAME.to_owned(),
                password,
                api_token,
            });
        }
    }
    Ok(Some((state, out)))
}

fn decoded(secret: &Secret, key: &str) -> String {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .unwrap_or_default()
}

/// Credentials from the lab's admin Secrets and Ingress hosts.
///
/// # Errors
/// [`CredsError::Api`] when the cluster cannot be read.
pub async fn credentials_from_cluster(
    cluster: &Cluster,
    lab: &LabName,
) -> Result<Vec<InstanceCredentials>, CredsError> {
    let ns = names::namespace(lab);
    let lp = ListParams::default().labels(&names::lab_selector(lab));
    let err = |source| CredsError::Api {
        lab: lab.to_string(),
        source,
    };
    let secrets = Api::<Secret>::namespaced(cluster.client.clone(), &ns)
        .list(&lp)
        .await
        .map_err(err)?;
    let ingresses = Api::<Ingress>::namespaced(cluster.client.clone(), &ns)
        .list(&lp)
        .await
        .map_err(err)?;
    let hosts: BTreeMap<String, String> = ingresses
        .items
        .iter()
        .filter_map(|i| {
            let instance = i
                .metadata
                .labels
                .as_ref()?
                .get(names::INSTANCE_KEY)?
                .clone();
            let host = i
                .spec
                .as_ref()?
                .rules
                .as_ref()?
                .iter()
                .find_map(|r| r.host.clone())?;
            Some((instance, host))
        })
        .collect();
    let mut out: Vec<InstanceCredentials> = secrets
        .items
        .iter()
        .filter_map(|s| {
            let instance = s
                .metadata
                .labels
                .as_ref()?
                .get(names::INSTANCE_KEY)?
                .clone();
            let parsed: fedilab_profile::InstanceName = instance.parse().ok()?;
            if s.metadata.name.as_deref() != Some(names::admin_secret(&parsed).as_str()) {
                return None;
            }
            Some(InstanceCredentials {
                url: hosts
                    .get(&instance)
                    .map(|h| format!("https://{h}/"))
                    .unwrap_or_default(),
                username: decoded(s, names::admin_keys::USERNAME),
                password: decoded(s, names::admin_keys::PASSWORD),
                api_token: decoded(s, names::admin_keys::API_TOKEN),
                instance,
            })
        })
        .collect();
    out.sort_by(|a, b| a.instance.cmp(&b.instance));
    Ok(out)
}

/// Keeps only `instance` (when given), or says which instances exist.
///
/// # Errors
/// [`CredsError::NoInstance`] when `instance` is not among `all`.
pub fn select_instance(
    lab: &str,
    all: Vec<InstanceCredentials>,
    instance: Option<&str>,
) -> Result<Vec<InstanceCredentials>, CredsError> {
    let Some(wanted) = instance else {
        return Ok(all);
    };
    let known = all
        .iter()
        .map(|c| c.instance.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let picked: Vec<_> = all
        .iter()
        .filter(|c| c.instance == wanted)
        .cloned()
        .collect();
    if picked.is_empty() {
        return Err(CredsError::NoInstance {
            lab: lab.to_owned(),
            instance: wanted.to_owned(),
            known,
        });
    }
    Ok(picked)
}
