//! `down`: removes everything labelled for a lab (its namespace first, which
//! takes the lab's objects with it) and its key in the shared
//! `coredns-custom` ConfigMap (server-side apply with the lab's own field
//! manager of an object without the key, so only this lab's key goes);
//! restarts CoreDNS and waits until it is available; waits until nothing
//! labelled for the lab remains. With the last lab it also deletes a Traefik
//! HelmChartConfig that an older fedilab created, and only such a one: a
//! HelmChartConfig anybody else wrote is never changed or deleted.

use std::time::Duration;

use fedilab_profile::{LabName, names};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, ListParams, Preconditions};
use kube::core::DynamicObject;
use kube::{Api, Client};

use crate::coredns::CoreDnsWait;
use crate::resources::{Resolved, builtin_kinds, helm_chart_config};
use crate::{Cluster, coredns};

/// The only `valuesContent` fedilab ever wrote into kube-system/traefik
/// (releases before issue 12 turned Traefik's access log on). A
/// HelmChartConfig holding exactly this, written by fedilab alone, is a
/// leftover of such a release.
const LEGACY_TRAEFIK_VALUES: &str = "logs:\n  access:\n    enabled: true\n";

/// Time budget and polling pace of [`down`] (also for CoreDNS's rollout
/// after the lab's key is removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownOptions {
    /// How long to wait for everything to go.
    pub timeout: Duration,
    /// Pause between two checks.
    pub poll_interval: Duration,
}

impl Default for DownOptions {
    fn default() -> Self {
        DownOptions {
            timeout: Duration::from_secs(5 * 60),
            poll_interval: Duration::from_secs(2),
        }
    }
}

/// One removed object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RemovedObject {
    /// Its kind.
    pub kind: String,
    /// Its namespace, if namespaced.
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
}

impl std::fmt::Display for RemovedObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{ns}/{}", self.kind, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

/// What [`down`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DownReport {
    /// Whether there was anything of the lab on the cluster.
    pub existed: bool,
    /// Every object labelled for the lab that was there, kind by kind.
    pub removed: Vec<RemovedObject>,
    /// Whether the lab's CoreDNS key was removed (and CoreDNS restarted).
    pub coredns_key_removed: bool,
    /// The zones the removed key served (the lab's domain).
    pub domains: Vec<String>,
    /// Whether a Traefik HelmChartConfig left by an older fedilab (created
    /// and written by fedilab alone, with its old access-log values) was
    /// deleted with the last lab. Never true for anyone else's.
    pub traefik_config_removed: bool,
}

/// Why `down` did not finish.
#[derive(Debug, thiserror::Error)]
pub enum DownError {
    /// A request failed.
    #[error("cannot {what} while removing lab {lab}; run `fedilab down` again")]
    Api {
        /// The lab.
        lab: String,
        /// What was being done.
        what: String,
        /// kube's error.
        #[source]
        source: kube::Error,
    },
    /// CoreDNS did not become available after the lab's key was removed.
    #[error(
        "lab {lab}: removed its key from kube-system/coredns-custom, but CoreDNS did not \
         come back ({failure}). The lab's key is gone, so something else keeps CoreDNS \
         down: see `kubectl -n kube-system describe deployment coredns` and the log below. \
         Run `fedilab down` again to finish.\n{log_tail}"
    )]
    CoreDnsUnavailable {
        /// The lab.
        lab: String,
        /// What the rollout waited for.
        failure: String,
        /// The tail of the CoreDNS pod's log.
        log_tail: String,
    },
    /// Objects are still there after the timeout.
    #[error(
        "lab {lab}: still there after {}s: {}.\n\
         A finalizer may be stuck: `kubectl get namespace {namespace} -o yaml` shows what \
         it waits for. Run `fedilab down` again to keep waiting",
        waited.as_secs(),
        remaining.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    Timeout {
        /// The lab.
        lab: String,
        /// Its namespace.
        namespace: String,
        /// How long it waited.
        waited: Duration,
        /// What is left (at most 10 shown).
        remaining: Vec<RemovedObject>,
    },
}

fn api_of(client: &Client, kind: &Resolved) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &kind.resource)
}

/// Everything labelled for the lab, every kind fedilab creates, in every
/// namespace.
async fn sweep(cluster: &Cluster, lab: &LabName) -> Result<Vec<RemovedObject>, DownError> {
    let lp = ListParams::default().labels(&names::lab_selector(lab));
    let mut found = Vec::new();
    for kind in builtin_kinds() {
        let list = api_of(&cluster.client, &kind)
            .list(&lp)
            .await
            .map_err(|source| DownError::Api {
                lab: lab.to_string(),
                what: format!("list {}", kind.resource.plural),
                source,
            })?;
        found.extend(list.items.into_iter().map(|o| RemovedObject {
            kind: kind.resource.kind.clone(),
            namespace: o.metadata.namespace,
            name: o.metadata.name.unwrap_or_default(),
        }));
    }
    Ok(found)
}

/// What is left of a lab on the cluster, as read by [`down`]: every object
/// labelled for it and its server block in `coredns-custom`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabRemnants {
    /// Every object labelled for the lab, kind by kind.
    pub objects: Vec<RemovedObject>,
    /// The lab's key in kube-system/coredns-custom, if present.
    pub coredns_block: Option<String>,
}

/// What `down` will remove and report, from what it read (pure): whether
/// the lab exists, its objects, and the zones its CoreDNS key served.
pub fn plan_down(remnants: &LabRemnants) -> DownReport {
    let block = remnants.coredns_block.as_deref();
    DownReport {
        existed: !remnants.objects.is_empty() || block.is_some(),
        removed: remnants.objects.clone(),
        coredns_key_removed: block.is_some(),
        domains: block.map(coredns::coredns_zones).unwrap_or_default(),
        traefik_config_removed: false,
    }
}

/// The objects labelled for the lab outside its namespace (the namespace
/// takes the rest along).
fn outside_namespace<'a>(report: &'a DownReport, namespace: &str) -> Vec<&'a RemovedObject> {
    report
        .removed
        .iter()
        .filter(|o| o.namespace.as_deref().is_some_and(|ns| ns != namespace))
        .collect()
}

fn api_err(lab: &LabName, what: &str) -> impl FnOnce(kube::Error) -> DownError {
    let (lab, what) = (lab.to_string(), what.to_owned());
    move |source| DownError::Api { lab, what, source }
}

/// Reads what is left of `lab`: [`LabRemnants`].
async fn fetch_remnants(cluster: &Cluster, lab: &LabName) -> Result<LabRemnants, DownError> {
    let objects = sweep(cluster, lab).await?;
    let coredns_block = Api::<ConfigMap>::namespaced(cluster.client.clone(), names::KUBE_SYSTEM)
        .get_opt(names::COREDNS_CUSTOM_CONFIGMAP)
        .await
        .map_err(api_err(lab, "read kube-system/coredns-custom"))?
        .and_then(|c| c.data)
        .and_then(|mut d| d.remove(&names::coredns_key(lab)));
    Ok(LabRemnants {
        objects,
        coredns_block,
    })
}

/// Deletes the namespace (which takes everything in it along) and anything
/// labelled for the lab elsewhere; gone already is fine.
async fn delete_objects(
    cluster: &Cluster,
    lab: &LabName,
    report: &DownReport,
) -> Result<(), DownError> {
    let namespace = names::namespace(lab);
    let client = &cluster.client;
    match Api::<Namespace>::all(client.clone())
        .delete(&namespace, &DeleteParams::background())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(api_err(lab, "delete the namespace")(e)),
    }
    for object in outside_namespace(report, &namespace) {
        let (Some(ns), Some(kind)) = (
            &object.namespace,
            builtin_kinds()
                .into_iter()
                .find(|k| k.resource.kind == object.kind),
        ) else {
            continue;
        };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &kind.resource);
        match api.delete(&object.name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(api_err(lab, &format!("delete {object}"))(e)),
        }
    }
    Ok(())
}

/// Removes the lab's key from `coredns-custom`, restarts CoreDNS and waits
/// until it is available again.
async fn remove_coredns_key(
    cluster: &Cluster,
    lab: &LabName,
    options: &DownOptions,
) -> Result<(), DownError> {
    let key = names::coredns_key(lab);
    coredns::remove_key(cluster, lab, &key)
        .await
        .map_err(api_err(
            lab,
            "remove the lab's key from kube-system/coredns-custom",
        ))?;
    let restarted = coredns::restart(cluster)
        .await
        .map_err(api_err(lab, "restart CoreDNS"))?;
    let wait = CoreDnsWait {
        timeout: options.timeout,
        poll_interval: options.poll_interval,
    };
    if restarted && let Err(failure) = coredns::wait_available(cluster, &wait).await {
        return Err(DownError::CoreDnsUnavailable {
            lab: lab.to_string(),
            failure: failure.to_string(),
            log_tail: coredns::log_tail(cluster).await,
        });
    }
    Ok(())
}

/// Waits until the namespace is gone and nothing labelled for the lab is
/// left, within `options.timeout`.
async fn wait_gone(
    cluster: &Cluster,
    lab: &LabName,
    options: &DownOptions,
) -> Result<(), DownError> {
    let namespace = names::namespace(lab);
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    let waiting = async {
        loop {
            let gone = namespaces
                .get_opt(&namespace)
                .await
                .map_err(api_err(lab, "read the namespace"))?
                .is_none();
            if gone && sweep(cluster, lab).await?.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(options.poll_interval).await;
        }
    };
    match tokio::time::timeout(options.timeout, waiting).await {
        Ok(done) => done,
        Err(_) => {
            let mut remaining = sweep(cluster, lab).await.unwrap_or_default();
            remaining.truncate(10);
            Err(DownError::Timeout {
                lab: lab.to_string(),
                namespace,
                waited: options.timeout,
                remaining,
            })
        }
    }
}

/// Removes lab `lab` from the cluster and waits until nothing labelled for
/// it remains: reads what is left ([`LabRemnants`]), decides
/// ([`plan_down`]), deletes, takes its CoreDNS key out (waiting for
/// CoreDNS), releases a HelmChartConfig an older fedilab left, and waits.
/// A lab that is not there is not an error: [`DownReport::existed`] is
/// false.
///
/// # Errors
/// [`DownError`] when a request fails or objects outlast the timeout.
///
/// # Caveats
/// Bounded by [`DownOptions::timeout`] plus one poll interval (and as much
/// again for CoreDNS to come back).
pub async fn down(
    cluster: &Cluster,
    lab: &LabName,
    options: &DownOptions,
) -> Result<DownReport, DownError> {
    let mut report = plan_down(&fetch_remnants(cluster, lab).await?);
    if !report.existed {
        return Ok(report);
    }
    delete_objects(cluster, lab, &report).await?;
    if report.coredns_key_removed {
        remove_coredns_key(cluster, lab, options).await?;
    }
    report.traefik_config_removed = release_traefik_config(cluster, lab).await?;
    wait_gone(cluster, lab, options).await?;
    Ok(report)
}

/// When no other lab is left, deletes kube-system/traefik if it is a
/// leftover of an older fedilab ([`is_legacy_traefik_config`]); any other
/// HelmChartConfig is the user's and stays exactly as it is. The delete is
/// conditional on the resourceVersion read, so a change made meanwhile
/// keeps the object. Returns whether it was deleted.
async fn release_traefik_config(cluster: &Cluster, lab: &LabName) -> Result<bool, DownError> {
    let others = crate::status::list_labs(cluster)
        .await
        .map_err(|e| DownError::Api {
            lab: lab.to_string(),
            what: "list other labs".to_owned(),
            source: e.source,
        })?;
    if others.iter().any(|other| other != lab) {
        return Ok(false);
    }
    let hcc = helm_chart_config();
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client.clone(), names::KUBE_SYSTEM, &hcc.resource);
    let existing = match api.get_opt(names::TRAEFIK_HELM_CHART_CONFIG).await {
        Ok(Some(o)) => o,
        Ok(None) => return Ok(false),
        // No helm.cattle.io on this cluster: nothing fedilab could have left.
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(false),
        Err(e) => {
            return Err(DownError::Api {
                lab: lab.to_string(),
                what: "read the Traefik HelmChartConfig".to_owned(),
                source: e,
            });
        }
    };
    if !is_legacy_traefik_config(&existing) {
        return Ok(false);
    }
    let dp = DeleteParams::background().preconditions(Preconditions {
        resource_version: existing.metadata.resource_version.clone(),
        uid: existing.metadata.uid.clone(),
    });
    match api.delete(names::TRAEFIK_HELM_CHART_CONFIG, &dp).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(false),
        Err(e) => Err(DownError::Api {
            lab: lab.to_string(),
            what: "remove the Traefik HelmChartConfig an older fedilab left".to_owned(),
            source: e,
        }),
    }
}

/// Whether `object` is a HelmChartConfig that an older fedilab created and
/// nobody else touched: fedilab's `managed-by` label, every managed-fields
/// entry fedilab's (a user's `kubectl apply`, `create` or `edit` adds its
/// own), and exactly the values those releases wrote. A user's object that
/// an older fedilab stamped fails the second test and is left alone.
pub(crate) fn is_legacy_traefik_config(object: &DynamicObject) -> bool {
    let labelled = object
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(names::MANAGED_BY_KEY))
        .is_some_and(|v| v == names::MANAGED_BY);
    let managers = object
        .metadata
        .managed_fields
        .as_deref()
        .unwrap_or_default();
    let only_fedilab = !managers.is_empty()
        && managers
            .iter()
            .all(|m| m.manager.as_deref() == Some(names::FIELD_MANAGER));
    let values = object.data["spec"]["valuesContent"].as_str();
    labelled && only_fedilab && values == Some(LEGACY_TRAEFIK_VALUES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(kind: &str, namespace: Option<&str>, name: &str) -> RemovedObject {
        RemovedObject {
            kind: kind.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    #[test]
    fn nothing_left_is_a_lab_that_does_not_exist() {
        let report = plan_down(&LabRemnants::default());
        assert!(!report.existed && !report.coredns_key_removed);
        assert_eq!(report, DownReport::default());
    }

    #[test]
    fn a_lone_coredns_key_still_makes_a_lab_and_names_its_domain() {
        let report = plan_down(&LabRemnants {
            objects: Vec::new(),
            coredns_block: Some(
                "fediverse.local:53 {\n  rewrite name regex (.*) traefik\n}\n".to_owned(),
            ),
        });
        assert!(report.existed && report.coredns_key_removed);
        assert_eq!(report.domains, ["fediverse.local"]);
    }

    #[test]
    fn only_objects_outside_the_namespace_are_deleted_one_by_one() {
        let report = plan_down(&LabRemnants {
            objects: vec![
                object("Namespace", None, "fedilab-main"),
                object("Deployment", Some("fedilab-main"), "mastodon1-web"),
                object("ConfigMap", Some("elsewhere"), "left-behind"),
            ],
            coredns_block: None,
        });
        let outside: Vec<String> = outside_namespace(&report, "fedilab-main")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(outside, ["ConfigMap/elsewhere/left-behind"]);
        assert!(report.existed && !report.coredns_key_removed);
    }
}
