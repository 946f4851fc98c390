//! Object storage with the API server's bookkeeping: one cluster-wide resourceVersion counter
//! (as etcd's revision), uid and creationTimestamp on create, optimistic concurrency on update,
//! a bounded event history for watches, and compaction (older resourceVersions answer 410 Gone).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::status::ApiError;

/// A resource the stand-in serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `certificatesigningrequests.certificates.k8s.io`, as error messages name it.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

pub const CSRS: ResourceType = ResourceType {
    group: "certificates.k8s.io",
    version: "v1",
    kind: "CertificateSigningRequest",
    plural: "certificatesigningrequests",
    namespaced: false,
};
pub const LEASES: ResourceType = ResourceType {
    group: "coordination.k8s.io",
    version: "v1",
    kind: "Lease",
    plural: "leases",
    namespaced: true,
};
pub const EVENTS: ResourceType = ResourceType {
    group: "events.k8s.io",
    version: "v1",
    kind: "Event",
    plural: "events",
    namespaced: true,
};
pub const CORE_EVENTS: ResourceType = ResourceType {
    group: "",
    version: "v1",
    kind: "Event",
    plural: "events",
    namespaced: true,
};

pub const ALL: &[ResourceType] = &[CSRS, LEASES, EVENTS, CORE_EVENTS];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub rv: u64,
    pub kind: EventType,
    pub object: Value,
}

type Key = (String, String);

struct Collection {
    objects: BTreeMap<Key, Value>,
    history: VecDeque<WatchEvent>,
    tx: broadcast::Sender<WatchEvent>,
}

impl Collection {
    fn new() -> Collection {
        Collection {
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            tx: broadcast::channel(4096).0,
        }
    }
}

pub struct Store {
    rv: u64,
    /// resourceVersions at or below this are compacted: watching or continuing from them is 410.
    horizon: u64,
    history_limit: usize,
    collections: HashMap<ResourceType, Collection>,
}

/// Random bits for uids and generated names (no randomness crate needed for a test server).
pub fn random_u64() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

pub fn new_uid() -> String {
    let a = random_u64();
    let b = random_u64();
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

/// The suffix the API server appends to generateName (`names.SimpleNameGenerator`: 5 chars).
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut r = random_u64();
    (0..5)
        .map(|_| {
            let c = ALPHABET[(r % ALPHABET.len() as u64) as usize] as char;
            r /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

pub fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or(jiff::Timestamp::now())
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

impl Store {
    pub fn new(history_limit: usize) -> Store {
        Store {
            rv: 1,
            horizon: 0,
            history_limit,
            collections: ALL.iter().map(|t| (*t, Collection::new())).collect(),
        }
    }

    fn collection(&mut self, t: ResourceType) -> &mut Collection {
        self.collections.entry(t).or_insert_with(Collection::new)
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn horizon(&self) -> u64 {
        self.horizon
    }

    /// Forget every event so far: any resourceVersion handed out before is now too old.
    pub fn compact(&mut self) {
        // A new revision marks the compaction: lists made after it can be watched from.
        self.rv += 1;
        self.horizon = self.rv;
        for c in self.collections.values_mut() {
            c.history.clear();
        }
    }

    fn record(&mut self, t: ResourceType, kind: EventType, object: &Value) {
        let rv = self.rv;
        let limit = self.history_limit;
        let c = self.collection(t);
        let event = WatchEvent {
            rv,
            kind,
            object: object.clone(),
        };
        c.history.push_back(event.clone());
        let mut dropped = None;
        while c.history.len() > limit {
            dropped = c.history.pop_front().map(|e| e.rv);
        }
        let _ = c.tx.send(event);
        if let Some(d) = dropped {
            self.horizon = self.horizon.max(d);
        }
    }

    /// Store a new object; fills name (from generateName), uid, resourceVersion and
    /// creationTimestamp.
    pub fn create(
        &mut self,
        t: ResourceType,
        namespace: &str,
        mut obj: Value,
    ) -> Result<Value, ApiError> {
        let meta = obj
            .as_object_mut()
            .ok_or_else(|| ApiError::bad_request("body is not an object"))?
            .entry("metadata")
            .or_insert_with(|| json!({}));
        if !meta.is_object() {
            return Err(ApiError::bad_request("metadata is not an object"));
        }
        let name = match meta
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            Some(n) => n.to_string(),
            None => match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => format!("{prefix}{}", name_suffix()),
                _ => {
                    return Err(ApiError::invalid(
                        t,
                        "",
                        "metadata.name: Required value: name or generateName is required",
                    ));
                }
            },
        };
        let key = (namespace.to_string(), name.clone());
        if self.collection(t).objects.contains_key(&key) {
            return Err(ApiError::already_exists(t, &name));
        }
        self.rv += 1;
        let rv = self.rv;
        meta["name"] = json!(name);
        if t.namespaced {
            meta["namespace"] = json!(namespace);
        }
        meta["uid"] = json!(new_uid());
        meta["resourceVersion"] = json!(rv.to_string());
        meta["creationTimestamp"] = json!(now());
        obj["apiVersion"] = json!(t.api_version());
        obj["kind"] = json!(t.kind);
        self.collection(t).objects.insert(key, obj.clone());
        self.record(t, EventType::Added, &obj);
        Ok(obj)
    }

    pub fn get(&mut self, t: ResourceType, namespace: &str, name: &str) -> Result<Value, ApiError> {
        self.collection(t)
            .objects
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
            .ok_or_else(|| ApiError::not_found(t, name))
    }

    /// Objects in `namespace` (all namespaces for `None`), in name order.
    pub fn list(&mut self, t: ResourceType, namespace: Option<&str>) -> Vec<Value> {
        self.collection(t)
            .objects
            .iter()
            .filter(|((ns, _), _)| namespace.is_none_or(|want| ns == want))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Replace an object. `expected_rv` (the body's resourceVersion) must match when given:
    /// otherwise 409 Conflict, as the API server's optimistic concurrency does.
    pub fn update(
        &mut self,
        t: ResourceType,
        namespace: &str,
        name: &str,
        mut obj: Value,
        expected_rv: Option<&str>,
    ) -> Result<Value, ApiError> {
        let current = self.get(t, namespace, name)?;
        if let Some(expected) = expected_rv.filter(|e| !e.is_empty())
            && meta_str(&current, "resourceVersion") != Some(expected)
        {
            return Err(ApiError::conflict(t, name));
        }
        // Identity fields are the server's.
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "generateName",
        ] {
            match current["metadata"].get(field) {
                Some(v) => obj["metadata"][field] = v.clone(),
                None => {
                    if let Some(m) = obj["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        if obj == current {
            return Ok(current); // no-op updates do not bump resourceVersion
        }
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        obj["apiVersion"] = json!(t.api_version());
        obj["kind"] = json!(t.kind);
        self.collection(t)
            .objects
            .insert((namespace.to_string(), name.to_string()), obj.clone());
        self.record(t, EventType::Modified, &obj);
        Ok(obj)
    }

    pub fn delete(
        &mut self,
        t: ResourceType,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        let mut obj = self
            .collection(t)
            .objects
            .remove(&(namespace.to_string(), name.to_string()))
            .ok_or_else(|| ApiError::not_found(t, name))?;
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(t, EventType::Deleted, &obj);
        Ok(obj)
    }

    /// Events after `rv`, or 410 when `rv` is compacted; and a receiver for what follows.
    pub fn watch_from(
        &mut self,
        t: ResourceType,
        rv: u64,
    ) -> Result<(Vec<WatchEvent>, broadcast::Receiver<WatchEvent>), ApiError> {
        if rv < self.horizon {
            return Err(ApiError::gone(format!(
                "too old resource version: {rv} ({})",
                self.horizon + 1
            )));
        }
        let c = self.collection(t);
        let rx = c.tx.subscribe();
        let past = c.history.iter().filter(|e| e.rv > rv).cloned().collect();
        Ok((past, rx))
    }

    /// Synthetic ADDED events for everything now, and a receiver for what follows.
    pub fn watch_current(
        &mut self,
        t: ResourceType,
    ) -> (Vec<WatchEvent>, broadcast::Receiver<WatchEvent>, u64) {
        let rv = self.rv;
        let c = self.collection(t);
        let rx = c.tx.subscribe();
        let events = c
            .objects
            .values()
            .map(|o| WatchEvent {
                rv,
                kind: EventType::Added,
                object: o.clone(),
            })
            .collect();
        (events, rx, rv)
    }
}
