//! [`CaStore`]: the thin file-system layer over [`crate::issue`].
//!
//! Layout, one directory per lab domain under the data dir:
//!
//! ```text
//! <data_dir>/ca/<domain>/            0700
//!     ca.pem                         0644  the root certificate
//!     ca.key                         0600  its key
//!     <host>.pem, <host>.key         0644, 0600  one leaf per host
//!     .lock                                 serialises writers
//! ```
//!
//! Every write goes to a temp file in the same directory, gets its mode, is
//! synced and renamed over the target, so readers see the old file or the new
//! one, never half of either. A key file that group or others may read is
//! refused, not silently fixed: the user should know it was exposed.
//! This module reads and writes files only; it never prints.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use fedilab_profile::Domain;

use crate::host::HostName;
use crate::issue::{Ca, CaParseError, IssueError, KeyPem, Leaf, Reissue};

const CERT_MODE: u32 = 0o644;
const KEY_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

/// Where one lab domain's CA and leaves live.
#[derive(Debug, Clone)]
pub struct CaStore {
    domain: Domain,
    dir: PathBuf,
}

/// The two files of a stored leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafPaths {
    /// The certificate, `<host>.pem`.
    pub cert: PathBuf,
    /// Its key, `<host>.key`.
    pub key: PathBuf,
}

/// Whether [`CaStore::load_or_init`] made a new root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// A new root was generated and written.
    Created,
    /// The stored root was loaded.
    Existing,
}

/// What [`CaStore::ensure_leaf`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeafAction {
    /// The stored leaf was still good and is returned unchanged.
    Reused,
    /// A new leaf was issued and written, for this reason.
    Issued(Reissue),
    /// A new leaf was issued because the caller asked for one.
    Forced,
}

/// A leaf as stored, and how it got there.
#[derive(Debug, Clone)]
pub struct StoredLeaf {
    /// Its files.
    pub paths: LeafPaths,
    /// Its PEMs.
    pub leaf: Leaf,
    /// Reused or issued.
    pub action: LeafAction,
}

/// Why the stored root cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Neither `ca.pem` nor `ca.key` exists.
    #[error("there is no CA for {domain} in {} yet", dir.display())]
    NotInitialized {
        /// The lab domain.
        domain: Domain,
        /// Where it would be.
        dir: PathBuf,
    },
    /// One of the pair is missing.
    #[error(
        "{} exists but {} does not: an earlier run was interrupted or a file was removed; \
         move {} away to start a new CA (and re-run `fedilab ca trust`)",
        present.display(), missing.display(), dir.display()
    )]
    Incomplete {
        /// The file that exists.
        present: PathBuf,
        /// The file that does not.
        missing: PathBuf,
        /// The CA directory.
        dir: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The key file is readable by group or others.
    #[error(
        "{} is readable by group or others (mode {mode:03o}), so the lab CA key may have \
         been exposed; fix it with `chmod 600 {}`",
        path.display(), path.display()
    )]
    InsecureKey {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The files do not make a usable root for this domain.
    #[error("the CA in {} is unusable", dir.display())]
    Invalid {
        /// The CA directory.
        dir: PathBuf,
        /// What is wrong.
        #[source]
        source: CaParseError,
    },
}

/// Why [`CaStore::load_or_init`] failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The CA directory could not be created or restricted to 0700.
    #[error("cannot create the CA directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// An existing root could not be loaded.
    #[error(transparent)]
    Load(LoadError),
    /// A new root could not be made.
    #[error("cannot make a CA for {domain}")]
    Issue {
        /// The lab domain.
        domain: Domain,
        /// Why.
        #[source]
        source: IssueError,
    },
    /// A file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Why [`CaStore::ensure_leaf`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LeafError {
    /// No names were given.
    #[error("a certificate needs at least one host name")]
    NoNames,
    /// The lock file could not be opened or locked.
    #[error("cannot lock {}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A stored file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The stored key is readable by group or others.
    #[error(
        "{} is readable by group or others (mode {mode:03o}); fix it with `chmod 600 {}`",
        path.display(), path.display()
    )]
    InsecureKey {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The leaf could not be issued.
    #[error("cannot issue a certificate for {host}")]
    Issue {
        /// Its first name.
        host: HostName,
        /// Why.
        #[source]
        source: IssueError,
    },
    /// A file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Why the stored leaves cannot be listed.
#[derive(Debug, thiserror::Error)]
#[error("cannot list {}", dir.display())]
pub struct ListError {
    /// The CA directory.
    pub dir: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

impl CaStore {
    /// The store of `domain` under `data_dir`: `<data_dir>/ca/<domain>/`.
    /// Touches nothing until used.
    pub fn new(data_dir: &Path, domain: &Domain) -> CaStore {
        CaStore {
            domain: domain.clone(),
            dir: data_dir.join("ca").join(domain.as_str()),
        }
    }

    /// The lab domain.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// The CA directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `ca.pem`: the root certificate, the file to trust.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `ca.key`: the root's key.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    /// The files of the leaf whose first name is `host`.
    pub fn leaf_paths(&self, host: &HostName) -> LeafPaths {
        LeafPaths {
            cert: self.dir.join(format!("{host}.pem")),
            key: self.dir.join(format!("{host}.key")),
        }
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join(".lock")
    }

    /// Loads the stored root, refusing a key file that group or others may
    /// read.
    ///
    /// # Errors
    /// [`LoadError`], with the path concerned.
    pub fn load(&self) -> Result<Ca, LoadError> {
        let (cert_path, key_path) = (self.cert_path(), self.key_path());
        let cert_pem = read_optional(&cert_path).map_err(|source| LoadError::Read {
            path: cert_path.clone(),
            source,
        })?;
        let key_pem = read_key(&key_path).map_err(|e| match e {
            KeyReadError::Io(source) => LoadError::Read {
                path: key_path.clone(),
                source,
            },
            KeyReadError::Insecure(mode) => LoadError::InsecureKey {
                path: key_path.clone(),
                mode,
            },
        })?;
        match (cert_pem, key_pem) {
            (Some(cert), Some(key)) => {
                Ca::from_pem(&self.domain, &cert, &key).map_err(|source| LoadError::Invalid {
                    dir: self.dir.clone(),
                    source,
                })
            }
            (None, None) => Err(LoadError::NotInitialized {
                domain: self.domain.clone(),
                dir: self.dir.clone(),
            }),
            (Some(_), None) => Err(LoadError::Incomplete {
                present: cert_path,
                missing: key_path,
                dir: self.dir.clone(),
            }),
            (None, Some(_)) => Err(LoadError::Incomplete {
                present: key_path,
                missing: cert_path,
                dir: self.dir.clone(),
            }),
        }
    }

    /// Loads the stored root, or makes one (see [`Ca::generate`]) when there
    /// is none. Creates the directory with mode 0700, and tightens it to
    /// 0700 if it is looser.
    ///
    /// # Errors
    /// [`InitError`], with the path concerned.
    pub fn load_or_init(&self, made_on: &str, now: SystemTime) -> Result<(Ca, Init), InitError> {
        self.create_dir()?;
        let _lock =
            lock(&self.lock_path()).map_err(|(path, source)| InitError::Lock { path, source })?;
        match self.load() {
            Ok(ca) => Ok((ca, Init::Existing)),
            Err(LoadError::NotInitialized { .. }) => {
                let ca = Ca::generate(&self.domain, made_on, now).map_err(|source| {
                    InitError::Issue {
                        domain: self.domain.clone(),
                        source,
                    }
                })?;
                // Key first: a crash between the two leaves a key without a
                // certificate, which nobody can have trusted yet.
                let write = |path: PathBuf, text: &str, mode| {
                    write_atomic(&path, text, mode).map_err(|source| InitError::Write {
                        path: path.clone(),
                        source,
                    })
                };
                write(self.key_path(), ca.key_pem().expose(), KEY_MODE)?;
                write(self.cert_path(), ca.cert_pem(), CERT_MODE)?;
                Ok((ca, Init::Created))
            }
            Err(e) => Err(InitError::Load(e)),
        }
    }

    fn create_dir(&self) -> Result<(), InitError> {
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| InitError::CreateDir { path, source }
        };
        let parent = self.dir.parent().unwrap_or(&self.dir);
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(parent)
            .map_err(err(parent))?;
        match DirBuilder::new().mode(DIR_MODE).create(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(&self.dir)(e)),
        }
        let meta = fs::metadata(&self.dir).map_err(err(&self.dir))?;
        if !meta.is_dir() {
            return Err(err(&self.dir)(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "it exists and is not a directory",
            )));
        }
        if meta.permissions().mode() & 0o777 != DIR_MODE {
            fs::set_permissions(&self.dir, Permissions::from_mode(DIR_MODE))
                .map_err(err(&self.dir))?;
        }
        Ok(())
    }

    /// Returns the stored leaf for `names` (the first names its files) if
    /// [`Ca::check_leaf`] allows reusing it, byte for byte; otherwise issues
    /// a new one and writes it (key 0600, then certificate).
    ///
    /// The directory must exist: call [`CaStore::load_or_init`] first.
    ///
    /// # Errors
    /// [`LeafError`], with the path concerned. A key file that group or
    /// others may read is an error, not a reason to reissue.
    pub fn ensure_leaf(
        &self,
        ca: &Ca,
        names: &[HostName],
        now: SystemTime,
    ) -> Result<StoredLeaf, LeafError> {
        self.leaf(ca, names, now, false)
    }

    /// Issues and writes a new leaf for `names` whatever is stored.
    ///
    /// # Errors
    /// As [`CaStore::ensure_leaf`].
    pub fn reissue_leaf(
        &self,
        ca: &Ca,
        names: &[HostName],
        now: SystemTime,
    ) -> Result<StoredLeaf, LeafError> {
        self.leaf(ca, names, now, true)
    }

    fn leaf(
        &self,
        ca: &Ca,
        names: &[HostName],
        now: SystemTime,
        force: bool,
    ) -> Result<StoredLeaf, LeafError> {
        let first = names.first().ok_or(LeafError::NoNames)?;
        let _lock =
            lock(&self.lock_path()).map_err(|(path, source)| LeafError::Lock { path, source })?;
        let paths = self.leaf_paths(first);

        let action = if force {
            LeafAction::Forced
        } else {
            let cert = read_optional(&paths.cert).map_err(|source| LeafError::Read {
                path: paths.cert.clone(),
                source,
            })?;
            let key = read_key(&paths.key).map_err(|e| match e {
                KeyReadError::Io(source) => LeafError::Read {
                    path: paths.key.clone(),
                    source,
                },
                KeyReadError::Insecure(mode) => LeafError::InsecureKey {
                    path: paths.key.clone(),
                    mode,
                },
            })?;
            let reason = match (cert, key) {
                (Some(cert_pem), Some(key_pem)) => {
                    match ca.check_leaf(&cert_pem, &key_pem, names, now) {
                        Ok(()) => {
                            return Ok(StoredLeaf {
                                paths,
                                leaf: Leaf { cert_pem, key_pem },
                                action: LeafAction::Reused,
                            });
                        }
                        Err(reason) => reason,
                    }
                }
                _ => Reissue::Missing,
            };
            LeafAction::Issued(reason)
        };

        let leaf = ca
            .issue_leaf(names, now)
            .map_err(|source| LeafError::Issue {
                host: first.clone(),
                source,
            })?;
        let write = |path: &Path, text: &str, mode| {
            write_atomic(path, text, mode).map_err(|source| LeafError::Write {
                path: path.to_path_buf(),
                source,
            })
        };
        write(&paths.key, leaf.key_pem.expose(), KEY_MODE)?;
        write(&paths.cert, &leaf.cert_pem, CERT_MODE)?;
        Ok(StoredLeaf {
            paths,
            leaf,
            action,
        })
    }

    /// Removes the leaf whose first name is `host` (certificate and key),
    /// for a server that left the lab; `Ok(false)` when there was none.
    ///
    /// # Errors
    /// The OS error of a file that exists but cannot be removed.
    pub fn remove_leaf(&self, host: &HostName) -> io::Result<bool> {
        let paths = self.leaf_paths(host);
        let mut removed = false;
        for path in [&paths.cert, &paths.key] {
            match fs::remove_file(path) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// Removes the CA directory (root key, certificate and every leaf), for
    /// `fedilab down --purge` once no lab uses the domain; `Ok(false)` when
    /// there was none. Hosts that trust the root keep a certificate nothing
    /// can sign with any more.
    ///
    /// # Errors
    /// The OS error of a directory that exists but cannot be removed.
    pub fn remove(&self) -> io::Result<bool> {
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The stored leaves, sorted by file name: every `*.pem` but `ca.pem`.
    /// Empty when the directory does not exist.
    ///
    /// # Errors
    /// [`ListError`] when the directory exists but cannot be read.
    pub fn leaves(&self) -> Result<Vec<LeafPaths>, ListError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(ListError {
                    dir: self.dir.clone(),
                    source,
                });
            }
        };
        let mut leaves = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| ListError {
                dir: self.dir.clone(),
                source,
            })?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".pem")) else {
                continue;
            };
            if stem == "ca" || stem.starts_with('.') {
                continue;
            }
            leaves.push(LeafPaths {
                cert: self.dir.join(format!("{stem}.pem")),
                key: self.dir.join(format!("{stem}.key")),
            });
        }
        leaves.sort_by(|a, b| a.cert.cmp(&b.cert));
        Ok(leaves)
    }
}

/// The name of this machine, for the root's subject: the kernel's host name,
/// else `/etc/hostname`, else `unknown host`.
pub fn local_host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown host".to_owned())
}

fn read_optional(path: &Path) -> io::Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

enum KeyReadError {
    Io(io::Error),
    Insecure(u32),
}

/// Reads a key file, checking the mode of the file it opened (not of
/// whatever the path names a moment later).
fn read_key(path: &Path) -> Result<Option<KeyPem>, KeyReadError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(KeyReadError::Io(e)),
    };
    let mode = file
        .metadata()
        .map_err(KeyReadError::Io)?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyReadError::Insecure(mode));
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(KeyReadError::Io)?;
    Ok(Some(KeyPem::new(text)))
}

/// Holds an exclusive lock on `path` until dropped.
fn lock(path: &Path) -> Result<File, (PathBuf, io::Error)> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(KEY_MODE)
        .open(path)
        .map_err(|e| (path.to_path_buf(), e))?;
    file.lock().map_err(|e| (path.to_path_buf(), e))?;
    Ok(file)
}

/// Writes `text` to `path` through a temp file in the same directory that
/// gets `mode` before it is renamed over `path`.
fn write_atomic(path: &Path, text: &str, mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("the path has no parent directory"))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".fedilab-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.as_file()
        .set_permissions(Permissions::from_mode(mode))?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // Make the rename itself durable.
    File::open(dir)?.sync_all()
}
