//! The cluster side of backup, restore and import: each step a command
//! run over exec in the container that holds the state, streaming between
//! the command and the caller's reader or writer (nothing is held in
//! memory), plus the few API calls around them (Secrets, restarts, the
//! server's image).
//!
//! ```text
//! dump_database   pg_dump -Fc                 (postgres container) -> out
//! load_database   CREATE DATABASE next; pg_restore | psql < in     (next dropped on failure)
//! swap_database   pg::swap(live, next, old) through psql           (live is old or new at every moment)
//! drop_database   DROP DATABASE IF EXISTS next WITH (FORCE)
//! dump_media      tar -C DIR -cf - .          (web container) -> out
//! stage_media     in -> tar -xf - into DIR/.fedilab-restore        (removed on failure)
//! swap_media      DIR's entries -> .fedilab-old, staged ones in, old removed
//! flush_redis     redis-cli -n N FLUSHDB      (caches and queues of the old data)
//! read_secret / patch_secret / restart / server_image              API calls
//! rerun_setup     the setup Job again: migrations, the lab's admin and token
//! stop_workers / start_workers   job workers scaled to 0 (pods gone) and back
//! ```
//!
//! Which container and database each step uses comes from the caller
//! (`fedilab_data::KindState`); the sequence (what first, what on failure)
//! is `fedilab-lab`'s. Nothing here prints or touches host files.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use fedilab_data::pg;
use fedilab_profile::names::{self, Component};
use fedilab_profile::{InstanceName, LabName};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::Cluster;
use crate::exec::{ExecIo, ExecOptions, ExecTarget, exec, find_pod};

/// The directory a restore unpacks media into, inside the media directory.
pub const MEDIA_STAGING: &str = ".fedilab-restore";
/// Where the replaced media wait for their removal, inside the media
/// directory.
pub const MEDIA_OLD: &str = ".fedilab-old";
/// How much of a failed command's stderr an error keeps (its end).
const STDERR_KEEP: usize = 4096;

/// An instance's database and where to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseTarget {
    /// The PostgreSQL container.
    pub exec: ExecTarget,
    /// The live database.
    pub database: String,
    /// The user the commands connect as (a superuser in the lab).
    pub user: String,
}

/// An instance's media directory and a container that mounts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaTarget {
    /// The container.
    pub exec: ExecTarget,
    /// The directory (the volume's mount point).
    pub dir: String,
}

/// How a dump is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadFormat {
    /// `pg_dump -Fc` output, through `pg_restore`.
    Custom,
    /// Plain SQL, through `psql`.
    Plain,
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The command could not run, or its stream broke.
    #[error("{step}: the command in {container} did not complete")]
    Exec {
        /// What the step does (`pg_dump of mastodon`).
        step: String,
        /// The container (`postgres of instance mastodon1 in lab main`).
        container: String,
        /// The exec error.
        #[source]
        source: Box<crate::ExecError>,
    },
    /// The command ran and failed.
    #[error("{step}: `{command}` exited with code {code}{}", stderr_text(stderr))]
    Command {
        /// What the step does.
        step: String,
        /// The command's first words.
        command: String,
        /// Its exit code.
        code: i32,
        /// The end of its stderr.
        stderr: String,
    },
    /// An API call failed.
    #[error("{what}")]
    Api {
        /// What was asked (`cannot patch Secret mastodon1-env in fedilab-main`).
        what: String,
        /// kube's error.
        #[source]
        source: kube::Error,
    },
}

fn stderr_text(stderr: &str) -> String {
    let trimmed = stderr.trim();
    if trimmed.is_empty() {
        String::new()
    } else {
        format!(": {trimmed}")
    }
}

/// The last [`STDERR_KEEP`] bytes written to it.
#[derive(Clone, Default)]
struct Tail(Arc<Mutex<Vec<u8>>>);

impl Tail {
    fn text(&self) -> String {
        let buf = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl AsyncWrite for Tail {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Ok(mut buf) = self.0.lock() {
            buf.extend_from_slice(data);
            if buf.len() > STDERR_KEEP {
                let cut = buf.len() - STDERR_KEEP;
                buf.drain(..cut);
            }
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn describe(target: &ExecTarget) -> String {
    format!(
        "{} of instance {} in lab {}",
        target.component.as_str(),
        target.instance,
        target.lab
    )
}

/// Runs `argv` in `target` with `stdin` and `stdout` streamed; fails
/// unless it exits 0.
async fn run(
    cluster: &Cluster,
    target: &ExecTarget,
    step: &str,
    argv: Vec<String>,
    stdin: Option<&mut (dyn AsyncRead + Unpin + Send)>,
    stdout: &mut (dyn AsyncWrite + Unpin + Send),
) -> Result<(), BackupError> {
    let exec_err = |source| BackupError::Exec {
        step: step.to_owned(),
        container: describe(target),
        source: Box::new(source),
    };
    let pod = find_pod(cluster, target).await.map_err(exec_err)?;
    let tail = Tail::default();
    let command = argv.iter().take(3).cloned().collect::<Vec<_>>().join(" ");
    let io = ExecIo {
        stdin: stdin.map(|s| Box::new(s) as Box<dyn AsyncRead + Unpin + Send>),
        stdout: Box::new(stdout),
        stderr: Some(Box::new(tail.clone())),
        resize: None,
    };
    let options = ExecOptions {
        command: argv,
        tty: false,
    };
    let code = exec(cluster, &pod, &options, io).await.map_err(exec_err)?;
    if code != 0 {
        return Err(BackupError::Command {
            step: step.to_owned(),
            command,
            code,
            stderr: tail.text(),
        });
    }
    Ok(())
}

/// Runs `argv` with no stdin and its stdout dropped.
async fn run_quiet(
    cluster: &Cluster,
    target: &ExecTarget,
    step: &str,
    argv: Vec<String>,
) -> Result<(), BackupError> {
    run(cluster, target, step, argv, None, &mut tokio::io::sink()).await
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

/// `psql` against the maintenance database, reading `sql` on stdin, stopping
/// at the first error.
async fn psql_maintenance(
    cluster: &Cluster,
    db: &DatabaseTarget,
    step: &str,
    sql: &str,
) -> Result<(), BackupError> {
    let argv = strings(&[
        "psql",
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-U",
        &db.user,
        "-d",
        "postgres",
    ]);
    let mut input = sql.as_bytes();
    run(
        cluster,
        &db.exec,
        step,
        argv,
        Some(&mut input),
        &mut tokio::io::sink(),
    )
    .await
}

/// Streams `pg_dump -Fc` of the live database to `out`.
///
/// # Errors
/// [`BackupError`] when the pod cannot be reached or `pg_dump` fails
/// (its stderr in the message).
///
/// # Caveats
/// No time limit: as long as the dump takes.
pub async fn dump_database(
    cluster: &Cluster,
    db: &DatabaseTarget,
    out: &mut (dyn AsyncWrite + Unpin + Send),
) -> Result<(), BackupError> {
    let argv = strings(&["pg_dump", "-Fc", "-U", &db.user, "-d", &db.database]);
    let step = format!("pg_dump of database {}", db.database);
    run(cluster, &db.exec, &step, argv, None, out).await
}

/// Creates database `next` (dropping a leftover of that name first) and
/// loads `input` into it: `pg_restore` for a custom-format dump, `psql`
/// for plain SQL. Objects belong to the lab's user whatever the dump's
/// owners were. On failure `next` is dropped again; the live database is
/// never touched.
///
/// # Errors
/// [`BackupError`] from the failing step (the load's stderr in it).
///
/// # Caveats
/// No time limit. A plain dump runs with `ON_ERROR_STOP`: its `OWNER TO`
/// and `GRANT` statements for roles the lab lacks stop it; make a
/// custom-format dump (`pg_dump -Fc`) of such a database.
pub async fn load_database(
    cluster: &Cluster,
    db: &DatabaseTarget,
    next: &str,
    format: LoadFormat,
    input: &mut (dyn AsyncRead + Unpin + Send),
) -> Result<(), BackupError> {
    let create = format!(
        "{};\nCREATE DATABASE {} OWNER {};\n",
        pg::drop_database(next),
        pg::quote_ident(next),
        pg::quote_ident(&db.user),
    );
    psql_maintenance(cluster, db, &format!("create database {next}"), &create).await?;
    let argv = match format {
        LoadFormat::Custom => strings(&[
            "pg_restore",
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "-U",
            &db.user,
            "-d",
            next,
        ]),
        LoadFormat::Plain => strings(&[
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            &db.user,
            "-d",
            next,
        ]),
    };
    let step = match format {
        LoadFormat::Custom => format!("pg_restore into database {next}"),
        LoadFormat::Plain => format!("psql (plain dump) into database {next}"),
    };
    let loaded = run(
        cluster,
        &db.exec,
        &step,
        argv,
        Some(input),
        &mut tokio::io::sink(),
    )
    .await;
    if let Err(e) = loaded {
        if let Err(cleanup) = drop_database(cluster, db, next).await {
            tracing::warn!("cannot drop database {next} after the failed load: {cleanup}");
        }
        return Err(e);
    }
    Ok(())
}

/// Replaces the live database by `next` ([`pg::swap`]): new connections
/// are blocked, the live database's sessions ended, both renamed in one
/// transaction and the old data dropped.
///
/// # Errors
/// [`BackupError`] when psql fails; the live name then still holds
/// either the old or the new data (the renames are one transaction).
pub async fn swap_database(
    cluster: &Cluster,
    db: &DatabaseTarget,
    next: &str,
    old: &str,
) -> Result<(), BackupError> {
    let mut sql = String::new();
    for statement in pg::swap(&db.database, next, old) {
        sql.push_str(statement.trim_end_matches(';'));
        sql.push_str(";\n");
    }
    let swapped = psql_maintenance(
        cluster,
        db,
        &format!("swap database {} for {next}", db.database),
        &sql,
    )
    .await;
    if swapped.is_err() {
        // The live name holds the old data if the renames did not commit:
        // open it again either way.
        let reopen = format!("{};\n", pg::reopen(&db.database));
        if let Err(e) = psql_maintenance(cluster, db, "reopen the live database", &reopen).await {
            tracing::warn!("cannot reopen database {}: {e}", db.database);
        }
    }
    swapped
}

/// Drops database `name` if it exists.
///
/// # Errors
/// [`BackupError`] when psql fails.
pub async fn drop_database(
    cluster: &Cluster,
    db: &DatabaseTarget,
    name: &str,
) -> Result<(), BackupError> {
    let sql = format!("{};\n", pg::drop_database(name));
    psql_maintenance(cluster, db, &format!("drop database {name}"), &sql).await
}

/// Streams the media directory as a tar to `out`.
///
/// # Errors
/// [`BackupError`] when the pod cannot be reached or tar fails.
///
/// # Caveats
/// No time limit.
pub async fn dump_media(
    cluster: &Cluster,
    media: &MediaTarget,
    out: &mut (dyn AsyncWrite + Unpin + Send),
) -> Result<(), BackupError> {
    // Leftovers of an interrupted restore stay out of the archive.
    let argv = strings(&[
        "tar",
        "-C",
        &media.dir,
        "--exclude",
        &format!("./{MEDIA_STAGING}"),
        "--exclude",
        &format!("./{MEDIA_OLD}"),
        "-cf",
        "-",
        ".",
    ]);
    run(
        cluster,
        &media.exec,
        &format!("tar of {}", media.dir),
        argv,
        None,
        out,
    )
    .await
}

/// The shell scripts of the media steps; `$1` is the media directory.
mod scripts {
    /// Unpacks stdin into a fresh staging directory.
    pub(super) const STAGE: &str = r#"set -e
rm -rf "$1/.fedilab-restore"
mkdir "$1/.fedilab-restore"
tar -C "$1/.fedilab-restore" -xf -"#;
    /// Moves the live entries aside, the staged ones in, removes the old.
    pub(super) const SWAP: &str = r#"set -e
test -d "$1/.fedilab-restore"
rm -rf "$1/.fedilab-old"
mkdir "$1/.fedilab-old"
find "$1" -mindepth 1 -maxdepth 1 ! -name .fedilab-restore ! -name .fedilab-old -exec mv {} "$1/.fedilab-old/" \;
find "$1/.fedilab-restore" -mindepth 1 -maxdepth 1 -exec mv {} "$1/" \;
rmdir "$1/.fedilab-restore"
rm -rf "$1/.fedilab-old""#;
    /// Removes the staging directory.
    pub(super) const DISCARD: &str = r#"rm -rf "$1/.fedilab-restore""#;
}

fn script(body: &str, dir: &str) -> Vec<String> {
    strings(&["sh", "-c", body, "sh", dir])
}

/// Unpacks the tar `input` into the staging directory inside the media
/// directory; the live media stay as they are. Removed again on failure.
///
/// # Errors
/// [`BackupError`] when the pod cannot be reached or tar fails.
pub async fn stage_media(
    cluster: &Cluster,
    media: &MediaTarget,
    input: &mut (dyn AsyncRead + Unpin + Send),
) -> Result<(), BackupError> {
    let step = format!("unpack media into {}/{MEDIA_STAGING}", media.dir);
    let staged = run(
        cluster,
        &media.exec,
        &step,
        script(scripts::STAGE, &media.dir),
        Some(input),
        &mut tokio::io::sink(),
    )
    .await;
    if let Err(e) = staged {
        if let Err(cleanup) = discard_media(cluster, media).await {
            tracing::warn!("cannot remove the staged media: {cleanup}");
        }
        return Err(e);
    }
    Ok(())
}

/// Puts the staged media in place of the live ones (renames within the
/// volume: quick), then removes the old ones.
///
/// # Errors
/// [`BackupError`] when the pod cannot be reached or a step fails.
pub async fn swap_media(cluster: &Cluster, media: &MediaTarget) -> Result<(), BackupError> {
    run_quiet(
        cluster,
        &media.exec,
        &format!("put the restored media in place in {}", media.dir),
        script(scripts::SWAP, &media.dir),
    )
    .await
}

/// Removes the staging directory (after a failed restore).
///
/// # Errors
/// [`BackupError`] when the pod cannot be reached or rm fails.
pub async fn discard_media(cluster: &Cluster, media: &MediaTarget) -> Result<(), BackupError> {
    run_quiet(
        cluster,
        &media.exec,
        &format!("remove {}/{MEDIA_STAGING}", media.dir),
        script(scripts::DISCARD, &media.dir),
    )
    .await
}

/// Empties Redis database `index` (caches, feeds and job queues that
/// described the replaced data).
///
/// # Errors
/// [`BackupError`] when the pod cannot be reached or redis-cli fails.
pub async fn flush_redis(
    cluster: &Cluster,
    redis: &ExecTarget,
    index: u32,
) -> Result<(), BackupError> {
    let argv = strings(&["redis-cli", "-n", &index.to_string(), "FLUSHDB"]);
    run_quiet(
        cluster,
        redis,
        &format!("flush Redis database {index}"),
        argv,
    )
    .await
}

/// The data of Secret `name` in `lab`'s namespace, as text.
///
/// # Errors
/// [`BackupError::Api`] when it cannot be read.
pub async fn read_secret(
    cluster: &Cluster,
    lab: &LabName,
    name: &str,
) -> Result<BTreeMap<String, String>, BackupError> {
    let namespace = names::namespace(lab);
    let api: Api<Secret> = Api::namespaced(cluster.client.clone(), &namespace);
    let secret = api.get(name).await.map_err(|source| BackupError::Api {
        what: format!("cannot read Secret {name} in {namespace}"),
        source,
    })?;
    Ok(secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect())
}

/// Sets `data`'s keys in Secret `name` (a merge patch: other keys stay).
/// The pods see the values after their restart.
///
/// # Errors
/// [`BackupError::Api`] when the patch is refused.
pub async fn patch_secret(
    cluster: &Cluster,
    lab: &LabName,
    name: &str,
    data: &BTreeMap<String, String>,
) -> Result<(), BackupError> {
    let namespace = names::namespace(lab);
    let api: Api<Secret> = Api::namespaced(cluster.client.clone(), &namespace);
    let encoded: BTreeMap<&String, ByteString> = data
        .iter()
        .map(|(k, v)| (k, ByteString(v.as_bytes().to_vec())))
        .collect();
    let patch = serde_json::json!({ "data": encoded });
    let params = PatchParams {
        field_manager: Some(names::FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch(name, &params, &Patch::Merge(&patch))
        .await
        .map_err(|source| BackupError::Api {
            what: format!("cannot update Secret {name} in {namespace}"),
            source,
        })?;
    Ok(())
}

/// Restarts the Deployments of `components` of `instance` (a new
/// `restartedAt` annotation in their pod template, as `kubectl rollout
/// restart` does); returns without waiting for the new pods.
///
/// # Errors
/// [`BackupError::Api`] when a patch is refused.
pub async fn restart(
    cluster: &Cluster,
    lab: &LabName,
    instance: &InstanceName,
    components: &[Component],
) -> Result<(), BackupError> {
    let namespace = names::namespace(lab);
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &namespace);
    for component in components {
        let name = names::component_object(instance, *component);
        crate::rollout::restart(&api, &name)
            .await
            .map_err(|source| BackupError::Api {
                what: format!("cannot restart Deployment {name} in {namespace}"),
                source,
            })?;
    }
    Ok(())
}

/// The image of `component`'s Deployment (its first container), such as
/// `ghcr.io/mastodon/mastodon:v4.4.8`.
///
/// # Errors
/// [`BackupError::Api`] when it cannot be read.
pub async fn server_image(
    cluster: &Cluster,
    lab: &LabName,
    instance: &InstanceName,
    component: Component,
) -> Result<Option<String>, BackupError> {
    let namespace = names::namespace(lab);
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &namespace);
    let name = names::component_object(instance, component);
    let deployment = api.get(&name).await.map_err(|source| BackupError::Api {
        what: format!("cannot read Deployment {name} in {namespace}"),
        source,
    })?;
    Ok(deployment
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.into_iter().next())
        .and_then(|c| c.image))
}

/// How often [`stop_workers`] looks at the pods.
const STOP_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Scales the Deployment of each of `components` to zero and waits until
/// none of their pods is left (a job worker must not run jobs of the old
/// data against the new, nor push them back after Redis was flushed);
/// returns each Deployment's replicas before, for [`start_workers`].
///
/// # Errors
/// [`BackupError::Api`] when a Deployment cannot be read or scaled;
/// [`BackupError::Command`] when pods are still there after `budget`
/// (the caller then starts the workers again).
pub async fn stop_workers(
    cluster: &Cluster,
    lab: &LabName,
    instance: &InstanceName,
    components: &[Component],
    budget: std::time::Duration,
) -> Result<Vec<(Component, i32)>, BackupError> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::ListParams;

    let namespace = names::namespace(lab);
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &namespace);
    let mut before = Vec::new();
    for component in components {
        let name = names::component_object(instance, *component);
        let deployment = deployments
            .get(&name)
            .await
            .map_err(|source| BackupError::Api {
                what: format!("cannot read Deployment {name} in {namespace}"),
                source,
            })?;
        let replicas = deployment.spec.and_then(|s| s.replicas).unwrap_or(1);
        before.push((*component, replicas));
        scale(cluster, lab, instance, *component, 0).await?;
    }
    let deadline = tokio::time::Instant::now() + budget;
    for component in components {
        let selector = names::component_selector(lab, instance, *component)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        loop {
            let left = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(|source| BackupError::Api {
                    what: format!(
                        "cannot list the pods of {} in {namespace}",
                        component.as_str()
                    ),
                    source,
                })?
                .items
                .len();
            if left == 0 {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BackupError::Command {
                    step: format!("stop {}", component.as_str()),
                    command: "scale to 0".to_owned(),
                    code: -1,
                    stderr: format!("{left} pods still there after {}s", budget.as_secs()),
                });
            }
            tokio::time::sleep(STOP_POLL).await;
        }
    }
    Ok(before)
}

/// Scales the workers [`stop_workers`] stopped back to their replicas.
///
/// # Errors
/// [`BackupError::Api`] when a Deployment cannot be scaled.
pub async fn start_workers(
    cluster: &Cluster,
    lab: &LabName,
    instance: &InstanceName,
    stopped: &[(Component, i32)],
) -> Result<(), BackupError> {
    for (component, replicas) in stopped {
        scale(cluster, lab, instance, *component, *replicas).await?;
    }
    Ok(())
}

async fn scale(
    cluster: &Cluster,
    lab: &LabName,
    instance: &InstanceName,
    component: Component,
    replicas: i32,
) -> Result<(), BackupError> {
    let namespace = names::namespace(lab);
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &namespace);
    let name = names::component_object(instance, component);
    let patch = serde_json::json!({ "spec": { "replicas": replicas } });
    let params = PatchParams {
        field_manager: Some(names::FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch(&name, &params, &Patch::Merge(&patch))
        .await
        .map_err(|source| BackupError::Api {
            what: format!("cannot scale Deployment {name} in {namespace} to {replicas}"),
            source,
        })?;
    Ok(())
}

/// How often [`rerun_setup`] looks at the Job.
const SETUP_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs the instance's setup Job again (deleted and created from its own
/// spec) and waits until it completes: it migrates the database to the
/// instance's release and makes sure the lab's admin exists with the
/// password and token of the admin Secret (idempotent, see the manifest's
/// `setup.sh`).
///
/// # Errors
/// [`BackupError::Api`] when the Job cannot be read, deleted or created;
/// [`BackupError::Command`] when it fails or does not complete within
/// `budget` (`fedilab status` and the Job's log say why).
pub async fn rerun_setup(
    cluster: &Cluster,
    lab: &LabName,
    instance: &InstanceName,
    budget: std::time::Duration,
) -> Result<(), BackupError> {
    use k8s_openapi::api::batch::v1::Job;
    use kube::api::{DeleteParams, PostParams, PropagationPolicy};

    let namespace = names::namespace(lab);
    let name = names::component_object(instance, Component::Setup);
    let api: Api<Job> = Api::namespaced(cluster.client.clone(), &namespace);
    let api_err = |what: &str| {
        let what = format!("cannot {what} Job {name} in {namespace}");
        move |source| BackupError::Api { what, source }
    };
    let old = api.get(&name).await.map_err(api_err("read"))?;
    let fresh = fresh_job(old);
    let deleted = api
        .delete(
            &name,
            &DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..DeleteParams::default()
            },
        )
        .await;
    match deleted {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(e) => return Err(api_err("delete")(e)),
    }
    let deadline = tokio::time::Instant::now() + budget;
    let timed_out = |state: &str| BackupError::Command {
        step: format!("setup Job {name}"),
        command: "setup.sh".to_owned(),
        code: -1,
        stderr: format!(
            "{state} after {}s; `fedilab status --lab {lab}` and `kubectl -n {namespace} logs \
             job/{name}` say why",
            budget.as_secs()
        ),
    };
    // The old Job must be gone before one of its name can be created.
    loop {
        match api.get_opt(&name).await.map_err(api_err("read"))? {
            None => break,
            Some(_) if tokio::time::Instant::now() >= deadline => {
                return Err(timed_out("the old Job was not deleted"));
            }
            Some(_) => tokio::time::sleep(SETUP_POLL).await,
        }
    }
    api.create(&PostParams::default(), &fresh)
        .await
        .map_err(api_err("create"))?;
    loop {
        let job = api.get_opt(&name).await.map_err(api_err("read"))?;
        if crate::readiness::is_job_complete(job.as_ref()) {
            return Ok(());
        }
        if crate::readiness::is_job_failed(job.as_ref()) {
            return Err(BackupError::Command {
                step: format!("setup Job {name}"),
                command: "setup.sh".to_owned(),
                code: 1,
                stderr: format!("it failed; `kubectl -n {namespace} logs job/{name}` says why"),
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(timed_out("not complete"));
        }
        tokio::time::sleep(SETUP_POLL).await;
    }
}

/// `job` as a new object: its name, labels, annotations and pod template,
/// without what the API server and the Job controller added (uid,
/// selector, controller-uid labels, status).
pub fn fresh_job(job: k8s_openapi::api::batch::v1::Job) -> k8s_openapi::api::batch::v1::Job {
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    const CONTROLLER_LABELS: [&str; 4] = [
        "controller-uid",
        "batch.kubernetes.io/controller-uid",
        "job-name",
        "batch.kubernetes.io/job-name",
    ];
    let strip = |labels: Option<BTreeMap<String, String>>| {
        labels.map(|mut l| {
            for key in CONTROLLER_LABELS {
                l.remove(key);
            }
            l
        })
    };
    let meta = job.metadata;
    let mut spec = job.spec.unwrap_or_default();
    spec.selector = None;
    spec.manual_selector = None;
    if let Some(template_meta) = spec.template.metadata.as_mut() {
        template_meta.labels = strip(template_meta.labels.take());
    }
    Job {
        metadata: ObjectMeta {
            name: meta.name,
            namespace: meta.namespace,
            labels: strip(meta.labels),
            annotations: meta.annotations,
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The tag of an image reference (`repo:v4.4.8` -> `v4.4.8`; a digest is
/// ignored).
pub fn image_tag(image: &str) -> Option<&str> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split_once(':').map(|(_, tag)| tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tags() {
        assert_eq!(
            image_tag("ghcr.io/mastodon/mastodon:v4.4.8"),
            Some("v4.4.8")
        );
        assert_eq!(image_tag("localhost:5000/mastodon:v4.5.0"), Some("v4.5.0"));
        assert_eq!(image_tag("localhost:5000/mastodon"), None);
        assert_eq!(
            image_tag("ghcr.io/mastodon/mastodon:v4.4.8@sha256:abc"),
            Some("v4.4.8")
        );
    }

    #[test]
    fn stderr_is_kept_to_its_end() {
        let tail = Tail::default();
        let mut w = tail.clone();
        let data = vec![b'a'; STDERR_KEEP + 10];
        let _ =
            Pin::new(&mut w).poll_write(&mut Context::from_waker(std::task::Waker::noop()), &data);
        let _ =
            Pin::new(&mut w).poll_write(&mut Context::from_waker(std::task::Waker::noop()), b"end");
        let text = tail.text();
        assert_eq!(text.len(), STDERR_KEEP);
        assert!(text.ends_with("aend"));
    }
}
