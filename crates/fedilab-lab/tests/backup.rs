//! `backup`, `restore` and `import` as whole sequences: the lab's state in
//! a temp dir, the cluster played by the exec test server (its object store
//! for Deployments, Secrets and the setup Job; every exec'd command run as a
//! local process against a throwaway PostgreSQL and Redis, the media
//! directory mapped to a temp dir). Checked: data equal after backup,
//! change, restore (fingerprints, media files), the archive's secrets in the
//! host state and the Secrets, credentials changed and said so, the pods
//! restarted and the setup Job run again; a refused archive touching
//! nothing; import of a custom and a plain dump with a fixture
//! `.env.production`; a failed import leaving data and Secrets as they were.

#[path = "../../fedilab-orchestrator/tests/exec_server/mod.rs"]
mod exec_server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use exec_server::{Config, Local, Objects, Script, Server, V5, bounded, start};
use fedilab_data::import::DumpFormat;
use fedilab_lab::{
    BackupRequest, ImportRequest, RestoreRequest, TransferError, TransferEvent, TransferProgress,
};
use fedilab_manifest::MastodonSecrets;
use fedilab_profile::names::{self, Component};
use fedilab_state::LabDir;
use fedilab_testdb::{TempPostgres, TempRedis, fingerprint, mastodon_like};
use k8s_openapi::api::core::v1::Secret;

const LAB_JSON: &str = r#"{"lab":"main","domain":"fediverse.local","namespace":"fedilab-main",
  "node_address":"192.0.2.10","instances":[
    {"name":"mastodon1","host":"mastodon1.fediverse.local","url":"https://mastodon1.fediverse.local/"}],
  "serve":null}"#;
const MEDIA_DIR: &str = "/opt/mastodon/public/system";
const NS: &str = "/namespaces/fedilab-main";

/// Events, as text.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<String>>);

impl TransferProgress for Recorder {
    fn event(&self, event: &TransferEvent<'_>) {
        let line = match event {
            TransferEvent::Step(s) => format!("step {s}"),
            TransferEvent::Bytes { .. } => return,
            TransferEvent::Warning(w) => format!("warning {w}"),
        };
        self.0.lock().expect("lock").push(line);
    }
}

struct Lab {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    media: PathBuf,
    pg: TempPostgres,
    _redis: TempRedis,
    objects: Objects,
    server: Server,
}

fn name() -> fedilab_profile::InstanceName {
    "mastodon1".parse().expect("name")
}

fn deployment_path(component: Component) -> String {
    format!(
        "/apis/apps/v1{NS}/deployments/{}",
        names::component_object(&name(), component)
    )
}

fn secret_path(secret: &str) -> String {
    format!("/api/v1{NS}/secrets/{secret}")
}

fn job_path() -> String {
    format!(
        "/apis/batch/v1{NS}/jobs/{}",
        names::component_object(&name(), Component::Setup)
    )
}

fn secret_json(name: &str, data: &[(&str, &str)]) -> serde_json::Value {
    let data: BTreeMap<&str, k8s_openapi::ByteString> = data
        .iter()
        .map(|(k, v)| (*k, k8s_openapi::ByteString(v.as_bytes().to_vec())))
        .collect();
    serde_json::json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": "fedilab-main"}, "data": data})
}

fn secret_value(objects: &Objects, name: &str, key: &str) -> String {
    let secret: Secret =
        serde_json::from_value(objects.get(&secret_path(name)).expect("secret")).expect("Secret");
    let data = secret.data.expect("data");
    String::from_utf8(data.get(key).expect("key").0.clone()).expect("utf-8")
}

fn secrets(seed: u8) -> MastodonSecrets {
    MastodonSecrets::generate([seed; 32], &name())
}

/// A lab `main` with instance mastodon1 (image v4.4.8) whose generated
/// secrets come from `seed`, its database holding the fixture and its
/// media two files.
async fn lab(seed: u8) -> Lab {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let dir = LabDir::new(&data, &"main".parse().expect("lab"));
    std::fs::create_dir_all(dir.path()).expect("mkdir");
    std::fs::write(dir.path().join("lab.json"), LAB_JSON).expect("lab.json");
    let s = secrets(seed);
    dir.set_instance_secrets("mastodon1", &s).expect("secrets");
    let media = tmp.path().join("media");
    write_tree(
        &media,
        &[
            ("media_attachments/files/1/original/a.png", "png"),
            ("accounts/avatars/2/original/b.jpg", "jpg"),
        ],
    );

    let pg = TempPostgres::start().expect("PostgreSQL");
    pg.psql("postgres", "CREATE ROLE mastodon SUPERUSER LOGIN")
        .expect("role");
    pg.psql("postgres", "CREATE DATABASE mastodon OWNER mastodon")
        .expect("db");
    mastodon_like::load(&pg, "mastodon").expect("fixture");
    let redis = TempRedis::start().expect("Redis");
    mastodon_like::load_redis(&redis, 0).expect("redis keys");

    let objects = Objects::default();
    for component in [Component::Web, Component::Streaming, Component::Sidekiq] {
        objects.put(
            &deployment_path(component),
            serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": names::component_object(&name(), component),
                             "namespace": "fedilab-main"},
                "spec": {"selector": {"matchLabels": {"a": "b"}},
                         "template": {"spec": {"containers": [
                             {"name": "web", "image": "ghcr.io/mastodon/mastodon:v4.4.8"}]}}}}),
        );
    }
    objects.put(
        &secret_path(&names::env_secret(&name())),
        secret_json(
            &names::env_secret(&name()),
            &[
                ("SECRET_KEY_BASE", &s.secret_key_base),
                ("VAPID_PRIVATE_KEY", &s.vapid_private_key),
                ("VAPID_PUBLIC_KEY", &s.vapid_public_key),
                (
                    "ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY",
                    &s.ar_deterministic_key,
                ),
                (
                    "ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT",
                    &s.ar_key_derivation_salt,
                ),
                ("ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY", &s.ar_primary_key),
                ("DB_PASS", &s.db_password),
            ],
        ),
    );
    objects.put(
        &secret_path(&names::admin_secret(&name())),
        secret_json(
            &names::admin_secret(&name()),
            &[
                (names::admin_keys::USERNAME, names::ADMIN_USERNAME),
                (names::admin_keys::PASSWORD, &s.admin_password),
                (names::admin_keys::API_TOKEN, &s.api_token),
            ],
        ),
    );
    let job_name = names::component_object(&name(), Component::Setup);
    objects.put(
        &job_path(),
        serde_json::json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job_name, "namespace": "fedilab-main", "uid": "old",
                         "labels": {"controller-uid": "old", "fedilab.dev/lab": "main"}},
            "spec": {"selector": {"matchLabels": {"controller-uid": "old"}},
                     "template": {"metadata": {"labels": {"controller-uid": "old", "job-name": job_name}},
                                  "spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "setup", "image": "m"}]}}},
            "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}),
    );

    let bindir = pg.bin("psql").parent().expect("bin").to_path_buf();
    let env = pg.env();
    let redis_cli = redis.command();
    let redis_program = redis_cli.get_program().to_owned();
    let redis_args: Vec<_> = redis_cli.get_args().map(|a| a.to_owned()).collect();
    let media_dir = media.clone();
    let local = Local(Arc::new(move |argv: &[String]| {
        let rest = argv[1..].iter().map(|a| {
            if a == MEDIA_DIR {
                media_dir.clone().into_os_string()
            } else {
                a.into()
            }
        });
        let mut command = match argv[0].as_str() {
            "psql" | "pg_dump" | "pg_restore" => {
                tokio::process::Command::new(bindir.join(&argv[0]))
            }
            "redis-cli" => {
                let mut c = tokio::process::Command::new(&redis_program);
                c.args(&redis_args);
                c
            }
            other => tokio::process::Command::new(other),
        };
        command.args(rest.collect::<Vec<_>>()).envs(env.clone());
        command
    }));
    // One pod per component that runs commands; none of Sidekiq's, so it
    // counts as stopped at once.
    let lab_name: fedilab_profile::LabName = "main".parse().expect("lab");
    let pods: Vec<serde_json::Value> = [
        (Component::Web, "web"),
        (Component::Postgres, "postgres"),
        (Component::Redis, "redis"),
    ]
    .into_iter()
    .map(|(component, container)| {
        serde_json::json!({
            "metadata": {"name": format!("mastodon1-{container}-0"), "namespace": "fedilab-main",
                         "creationTimestamp": "2026-01-01T00:00:00Z",
                         "labels": names::component_selector(&lab_name, &name(), component)},
            "spec": {"containers": [{"name": container}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        })
    })
    .collect();
    let server = start(Config {
        pods: serde_json::Value::Array(pods),
        protocols: &[V5],
        script: Script::Local(local),
        objects: Some(objects.clone()),
    })
    .await;
    Lab {
        _tmp: tmp,
        data,
        media,
        pg,
        _redis: redis,
        objects,
        server,
    }
}

impl Lab {
    fn dir(&self) -> LabDir {
        LabDir::new(&self.data, &"main".parse().expect("lab"))
    }

    fn exec_count(&self) -> usize {
        self.server.seen.lock().expect("lock").execs.len()
    }
}

fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (name, body) in files {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, body).expect("write");
    }
}

fn read_tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(
                    path.strip_prefix(root)
                        .expect("inside")
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[tokio::test]
async fn backup_change_restore_brings_data_media_and_secrets_back() {
    let lab = lab(1).await;
    let before = fingerprint::pg(&lab.pg, "mastodon").expect("fingerprint");
    let media_before = read_tree(&lab.media);
    let archive = lab.data.join("mastodon1.fedilab");
    let progress = Recorder::default();
    let report = bounded(fedilab_lab::backup(
        &lab.server.cluster,
        &BackupRequest {
            data_dir: lab.data.clone(),
            lab: "main".parse().expect("lab"),
            instance: "mastodon1".to_owned(),
            output: archive.clone(),
            fedilab_version: "0.1.0".to_owned(),
        },
        &progress,
    ))
    .await
    .expect("backup");
    assert_eq!(report.manifest.kind, "mastodon");
    assert_eq!(report.manifest.server_version, "v4.4.8");
    assert_eq!(report.manifest.host, "mastodon1.fediverse.local");
    let members: Vec<&str> = report
        .manifest
        .members
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(members, ["secrets.json", "database.pgdump", "media.tar"]);
    let meta = std::fs::metadata(&archive).expect("archive");
    assert_eq!(report.size, meta.len());
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "it holds secrets");
    // Nothing spooled is left beside the archive.
    let leftovers: Vec<_> = std::fs::read_dir(&lab.data)
        .expect("dir")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".fedilab-spool")
        })
        .collect();
    assert!(leftovers.is_empty());

    // The lab goes on: data, media and the credentials change.
    mastodon_like::change(&lab.pg, "mastodon").expect("change");
    std::fs::remove_file(lab.media.join("accounts/avatars/2/original/b.jpg")).expect("rm");
    lab.dir()
        .set_instance_secrets("mastodon1", &secrets(2))
        .expect("other secrets");

    let progress = Recorder::default();
    let report = bounded(fedilab_lab::restore(
        &lab.server.cluster,
        &RestoreRequest {
            data_dir: lab.data.clone(),
            lab: "main".parse().expect("lab"),
            instance: "mastodon1".to_owned(),
            archive: archive.clone(),
            setup_budget: Duration::from_secs(10),
        },
        &progress,
    ))
    .await
    .expect("restore");

    assert_eq!(fingerprint::pg(&lab.pg, "mastodon").expect("fp"), before);
    assert_eq!(read_tree(&lab.media), media_before);
    let original = secrets(1);
    assert!(report.credentials_changed);
    assert_eq!(report.credentials.password, original.admin_password);
    assert_eq!(report.credentials.api_token, original.api_token);
    let saved = lab
        .dir()
        .instance_secrets("mastodon1")
        .expect("read")
        .expect("saved");
    assert!(saved.secret_key_base == original.secret_key_base);
    assert!(saved.db_password == secrets(2).db_password, "the lab's own");
    assert_eq!(
        secret_value(&lab.objects, &names::env_secret(&name()), "SECRET_KEY_BASE"),
        original.secret_key_base
    );
    assert_eq!(
        secret_value(
            &lab.objects,
            &names::admin_secret(&name()),
            names::admin_keys::API_TOKEN
        ),
        original.api_token
    );
    // The restore's API calls, in order: the version, the Secrets, the
    // restarts, the setup Job again (deleted, gone, created, complete).
    let calls = lab.objects.calls();
    let restore_calls: Vec<&str> = calls
        .iter()
        .skip_while(|c| !c.starts_with("GET /apis/apps"))
        .skip(1)
        .skip_while(|c| !c.starts_with("GET /apis/apps"))
        .map(String::as_str)
        .collect();
    let env = secret_path(&names::env_secret(&name()));
    let admin = secret_path(&names::admin_secret(&name()));
    assert_eq!(
        restore_calls,
        [
            format!("GET {}", deployment_path(Component::Web)),
            format!("GET {env}"),
            format!("PATCH {env}"),
            format!("PATCH {admin}"),
            // Sidekiq stopped (no pod of it listed), then started again.
            format!("GET {}", deployment_path(Component::Sidekiq)),
            format!("PATCH {}", deployment_path(Component::Sidekiq)),
            format!("PATCH {}", deployment_path(Component::Sidekiq)),
            format!("PATCH {}", deployment_path(Component::Web)),
            format!("PATCH {}", deployment_path(Component::Streaming)),
            format!("GET {}", job_path()),
            format!("DELETE {}", job_path()),
            format!("GET {}", job_path()),
            format!("POST /apis/batch/v1{NS}/jobs"),
            format!("GET {}", job_path()),
        ]
    );
    let sidekiq = lab
        .objects
        .get(&deployment_path(Component::Sidekiq))
        .expect("sidekiq");
    assert_eq!(sidekiq["spec"]["replicas"], 1, "started again: {sidekiq}");
    let job = lab.objects.get(&job_path()).expect("job");
    assert!(job["metadata"]["uid"].is_null(), "a new object: {job}");
    assert!(job["spec"]["selector"].is_null(), "{job}");
    let steps = progress.0.lock().expect("lock").clone();
    assert_eq!(
        steps.first().map(String::as_str),
        Some("step check and unpack the archive")
    );
    assert_eq!(
        steps.last().map(String::as_str),
        Some("step setup Job: migrations, the lab's admin and token")
    );
    // The Redis database was flushed.
    assert_eq!(
        lab._redis
            .cli(&["-n", "0", "DBSIZE"])
            .expect("dbsize")
            .trim(),
        "0"
    );

    // An instance on an older release refuses the archive and nothing runs.
    let mut web = lab
        .objects
        .get(&deployment_path(Component::Web))
        .expect("web");
    web["spec"]["template"]["spec"]["containers"][0]["image"] =
        serde_json::json!("ghcr.io/mastodon/mastodon:v4.4.0");
    lab.objects.put(&deployment_path(Component::Web), web);
    let execs = lab.exec_count();
    let err = bounded(fedilab_lab::restore(
        &lab.server.cluster,
        &RestoreRequest {
            data_dir: lab.data.clone(),
            lab: "main".parse().expect("lab"),
            instance: "mastodon1".to_owned(),
            archive,
            setup_budget: Duration::from_secs(10),
        },
        &Recorder::default(),
    ))
    .await
    .expect_err("refused");
    assert!(err.is_usage(), "{err}");
    assert!(
        err.to_string()
            .contains("taken from mastodon v4.4.8, newer than mastodon1's v4.4.0"),
        "{err}"
    );
    assert_eq!(lab.exec_count(), execs, "nothing ran in the pods");
}

fn dump(pg: &TempPostgres, db: &str, path: &Path, format: DumpFormat) {
    let mut command = pg.command("pg_dump");
    command.args(["-d", db, "-f"]).arg(path);
    if format == DumpFormat::Custom {
        command.arg("-Fc");
    }
    let out = command.output().expect("pg_dump runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn fixture_env() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/env.production")
}

#[tokio::test]
async fn import_takes_the_env_files_secrets_and_a_custom_or_plain_dump() {
    for format in [DumpFormat::Custom, DumpFormat::Plain] {
        let lab = lab(1).await;
        // The real instance's database, dumped by the test.
        lab.pg.create_db("realsource").expect("source db");
        mastodon_like::load(&lab.pg, "realsource").expect("fixture");
        mastodon_like::change(&lab.pg, "realsource").expect("its own rows");
        let source = fingerprint::pg(&lab.pg, "realsource").expect("fp");
        let dump_path = lab.data.join("real.dump");
        dump(&lab.pg, "realsource", &dump_path, format);
        let real_media = lab.data.join("real-media");
        write_tree(
            &real_media,
            &[("media_attachments/files/9/original/z.png", "z")],
        );

        let report = bounded(fedilab_lab::import(
            &lab.server.cluster,
            &ImportRequest {
                data_dir: lab.data.clone(),
                lab: "main".parse().expect("lab"),
                instance: "mastodon1".to_owned(),
                env_file: fixture_env(),
                dump: dump_path,
                media: Some(real_media.clone()),
                setup_budget: Duration::from_secs(10),
            },
            &Recorder::default(),
        ))
        .await
        .expect("import");
        assert_eq!(report.format, format);
        assert_eq!(
            fingerprint::pg(&lab.pg, "mastodon").expect("fp"),
            source,
            "{format:?}"
        );
        assert_eq!(read_tree(&lab.media), read_tree(&real_media));
        let env = report.env.expect("env");
        assert!(env.missing.is_empty(), "{env:?}");
        assert!(env.ignored.contains(&"DB_PASS".to_owned()));
        assert!(env.ignored.contains(&"SMTP_PASSWORD".to_owned()));
        assert_eq!(env.local_domain.as_deref(), Some("social.example.org"));
        assert!(report.warnings[0].contains("the imported instance was social.example.org"));
        let saved = lab
            .dir()
            .instance_secrets("mastodon1")
            .expect("read")
            .expect("saved");
        assert!(saved.secret_key_base.starts_with("5f8e2b1c"));
        assert_eq!(saved.ar_primary_key, "fixturePrimaryKey000000000000001");
        // The lab keeps its own admin credentials and database password.
        let own = secrets(1);
        assert!(!report.credentials_changed);
        assert_eq!(saved.admin_password, own.admin_password);
        assert_eq!(saved.db_password, own.db_password);
        assert_eq!(
            secret_value(&lab.objects, &names::env_secret(&name()), "DB_PASS"),
            own.db_password
        );
        assert_eq!(
            secret_value(
                &lab.objects,
                &names::env_secret(&name()),
                "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY"
            ),
            "fixturePrimaryKey000000000000001"
        );
    }
}

#[tokio::test]
async fn a_failed_import_leaves_data_secrets_and_media_as_they_were() {
    let lab = lab(1).await;
    let before = fingerprint::pg(&lab.pg, "mastodon").expect("fingerprint");
    let media_before = read_tree(&lab.media);
    let broken = lab.data.join("broken.dump");
    std::fs::write(
        &broken,
        b"PGDMP\x01\x0f\x00 and then nothing that pg_restore reads",
    )
    .expect("write");
    let err = bounded(fedilab_lab::import(
        &lab.server.cluster,
        &ImportRequest {
            data_dir: lab.data.clone(),
            lab: "main".parse().expect("lab"),
            instance: "mastodon1".to_owned(),
            env_file: fixture_env(),
            dump: broken,
            media: None,
            setup_budget: Duration::from_secs(10),
        },
        &Recorder::default(),
    ))
    .await
    .expect_err("not a dump");
    assert!(matches!(err, TransferError::Before(_)), "{err:?}");
    assert!(
        err.to_string().ends_with("; the instance is unchanged"),
        "{err}"
    );
    assert_eq!(fingerprint::pg(&lab.pg, "mastodon").expect("fp"), before);
    assert_eq!(read_tree(&lab.media), media_before);
    let saved = lab
        .dir()
        .instance_secrets("mastodon1")
        .expect("read")
        .expect("saved");
    assert!(saved == secrets(1), "the host secrets are untouched");
    assert!(
        !lab.objects.calls().iter().any(|c| c.starts_with("PATCH")),
        "no Secret patched, no pod restarted: {:?}",
        lab.objects.calls()
    );
    let dbs = lab
        .pg
        .psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'mastodon_%'",
        )
        .expect("count");
    assert_eq!(dbs.trim(), "0", "no stray database");
}

#[tokio::test]
async fn a_failure_after_the_load_puts_secrets_media_and_databases_back() {
    let lab = lab(1).await;
    let before = fingerprint::pg(&lab.pg, "mastodon").expect("fingerprint");
    let media_before = read_tree(&lab.media);
    let env_before = lab
        .objects
        .get(&secret_path(&names::env_secret(&name())))
        .expect("env secret");
    // The admin Secret is gone: its patch fails after the env Secret's.
    lab.objects
        .by_path
        .lock()
        .expect("lock")
        .remove(&secret_path(&names::admin_secret(&name())));
    lab.pg.create_db("realsource").expect("source db");
    mastodon_like::load(&lab.pg, "realsource").expect("fixture");
    let dump_path = lab.data.join("real.dump");
    dump(&lab.pg, "realsource", &dump_path, DumpFormat::Custom);
    let real_media = lab.data.join("real-media");
    write_tree(&real_media, &[("cache/z.png", "z")]);

    let err = bounded(fedilab_lab::import(
        &lab.server.cluster,
        &ImportRequest {
            data_dir: lab.data.clone(),
            lab: "main".parse().expect("lab"),
            instance: "mastodon1".to_owned(),
            env_file: fixture_env(),
            dump: dump_path,
            media: Some(real_media),
            setup_budget: Duration::from_secs(10),
        },
        &Recorder::default(),
    ))
    .await
    .expect_err("no admin Secret");
    assert!(matches!(err, TransferError::Before(_)), "{err:?}");
    assert_eq!(fingerprint::pg(&lab.pg, "mastodon").expect("fp"), before);
    assert_eq!(read_tree(&lab.media), media_before, "staged media removed");
    assert_eq!(
        lab.objects
            .get(&secret_path(&names::env_secret(&name())))
            .expect("env secret"),
        env_before,
        "the env Secret's old values are back"
    );
    assert!(
        lab.dir().instance_secrets("mastodon1").expect("read") == Some(secrets(1)),
        "host secrets untouched"
    );
    let dbs = lab
        .pg
        .psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'mastodon_%'",
        )
        .expect("count");
    assert_eq!(dbs.trim(), "0", "the loaded database was dropped");
    assert!(
        !lab.objects
            .calls()
            .iter()
            .any(|c| c.contains("/deployments/")),
        "no worker stopped, no pod restarted"
    );
}
