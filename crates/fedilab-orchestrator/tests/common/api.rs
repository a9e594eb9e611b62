//! The fake API server's HTTP side: routes a request to the handler of its
//! resource (one per resource in [`RESOURCES`]), which answers from the
//! [`Store`] the way an API server would, adding what the server and the
//! controllers would (cluster IPs, workload status, pods, events, logs).
//! Status that controllers write is made up from [`Behaviour`] and the
//! fake's clock, [`State::tick`], which only `Fake::advance` moves.

use http::Response;
use kube::client::Body;
use serde_json::{Value, json};

use super::store::{Key, Store, deep_merge};
use super::{Behaviour, Recorded, fixture_text, fixture_value};

/// Everything behind the fake's lock.
#[derive(Debug, Default)]
pub struct State {
    pub log: Vec<Recorded>,
    pub store: Store,
    /// How often `Fake::advance` was called.
    pub tick: u32,
    pub behaviour: Behaviour,
}

/// One resource the fake serves.
pub struct Resource {
    pub group_version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub handler: &'static (dyn Handler + Sync),
}

/// What a resource does beyond storing what it is sent.
pub trait Handler {
    /// Refuses an apply the real server would refuse.
    fn admit(&self, _state: &State, _key: &Key, _body: &Value) -> Result<(), Response<Body>> {
        Ok(())
    }

    /// Adds server-filled fields and made-up status to a stored object.
    fn fill(&self, _state: &State, _key: &Key, _object: &mut Value) {}

    /// Objects no one stored but the cluster would have (pods of
    /// workloads, their events), in `ns` or everywhere.
    fn made_up(&self, _state: &State, _ns: Option<&str>) -> Vec<Value> {
        Vec::new()
    }

    /// `GET .../name/<sub>`.
    fn subresource(&self, _state: &State, _key: &Key, _sub: &str) -> Response<Body> {
        status(404, "NotFound", "no such subresource")
    }

    /// Deletes a stored object; returns the response.
    fn delete(&self, state: &mut State, key: &Key) -> Response<Body> {
        state.store.objects.remove(key);
        status(200, "", "")
    }
}

/// Stored as sent: ConfigMaps, Secrets, Ingresses, ...
pub struct Plain;
impl Handler for Plain {}

/// A namespace takes its objects along and lingers one read as
/// Terminating.
pub struct Namespaces;
impl Handler for Namespaces {
    fn delete(&self, state: &mut State, key: &Key) -> Response<Body> {
        let ns = key.2.clone();
        state
            .store
            .objects
            .retain(|k, _| k.1.as_deref() != Some(ns.as_str()));
        if let Some(s) = state.store.objects.get_mut(key) {
            s.terminating = true;
        }
        ok(&state.render(key).unwrap_or_default())
    }
}

/// Services get a cluster IP from the service network.
pub struct Services;
impl Handler for Services {
    fn fill(&self, state: &State, key: &Key, object: &mut Value) {
        if object["spec"]["clusterIP"].is_null() {
            let uid = state.store.objects.get(key).map(|s| s.uid.clone());
            let n: u64 = uid
                .as_deref()
                .unwrap_or("")
                .trim_start_matches("uid-")
                .parse()
                .unwrap_or(0);
            object["spec"]["clusterIP"] = json!(format!("10.43.{}.{}", n / 250, n % 250 + 1));
        }
    }
}

/// Whether made-up workloads of `ns` are ready now: a lab's follow
/// [`Behaviour::ready_after`], the cluster's own always are.
fn workloads_ready(state: &State, ns: Option<&str>) -> bool {
    if !ns.is_some_and(|n| n.starts_with("fedilab-")) {
        return true;
    }
    state.behaviour.ready_after.is_some_and(|n| state.tick >= n)
}

/// Deployments and StatefulSets: status made up from the clock.
pub struct Workloads;
impl Handler for Workloads {
    fn fill(&self, state: &State, key: &Key, object: &mut Value) {
        if !object["status"].is_null() {
            return; // pinned
        }
        let generation = object["metadata"]["generation"].clone();
        object["status"] = match (key.0.as_str(), workloads_ready(state, key.1.as_deref())) {
            ("deployments", true) => json!({"observedGeneration": generation, "replicas": 1,
                "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}),
            ("statefulsets", true) => json!({"observedGeneration": generation, "replicas": 1,
                "readyReplicas": 1, "updatedReplicas": 1,
                "currentRevision": "r1", "updateRevision": "r1"}),
            _ => json!({"observedGeneration": generation, "replicas": 1}),
        };
    }
}

/// Jobs: the template is immutable; status from the clock, or failed.
pub struct Jobs;
impl Handler for Jobs {
    fn admit(&self, state: &State, key: &Key, body: &Value) -> Result<(), Response<Body>> {
        match state.render(key) {
            Some(existing) if existing["spec"]["template"] != body["spec"]["template"] => {
                Err(status(
                    422,
                    "Invalid",
                    &format!(
                        "Job.batch \"{}\" is invalid: spec.template: Invalid value: field is immutable",
                        key.2
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    fn fill(&self, state: &State, key: &Key, object: &mut Value) {
        if !object["status"].is_null() {
            return;
        }
        if state.behaviour.jobs_fail {
            object["status"] = json!({"failed": 4, "conditions": [
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit"}]});
        } else if workloads_ready(state, key.1.as_deref()) {
            object["status"] =
                json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]});
        }
    }
}

/// A made-up pod of a lab workload: a failed setup pod, a crash-looping
/// (or, once ready, running) pod of the others.
fn workload_pod(state: &State, key: &Key, object: &Value) -> Value {
    let (plural, ns, name) = key;
    let labels = object["spec"]["template"]["metadata"]["labels"].clone();
    let container = object["spec"]["template"]["spec"]["containers"][0]["name"].clone();
    let ready = workloads_ready(state, ns.as_deref()) && plural != "jobs";
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{name}-abcde"), "namespace": ns, "labels": labels,
            "creationTimestamp": "2025-01-01T10:00:00Z"},
        "spec": {"containers": [{"name": container}]},
        "status": {"phase": if plural == "jobs" { "Failed" } else { "Running" },
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            "containerStatuses": [{"name": container, "ready": false, "restartCount": 3,
                "image": "", "imageID": "",
                "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}})
}

fn lab_workloads(state: &State, ns: Option<&str>) -> Vec<(Key, Value)> {
    state
        .store
        .objects
        .keys()
        .filter(|k| matches!(k.0.as_str(), "jobs" | "deployments" | "statefulsets"))
        .filter(|k| k.1.as_deref().is_some_and(|n| n.starts_with("fedilab-")))
        .filter(|k| ns.is_none() || k.1.as_deref() == ns)
        .filter_map(|k| Some((k.clone(), state.render(k)?)))
        .collect()
}

/// Pods: stored ones (check pods) end as [`Behaviour::check_pods`] says,
/// or stay Pending; each lab workload has a made-up pod.
pub struct Pods;
impl Handler for Pods {
    fn fill(&self, state: &State, key: &Key, object: &mut Value) {
        if let Some((phase, exit_code, _)) = state.behaviour.check_pods.get(&key.2) {
            object["status"] = json!({"phase": phase, "containerStatuses": [{
                "name": "check", "ready": false, "restartCount": 0,
                "image": "", "imageID": "",
                "state": {"terminated": {"exitCode": exit_code, "reason": "Completed"}}}]});
        } else if object["status"].is_null() {
            object["status"] = json!({"phase": "Pending"});
        }
    }

    fn made_up(&self, state: &State, ns: Option<&str>) -> Vec<Value> {
        lab_workloads(state, ns)
            .iter()
            .map(|(k, o)| workload_pod(state, k, o))
            .collect()
    }

    fn subresource(&self, state: &State, key: &Key, sub: &str) -> Response<Body> {
        if sub != "log" {
            return status(404, "NotFound", "no such subresource");
        }
        if let Some((_, _, log)) = state.behaviour.check_pods.get(&key.2) {
            return text(log);
        }
        let made_up = self
            .made_up(state, key.1.as_deref())
            .iter()
            .any(|p| p["metadata"]["name"] == key.2.as_str());
        if made_up || state.store.objects.contains_key(key) {
            return text(&fixture_text("setup-log.txt"));
        }
        status(404, "NotFound", &format!("pods \"{}\" not found", key.2))
    }
}

/// Events: a BackOff warning for every made-up pod that is not ready.
pub struct Events;
impl Handler for Events {
    fn made_up(&self, state: &State, ns: Option<&str>) -> Vec<Value> {
        Pods.made_up(state, ns)
            .into_iter()
            .filter(|p| p["status"]["conditions"][0]["status"] != "True")
            .map(|p| {
                let pod = p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let container = p["spec"]["containers"][0]["name"]
                    .as_str()
                    .unwrap_or_default();
                json!({"apiVersion": "v1", "kind": "Event",
                    "metadata": {"name": format!("{pod}.backoff"),
                        "namespace": p["metadata"]["namespace"]},
                    "involvedObject": {"kind": "Pod", "name": pod},
                    "type": "Warning", "reason": "BackOff",
                    "message": format!("Back-off restarting failed container {container}"),
                    "lastTimestamp": "2025-01-01T10:05:00Z"})
            })
            .collect()
    }
}

/// Every resource the fake serves, by plural.
pub static RESOURCES: &[Resource] = &[
    res("v1", "namespaces", "Namespace", false, &Namespaces),
    res("v1", "nodes", "Node", false, &Plain),
    res("v1", "configmaps", "ConfigMap", true, &Plain),
    res("v1", "secrets", "Secret", true, &Plain),
    res("v1", "services", "Service", true, &Services),
    res("v1", "pods", "Pod", true, &Pods),
    res("v1", "events", "Event", true, &Events),
    res(
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true,
        &Plain,
    ),
    res("apps/v1", "deployments", "Deployment", true, &Workloads),
    res("apps/v1", "statefulsets", "StatefulSet", true, &Workloads),
    res("apps/v1", "replicasets", "ReplicaSet", true, &Plain),
    res("batch/v1", "jobs", "Job", true, &Jobs),
    res(
        "networking.k8s.io/v1",
        "networkpolicies",
        "NetworkPolicy",
        true,
        &Plain,
    ),
    res("networking.k8s.io/v1", "ingresses", "Ingress", true, &Plain),
    // Kubernetes 1.33+: the cluster's service networks.
    res(
        "networking.k8s.io/v1",
        "servicecidrs",
        "ServiceCIDR",
        false,
        &Plain,
    ),
    res(
        "discovery.k8s.io/v1",
        "endpointslices",
        "EndpointSlice",
        true,
        &Plain,
    ),
    res(
        "helm.cattle.io/v1",
        "helmchartconfigs",
        "HelmChartConfig",
        true,
        &Plain,
    ),
];

const fn res(
    group_version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    handler: &'static (dyn Handler + Sync),
) -> Resource {
    Resource {
        group_version,
        plural,
        kind,
        namespaced,
        handler,
    }
}

/// The resource of a kind (`Deployment`).
pub fn resource_of_kind(kind: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.kind == kind)
}

fn resource_of_plural(plural: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.plural == plural)
}

pub fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
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

pub fn percent_decode(s: &str) -> String {
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

/// A label selector: `k=v`, `k!=v`, `k` (exists), `!k`.
fn matches_labels(object: &Value, selector: &str) -> bool {
    let labels = &object["metadata"]["labels"];
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            labels[k].as_str() != Some(v)
        } else if let Some((k, v)) = term.split_once('=') {
            labels[k].as_str() == Some(v.trim_start_matches('='))
        } else if let Some(k) = term.strip_prefix('!') {
            labels[k].is_null()
        } else {
            !labels[term].is_null()
        }
    })
}

/// A field selector: `a.b=v`, `a.b!=v`.
fn matches_fields(object: &Value, selector: &str) -> bool {
    let field = |path: &str| {
        path.split('.')
            .fold(object, |v, seg| &v[seg])
            .as_str()
            .map(str::to_owned)
    };
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            field(k).as_deref() != Some(v)
        } else if let Some((k, v)) = term.split_once('=') {
            field(k).as_deref() == Some(v.trim_start_matches('='))
        } else {
            true
        }
    })
}

/// A request path, split.
struct Route {
    group_version: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    sub: Option<String>,
}

/// Splits `/api/v1/namespaces/ns/pods/name/log`.
fn route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group_version, rest) = match *segs.first()? {
        "api" => (segs.get(1)?.to_string(), segs.get(2..)?),
        "apis" => (format!("{}/{}", segs.get(1)?, segs.get(2)?), segs.get(3..)?),
        _ => return None,
    };
    let (namespace, rest) = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        (Some(rest[1].to_owned()), &rest[2..])
    } else {
        (None, rest)
    };
    Some(Route {
        group_version,
        namespace,
        plural: rest.first()?.to_string(),
        name: rest.get(1).map(|s| s.to_string()),
        sub: rest.get(2).map(|s| s.to_string()),
    })
}

impl State {
    /// A stored object as served, or `None`.
    pub fn render(&self, key: &Key) -> Option<Value> {
        let stored = self.store.objects.get(key)?;
        let mut object = stored.render();
        if let Some(r) = resource_of_plural(&key.0) {
            r.handler.fill(self, key, &mut object);
        }
        Some(object)
    }

    fn served(&self, r: &Resource) -> bool {
        r.group_version != "helm.cattle.io/v1" || self.behaviour.helm_crd
    }

    fn list(&self, r: &Resource, ns: Option<&str>, query: &str) -> Value {
        let labels = query_param(query, "labelSelector").unwrap_or_default();
        let fields = query_param(query, "fieldSelector").unwrap_or_default();
        let stored = self
            .store
            .objects
            .keys()
            .filter(|k| k.0 == r.plural && (ns.is_none() || k.1.as_deref() == ns))
            .filter_map(|k| self.render(k));
        let items: Vec<Value> = stored
            .chain(r.handler.made_up(self, ns))
            .filter(|o| matches_labels(o, &labels) && matches_fields(o, &fields))
            .collect();
        json!({"apiVersion": r.group_version, "kind": format!("{}List", r.kind),
               "metadata": {"resourceVersion": self.store.next_rv.to_string()}, "items": items})
    }

    /// Records and answers one request.
    pub fn serve(&mut self, parts: &http::request::Parts, bytes: &[u8]) -> Response<Body> {
        let path = parts.uri.path().to_owned();
        let query = parts.uri.query().unwrap_or("").to_owned();
        let body: Option<Value> = serde_json::from_slice(bytes).ok();
        let content_type = parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.log.push(Recorded {
            method: parts.method.to_string(),
            path: if query.is_empty() {
                path.clone()
            } else {
                format!("{path}?{}", percent_decode(&query))
            },
            content_type: content_type.clone(),
            body: body.clone(),
        });
        // Discovery.
        if path == "/version" {
            return ok(&fixture_value("version.yaml"));
        }
        if path == "/apis/helm.cattle.io/v1" {
            if !self.behaviour.helm_crd {
                return status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                );
            }
            return ok(&fixture_value("discovery-helm.yaml"));
        }
        let Some(route) = route(&path) else {
            return status(404, "NotFound", "no such path");
        };
        let Some(resource) = resource_of_plural(&route.plural)
            .filter(|r| r.group_version == route.group_version && self.served(r))
        else {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            );
        };
        let ns = if resource.namespaced {
            route.namespace.clone()
        } else {
            None
        };
        let method = parts.method.as_str();
        let Some(name) = route.name.clone() else {
            return match method {
                "GET" => ok(&self.list(resource, ns.as_deref(), &query)),
                "POST" => self.create(resource, ns, body),
                _ => status(405, "MethodNotAllowed", "not supported by the fake"),
            };
        };
        let key: Key = (route.plural.clone(), ns, name);
        if let Some(sub) = &route.sub {
            return resource.handler.subresource(self, &key, sub);
        }
        match method {
            "GET" => self.get(&key),
            "PATCH" => {
                let Some(body) = body else {
                    return status(400, "BadRequest", "no body");
                };
                if content_type.as_deref() == Some("application/apply-patch+yaml") {
                    let manager = query_param(&query, "fieldManager").unwrap_or_default();
                    self.apply(resource, &key, &manager, body)
                } else {
                    let manager =
                        query_param(&query, "fieldManager").unwrap_or_else(|| "unknown".into());
                    if !self.store.merge_patch(&key, &manager, &body) {
                        return status(404, "NotFound", "not found");
                    }
                    ok(&self.render(&key).unwrap_or_default())
                }
            }
            "DELETE" => {
                if !self.store.objects.contains_key(&key) {
                    return status(404, "NotFound", "not found");
                }
                resource.handler.delete(self, &key)
            }
            _ => status(405, "MethodNotAllowed", "not supported by the fake"),
        }
    }

    fn get(&mut self, key: &Key) -> Response<Body> {
        let Some(rendered) = self.render(key) else {
            return status(
                404,
                "NotFound",
                &format!("{} \"{}\" not found", key.0, key.2),
            );
        };
        if self.store.objects.get(key).is_some_and(|s| s.terminating) {
            // Gone after the read that saw it terminating.
            self.store.objects.remove(key);
        }
        ok(&rendered)
    }

    fn create(&mut self, r: &Resource, ns: Option<String>, body: Option<Value>) -> Response<Body> {
        let Some(body) = body else {
            return status(400, "BadRequest", "no body");
        };
        let Some(created) = body["metadata"]["name"].as_str() else {
            return status(422, "Invalid", "no name");
        };
        let key: Key = (r.plural.to_owned(), ns, created.to_owned());
        if self.store.objects.contains_key(&key) {
            return status(
                409,
                "AlreadyExists",
                &format!("{} \"{created}\" already exists", r.plural),
            );
        }
        self.apply(r, &key, "create", body)
    }

    fn apply(&mut self, r: &Resource, key: &Key, manager: &str, body: Value) -> Response<Body> {
        if let Err(refused) = r.handler.admit(self, key, &body) {
            return refused;
        }
        self.store.apply(key, manager, body);
        ok(&self.render(key).unwrap_or_default())
    }

    /// Seeds an object as `manager` (no request logged).
    pub fn seed(&mut self, key: &Key, manager: &str, object: Value) {
        self.store.apply(key, manager, object);
    }

    /// Changes `key`'s pinned status by merging `status` into it.
    pub fn merge_status(&mut self, key: &Key, status: &Value) -> bool {
        let mut current = self
            .store
            .objects
            .get(key)
            .and_then(|s| s.status.clone())
            .unwrap_or_else(|| json!({}));
        deep_merge(&mut current, status);
        self.store.set_status(key, Some(current))
    }
}
