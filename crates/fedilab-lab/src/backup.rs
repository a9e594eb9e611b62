//! An instance's state in and out: [`backup`] to one archive file,
//! [`restore`] from one, [`import`] a real Mastodon's `.env.production`,
//! `pg_dump` and media. Each is the whole sequence, from the host state
//! to the cluster steps of `fedilab_orchestrator::backup`.
//!
//! ```text
//! backup   version (web image) -> pg_dump -> spool -> tar -> spool -> archive (temp + rename)
//! restore  manifest -> refuse? -> members out, checked -> replace_state
//! import   env file -> dump format -> replace_state
//! replace_state:
//!   load the dump into a new database      | on failure: drop it; the instance is as it was
//!   stage the media beside the live ones   |   ... and remove the staged media
//!   new secrets into the Secrets            |   ... and put the old values back
//!   stop the job workers (Sidekiq: 0 pods)  |   ... and start them again
//!   swap the databases (pg::swap)           |
//!   ---- from here the instance has the new data ----
//!   save secrets.json, swap the media, flush Redis, start the workers,
//!   restart the pods, run the setup Job (migrations, the lab's admin and token)
//! ```
//!
//! Streams are spooled to files (a tar member needs its size up front);
//! nothing holds a dump in memory. Progress goes through
//! [`TransferProgress`]; nothing here prints.

use std::collections::BTreeMap;
use std::io::{self, BufReader, BufWriter, Read as _, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use fedilab_data::archive::{
    self, ArchiveReader, ArchiveWriter, Digesting, Manifest, ReadError, Refusal, RestoreTarget,
    StreamDigest, WriteError,
};
use fedilab_data::import::{
    self, DumpError, DumpFormat, EnvError, EnvImport, apply_entries, secret_entries,
};
use fedilab_data::{KindState, for_kind};
use fedilab_manifest::MastodonSecrets;
use fedilab_orchestrator::backup::{
    self as steps, BackupError as StepError, DatabaseTarget, LoadFormat, MediaTarget,
};
use fedilab_orchestrator::{Cluster, ExecTarget, InstanceCredentials};
use fedilab_profile::names::{self, Component};
use fedilab_profile::{InstanceName, LabName};
use fedilab_state::{LabDir, StateError, StoredInstance};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The budget of the setup Job after a restore or import (migrations of
/// an older release take a while).
pub const SETUP_BUDGET: Duration = Duration::from_secs(15 * 60);
/// How long the job workers may take to stop (Sidekiq finishes its jobs
/// for up to 25 s, Kubernetes waits 30 s before killing).
const WORKER_STOP: Duration = Duration::from_secs(120);
/// The largest env file `import` reads.
const ENV_LIMIT: u64 = 1 << 20;

/// Something a state command tells while it works.
#[derive(Debug)]
pub enum TransferEvent<'a> {
    /// A step begins.
    Step(&'a str),
    /// Bytes moved in the current step (`total` when known).
    Bytes {
        /// What moves (`database`, `media`).
        what: &'a str,
        /// So far.
        done: u64,
        /// Expected in all.
        total: Option<u64>,
    },
    /// Something the user should know (the result is still usable).
    Warning(&'a str),
}

/// Where backup, restore and import report.
pub trait TransferProgress: Sync {
    /// One event.
    fn event(&self, event: &TransferEvent<'_>);
}

/// What [`backup`] is asked.
#[derive(Debug, Clone)]
pub struct BackupRequest {
    /// The data directory (the lab's state).
    pub data_dir: PathBuf,
    /// The lab.
    pub lab: LabName,
    /// The instance.
    pub instance: String,
    /// The archive to write (replaced if it exists).
    pub output: PathBuf,
    /// This fedilab's version, for the manifest.
    pub fedilab_version: String,
}

/// What [`backup`] wrote.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The archive.
    pub path: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// The archive's size in bytes.
    pub size: u64,
}

/// What [`restore`] is asked.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The lab.
    pub lab: LabName,
    /// The instance to restore into.
    pub instance: String,
    /// The archive.
    pub archive: PathBuf,
    /// How long the setup Job may take.
    pub setup_budget: Duration,
}

/// What [`import`] is asked.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The lab.
    pub lab: LabName,
    /// The instance to import into.
    pub instance: String,
    /// The real instance's `.env.production`.
    pub env_file: PathBuf,
    /// Its `pg_dump` (custom or plain format).
    pub dump: PathBuf,
    /// Its media: a directory (its `public/system`) or a tar of one.
    pub media: Option<PathBuf>,
    /// How long the setup Job may take.
    pub setup_budget: Duration,
}

/// What [`restore`] or [`import`] did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// The archive's manifest (restore only).
    pub manifest: Option<Manifest>,
    /// What the env file gave (import only; names, no values).
    pub env: Option<EnvImport>,
    /// The dump's format.
    pub format: DumpFormat,
    /// Whether media were restored.
    pub media: bool,
    /// The instance's way in now.
    pub credentials: InstanceCredentials,
    /// Whether the admin password or token differ from before.
    pub credentials_changed: bool,
    /// The secrets replaced (env names).
    pub secrets_replaced: Vec<&'static str>,
    /// What the user should know.
    pub warnings: Vec<String>,
}

/// Why a state command stopped.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The lab has no state here.
    #[error(
        "lab {lab} has no state on this host ({path} is missing); run `fedilab up --lab {lab}` first"
    )]
    NoLab {
        /// The lab.
        lab: LabName,
        /// `lab.json`.
        path: PathBuf,
    },
    /// No such instance.
    #[error("lab {lab} has no instance {instance:?}; it has: {known}")]
    NoInstance {
        /// The lab.
        lab: LabName,
        /// The name asked for.
        instance: String,
        /// Its instances.
        known: String,
    },
    /// Not an instance whose state fedilab keeps.
    #[error("{instance} is {}", not_managed(kind))]
    NotManaged {
        /// The instance.
        instance: String,
        /// `external`, `attached`, or a kind without backups yet.
        kind: &'static str,
    },
    /// The state has no secrets for it.
    #[error("no secrets of {instance} in {path}; run `fedilab up --lab {lab}` first")]
    NoSecrets {
        /// The instance.
        instance: String,
        /// The lab.
        lab: LabName,
        /// The lab's directory.
        path: PathBuf,
    },
    /// The server's release cannot be told from its image.
    #[error(
        "cannot tell {instance}'s server release from its image {image:?} (no version tag); \
         run it with a tagged image"
    )]
    UnknownVersion {
        /// The instance.
        instance: String,
        /// The image.
        image: String,
    },
    /// A local file could not be used.
    #[error("cannot {action} {path}")]
    Io {
        /// What was done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The archive could not be written.
    #[error("cannot write archive {path}")]
    Write {
        /// The archive.
        path: PathBuf,
        /// Why.
        #[source]
        source: WriteError,
    },
    /// The archive could not be read.
    #[error("cannot restore from {path}")]
    Read {
        /// The archive.
        path: PathBuf,
        /// Why.
        #[source]
        source: ReadError,
    },
    /// The archive does not fit the instance.
    #[error("{path} does not fit: {refusal}")]
    Refused {
        /// The archive.
        path: PathBuf,
        /// Why.
        refusal: Box<Refusal>,
    },
    /// The env file is not usable.
    #[error("{path}: {source}")]
    Env {
        /// The env file.
        path: PathBuf,
        /// Why.
        source: EnvError,
    },
    /// The dump is not usable.
    #[error("{path}: {source}")]
    Dump {
        /// The dump.
        path: PathBuf,
        /// Why.
        source: DumpError,
    },
    /// A cluster step failed before the data was replaced: the instance
    /// is as it was.
    #[error("{0}; the instance is unchanged")]
    Before(#[source] Box<StepError>),
    /// A cluster step failed after the database was replaced.
    #[error(
        "the database now holds the restored data, but {what} failed; run the command again or \
         `fedilab up --lab {lab}`"
    )]
    After {
        /// What failed.
        what: String,
        /// The lab.
        lab: LabName,
        /// Why.
        #[source]
        source: Box<StepError>,
    },
    /// A backup step failed (nothing was changed).
    #[error(transparent)]
    Step(Box<StepError>),
    /// The host state could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
}

impl TransferError {
    /// Whether the user's input is at fault (the CLI exits 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            TransferError::NoLab { .. }
                | TransferError::NoInstance { .. }
                | TransferError::NotManaged { .. }
                | TransferError::Refused { .. }
                | TransferError::Env { .. }
                | TransferError::Dump { .. }
                | TransferError::Read {
                    source: ReadError::NotArchive(_) | ReadError::NewerFormat { .. },
                    ..
                }
        )
    }
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> TransferError {
    let path = path.to_path_buf();
    move |source| TransferError::Io {
        action,
        path,
        source,
    }
}

/// The instance a command works on, and where its state lives.
struct Instance {
    dir: LabDir,
    lab: LabName,
    stored: StoredInstance,
    kind: &'static dyn KindState,
}

/// Why an instance of `kind` has no state fedilab moves.
fn not_managed(kind: &str) -> String {
    match kind {
        "external" | "attached" => format!(
            "a server outside the cluster ({kind}); fedilab keeps the state only of the lab's \
             own instances"
        ),
        other => format!(
            "a {other} instance; backup, restore and import handle Mastodon instances so far"
        ),
    }
}

impl Instance {
    fn load(data_dir: &Path, lab: &LabName, name: &str) -> Result<Instance, TransferError> {
        let dir = LabDir::new(data_dir, lab);
        let Some(state) = dir.load_state()? else {
            return Err(TransferError::NoLab {
                lab: lab.clone(),
                path: dir.path().join("lab.json"),
            });
        };
        let Some(stored) = state.instance(name).cloned() else {
            return Err(TransferError::NoInstance {
                lab: lab.clone(),
                instance: name.to_owned(),
                known: state
                    .instances
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        // External and attached servers are not fedilab's; kinds without
        // a state module (Misskey, GoToSocial so far) are refused too.
        let kind = for_kind(stored.kind.as_str());
        let Some(kind) = kind else {
            return Err(TransferError::NotManaged {
                instance: name.to_owned(),
                kind: stored.kind.as_str(),
            });
        };
        Ok(Instance {
            dir,
            lab: lab.clone(),
            stored,
            kind,
        })
    }

    fn name(&self) -> &InstanceName {
        &self.stored.name
    }

    fn exec(&self, component: Component, container: &str) -> ExecTarget {
        ExecTarget {
            lab: self.lab.clone(),
            instance: self.name().clone(),
            component,
            container: Some(container.to_owned()),
        }
    }

    fn database(&self) -> DatabaseTarget {
        let db = self.kind.database();
        DatabaseTarget {
            exec: self.exec(db.component, db.container),
            database: db.name.to_owned(),
            user: db.user.to_owned(),
        }
    }

    fn media(&self) -> Option<MediaTarget> {
        self.kind.media().map(|m| MediaTarget {
            exec: self.exec(m.component, m.container),
            dir: m.dir.to_owned(),
        })
    }

    fn secrets(&self) -> Result<MastodonSecrets, TransferError> {
        self.dir
            .instance_secrets(self.name().as_str())?
            .ok_or_else(|| TransferError::NoSecrets {
                instance: self.name().to_string(),
                lab: self.lab.clone(),
                path: self.dir.path().to_path_buf(),
            })
    }

    /// The server's release, from the tag of its web image.
    async fn server_version(&self, cluster: &Cluster) -> Result<String, TransferError> {
        let image = steps::server_image(cluster, &self.lab, self.name(), Component::Web)
            .await
            .map_err(|e| TransferError::Step(Box::new(e)))?
            .unwrap_or_default();
        match steps::image_tag(&image) {
            Some(tag) if archive::release_parts(tag).is_some() => Ok(tag.to_owned()),
            _ => Err(TransferError::UnknownVersion {
                instance: self.name().to_string(),
                image,
            }),
        }
    }

    fn credentials(&self, secrets: &MastodonSecrets) -> InstanceCredentials {
        InstanceCredentials {
            instance: self.name().to_string(),
            url: self.stored.url.clone(),
            username: names::ADMIN_USERNAME.to_owned(),
            password: secrets.admin_password.clone(),
            api_token: secrets.api_token.clone(),
        }
    }
}

/// The local checks of backup, restore and import, before any cluster:
/// the lab has state here and `instance` is one of its own instances.
///
/// # Errors
/// [`TransferError::NoLab`], [`TransferError::NoInstance`] or
/// [`TransferError::NotManaged`] (all usage errors).
pub fn check_instance(data_dir: &Path, lab: &LabName, instance: &str) -> Result<(), TransferError> {
    Instance::load(data_dir, lab, instance).map(drop)
}

/// Counts, hashes and reports what is written through it.
struct Meter<'a, W> {
    inner: W,
    digest: Digesting<io::Sink>,
    what: &'a str,
    total: Option<u64>,
    progress: &'a dyn TransferProgress,
}

impl<'a, W> Meter<'a, W> {
    fn new(
        inner: W,
        what: &'a str,
        total: Option<u64>,
        progress: &'a dyn TransferProgress,
    ) -> Self {
        Meter {
            inner,
            digest: Digesting::new(io::sink()),
            what,
            total,
            progress,
        }
    }

    fn count(&mut self, data: &[u8]) {
        // Writing into a sink cannot fail.
        let _ = self.digest.write_all(data);
        self.progress.event(&TransferEvent::Bytes {
            what: self.what,
            done: self.digest.size(),
            total: self.total,
        });
    }

    fn finish(self) -> (W, StreamDigest) {
        let (_, digest) = self.digest.finish();
        (self.inner, digest)
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Meter<'_, W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &polled {
            let n = *n;
            self.count(&data[..n]);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Meter<'_, R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            let fresh = buf.filled()[before..].to_vec();
            if !fresh.is_empty() {
                self.count(&fresh);
            }
        }
        polled
    }
}

impl<W: Write> Write for Meter<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.count(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A temporary directory beside `path` (same file system: the final
/// rename is atomic, and the spool does not fill a small /tmp).
fn spool_dir(near: &Path) -> Result<tempfile::TempDir, TransferError> {
    let parent = match near.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    tempfile::Builder::new()
        .prefix(".fedilab-spool-")
        .tempdir_in(&parent)
        .map_err(io_err("create a temporary directory in", &parent))
}

/// Writes one instance's archive: its database, media and secrets, with
/// a manifest. The archive appears under its name only when complete.
///
/// # Errors
/// [`TransferError`]: an unknown lab or instance, a cluster step, a file
/// that cannot be written.
///
/// # Caveats
/// No time limit: as long as the dump and the media take. Needs free disk
/// space beside the output for the spooled dump and media (about the
/// archive's size) until it ends.
pub async fn backup(
    cluster: &Cluster,
    request: &BackupRequest,
    progress: &dyn TransferProgress,
) -> Result<BackupReport, TransferError> {
    let instance = Instance::load(&request.data_dir, &request.lab, &request.instance)?;
    let secrets = instance.secrets()?;
    let version = instance.server_version(cluster).await?;
    let spool = spool_dir(&request.output)?;
    let step_err = |e| TransferError::Step(Box::new(e));

    progress.event(&TransferEvent::Step("database (pg_dump -Fc)"));
    let db_path = spool.path().join(archive::DATABASE);
    let file = tokio::fs::File::create(&db_path)
        .await
        .map_err(io_err("create", &db_path))?;
    let mut meter = Meter::new(file, "database", None, progress);
    steps::dump_database(cluster, &instance.database(), &mut meter)
        .await
        .map_err(step_err)?;
    let (mut file, db_digest) = meter.finish();
    tokio::io::AsyncWriteExt::flush(&mut file)
        .await
        .map_err(io_err("write", &db_path))?;
    drop(file);

    let mut media = None;
    if let Some(target) = instance.media() {
        progress.event(&TransferEvent::Step("media (tar)"));
        let path = spool.path().join(archive::MEDIA);
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(io_err("create", &path))?;
        let mut meter = Meter::new(file, "media", None, progress);
        steps::dump_media(cluster, &target, &mut meter)
            .await
            .map_err(step_err)?;
        let (mut file, digest) = meter.finish();
        tokio::io::AsyncWriteExt::flush(&mut file)
            .await
            .map_err(io_err("write", &path))?;
        media = Some((path, digest));
    }

    progress.event(&TransferEvent::Step("archive"));
    let secrets_json = serde_json::to_vec_pretty(&secret_entries(&secrets))
        .map_err(|e| io_err("encode the secrets for", &request.output)(io::Error::other(e)))?;
    let mut digest = Digesting::new(io::sink());
    let _ = digest.write_all(&secrets_json);
    let secrets_digest = digest.finish().1;
    let mut members = vec![
        secrets_digest.member(archive::SECRETS),
        db_digest.member(archive::DATABASE),
    ];
    if let Some((_, digest)) = &media {
        members.push(digest.member(archive::MEDIA));
    }
    let created_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let manifest = Manifest {
        format: archive::FORMAT,
        kind: instance.kind.kind().to_owned(),
        server_version: version,
        lab: instance.lab.to_string(),
        domain: instance
            .dir
            .load_state()?
            .map(|s| s.domain.to_string())
            .unwrap_or_default(),
        instance: instance.name().to_string(),
        host: instance.stored.host.to_string(),
        fedilab_version: request.fedilab_version.clone(),
        created_unix,
        members,
    };
    let partial = spool.path().join("archive.partial");
    write_archive(
        &partial,
        &manifest,
        &secrets_json,
        &db_path,
        media.as_ref().map(|(p, _)| p.as_path()),
        progress,
    )?;
    std::fs::rename(&partial, &request.output).map_err(io_err("write", &request.output))?;
    let size = std::fs::metadata(&request.output)
        .map_err(io_err("read", &request.output))?
        .len();
    Ok(BackupReport {
        path: request.output.clone(),
        manifest,
        size,
    })
}

fn write_archive(
    path: &Path,
    manifest: &Manifest,
    secrets_json: &[u8],
    db_path: &Path,
    media: Option<&Path>,
    progress: &dyn TransferProgress,
) -> Result<(), TransferError> {
    let write_err = |source| TransferError::Write {
        path: path.to_path_buf(),
        source,
    };
    // The archive holds secrets: readable by its owner only.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err("create", path))?;
    let total = Some(manifest.total_size());
    let out = Meter::new(BufWriter::new(file), "archive", total, progress);
    let mut writer = ArchiveWriter::new(out, manifest).map_err(write_err)?;
    writer
        .append(archive::SECRETS, &mut &secrets_json[..])
        .map_err(write_err)?;
    let mut db = BufReader::new(std::fs::File::open(db_path).map_err(io_err("read", db_path))?);
    writer
        .append(archive::DATABASE, &mut db)
        .map_err(write_err)?;
    if let Some(media) = media {
        let mut file = BufReader::new(std::fs::File::open(media).map_err(io_err("read", media))?);
        writer
            .append(archive::MEDIA, &mut file)
            .map_err(write_err)?;
    }
    let (out, _) = writer.finish().map_err(write_err)?.finish();
    let file = out
        .into_inner()
        .map_err(|e| io_err("write", path)(e.into_error()))?;
    file.sync_all().map_err(io_err("write", path))?;
    Ok(())
}

/// Where the new data comes from.
struct Source<'a> {
    dump: &'a Path,
    format: DumpFormat,
    media: Option<MediaSource<'a>>,
}

enum MediaSource<'a> {
    /// A tar file.
    Tar(&'a Path),
    /// A directory, tarred on the fly by the local `tar`.
    Dir(&'a Path),
}

/// Restores an archive into an instance: refused when its kind differs or
/// its server release is newer; the members are checked before anything
/// on the cluster changes. The instance ends on the restored data, with
/// the archive's secrets, or (on a failure before the database swap) as
/// it was.
///
/// # Errors
/// [`TransferError`]; [`TransferError::is_usage`] for refusals.
///
/// # Caveats
/// No time limit besides the setup Job's budget. Needs free disk space in
/// the lab's state directory for the unpacked members.
pub async fn restore(
    cluster: &Cluster,
    request: &RestoreRequest,
    progress: &dyn TransferProgress,
) -> Result<RestoreReport, TransferError> {
    let instance = Instance::load(&request.data_dir, &request.lab, &request.instance)?;
    let path = &request.archive;
    let read_err = |source| TransferError::Read {
        path: path.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_err("open", path))?;
    let mut reader = ArchiveReader::open(BufReader::new(file)).map_err(read_err)?;
    let manifest = reader.manifest().clone();
    let version = instance.server_version(cluster).await?;
    archive::check_restore(
        &manifest,
        &RestoreTarget {
            kind: instance.kind.kind(),
            server_version: &version,
            instance: instance.name().as_str(),
        },
    )
    .map_err(|refusal| TransferError::Refused {
        path: path.clone(),
        refusal: Box::new(refusal),
    })?;
    let mut warnings = Vec::new();
    if manifest.host != instance.stored.host.as_str() {
        let text = format!(
            "the archive comes from {} and is restored into {}: its local accounts and posts now \
             answer under {} (see README, \"Bring a real instance's data\")",
            manifest.host, instance.stored.host, instance.stored.host
        );
        progress.event(&TransferEvent::Warning(&text));
        warnings.push(text);
    }

    progress.event(&TransferEvent::Step("check and unpack the archive"));
    std::fs::create_dir_all(instance.dir.path()).map_err(io_err("create", instance.dir.path()))?;
    let work = spool_dir(&instance.dir.path().join("restore"))?;
    let (_, secrets_json) = reader
        .next_small()
        .map_err(read_err)?
        .ok_or_else(|| read_err(ReadError::Truncated(archive::SECRETS.to_owned())))?;
    let entries: BTreeMap<String, String> =
        serde_json::from_slice(&secrets_json).map_err(|e| read_err(ReadError::Manifest(e)))?;
    let db_path = work.path().join(archive::DATABASE);
    unpack(&mut reader, &db_path, "database", progress).map_err(|e| match e {
        Unpack::Read(e) => read_err(e),
        Unpack::Io(e) => io_err("write", &db_path)(e),
    })?;
    let mut media_path = None;
    if reader.peek().is_some() {
        let p = work.path().join(archive::MEDIA);
        unpack(&mut reader, &p, "media", progress).map_err(|e| match e {
            Unpack::Read(e) => read_err(e),
            Unpack::Io(e) => io_err("write", &p)(e),
        })?;
        media_path = Some(p);
    }
    drop(reader);

    let current = instance.secrets()?;
    let (restored, replaced) = apply_entries(&current, &entries);
    let source = Source {
        dump: &db_path,
        format: DumpFormat::Custom,
        media: media_path.as_deref().map(MediaSource::Tar),
    };
    replace_state(
        cluster,
        &instance,
        &source,
        &current,
        &restored,
        request.setup_budget,
        progress,
    )
    .await?;
    Ok(RestoreReport {
        manifest: Some(manifest),
        env: None,
        format: DumpFormat::Custom,
        media: media_path.is_some(),
        credentials: instance.credentials(&restored),
        credentials_changed: current.admin_password != restored.admin_password
            || current.api_token != restored.api_token,
        secrets_replaced: replaced,
        warnings,
    })
}

enum Unpack {
    Read(ReadError),
    Io(io::Error),
}

fn unpack(
    reader: &mut ArchiveReader<BufReader<std::fs::File>>,
    path: &Path,
    what: &str,
    progress: &dyn TransferProgress,
) -> Result<(), Unpack> {
    let total = reader.peek().map(|m| m.size);
    let file = std::fs::File::create(path).map_err(Unpack::Io)?;
    let mut out = Meter::new(BufWriter::new(file), what, total, progress);
    reader.next_member(&mut out).map_err(Unpack::Read)?;
    out.flush().map_err(Unpack::Io)?;
    Ok(())
}

/// Imports a real Mastodon into an instance: the secrets of its env file
/// (the rest is listed and ignored), its database dump (custom or plain
/// format) and optionally its media. The instance keeps the lab's domain
/// and its admin (created in the imported data by the setup Job).
///
/// # Errors
/// [`TransferError`]; [`TransferError::is_usage`] for unusable files.
///
/// # Caveats
/// As [`restore`]. A plain dump stops at its first error.
pub async fn import(
    cluster: &Cluster,
    request: &ImportRequest,
    progress: &dyn TransferProgress,
) -> Result<RestoreReport, TransferError> {
    let instance = Instance::load(&request.data_dir, &request.lab, &request.instance)?;
    let env_path = &request.env_file;
    let mut text = String::new();
    std::fs::File::open(env_path)
        .map_err(io_err("open", env_path))?
        .take(ENV_LIMIT)
        .read_to_string(&mut text)
        .map_err(io_err("read", env_path))?;
    let env = import::parse_env(&text).map_err(|source| TransferError::Env {
        path: env_path.clone(),
        source,
    })?;
    let mut head = Vec::new();
    std::fs::File::open(&request.dump)
        .map_err(io_err("open", &request.dump))?
        .take(512)
        .read_to_end(&mut head)
        .map_err(io_err("read", &request.dump))?;
    let format = import::dump_format(&head).map_err(|source| TransferError::Dump {
        path: request.dump.clone(),
        source,
    })?;
    let media = match &request.media {
        None => None,
        Some(p) if p.is_dir() => Some(MediaSource::Dir(p)),
        Some(p) => Some(MediaSource::Tar(p)),
    };
    let mut warnings = Vec::new();
    if let Some(old) = env.local_domain.as_deref()
        && old != instance.stored.host.as_str()
    {
        let text = format!(
            "the imported instance was {old}; in the lab it answers as {}: its local accounts \
             are reachable there, stored links and post URIs still name {old} (see README, \
             \"Bring a real instance's data\")",
            instance.stored.host
        );
        progress.event(&TransferEvent::Warning(&text));
        warnings.push(text);
    }
    let current = instance.secrets()?;
    let (imported, replaced) = apply_entries(&current, &env.taken);
    let source = Source {
        dump: &request.dump,
        format,
        media,
    };
    replace_state(
        cluster,
        &instance,
        &source,
        &current,
        &imported,
        request.setup_budget,
        progress,
    )
    .await?;
    Ok(RestoreReport {
        manifest: None,
        env: Some(env),
        format,
        media: request.media.is_some(),
        credentials: instance.credentials(&imported),
        credentials_changed: false,
        secrets_replaced: replaced,
        warnings,
    })
}

/// The env Secret's and the admin Secret's new values, restricted to the
/// keys the env Secret already has (OTP_SECRET only where the release
/// uses it).
fn secret_patches(
    env_now: &BTreeMap<String, String>,
    secrets: &MastodonSecrets,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let entries = secret_entries(secrets);
    let env = import::IMPORTED_KEYS
        .iter()
        .filter(|k| env_now.contains_key(**k))
        .filter_map(|k| entries.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect();
    let admin = BTreeMap::from([
        (
            names::admin_keys::PASSWORD.to_owned(),
            secrets.admin_password.clone(),
        ),
        (
            names::admin_keys::API_TOKEN.to_owned(),
            secrets.api_token.clone(),
        ),
    ]);
    (env, admin)
}

/// The sequence shared by restore and import (see the module's map).
async fn replace_state(
    cluster: &Cluster,
    instance: &Instance,
    source: &Source<'_>,
    current: &MastodonSecrets,
    new: &MastodonSecrets,
    setup_budget: Duration,
    progress: &dyn TransferProgress,
) -> Result<(), TransferError> {
    let lab = &instance.lab;
    let db = instance.database();
    let next = format!("{}_fedilab_next", db.database);
    let old = format!("{}_fedilab_old", db.database);
    let before = |e| TransferError::Before(Box::new(e));
    let format = match source.format {
        DumpFormat::Custom => LoadFormat::Custom,
        DumpFormat::Plain => LoadFormat::Plain,
    };

    progress.event(&TransferEvent::Step(
        "load the database beside the live one",
    ));
    let file = tokio::fs::File::open(source.dump)
        .await
        .map_err(io_err("open", source.dump))?;
    let total = file.metadata().await.map(|m| m.len()).ok();
    let mut input = Meter::new(file, "database", total, progress);
    steps::load_database(cluster, &db, &next, format, &mut input)
        .await
        .map_err(before)?;

    let media_target = instance.media();
    let undo_db = async || {
        if let Err(e) = steps::drop_database(cluster, &db, &next).await {
            tracing::warn!("cannot drop database {next}: {e}");
        }
    };
    let mut staged = None;
    if let (Some(media), Some(target)) = (&source.media, &media_target) {
        progress.event(&TransferEvent::Step(
            "unpack the media beside the live ones",
        ));
        let staged_result = stage(cluster, media, target, progress).await;
        if let Err(e) = staged_result {
            undo_db().await;
            return Err(e);
        }
        staged = Some(target);
    }
    let undo_media = async || {
        if let Some(target) = staged
            && let Err(e) = steps::discard_media(cluster, target).await
        {
            tracing::warn!("cannot remove the staged media: {e}");
        }
    };

    progress.event(&TransferEvent::Step("secrets"));
    let env_name = names::env_secret(instance.name());
    let admin_name = names::admin_secret(instance.name());
    let secrets_result = async {
        let env_now = steps::read_secret(cluster, lab, &env_name).await?;
        let (env_new, admin_new) = secret_patches(&env_now, new);
        let (env_old, admin_old) = secret_patches(&env_now, current);
        steps::patch_secret(cluster, lab, &env_name, &env_new).await?;
        steps::patch_secret(cluster, lab, &admin_name, &admin_new).await?;
        Ok::<_, StepError>((env_old, admin_old))
    }
    .await;
    let (env_old, admin_old) = match secrets_result {
        Ok(old) => old,
        Err(e) => {
            // Put the old values back (the first patch may have gone in).
            let (env_old, admin_old) = secret_patches(
                &steps::read_secret(cluster, lab, &env_name)
                    .await
                    .unwrap_or_default(),
                current,
            );
            let _ = steps::patch_secret(cluster, lab, &env_name, &env_old).await;
            let _ = steps::patch_secret(cluster, lab, &admin_name, &admin_old).await;
            undo_media().await;
            undo_db().await;
            return Err(before(e));
        }
    };

    progress.event(&TransferEvent::Step("stop the job workers"));
    let workers: Vec<Component> = instance
        .kind
        .workers()
        .iter()
        .map(|w| w.component)
        .collect();
    let stopped =
        match steps::stop_workers(cluster, lab, instance.name(), &workers, WORKER_STOP).await {
            Ok(stopped) => stopped,
            Err(e) => {
                // fedilab runs one replica of each worker.
                let one: Vec<(Component, i32)> = workers.iter().map(|c| (*c, 1)).collect();
                let _ = steps::start_workers(cluster, lab, instance.name(), &one).await;
                let _ = steps::patch_secret(cluster, lab, &env_name, &env_old).await;
                let _ = steps::patch_secret(cluster, lab, &admin_name, &admin_old).await;
                undo_media().await;
                undo_db().await;
                return Err(before(e));
            }
        };

    progress.event(&TransferEvent::Step("swap the databases"));
    if let Err(e) = steps::swap_database(cluster, &db, &next, &old).await {
        let _ = steps::start_workers(cluster, lab, instance.name(), &stopped).await;
        let _ = steps::patch_secret(cluster, lab, &env_name, &env_old).await;
        let _ = steps::patch_secret(cluster, lab, &admin_name, &admin_old).await;
        undo_media().await;
        undo_db().await;
        return Err(before(e));
    }

    // From here on the instance has the new data.
    let after = |what: &str| {
        let what = what.to_owned();
        let lab = lab.clone();
        move |source| TransferError::After {
            what,
            lab,
            source: Box::new(source),
        }
    };
    instance
        .dir
        .set_instance_secrets(instance.name().as_str(), new)?;
    if let Some(target) = staged {
        progress.event(&TransferEvent::Step("put the media in place"));
        steps::swap_media(cluster, target)
            .await
            .map_err(after("putting the media in place"))?;
    }
    progress.event(&TransferEvent::Step("flush Redis (caches of the old data)"));
    let redis = instance.kind.redis();
    steps::flush_redis(
        cluster,
        &instance.exec(redis.component, redis.container),
        u32::from(redis.db),
    )
    .await
    .map_err(after("flushing Redis"))?;
    progress.event(&TransferEvent::Step(
        "start the job workers, restart the pods",
    ));
    steps::start_workers(cluster, lab, instance.name(), &stopped)
        .await
        .map_err(after("starting the job workers"))?;
    steps::restart(
        cluster,
        lab,
        instance.name(),
        &[Component::Web, Component::Streaming],
    )
    .await
    .map_err(after("restarting the pods"))?;
    progress.event(&TransferEvent::Step(
        "setup Job: migrations, the lab's admin and token",
    ));
    steps::rerun_setup(cluster, lab, instance.name(), setup_budget)
        .await
        .map_err(after("the setup Job"))?;
    Ok(())
}

/// Unpacks `media` into the staging directory.
async fn stage(
    cluster: &Cluster,
    media: &MediaSource<'_>,
    target: &MediaTarget,
    progress: &dyn TransferProgress,
) -> Result<(), TransferError> {
    let before = |e| TransferError::Before(Box::new(e));
    match media {
        MediaSource::Tar(path) => {
            let file = tokio::fs::File::open(path)
                .await
                .map_err(io_err("open", path))?;
            let total = file.metadata().await.map(|m| m.len()).ok();
            let mut input = Meter::new(file, "media", total, progress);
            steps::stage_media(cluster, target, &mut input)
                .await
                .map_err(before)
        }
        MediaSource::Dir(dir) => {
            let mut child = tokio::process::Command::new("tar")
                .arg("-C")
                .arg(dir)
                .args(["-cf", "-", "."])
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(io_err("run tar on", dir))?;
            let Some(stdout) = child.stdout.take() else {
                return Err(io_err("run tar on", dir)(io::Error::other("no stdout")));
            };
            let mut input = Meter::new(stdout, "media", None, progress);
            let staged = steps::stage_media(cluster, target, &mut input)
                .await
                .map_err(before);
            let status = child.wait().await.map_err(io_err("run tar on", dir))?;
            staged?;
            if !status.success() {
                let _ = steps::discard_media(cluster, target).await;
                return Err(io_err("tar", dir)(io::Error::other(format!(
                    "the local tar exited with {status}"
                ))));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_keys_the_env_secret_has_are_patched() {
        let secrets = MastodonSecrets::generate([3; 32], &"m".parse().expect("name"));
        let env_now = BTreeMap::from([
            ("SECRET_KEY_BASE".to_owned(), "x".to_owned()),
            (
                "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY".to_owned(),
                "y".to_owned(),
            ),
            ("DB_PASS".to_owned(), "z".to_owned()),
        ]);
        let (env, admin) = secret_patches(&env_now, &secrets);
        assert_eq!(
            env.keys().collect::<Vec<_>>(),
            ["ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY", "SECRET_KEY_BASE"]
        );
        assert_eq!(env["SECRET_KEY_BASE"], secrets.secret_key_base);
        assert_eq!(admin[names::admin_keys::PASSWORD], secrets.admin_password);
        assert_eq!(admin[names::admin_keys::API_TOKEN], secrets.api_token);
    }
}
