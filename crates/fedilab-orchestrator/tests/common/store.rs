//! The fake API server's object store: objects by (plural, namespace,
//! name), each kept as one applied configuration per field manager plus
//! merge patches on top, with the uid, resourceVersion and generation an API
//! server would give it. Knows nothing of HTTP or of any one resource.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// (plural, namespace, name).
pub type Key = (String, Option<String>, String);

/// One stored object.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Per field manager, in order of first apply: its applied config.
    pub applied: Vec<(String, Value)>,
    /// Merge patches, applied on top.
    pub patched: Value,
    /// Managers that sent merge patches (`Update` entries).
    pub updated_by: Vec<String>,
    pub uid: String,
    pub resource_version: u64,
    /// Bumped when anything outside metadata and status changes.
    pub generation: u64,
    /// A status a test pinned (or a seeded object carried); `None`: made
    /// up by the resource's handler at read time.
    pub status: Option<Value>,
    /// The merged content the resourceVersion was given for.
    content: Value,
    pub terminating: bool,
}

/// Every object, and the counter their versions come from.
#[derive(Debug)]
pub struct Store {
    pub objects: BTreeMap<Key, Stored>,
    pub next_rv: u64,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            objects: BTreeMap::new(),
            next_rv: 100,
        }
    }
}

/// Merge-patch semantics: objects merge key by key, `null` removes.
pub fn deep_merge(into: &mut Value, from: &Value) {
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

fn without_metadata_and_status(content: &Value) -> Value {
    let mut v = content.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("metadata");
        o.remove("status");
    }
    v
}

impl Stored {
    /// Every manager's config and the patches, merged.
    pub fn merged(&self) -> Value {
        let mut content = json!({});
        for (_, config) in &self.applied {
            deep_merge(&mut content, config);
        }
        deep_merge(&mut content, &self.patched);
        content
    }

    /// The object as the server returns it, before the handler adds
    /// status and server-filled fields.
    pub fn render(&self) -> Value {
        let mut object = self.merged();
        let managers: Vec<Value> = self
            .applied
            .iter()
            .map(|(m, _)| json!({"manager": m, "operation": "Apply"}))
            .chain(
                self.updated_by
                    .iter()
                    .map(|m| json!({"manager": m, "operation": "Update"})),
            )
            .collect();
        let meta = &mut object["metadata"];
        meta["uid"] = json!(self.uid);
        meta["resourceVersion"] = json!(self.resource_version.to_string());
        meta["creationTimestamp"] = json!("2025-01-01T10:00:00Z");
        meta["generation"] = json!(self.generation);
        meta["managedFields"] = json!(managers);
        if self.terminating {
            meta["deletionTimestamp"] = json!("2025-01-01T11:00:00Z");
        }
        if let Some(status) = &self.status {
            object["status"] = status.clone();
        }
        object
    }
}

impl Store {
    /// Server-side apply of `body` as `manager`: creates the object or
    /// replaces that manager's config. A `status` in the body is pinned
    /// (seeded objects carry theirs).
    pub fn apply(&mut self, key: &Key, manager: &str, mut body: Value) {
        let status = body.as_object_mut().and_then(|o| o.remove("status"));
        let fresh_uid = format!("uid-{}", self.next_rv);
        let stored = self.objects.entry(key.clone()).or_insert_with(|| Stored {
            applied: Vec::new(),
            patched: json!({}),
            updated_by: Vec::new(),
            uid: fresh_uid,
            resource_version: 0,
            generation: 0,
            status: None,
            content: Value::Null,
            terminating: false,
        });
        if status.is_some() {
            stored.status = status;
        }
        match stored.applied.iter_mut().find(|(m, _)| m == manager) {
            Some((_, config)) => *config = body,
            None => stored.applied.push((manager.to_owned(), body)),
        }
        self.bump(key);
    }

    /// A merge patch by `manager`. A key the patch deletes from `data` is
    /// removed from every applied config too. `false`: no such object.
    pub fn merge_patch(&mut self, key: &Key, manager: &str, patch: &Value) -> bool {
        let Some(stored) = self.objects.get_mut(key) else {
            return false;
        };
        deep_merge(&mut stored.patched, patch);
        if let Some(data) = patch["data"].as_object() {
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
        if !stored.updated_by.iter().any(|m| m == manager) {
            stored.updated_by.push(manager.to_owned());
        }
        self.bump(key);
        true
    }

    /// A new resourceVersion when the content changed, and a new
    /// generation when more than metadata changed.
    fn bump(&mut self, key: &Key) {
        self.next_rv += 1;
        let rv = self.next_rv;
        if let Some(stored) = self.objects.get_mut(key) {
            let content = stored.merged();
            if stored.content != content {
                if stored.generation == 0
                    || without_metadata_and_status(&stored.content)
                        != without_metadata_and_status(&content)
                {
                    stored.generation += 1;
                }
                stored.content = content;
                stored.resource_version = rv;
            }
        }
    }

    /// A status change (a test pinning one): a new resourceVersion.
    pub fn set_status(&mut self, key: &Key, status: Option<Value>) -> bool {
        self.next_rv += 1;
        let rv = self.next_rv;
        match self.objects.get_mut(key) {
            Some(stored) => {
                stored.status = status;
                stored.resource_version = rv;
                true
            }
            None => false,
        }
    }
}
