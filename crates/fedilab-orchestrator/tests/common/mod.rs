//! A fake Kubernetes API server for tests: `tower_test::mock::pair` in
//! front of an in-memory store, with one handler per resource
//! ([`api::RESOURCES`]). It records every request (method, path with query,
//! content type, body) and answers like an API server would for the calls
//! fedilab makes: server-side apply per field manager (one manager dropping
//! a field leaves another's), merge patches, gets, label and field selected
//! lists, creates, deletes (a namespace takes its objects along and lingers
//! one read as Terminating), discovery, version, pod logs and events.
//!
//! A fresh fake holds a one-node k3s cluster, seeded from the YAML files in
//! `tests/fixtures/cluster/` ([`K3S_SEED`]); [`Fake::seed_fixture`],
//! [`Fake::seed_yaml`] and [`Fake::seed`] add or replace objects (a user's
//! HelmChartConfig, a dual-stack node, a CoreDNS that never becomes
//! available). Status that controllers would write is made up at read time:
//! lab workloads (in `fedilab-*` namespaces) become ready once
//! [`Fake::advance`] was called [`Behaviour::ready_after`] times; the
//! cluster's own workloads are always available at their generation; a
//! seeded object's `status` (or one set with [`Fake::set_status`]) is
//! served as is.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::type_complexity,
    clippy::result_large_err
)]

mod api;
mod store;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fedilab_manifest::{
    LabManifests, LabSecrets, LeafPem, Routing, TlsMaterial, build, seed_from_text,
};
use fedilab_orchestrator::Cluster;
use fedilab_profile::{InstanceCounts, LabSpec, Overrides};
use http::{Request, Response};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{Value, json};

pub use api::State;
pub use store::Key;

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query, percent-decoded.
    pub path: String,
    pub content_type: Option<String>,
    pub body: Option<Value>,
}

impl Recorded {
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// How the made-up cluster behaves.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Lab workloads report ready once [`Fake::advance`] was called this
    /// many times. `None`: never.
    pub ready_after: Option<u32>,
    /// Setup Jobs fail instead of completing.
    pub jobs_fail: bool,
    /// helm.cattle.io/v1 is served.
    pub helm_crd: bool,
    /// The seeded node's kubelet version (read by [`Fake::start`]).
    pub kubelet_version: String,
    /// The seeded node's allocatable memory (read by [`Fake::start`]).
    pub allocatable_memory: String,
    /// Check pods (by name) that end: their phase, exit code and log.
    /// Other created pods stay Pending.
    pub check_pods: BTreeMap<String, (String, i32, String)>,
    /// How long each response takes (requests are served at once, in
    /// arrival order; only the answer is late). For benchmarks.
    pub latency: Duration,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            ready_after: Some(0),
            jobs_fail: false,
            helm_crd: true,
            kubelet_version: "v1.33.4+k3s1".to_owned(),
            allocatable_memory: "16318936Ki".to_owned(),
            check_pods: BTreeMap::new(),
            latency: Duration::ZERO,
        }
    }
}

/// What a fresh fake holds: k3s's node, CoreDNS (Deployment, ConfigMap,
/// pod) and Traefik Service, each applied by the manager `k3s`.
pub const K3S_SEED: &[&str] = &[
    "node.yaml",
    "coredns-deployment.yaml",
    "coredns-configmap.yaml",
    "coredns-pod.yaml",
    "traefik-service.yaml",
];

fn fixture_path(name: &str) -> String {
    // Relative to this file, so the life cycle's tests (which include the
    // harness by `#[path]`) find the same fixtures.
    let here = std::path::Path::new(file!())
        .parent()
        .expect("the harness's directory");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the workspace root")
        .join(here)
        .join("../fixtures/cluster");
    format!("{}/{name}", dir.display())
}

/// A file of `tests/fixtures/cluster/`.
pub fn fixture_text(name: &str) -> String {
    let path = fixture_path(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A YAML file of `tests/fixtures/cluster/`, as JSON.
pub fn fixture_value(name: &str) -> Value {
    let path = fixture_path(name);
    serde_saphyr::from_str(&fixture_text(name)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub struct Fake {
    pub state: Arc<Mutex<State>>,
    pub cluster: Cluster,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fake {
    /// A fake one-node k3s cluster ([`K3S_SEED`]).
    pub fn start(behaviour: Behaviour) -> Fake {
        let fake = Fake::bare(behaviour);
        for name in K3S_SEED {
            fake.seed_fixture(name);
        }
        let (kubelet, memory) = {
            let state = fake.state.lock().unwrap();
            (
                state.behaviour.kubelet_version.clone(),
                state.behaviour.allocatable_memory.clone(),
            )
        };
        fake.set_status(
            "nodes",
            None,
            "lab-vm",
            json!({"allocatable": {"memory": memory},
                   "nodeInfo": {"kubeletVersion": kubelet}}),
        );
        fake
    }

    /// A fake API server that holds nothing.
    pub fn bare(behaviour: Behaviour) -> Fake {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let state = Arc::new(Mutex::new(State {
            behaviour,
            ..State::default()
        }));
        let served = state.clone();
        let task = tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let (response, latency) = {
                    let mut state = served.lock().unwrap();
                    (state.serve(&parts, &bytes), state.behaviour.latency)
                };
                if latency.is_zero() {
                    respond.send_response(response);
                } else {
                    tokio::spawn(async move {
                        tokio::time::sleep(latency).await;
                        respond.send_response(response);
                    });
                }
            }
        });
        Fake {
            state,
            cluster: Cluster::from_service(service, "https://fake.invalid:6443"),
            task,
        }
    }

    pub fn log(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }

    pub fn behaviour(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.state.lock().unwrap().behaviour);
    }

    /// Moves made-up workload status one step forward (see
    /// [`Behaviour::ready_after`]).
    pub fn advance(&self) {
        self.state.lock().unwrap().tick += 1;
    }

    /// Resource versions of every stored object.
    pub fn resource_versions(&self) -> BTreeMap<String, u64> {
        let state = self.state.lock().unwrap();
        state
            .store
            .objects
            .iter()
            .map(|((plural, ns, name), s)| {
                (
                    format!("{plural}/{}/{name}", ns.as_deref().unwrap_or("-")),
                    s.resource_version,
                )
            })
            .collect()
    }

    /// The stored object, as served.
    pub fn object(&self, plural: &str, ns: Option<&str>, name: &str) -> Option<Value> {
        let state = self.state.lock().unwrap();
        state.render(&key(plural, ns, name))
    }

    /// How many stored objects carry `label=value`.
    pub fn count_labelled(&self, label: &str, value: &str) -> usize {
        let state = self.state.lock().unwrap();
        state
            .store
            .objects
            .keys()
            .filter_map(|k| state.render(k))
            .filter(|o| o["metadata"]["labels"][label].as_str() == Some(value))
            .count()
    }

    /// Stores an object as if `manager` had applied it (replacing that
    /// manager's earlier config of it). A `status` in it is served as is.
    pub fn seed(&self, plural: &str, ns: Option<&str>, name: &str, manager: &str, object: Value) {
        self.state
            .lock()
            .unwrap()
            .seed(&key(plural, ns, name), manager, object);
    }

    /// Seeds an object given as YAML (or JSON); its kind, namespace and
    /// name say where it goes.
    pub fn seed_yaml(&self, manager: &str, yaml: &str) {
        let object: Value = serde_saphyr::from_str(yaml).expect("seed YAML parses");
        self.seed_value(manager, object);
    }

    /// Seeds `tests/fixtures/cluster/<name>` as the manager `k3s`.
    pub fn seed_fixture(&self, name: &str) {
        self.seed_value("k3s", fixture_value(name));
    }

    fn seed_value(&self, manager: &str, object: Value) {
        let kind = object["kind"].as_str().expect("seed has a kind");
        let resource =
            api::resource_of_kind(kind).unwrap_or_else(|| panic!("the fake does not serve {kind}"));
        let name = object["metadata"]["name"]
            .as_str()
            .expect("seed has a name")
            .to_owned();
        let ns = object["metadata"]["namespace"].as_str().map(str::to_owned);
        self.seed(resource.plural, ns.as_deref(), &name, manager, object);
    }

    /// Pins part of an object's status (merged into what it had pinned);
    /// made-up status no longer applies to it.
    pub fn set_status(&self, plural: &str, ns: Option<&str>, name: &str, status: Value) {
        let found = self
            .state
            .lock()
            .unwrap()
            .merge_status(&key(plural, ns, name), &status);
        assert!(found, "no {plural} {name} to set the status of");
    }

    /// Removes an object as if someone deleted it (no request logged).
    pub fn remove(&self, plural: &str, ns: Option<&str>, name: &str) -> bool {
        self.state
            .lock()
            .unwrap()
            .store
            .objects
            .remove(&key(plural, ns, name))
            .is_some()
    }
}

fn key(plural: &str, ns: Option<&str>, name: &str) -> Key {
    (plural.to_owned(), ns.map(str::to_owned), name.to_owned())
}

/// Stand-in PEMs (issuance is fedilab-ca's business).
pub fn fixture_tls(spec: &LabSpec) -> TlsMaterial {
    TlsMaterial {
        ca_cert_pem: "-----BEGIN CERTIFICATE-----\nTEST-LAB-CA\n-----END CERTIFICATE-----\n".into(),
        leaves: spec
            .instances
            .iter()
            .map(|i| {
                (
                    i.name.clone(),
                    LeafPem {
                        cert_pem: format!(
                            "-----BEGIN CERTIFICATE-----\nLEAF {}\n-----END CERTIFICATE-----\n",
                            i.host
                        ),
                        key_pem: format!(
                            "-----BEGIN PRIVATE KEY-----\nKEY {}\n-----END PRIVATE KEY-----\n",
                            i.host
                        ),
                    },
                )
            })
            .collect(),
    }
}

pub fn spec(lab: &str, domain: &str, instances: usize) -> LabSpec {
    LabSpec::from_yaml(
        fedilab_profile::DEFAULT_PROFILE_YAML,
        "the built-in profile",
        &Overrides {
            lab: Some(lab.to_owned()),
            domain: Some(domain.to_owned()),
            instances: Some(InstanceCounts::Total(instances)),
        },
    )
    .expect("valid spec")
}

pub fn manifests(spec: &LabSpec) -> LabManifests {
    let secrets = LabSecrets::generate(spec, seed_from_text("fake-api tests"));
    build(spec, &secrets, &fixture_tls(spec), &Routing::Direct).expect("built")
}

/// The plural of a kind, independent of the crate's own table.
pub fn plural(kind: &str) -> &'static str {
    match kind {
        "Namespace" => "namespaces",
        "NetworkPolicy" => "networkpolicies",
        "ConfigMap" => "configmaps",
        "Secret" => "secrets",
        "PersistentVolumeClaim" => "persistentvolumeclaims",
        "Service" => "services",
        "EndpointSlice" => "endpointslices",
        "StatefulSet" => "statefulsets",
        "Deployment" => "deployments",
        "Ingress" => "ingresses",
        "Job" => "jobs",
        "HelmChartConfig" => "helmchartconfigs",
        other => panic!("no plural for {other}"),
    }
}

/// The REST path of an object.
pub fn object_path(api_version: &str, kind: &str, ns: Option<&str>, name: &str) -> String {
    let base = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    match ns {
        Some(ns) => format!("{base}/namespaces/{ns}/{}/{name}", plural(kind)),
        None => format!("{base}/{}/{name}", plural(kind)),
    }
}

/// Runs `fut` with a deadline, so no test hangs.
pub async fn bounded<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(60), fut)
        .await
        .expect("finished within 60 s")
}
