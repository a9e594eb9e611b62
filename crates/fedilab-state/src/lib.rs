//! A lab's state on the host, under `<data_dir>/labs/<lab>/` (0700):
//!
//! ```text
//! secrets.json        0600  every generated secret, per instance; made once
//!                           and reused, so `up` twice applies identical
//!                           Secrets
//! lab.json            0600  the domain, namespace, node address, instance
//!                           URLs, the inspector's upstreams and the host
//!                           side's addresses: what `status`, `creds`,
//!                           `down` and `serve` need ([`LabState`])
//! attached.json       0600  the host servers `fedilab attach` made members
//!                           of the lab; `up` keeps them
//! apply-pending.json  0600  present while an `up` applies
//! ```
//!
//! Writes go to a temp file in the same directory (mode set at creation),
//! are synced and renamed over the target. Files only: no cluster, no
//! network. The lab CA's directory is `fedilab-ca`'s, not this crate's.
#![warn(missing_docs, clippy::print_stdout, clippy::dbg_macro)]

mod model;
mod secrets;

use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use fedilab_manifest::{LabSecrets, MastodonSecrets};
use fedilab_profile::{Domain, InstanceName, LabName, LabSpec};
use rand_core::{OsRng, RngCore};
use serde::Serialize;

pub use model::{
    AttachedServer, LabState, ServeSettings, StoredInstance, StoredKind, StoredUpstream,
};
use secrets::{SecretsFile, StoredSecrets};

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;
const SECRETS_FILE: &str = "secrets.json";
const STATE_FILE: &str = "lab.json";
const ATTACHED_FILE: &str = "attached.json";
/// Present while an `up` is applying (see [`LabDir::apply_pending`]).
const APPLY_PENDING_FILE: &str = "apply-pending.json";

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct AttachedFile {
    servers: Vec<AttachedServer>,
}

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
        let mastodons = spec.instances.iter().filter(|i| i.kind.runs_in_cluster());
        for instance in mastodons.clone() {
            if !file.instances.contains_key(instance.name.as_str()) {
                let mut seed = [0u8; 32];
                fill(&mut seed);
                let generated = MastodonSecrets::generate_for(&instance.kind, seed, &instance.name);
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

    /// The saved secrets of `instance`, if any (backup and restore).
    ///
    /// # Errors
    /// [`StateError`] when the file cannot be read or parsed.
    pub fn instance_secrets(&self, instance: &str) -> Result<Option<MastodonSecrets>, StateError> {
        let file: Option<SecretsFile> = self.read_json(&self.dir.join(SECRETS_FILE))?;
        Ok(file
            .and_then(|mut f| f.instances.remove(instance))
            .map(MastodonSecrets::from))
    }

    /// Replaces the saved secrets of `instance` (restore and import: the
    /// restored data's keys); the other instances' stay.
    ///
    /// # Errors
    /// [`StateError`] when the file cannot be read, parsed or written.
    pub fn set_instance_secrets(
        &self,
        instance: &str,
        secrets: &MastodonSecrets,
    ) -> Result<(), StateError> {
        let path = self.dir.join(SECRETS_FILE);
        let mut file: SecretsFile = self.read_json(&path)?.unwrap_or_default();
        file.instances
            .insert(instance.to_owned(), StoredSecrets::from(secrets));
        self.write_json(&path, &file)
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

    /// Records `server` as attached to the lab whose saved `state` this is:
    /// in `attached.json` (so the next `up` keeps it) and as an instance in
    /// `lab.json` (so `serve` routes it), replacing an earlier entry of the
    /// same name. Returns the updated state.
    ///
    /// # Errors
    /// [`StateError`] when a file cannot be read or written.
    pub fn record_attached(
        &self,
        mut state: LabState,
        server: &AttachedServer,
    ) -> Result<LabState, StateError> {
        let mut attached = self.attached()?;
        attached.retain(|a| a.name != server.name);
        attached.push(server.clone());
        self.save_attached(&attached)?;
        state.instances.retain(|i| i.name != server.name);
        state
            .instances
            .push(StoredInstance::attached(server, &state.domain));
        self.save_state(&state)?;
        Ok(state)
    }

    /// Forgets the attached server `name` in both files. Returns the
    /// updated state and whether the state listed it.
    ///
    /// # Errors
    /// [`StateError`] when a file cannot be read or written.
    pub fn forget_attached(
        &self,
        mut state: LabState,
        name: &InstanceName,
    ) -> Result<(LabState, bool), StateError> {
        let mut attached = self.attached()?;
        attached.retain(|a| &a.name != name);
        self.save_attached(&attached)?;
        let listed = state.instances.iter().any(|i| &i.name == name);
        state.instances.retain(|i| &i.name != name);
        self.save_state(&state)?;
        Ok((state, listed))
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
fn remove_dir(dir: &Path) -> Result<bool, StateError> {
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
fn other_lab_states(data_dir: &Path, except: &LabName) -> Vec<LabState> {
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

/// Whether the saved state of a lab other than `except` uses `domain`
/// (its CA must then stay).
pub fn domain_in_use(data_dir: &Path, domain: &Domain, except: &LabName) -> bool {
    other_lab_states(data_dir, except)
        .iter()
        .any(|s| &s.domain == domain)
}

/// Where the host sides of the labs other than `except` listen (a new
/// lab's ports step past them).
pub fn other_serve_settings(data_dir: &Path, except: &LabName) -> Vec<ServeSettings> {
    other_lab_states(data_dir, except)
        .into_iter()
        .filter_map(|s| s.serve)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedilab_profile::{InstanceCounts, Overrides};
    use std::net::IpAddr;

    fn spec(n: usize) -> LabSpec {
        LabSpec::from_yaml(
            fedilab_profile::DEFAULT_PROFILE_YAML,
            "test",
            &Overrides {
                instances: Some(InstanceCounts::Total(n)),
                ..Overrides::default()
            },
        )
        .expect("valid")
    }

    #[test]
    fn the_profiles_fault_rules_are_saved_only_when_there_are_some() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let lab = LabDir::new(tmp.path(), &"main".parse().expect("valid"));
        let plain = LabState::from_spec(&spec(2), None);
        lab.save_state(&plain).expect("save");
        let text = fs::read_to_string(lab.path().join("lab.json")).expect("read");
        assert!(!text.contains("faults"), "lab.json as before: {text}");

        let with_rules = LabSpec::from_yaml(
            "instances: [{}]\ninspector:\n  faults:\n    - match: { host: mastodon1, probability: 0.25 }\n      action: { corrupt: body }\n",
            "test",
            &Overrides::default(),
        )
        .expect("valid");
        let state = LabState::from_spec(&with_rules, None);
        assert_eq!(state.faults, with_rules.inspector.faults);
        lab.save_state(&state).expect("save");
        assert_eq!(lab.load_state().expect("load"), Some(state));
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
    fn one_instances_secrets_are_replaced_and_the_others_kept() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let lab = LabDir::new(tmp.path(), &"main".parse().expect("valid"));
        let all = lab
            .secrets_with(&spec(2), |s| s.fill(1))
            .expect("generated");
        assert_eq!(lab.instance_secrets("nope").expect("read"), None);
        let restored = MastodonSecrets::generate([9; 32], &"mastodon1".parse().expect("name"));
        lab.set_instance_secrets("mastodon1", &restored)
            .expect("saved");
        assert!(lab.instance_secrets("mastodon1").expect("read") == Some(restored.clone()));
        let other: InstanceName = "mastodon2".parse().expect("name");
        assert!(
            lab.instance_secrets("mastodon2").expect("read").as_ref() == all.instances.get(&other)
        );
        assert_eq!(
            lab.admin_secrets("mastodon1").expect("read"),
            Some((restored.admin_password, restored.api_token))
        );
    }

    #[test]
    fn state_round_trips_and_remove_removes_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let name: LabName = "main".parse().expect("valid");
        let lab = LabDir::new(tmp.path(), &name);
        assert_eq!(lab.load_state().expect("none"), None);
        let state = LabState::from_spec(&spec(2), Some([192, 0, 2, 10].into()));
        lab.save_state(&state).expect("save");
        assert_eq!(lab.load_state().expect("load"), Some(state.clone()));
        assert_eq!(state.instances[0].url, "https://mastodon1.fediverse.local/");
        let domain: Domain = "fediverse.local".parse().expect("domain");
        let other: LabName = "other".parse().expect("valid");
        assert!(domain_in_use(tmp.path(), &domain, &other));
        assert!(!domain_in_use(tmp.path(), &domain, &name));
        assert!(lab.remove().expect("remove"));
        assert!(!lab.exists());
    }

    #[test]
    fn attached_servers_round_trip_and_old_state_still_reads() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let lab = LabDir::new(tmp.path(), &"main".parse().expect("valid"));
        assert_eq!(lab.attached().expect("none"), vec![]);
        let servers = vec![AttachedServer {
            name: "mine".parse().expect("name"),
            url: "http://127.0.0.1:3000".parse().expect("url"),
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
    fn attach_is_recorded_in_both_files_and_forgotten_from_both() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let lab = LabDir::new(tmp.path(), &"main".parse().expect("valid"));
        let state = LabState::from_spec(&spec(1), None);
        let server = AttachedServer {
            name: "mine".parse().expect("name"),
            url: "http://127.0.0.1:3000".parse().expect("url"),
        };
        let state = lab.record_attached(state, &server).expect("record");
        let again = lab.record_attached(state, &server).expect("again");
        assert_eq!(lab.attached().expect("attached"), vec![server.clone()]);
        let saved = lab.load_state().expect("load").expect("some");
        assert_eq!(saved, again);
        let mine = saved.instance("mine").expect("listed");
        assert_eq!(
            (
                mine.kind,
                mine.url.as_str(),
                mine.upstreams[0].url.to_string()
            ),
            (
                StoredKind::Attached,
                "https://mine.fediverse.local/",
                "http://127.0.0.1:3000".to_owned()
            )
        );
        assert_eq!(saved.instances.len(), 2, "replaced, not added twice");
        let (state, listed) = lab.forget_attached(saved, &server.name).expect("forget");
        assert!(listed);
        assert_eq!(state.instances.len(), 1);
        assert_eq!(lab.attached().expect("attached"), vec![]);
        assert_eq!(lab.load_state().expect("load"), Some(state));
    }

    #[test]
    fn a_damaged_name_in_the_state_is_reported_with_the_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let lab = LabDir::new(tmp.path(), &"main".parse().expect("valid"));
        fs::create_dir_all(lab.path()).expect("dir");
        fs::write(
            lab.path().join(STATE_FILE),
            r#"{"lab":"main","domain":"Not A Domain","namespace":"fedilab-main",
               "node_address":null,"instances":[]}"#,
        )
        .expect("write");
        let err = lab.load_state().expect_err("damaged");
        assert!(err.to_string().contains("lab.json is damaged"), "{err}");

        // A node address that is not an IP address; an https upstream.
        for (bad, why) in [
            (r#""node_address":"node-1","instances":[]"#, "node address"),
            (
                r#""node_address":null,"instances":[{"name":"m1","host":"m1.fediverse.local",
                   "url":"https://m1.fediverse.local/",
                   "upstreams":[{"path_prefix":"/","url":"https://10.43.0.10"}]}]"#,
                "upstream",
            ),
        ] {
            fs::write(
                lab.path().join(STATE_FILE),
                format!(r#"{{"lab":"main","domain":"fediverse.local","namespace":"fedilab-main",{bad}}}"#),
            )
            .expect("write");
            let err = lab.load_state().expect_err(why);
            assert!(err.to_string().contains("move it away"), "{why}: {err}");
        }
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
        let others = other_serve_settings(tmp.path(), &main);
        let node: IpAddr = "192.0.2.10".parse().expect("ip");
        let first = ServeSettings::for_lab(None, node, true, &others);
        assert_eq!(first.dns.port(), 5310, "the other lab has 5300");
        let moved: IpAddr = "192.0.2.20".parse().expect("ip");
        let again = ServeSettings::for_lab(Some(&first), moved, true, &others);
        assert_eq!(again.dns, first.dns);
        assert_eq!(
            again.proxy.map(|p| p.to_string()).as_deref(),
            Some("192.0.2.20:8490")
        );
        let direct = ServeSettings::for_lab(Some(&first), node, false, &others);
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
