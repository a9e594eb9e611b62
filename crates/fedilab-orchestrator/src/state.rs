//! A lab's state on the host, under `<data_dir>/labs/<lab>/` (0700):
//!
//! ```text
//! secrets.json   0600  every generated secret, per instance; made once and
//!                      reused, so `up` twice applies identical Secrets
//! lab.json       0600  the domain, namespace, node address, instance URLs,
//!                      the inspector's upstreams and the host side's
//!                      addresses: what `status`, `creds`, `down` and
//!                      `serve` need
//! attached.json  0600  the host servers `fedilab attach` made members of
//!                      the lab; `up` keeps them
//! ```
//!
//! Writes go to a temp file in the same directory (mode set at creation),
//! are synced and renamed over the target. Files only: no cluster.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use fedilab_manifest::{LabSecrets, MastodonSecrets};
use fedilab_profile::{InstanceSpecKind, LabName, LabSpec, names};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;
const SECRETS_FILE: &str = "secrets.json";
const STATE_FILE: &str = "lab.json";
const ATTACHED_FILE: &str = "attached.json";
/// Present while an `up` is applying (see [`LabDir::apply_pending`]).
const APPLY_PENDING_FILE: &str = "apply-pending.json";

/// A lab state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading, writing, creating or removing failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not what fedilab wrote.
    #[error("{path} is damaged ({message}); move it away and run the command again")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

/// What `status`, `creds`, `down` and `serve` need to know about a lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    /// The lab's name.
    pub lab: String,
    /// Its domain.
    pub domain: String,
    /// Its namespace.
    pub namespace: String,
    /// The node address Traefik listens on (for host DNS).
    pub node_address: Option<String>,
    /// Its instances, attached servers included.
    pub instances: Vec<StoredInstance>,
    /// Where the host side (`fedilab serve`) listens; absent in labs saved
    /// by older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serve: Option<ServeSettings>,
}

/// One instance in [`LabState`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredInstance {
    /// Its name.
    pub name: String,
    /// Its host name.
    pub host: String,
    /// `https://<host>/`.
    pub url: String,
    /// What runs behind it.
    #[serde(default)]
    pub kind: StoredKind,
    /// Where the inspector sends requests for `host`: the longest matching
    /// path prefix wins. Empty until `up` has read the Services' addresses,
    /// and when Traefik routes straight to the instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<StoredUpstream>,
}

/// What runs behind a [`StoredInstance`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoredKind {
    /// Mastodon in the cluster.
    #[default]
    Mastodon,
    /// A server outside the cluster, declared in the profile
    /// (`kind: external`).
    External,
    /// A server outside the cluster, added by `fedilab attach`.
    Attached,
}

/// One upstream of a [`StoredInstance`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredUpstream {
    /// `/` or a prefix such as `/api/v1/streaming`.
    pub path_prefix: String,
    /// `http://ADDRESS:PORT`.
    pub url: String,
}

/// Where the lab's host side listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServeSettings {
    /// The embedded DNS (UDP and TCP), normally on loopback.
    pub dns: SocketAddr,
    /// The inspector's proxy, on the node address so Traefik reaches it;
    /// `None` when the lab runs without the inspector (`up --no-inspector`).
    pub proxy: Option<SocketAddr>,
    /// The inspector's UI and JSON API, on loopback; `None` without the
    /// inspector.
    pub ui: Option<SocketAddr>,
}

/// A host server made a member of the lab by `fedilab attach`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedServer {
    /// Its instance name (`<name>.<domain>` is its host).
    pub name: String,
    /// Where it listens on the host: `http://127.0.0.1:PORT`.
    pub url: String,
}

impl ServeSettings {
    /// Where lab `lab`'s host side listens on `node`: the `saved` addresses
    /// when the inspector choice is unchanged (ports kept, the proxy moved
    /// to `node`), else [`ServeSettings::choose`] against the other labs
    /// saved under `data_dir`.
    pub fn for_lab(
        data_dir: &Path,
        lab: &LabName,
        saved: Option<&ServeSettings>,
        node: IpAddr,
        inspector: bool,
    ) -> ServeSettings {
        if let Some(saved) = saved
            && saved.proxy.is_some() == inspector
        {
            return ServeSettings {
                proxy: saved.proxy.map(|p| SocketAddr::new(node, p.port())),
                ..saved.clone()
            };
        }
        let taken: Vec<ServeSettings> = other_lab_states(data_dir, lab)
            .into_iter()
            .filter_map(|s| s.serve)
            .collect();
        ServeSettings::choose(node, inspector, &taken)
    }

    /// The host side's addresses for a lab: the default ports
    /// ([`names::SERVE_DNS_PORT`] and the next ones), or the first block of
    /// [`names::SERVE_PORT_STRIDE`] above them that no lab in `taken` uses.
    /// The proxy listens on `node` (Traefik reaches it there), the DNS and
    /// the UI on loopback. Without the inspector there is no proxy or UI.
    pub fn choose(node: IpAddr, inspector: bool, taken: &[ServeSettings]) -> ServeSettings {
        let used: Vec<u16> = taken
            .iter()
            .flat_map(|s| [Some(s.dns), s.proxy, s.ui])
            .flatten()
            .map(|a| a.port())
            .collect();
        let loopback = IpAddr::from([127, 0, 0, 1]);
        let mut block = 0u16;
        loop {
            let offset = block.saturating_mul(names::SERVE_PORT_STRIDE);
            let ports = [
                names::SERVE_DNS_PORT,
                names::SERVE_PROXY_PORT,
                names::SERVE_UI_PORT,
            ]
            .map(|p| p.saturating_add(offset));
            if offset > 1000 || !ports.iter().any(|p| used.contains(p)) {
                let [dns, proxy, ui] = ports;
                return ServeSettings {
                    dns: SocketAddr::new(loopback, dns),
                    proxy: inspector.then_some(SocketAddr::new(node, proxy)),
                    ui: inspector.then_some(SocketAddr::new(loopback, ui)),
                };
            }
            block += 1;
        }
    }
}

#[derive(Default, Serialize, Deserialize)]
struct AttachedFile {
    servers: Vec<AttachedServer>,
}

impl LabState {
    /// The state of `spec` with the node address preflight found; no
    /// upstreams and no host-side settings yet.
    pub fn from_spec(spec: &LabSpec, node_address: Option<&str>) -> LabState {
        LabState {
            lab: spec.name.to_string(),
            domain: spec.domain.to_string(),
            namespace: fedilab_profile::names::namespace(&spec.name),
            node_address: node_address.map(str::to_owned),
            instances: spec
                .instances
                .iter()
                .map(|i| StoredInstance {
                    name: i.name.to_string(),
                    host: i.host.to_string(),
                    url: format!("https://{}/", i.host),
                    kind: match i.kind {
                        InstanceSpecKind::Mastodon(_) => StoredKind::Mastodon,
                        InstanceSpecKind::External(_) => StoredKind::External,
                    },
                    upstreams: match &i.kind {
                        InstanceSpecKind::Mastodon(_) => Vec::new(),
                        InstanceSpecKind::External(e) => vec![StoredUpstream {
                            path_prefix: "/".to_owned(),
                            url: e.url.to_string(),
                        }],
                    },
                })
                .collect(),
            serve: None,
        }
    }

    /// Sets the Mastodon instances' upstreams (from
    /// [`crate::instance_upstreams`]) and marks the external instances that
    /// `fedilab attach` added as attached.
    pub fn route(
        &mut self,
        upstreams: &BTreeMap<String, Vec<StoredUpstream>>,
        attached: &[AttachedServer],
    ) {
        for instance in &mut self.instances {
            if let Some(u) = upstreams.get(&instance.name)
                && instance.kind == StoredKind::Mastodon
            {
                instance.upstreams.clone_from(u);
            }
            if instance.kind == StoredKind::External
                && attached.iter().any(|a| a.name == instance.name)
            {
                instance.kind = StoredKind::Attached;
            }
        }
    }

    /// The instance called `name`, if any.
    pub fn instance(&self, name: &str) -> Option<&StoredInstance> {
        self.instances.iter().find(|i| i.name == name)
    }
}

/// Serialized [`MastodonSecrets`]; field names are the file format.
#[derive(Clone, Serialize, Deserialize)]
struct StoredSecrets {
    secret_key_base: String,
    otp_secret: String,
    vapid_private_key: String,
    vapid_public_key: String,
    ar_deterministic_key: String,
    ar_key_derivation_salt: String,
    ar_primary_key: String,
    db_password: String,
    admin_password: String,
    api_token: String,
}

impl From<&MastodonSecrets> for StoredSecrets {
    fn from(s: &MastodonSecrets) -> Self {
        StoredSecrets {
            secret_key_base: s.secret_key_base.clone(),
            otp_secret: s.otp_secret.clone(),
            vapid_private_key: s.vapid_private_key.clone(),
            vapid_public_key: s.vapid_public_key.clone(),
            ar_deterministic_key: s.ar_deterministic_key.clone(),
            ar_key_derivation_salt: s.ar_key_derivation_salt.clone(),
            ar_primary_key: s.ar_primary_key.clone(),
            db_password: s.db_password.clone(),
            admin_password: s.admin_password.clone(),
            api_token: s.api_token.clone(),
        }
    }
}

impl From<StoredSecrets> for MastodonSecrets {
    fn from(s: StoredSecrets) -> Self {
        MastodonSecrets {
            secret_key_base: s.secret_key_base,
            otp_secret: s.otp_secret,
            vapid_private_key: s.vapid_private_key,
            vapid_public_key: s.vapid_public_key,
            ar_deterministic_key: s.ar_deterministic_key,
            ar_key_derivation_salt: s.ar_key_derivation_salt,
            ar_primary_key: s.ar_primary_key,
            db_password: s.db_password,
            admin_password: s.admin_password,
            api_token: s.api_token,
        }
    }
}

#[derive(Default, Serialize, Deserialize)]
struct SecretsFile {
    instances: BTreeMap<String, StoredSecrets>,
}

/// One lab's state directory.
#[derive(Debug, Clone)]
pub struct LabDir {
    dir: PathBuf,
}

impl LabDir {
    /// `<data_dir>/labs/<lab>/` (not created until something is saved).
    pub fn new(data_dir: &Path, lab: &LabName) -> LabDir {
        LabDir {
            dir: data_dir.join("labs").join(lab.as_str()),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Whether anything was saved.
    pub fn exists(&self) -> bool {
        self.dir.exists()
    }

    /// The lab's secrets: the saved ones, plus fresh ones (from OS
    /// randomness) for instances that have none yet, which are saved
    /// before returning. Instances no longer in `spec` keep theirs on disk.
    ///
    /// # Errors
    /// [`StateError`] when the file cannot be read, parsed or written.
    pub fn secrets(&self, spec: &LabSpec) -> Result<LabSecrets, StateError> {
        self.secrets_with(spec, |seed| OsRng.fill_bytes(seed))
    }

    /// [`LabDir::secrets`] with a chosen source of seeds (tests).
    ///
    /// # Errors
    /// As [`LabDir::secrets`].
    pub fn secrets_with(
        &self,
        spec: &LabSpec,
        mut fill: impl FnMut(&mut [u8; 32]),
    ) -> Result<LabSecrets, StateError> {
        let path = self.dir.join(SECRETS_FILE);
        let mut file: SecretsFile = self.read_json(&path)?.unwrap_or_default();
        let mut changed = false;
        // External instances have no generated secrets.
        let mastodons = spec
            .instances
            .iter()
            .filter(|i| matches!(i.kind, InstanceSpecKind::Mastodon(_)));
        for instance in mastodons.clone() {
            if !file.instances.contains_key(instance.name.as_str()) {
                let mut seed = [0u8; 32];
                fill(&mut seed);
                let generated = MastodonSecrets::generate(seed, &instance.name);
                file.instances
                    .insert(instance.name.to_string(), StoredSecrets::from(&generated));
                changed = true;
            }
        }
        if changed {
            self.write_json(&path, &file)?;
        }
        let instances = mastodons
            .filter_map(|i| {
                let s = file.instances.get(i.name.as_str())?.clone();
                Some((i.name.clone(), MastodonSecrets::from(s)))
            })
            .collect();
        Ok(LabSecrets { instances })
    }

    /// The saved admin password and API token of `instance`, if any.
    ///
    /// # Errors
    /// [`StateError`] when the file cannot be read or parsed.
    pub fn admin_secrets(&self, instance: &str) -> Result<Option<(String, String)>, StateError> {
        let file: Option<SecretsFile> = self.read_json(&self.dir.join(SECRETS_FILE))?;
        Ok(file
            .and_then(|f| f.instances.get(instance).cloned())
            .map(|s| (s.admin_password, s.api_token)))
    }

    /// Saves what `status`, `creds` and `down` need.
    ///
    /// # Errors
    /// [`StateError`] when it cannot be written.
    pub fn save_state(&self, state: &LabState) -> Result<(), StateError> {
        self.write_json(&self.dir.join(STATE_FILE), state)
    }

    /// The saved state, if any.
    ///
    /// # Errors
    /// [`StateError`] when it cannot be read or parsed.
    pub fn load_state(&self) -> Result<Option<LabState>, StateError> {
        self.read_json(&self.dir.join(STATE_FILE))
    }

    /// The servers `fedilab attach` added, in the order they were added.
    ///
    /// # Errors
    /// [`StateError`] when the file cannot be read or parsed.
    pub fn attached(&self) -> Result<Vec<AttachedServer>, StateError> {
        let file: Option<AttachedFile> = self.read_json(&self.dir.join(ATTACHED_FILE))?;
        Ok(file.map(|f| f.servers).unwrap_or_default())
    }

    /// Saves the attached servers (an empty list removes the file).
    ///
    /// # Errors
    /// [`StateError`] when it cannot be written or removed.
    pub fn save_attached(&self, servers: &[AttachedServer]) -> Result<(), StateError> {
        let path = self.dir.join(ATTACHED_FILE);
        if servers.is_empty() {
            return remove_file(&path);
        }
        self.write_json(
            &path,
            &AttachedFile {
                servers: servers.to_vec(),
            },
        )
    }

    /// Whether an earlier `up` started applying and did not finish: it may
    /// have changed the lab's CoreDNS key without restarting CoreDNS, so the
    /// next apply must restart it even if the key looks unchanged.
    ///
    /// # Errors
    /// [`StateError`] when the marker cannot be read or parsed.
    pub fn apply_pending(&self) -> Result<bool, StateError> {
        Ok(self
            .read_json::<bool>(&self.dir.join(APPLY_PENDING_FILE))?
            .unwrap_or(false))
    }

    /// Marks an apply as started ([`LabDir::apply_pending`] until
    /// [`LabDir::finish_apply`]).
    ///
    /// # Errors
    /// [`StateError`] when it cannot be written.
    pub fn start_apply(&self) -> Result<(), StateError> {
        self.write_json(&self.dir.join(APPLY_PENDING_FILE), &true)
    }

    /// Marks the apply as finished.
    ///
    /// # Errors
    /// [`StateError`] when the marker cannot be removed.
    pub fn finish_apply(&self) -> Result<(), StateError> {
        remove_file(&self.dir.join(APPLY_PENDING_FILE))
    }

    /// Removes the directory and everything in it.
    ///
    /// # Errors
    /// [`StateError`] when it cannot be removed.
    pub fn remove(&self) -> Result<bool, StateError> {
        remove_dir(&self.dir)
    }

    fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &Path,
    ) -> Result<Option<T>, StateError> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Io {
                    action: "read",
                    path: path.to_owned(),
                    source,
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StateError::Damaged {
                path: path.to_owned(),
                message: e.to_string(),
            })
    }

    fn write_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), StateError> {
        let io = |action, path: &Path| {
            let path = path.to_owned();
            move |source| StateError::Io {
                action,
                path,
                source,
            }
        };
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&self.dir)
            .map_err(io("create", &self.dir))?;
        fs::set_permissions(&self.dir, Permissions::from_mode(DIR_MODE))
            .map_err(io("restrict", &self.dir))?;
        let mut text = serde_json::to_string_pretty(value).map_err(|e| StateError::Damaged {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        text.push('\n');
        let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
        let tmp = self
            .dir
            .join(format!(".{file_name}.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(FILE_MODE)
                .open(&tmp)?;
            f.set_permissions(Permissions::from_mode(FILE_MODE))?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, path)
        };
        write().map_err(|source| {
            let _ = fs::remove_file(&tmp);
            StateError::Io {
                action: "write",
                path: path.to_owned(),
                source,
            }
        })
    }
}

/// Removes `path`; fine when it was not there.
fn remove_file(path: &Path) -> Result<(), StateError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StateError::Io {
            action: "remove",
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Removes `dir` recursively; `Ok(false)` when it was not there.
pub(crate) fn remove_dir(dir: &Path) -> Result<bool, StateError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(StateError::Io {
            action: "remove",
            path: dir.to_owned(),
            source,
        }),
    }
}

/// The saved states of every lab under `data_dir` except `except` (labs
/// whose state is missing or unreadable are skipped).
pub(crate) fn other_lab_states(data_dir: &Path, except: &LabName) -> Vec<LabState> {
    let Ok(entries) = fs::read_dir(data_dir.join("labs")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_str() != Some(except.as_str()))
        .filter_map(|e| fs::read_to_string(e.path().join(STATE_FILE)).ok())
        .filter_map(|t| serde_json::from_str::<LabState>(&t).ok())
        .collect()
}

/// Removes the lab CA of `domain`, `<data_dir>/ca/<domain>/`, unless the
/// saved state of another lab still uses that domain.
///
/// # Errors
/// [`StateError`] when it cannot be removed.
pub fn purge_ca(data_dir: &Path, domain: &str, except_lab: &LabName) -> Result<bool, StateError> {
    if other_lab_states(data_dir, except_lab)
        .iter()
        .any(|s| s.domain == domain)
    {
        return Ok(false);
    }
    if domain.is_empty() || domain.contains('/') || domain.starts_with('.') {
        return Ok(false);
    }
    remove_dir(&data_dir.join("ca").join(domain))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedilab_profile::Overrides;

    fn spec(n: usize) -> LabSpec {
        LabSpec::from_yaml(
            fedilab_profile::DEFAULT_PROFILE_YAML,
            "test",
            &Overrides {
                instances: Some(n),
                ..Overrides::default()
            },
        )
        .expect("valid")
    }

    #[test]
    fn secrets_are_generated_once_and_reused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let lab = LabDir::new(tmp.path(), &"main".parse().expect("valid"));
        let mut seeds = 0u8;
        let mut fill = |s: &mut [u8; 32]| {
            seeds += 1;
            s.fill(seeds);
        };
        let first = lab.secrets_with(&spec(2), &mut fill).expect("first");
        let again = lab.secrets_with(&spec(2), &mut fill).expect("again");
        assert_eq!(first, again);
        let more = lab.secrets_with(&spec(3), &mut fill).expect("more");
        assert_eq!(more.instances.len(), 3);
        for (name, s) in &first.instances {
            assert!(more.instances.get(name) == Some(s), "{name} kept");
        }
        assert_eq!(seeds, 3, "one seed per instance, ever");

        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(lab.path()), 0o700);
        assert_eq!(mode(&lab.path().join(SECRETS_FILE)), 0o600);
        let leftovers: Vec<_> = fs::read_dir(lab.path())
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn state_round_trips_and_purge_removes_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let name: LabName = "main".parse().expect("valid");
        let lab = LabDir::new(tmp.path(), &name);
        assert_eq!(lab.load_state().expect("none"), None);
        let state = LabState::from_spec(&spec(2), Some("192.0.2.10"));
        lab.save_state(&state).expect("save");
        assert_eq!(lab.load_state().expect("load"), Some(state.clone()));
        assert_eq!(state.instances[0].url, "https://mastodon1.fediverse.local/");
        fs::create_dir_all(tmp.path().join("ca/fediverse.local")).expect("ca dir");
        assert!(purge_ca(tmp.path(), "fediverse.local", &name).expect("purge"));
        assert!(lab.remove().expect("remove"));
        assert!(!lab.exists());
    }

    #[test]
    fn attached_servers_round_trip_and_old_state_still_reads() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let lab = LabDir::new(tmp.path(), &"main".parse().expect("valid"));
        assert_eq!(lab.attached().expect("none"), vec![]);
        let servers = vec![AttachedServer {
            name: "mine".to_owned(),
            url: "http://127.0.0.1:3000".to_owned(),
        }];
        lab.save_attached(&servers).expect("save");
        assert_eq!(lab.attached().expect("load"), servers);
        lab.save_attached(&[]).expect("empty");
        assert!(!lab.path().join(ATTACHED_FILE).exists());

        // lab.json as the first release wrote it: no kind, upstreams, serve.
        fs::write(
            lab.path().join(STATE_FILE),
            r#"{"lab":"main","domain":"fediverse.local","namespace":"fedilab-main",
               "node_address":null,"instances":[{"name":"mastodon1",
               "host":"mastodon1.fediverse.local","url":"https://mastodon1.fediverse.local/"}]}"#,
        )
        .expect("write");
        let state = lab.load_state().expect("load").expect("some");
        assert_eq!(state.instances[0].kind, StoredKind::Mastodon);
        assert!(state.instances[0].upstreams.is_empty());
        assert_eq!(state.serve, None);
    }

    #[test]
    fn serve_ports_default_then_step_past_other_labs() {
        let node: IpAddr = "192.0.2.10".parse().expect("ip");
        let first = ServeSettings::choose(node, true, &[]);
        assert_eq!(first.dns.to_string(), "127.0.0.1:5300");
        assert_eq!(
            first.proxy.map(|a| a.to_string()).as_deref(),
            Some("192.0.2.10:8480")
        );
        assert_eq!(
            first.ui.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:8481")
        );
        let second = ServeSettings::choose(node, true, std::slice::from_ref(&first));
        assert_eq!(second.dns.port(), 5310);
        assert_eq!(second.proxy.map(|a| a.port()), Some(8490));
        let third = ServeSettings::choose(node, false, &[first, second]);
        assert_eq!(third.dns.port(), 5320);
        assert_eq!((third.proxy, third.ui), (None, None));
    }

    #[test]
    fn a_lab_keeps_its_ports_and_follows_the_node() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let main: LabName = "main".parse().expect("valid");
        let other = LabDir::new(tmp.path(), &"other".parse().expect("valid"));
        let mut taken = LabState::from_spec(&spec(1), None);
        taken.serve = Some(ServeSettings::choose(
            "192.0.2.10".parse().expect("ip"),
            true,
            &[],
        ));
        other.save_state(&taken).expect("save");
        let node: IpAddr = "192.0.2.10".parse().expect("ip");
        let first = ServeSettings::for_lab(tmp.path(), &main, None, node, true);
        assert_eq!(first.dns.port(), 5310, "the other lab has 5300");
        let moved: IpAddr = "192.0.2.20".parse().expect("ip");
        let again = ServeSettings::for_lab(tmp.path(), &main, Some(&first), moved, true);
        assert_eq!(again.dns, first.dns);
        assert_eq!(
            again.proxy.map(|p| p.to_string()).as_deref(),
            Some("192.0.2.20:8490")
        );
        let direct = ServeSettings::for_lab(tmp.path(), &main, Some(&first), node, false);
        assert_eq!(direct.proxy, None, "the inspector choice changed");
    }

    #[test]
    fn damaged_file_says_what_to_do() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let lab = LabDir::new(tmp.path(), &"main".parse().expect("valid"));
        fs::create_dir_all(lab.path()).expect("dir");
        fs::write(lab.path().join(STATE_FILE), "{not json").expect("write");
        let err = lab.load_state().expect_err("damaged");
        assert!(err.to_string().contains("move it away"), "{err}");
    }
}
