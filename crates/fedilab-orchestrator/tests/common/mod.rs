//! A fake Kubernetes API server for tests: `tower_test::mock::pair` with a
//! small in-memory store behind it. It records every request (method, path
//! with query, content type, body) and answers like an API server would for
//! the calls fedilab makes: server-side apply (per field manager, so one
//! manager dropping a field leaves another's), merge patches, gets, label
//! selected lists, deletes (a namespace takes its objects along and lingers
//! one read as Terminating), discovery, version, pod logs and events.
//! Workload status is made up at read time from [`Behaviour`].
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::type_complexity,
    clippy::result_large_err
)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use fedilab_manifest::{
    LabManifests, LabSecrets, LeafPem, Routing, TlsMaterial, build, seed_from_text,
};
use fedilab_orchestrator::Cluster;
use fedilab_profile::{LabSpec, Overrides};
use http::{Request, Response};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{Value, json};

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

/// How the made-up workloads behave.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Workloads report ready from this list round on (a round = one list
    /// of statefulsets in a lab namespace). `None`: never.
    pub ready_after_rounds: Option<u32>,
    /// Setup Jobs fail instead of completing.
    pub jobs_fail: bool,
    /// helm.cattle.io/v1 is served.
    pub helm_crd: bool,
    /// The node's kubelet version.
    pub kubelet_version: String,
    /// The node's allocatable memory.
    pub allocatable_memory: String,
    /// Check pods (by name) that end: their phase, exit code and log.
    /// Other created pods stay Pending.
    pub check_pods: BTreeMap<String, (String, i32, String)>,
    /// The node's `spec.podCIDRs` (none by default, as before).
    pub pod_cidrs: Vec<String>,
    /// kube-system's CoreDNS Deployment reports its rollout available
    /// (independent of [`Behaviour::ready_after_rounds`]).
    pub coredns_available: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            ready_after_rounds: Some(0),
            jobs_fail: false,
            helm_crd: true,
            kubelet_version: "v1.33.4+k3s1".to_owned(),
            allocatable_memory: "16318936Ki".to_owned(),
            check_pods: BTreeMap::new(),
            pod_cidrs: Vec::new(),
            coredns_available: true,
        }
    }
}

#[derive(Debug, Clone)]
struct Stored {
    /// Per field manager, in order of first apply: its applied config.
    applied: Vec<(String, Value)>,
    /// Merge patches, applied on top.
    patched: Value,
    uid: String,
    resource_version: u64,
    /// The content the resourceVersion was given for.
    content: Value,
    terminating: bool,
}

#[derive(Default)]
pub struct State {
    pub log: Vec<Recorded>,
    objects: BTreeMap<(String, Option<String>, String), Stored>,
    next_rv: u64,
    pub rounds: u32,
    pub behaviour: Behaviour,
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
    pub fn start(behaviour: Behaviour) -> Fake {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let state = Arc::new(Mutex::new(State {
            behaviour,
            next_rv: 100,
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
                let response = served.lock().unwrap().serve(&parts, &bytes);
                respond.send_response(response);
            }
        });
        let fake = Fake {
            state,
            cluster: Cluster::from_service(service, "https://fake.invalid:6443"),
            task,
        };
        // k3s's CoreDNS, which fedilab restarts.
        fake.seed(
            "deployments",
            Some("kube-system"),
            "coredns",
            "k3s",
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "coredns", "namespace": "kube-system"},
                   "spec": {"template": {"metadata": {}}}}),
        );
        fake
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

    /// Resource versions of every stored object.
    pub fn resource_versions(&self) -> BTreeMap<String, u64> {
        let state = self.state.lock().unwrap();
        state
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
        let key = (plural.to_owned(), ns.map(str::to_owned), name.to_owned());
        state.objects.get(&key).map(|s| state.render(&key, s))
    }

    /// How many stored objects carry `label=value`.
    pub fn count_labelled(&self, label: &str, value: &str) -> usize {
        let state = self.state.lock().unwrap();
        state
            .objects
            .iter()
            .filter(|(k, s)| {
                state.render(k, s)["metadata"]["labels"][label].as_str() == Some(value)
            })
            .count()
    }

    /// Stores an object as if some other manager had applied it.
    pub fn seed(&self, plural: &str, ns: Option<&str>, name: &str, manager: &str, object: Value) {
        let mut state = self.state.lock().unwrap();
        let key = (plural.to_owned(), ns.map(str::to_owned), name.to_owned());
        state.apply(&key, manager, object).expect("seeded");
    }
}

fn deep_merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    a.remove(k);
                } else {
                    deep_merge(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": if code < 300 { "Success" } else { "Failure" },
        "reason": reason, "message": message, "code": code,
    });
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn ok(value: &Value) -> Response<Body> {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(value).unwrap()))
        .unwrap()
}

fn text(value: &str) -> Response<Body> {
    Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body(Body::from(value.as_bytes().to_vec()))
        .unwrap()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn matches_selector(object: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let Some((k, v)) = term.split_once('=') else {
            return true;
        };
        object["metadata"]["labels"][k].as_str() == Some(v)
    })
}

/// Splits `/api/v1/namespaces/ns/configmaps/name/log` into
/// (group version, namespace, plural, name, subresource).
fn parse_path(
    path: &str,
) -> Option<(
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
)> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (gv, rest) = match *segs.first()? {
        "api" => (segs.get(1)?.to_string(), &segs[2..]),
        "apis" => (format!("{}/{}", segs.get(1)?, segs.get(2)?), &segs[3..]),
        _ => return None,
    };
    let (ns, rest) = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        (Some(rest[1].to_owned()), &rest[2..])
    } else {
        (None, rest)
    };
    let plural = rest.first()?.to_string();
    Some((
        gv,
        ns,
        plural,
        rest.get(1).map(|s| s.to_string()),
        rest.get(2).map(|s| s.to_string()),
    ))
}

fn kind_of(plural: &str) -> (&'static str, &'static str) {
    match plural {
        "namespaces" => ("v1", "Namespace"),
        "configmaps" => ("v1", "ConfigMap"),
        "secrets" => ("v1", "Secret"),
        "services" => ("v1", "Service"),
        "pods" => ("v1", "Pod"),
        "events" => ("v1", "Event"),
        "nodes" => ("v1", "Node"),
        "persistentvolumeclaims" => ("v1", "PersistentVolumeClaim"),
        "deployments" => ("apps/v1", "Deployment"),
        "statefulsets" => ("apps/v1", "StatefulSet"),
        "replicasets" => ("apps/v1", "ReplicaSet"),
        "jobs" => ("batch/v1", "Job"),
        "ingresses" => ("networking.k8s.io/v1", "Ingress"),
        "networkpolicies" => ("networking.k8s.io/v1", "NetworkPolicy"),
        "endpointslices" => ("discovery.k8s.io/v1", "EndpointSlice"),
        "helmchartconfigs" => ("helm.cattle.io/v1", "HelmChartConfig"),
        _ => ("v1", "Unknown"),
    }
}

type Key = (String, Option<String>, String);

impl State {
    fn ready(&self) -> bool {
        self.behaviour
            .ready_after_rounds
            .is_some_and(|n| self.rounds >= n)
    }

    fn render(&self, key: &Key, stored: &Stored) -> Value {
        let mut object = json!({});
        for (_, config) in &stored.applied {
            deep_merge(&mut object, config);
        }
        deep_merge(&mut object, &stored.patched);
        let managers: Vec<Value> = stored
            .applied
            .iter()
            .map(|(m, _)| json!({"manager": m, "operation": "Apply"}))
            .collect();
        let meta = &mut object["metadata"];
        meta["uid"] = json!(stored.uid);
        meta["resourceVersion"] = json!(stored.resource_version.to_string());
        meta["creationTimestamp"] = json!("2025-01-01T10:00:00Z");
        meta["generation"] = json!(1);
        meta["managedFields"] = json!(managers);
        if stored.terminating {
            meta["deletionTimestamp"] = json!("2025-01-01T11:00:00Z");
        }
        if key.0 == "services" && object["spec"]["clusterIP"].is_null() {
            // Allocated like the API server would, from the service network.
            let n: u64 = stored.uid.trim_start_matches("uid-").parse().unwrap_or(0);
            object["spec"]["clusterIP"] = json!(format!("10.43.{}.{}", n / 250, n % 250 + 1));
        }
        let ready = if key.1.as_deref() == Some("kube-system") && key.2 == "coredns" {
            self.behaviour.coredns_available
        } else {
            self.ready()
        };
        match key.0.as_str() {
            "deployments" if ready => {
                object["status"] = json!({"observedGeneration": 1, "replicas": 1,
                    "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1});
            }
            "statefulsets" if ready => {
                object["status"] = json!({"observedGeneration": 1, "replicas": 1,
                    "readyReplicas": 1, "updatedReplicas": 1,
                    "currentRevision": "r1", "updateRevision": "r1"});
            }
            "jobs" if self.behaviour.jobs_fail => {
                object["status"] = json!({"failed": 4, "conditions": [
                    {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                     "message": "Job has reached the specified backoff limit"}]});
            }
            "jobs" if ready => {
                object["status"] = json!({"succeeded": 1, "conditions": [
                    {"type": "Complete", "status": "True"}]});
            }
            "pods" => {
                if let Some((phase, exit_code, _)) = self.behaviour.check_pods.get(&key.2) {
                    object["status"] = json!({"phase": phase, "containerStatuses": [{
                        "name": "check", "ready": false, "restartCount": 0,
                        "image": "", "imageID": "",
                        "state": {"terminated": {"exitCode": exit_code, "reason": "Completed"}}}]});
                } else {
                    object["status"] = json!({"phase": "Pending"});
                }
            }
            "deployments" | "statefulsets" => {
                object["status"] = json!({"observedGeneration": 1, "replicas": 1});
            }
            _ => {}
        }
        object
    }

    fn apply(&mut self, key: &Key, manager: &str, body: Value) -> Result<Value, Response<Body>> {
        if key.0 == "jobs"
            && let Some(existing) = self.objects.get(key)
            && self.render(key, existing)["spec"]["template"] != body["spec"]["template"]
        {
            return Err(status(
                422,
                "Invalid",
                &format!(
                    "Job.batch \"{}\" is invalid: spec.template: Invalid value: field is immutable",
                    key.2
                ),
            ));
        }
        let fresh_uid = format!("uid-{}", self.next_rv);
        let stored = self.objects.entry(key.clone()).or_insert_with(|| Stored {
            applied: Vec::new(),
            patched: json!({}),
            uid: fresh_uid,
            resource_version: 0,
            content: Value::Null,
            terminating: false,
        });
        match stored.applied.iter_mut().find(|(m, _)| m == manager) {
            Some((_, config)) => *config = body,
            None => stored.applied.push((manager.to_owned(), body)),
        }
        self.bump(key);
        let stored = &self.objects[key];
        Ok(self.render(key, stored))
    }

    /// Gives a new resourceVersion when the content changed.
    fn bump(&mut self, key: &Key) {
        let mut content = json!({});
        if let Some(stored) = self.objects.get(key) {
            for (_, config) in &stored.applied {
                deep_merge(&mut content, config);
            }
            deep_merge(&mut content, &stored.patched);
        }
        self.next_rv += 1;
        let rv = self.next_rv;
        if let Some(stored) = self.objects.get_mut(key)
            && stored.content != content
        {
            stored.content = content;
            stored.resource_version = rv;
        }
    }

    fn list(&self, plural: &str, ns: Option<&str>, query: &str) -> Value {
        let selector = query_param(query, "labelSelector").unwrap_or_default();
        let items: Vec<Value> = self
            .objects
            .iter()
            .filter(|(k, _)| k.0 == plural && (ns.is_none() || k.1.as_deref() == ns))
            .map(|(k, s)| self.render(k, s))
            .filter(|o| matches_selector(o, &selector))
            .collect();
        let (api_version, kind) = kind_of(plural);
        json!({"apiVersion": api_version, "kind": format!("{kind}List"),
               "metadata": {"resourceVersion": self.next_rv.to_string()}, "items": items})
    }

    fn serve(&mut self, parts: &http::request::Parts, bytes: &[u8]) -> Response<Body> {
        let path = parts.uri.path().to_owned();
        let query = parts.uri.query().unwrap_or("").to_owned();
        let body: Option<Value> = serde_json::from_slice(bytes).ok();
        self.log.push(Recorded {
            method: parts.method.to_string(),
            path: if query.is_empty() {
                path.clone()
            } else {
                format!("{path}?{}", percent_decode(&query))
            },
            content_type: parts
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: body.clone(),
        });
        if path == "/version" {
            return ok(
                &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.4+k3s1",
                "gitCommit": "x", "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
                "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"}),
            );
        }
        if path == "/apis/helm.cattle.io/v1" {
            if !self.behaviour.helm_crd {
                return status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                );
            }
            return ok(&json!({"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": "helm.cattle.io/v1", "resources": [
                {"name": "helmcharts", "singularName": "helmchart", "namespaced": true,
                 "kind": "HelmChart", "verbs": ["get", "list", "patch"]},
                {"name": "helmchartconfigs", "singularName": "helmchartconfig", "namespaced": true,
                 "kind": "HelmChartConfig", "verbs": ["get", "list", "patch"]}]}));
        }
        let Some((_gv, ns, plural, name, sub)) = parse_path(&path) else {
            return status(404, "NotFound", "no such path");
        };
        let method = parts.method.as_str();
        if plural == "nodes" && method == "GET" {
            let mut nodes = json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": [{
                "apiVersion": "v1", "kind": "Node", "metadata": {"name": "lab-vm"},
                "status": {
                    "allocatable": {"memory": self.behaviour.allocatable_memory, "cpu": "4"},
                    "addresses": [{"type": "InternalIP", "address": "192.0.2.10"}],
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "nodeInfo": {"kubeletVersion": self.behaviour.kubelet_version,
                        "architecture": "amd64", "bootID": "", "containerRuntimeVersion": "",
                        "kernelVersion": "", "kubeProxyVersion": "", "machineID": "",
                        "operatingSystem": "linux", "osImage": "", "systemUUID": ""}}}]});
            if !self.behaviour.pod_cidrs.is_empty() {
                nodes["items"][0]["spec"] = json!({"podCIDRs": self.behaviour.pod_cidrs});
            }
            return ok(&nodes);
        }
        if plural == "pods" && ns.is_none() && method == "GET" {
            // Cluster-wide: k3s's own pod (the fake keeps no lab pods).
            if query.contains("labelSelector") {
                return ok(
                    &json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []}),
                );
            }
            return ok(
                &json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [{
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "coredns-1", "namespace": "kube-system"},
                "spec": {"containers": [{"name": "coredns",
                    "resources": {"requests": {"memory": "70Mi"}}}]}}]}),
            );
        }
        if plural == "pods"
            && method == "GET"
            && name.is_none()
            && percent_decode(&query).contains("fedilab.dev/verify")
        {
            return ok(&self.list("pods", ns.as_deref(), &query));
        }
        if plural == "pods" && method == "GET" && name.is_none() {
            return ok(&self.fake_pods(ns.as_deref().unwrap_or_default(), &query));
        }
        if plural == "pods"
            && sub.as_deref() == Some("log")
            && let Some((_, _, log)) = name.as_ref().and_then(|n| self.behaviour.check_pods.get(n))
        {
            return text(log);
        }
        if plural == "pods" && sub.as_deref() == Some("log") {
            return text(
                "rake aborted!\nActiveRecord::ConnectionNotEstablished: connection to server at \"mastodon1-postgres\" failed\n",
            );
        }
        if plural == "events" && method == "GET" {
            return ok(
                &json!({"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": [{
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": "e1", "namespace": ns},
                "involvedObject": {"kind": "Pod", "name": "mastodon1-setup-abcde"},
                "type": "Warning", "reason": "BackOff",
                "message": "Back-off restarting failed container setup",
                "lastTimestamp": "2025-01-01T10:05:00Z"}]}),
            );
        }
        let key: Key = (plural.clone(), ns.clone(), name.clone().unwrap_or_default());
        match (method, name.is_some()) {
            ("POST", false) => {
                let Some(body) = body else {
                    return status(400, "BadRequest", "no body");
                };
                let Some(created) = body["metadata"]["name"].as_str() else {
                    return status(422, "Invalid", "no name");
                };
                let key: Key = (plural.clone(), ns.clone(), created.to_owned());
                if self.objects.contains_key(&key) {
                    return status(
                        409,
                        "AlreadyExists",
                        &format!("{plural} \"{created}\" already exists"),
                    );
                }
                match self.apply(&key, "create", body) {
                    Ok(v) => ok(&v),
                    Err(r) => r,
                }
            }
            ("GET", false) => {
                if plural == "statefulsets" {
                    self.rounds += 1;
                }
                ok(&self.list(&plural, ns.as_deref(), &query))
            }
            ("GET", true) => {
                let Some(stored) = self.objects.get(&key) else {
                    return status(
                        404,
                        "NotFound",
                        &format!("{plural} \"{}\" not found", key.2),
                    );
                };
                let rendered = self.render(&key, stored);
                if stored.terminating {
                    // Gone after the read that saw it terminating.
                    self.objects.remove(&key);
                }
                ok(&rendered)
            }
            ("PATCH", true) => {
                let ct = parts
                    .headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let Some(body) = body else {
                    return status(400, "BadRequest", "no body");
                };
                if ct == "application/apply-patch+yaml" {
                    let manager = query_param(&query, "fieldManager").unwrap_or_default();
                    match self.apply(&key, &manager, body) {
                        Ok(v) => ok(&v),
                        Err(r) => r,
                    }
                } else {
                    let Some(stored) = self.objects.get_mut(&key) else {
                        return status(404, "NotFound", "not found");
                    };
                    deep_merge(&mut stored.patched, &body);
                    // A merge patch that deletes a key removes it from
                    // every applied config too.
                    if let Some(data) = body["data"].as_object() {
                        for (k, v) in data {
                            if v.is_null() {
                                for (_, c) in &mut stored.applied {
                                    if let Some(d) = c["data"].as_object_mut() {
                                        d.remove(k);
                                    }
                                }
                            }
                        }
                    }
                    self.bump(&key);
                    ok(&self.render(&key, &self.objects[&key]))
                }
            }
            ("DELETE", true) => {
                if !self.objects.contains_key(&key) {
                    return status(404, "NotFound", "not found");
                }
                if plural == "namespaces" {
                    let ns_name = key.2.clone();
                    self.objects
                        .retain(|k, _| k.1.as_deref() != Some(ns_name.as_str()));
                    if let Some(s) = self.objects.get_mut(&key) {
                        s.terminating = true;
                    }
                    return ok(&self.render(&key, &self.objects[&key]));
                }
                self.objects.remove(&key);
                status(200, "", "")
            }
            _ => status(405, "MethodNotAllowed", "not supported by the fake"),
        }
    }

    /// A failed setup pod and a crash-looping web pod, per instance whose
    /// workloads exist.
    fn fake_pods(&self, ns: &str, query: &str) -> Value {
        let selector = query_param(query, "labelSelector").unwrap_or_default();
        let mut items = Vec::new();
        for ((plural, obj_ns, name), stored) in &self.objects {
            if obj_ns.as_deref() != Some(ns)
                || !matches!(plural.as_str(), "jobs" | "deployments" | "statefulsets")
            {
                continue;
            }
            let object = self.render(&(plural.clone(), obj_ns.clone(), name.clone()), stored);
            let labels = object["spec"]["template"]["metadata"]["labels"].clone();
            let container = object["spec"]["template"]["spec"]["containers"][0]["name"].clone();
            let pod = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("{name}-abcde"), "namespace": ns, "labels": labels,
                    "creationTimestamp": "2025-01-01T10:00:00Z"},
                "spec": {"containers": [{"name": container}]},
                "status": {"phase": if plural == "jobs" { "Failed" } else { "Running" },
                    "conditions": [{"type": "Ready",
                        "status": if self.ready() && plural != "jobs" { "True" } else { "False" }}],
                    "containerStatuses": [{"name": container, "ready": false, "restartCount": 3,
                        "image": "", "imageID": "",
                        "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}});
            if matches_selector(&pod, &selector) {
                items.push(pod);
            }
        }
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})
    }
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
            instances: Some(instances),
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
