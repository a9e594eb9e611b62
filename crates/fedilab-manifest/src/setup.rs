//! The setup Job of a server kind whose setup is a shell script run in the
//! PostgreSQL image (Misskey; GoToSocial's second step): `psql` reaches the
//! instance's database through the `PG*` variables, busybox `wget` its
//! server, and the admin's credentials come from the admin Secret. The
//! scripts live in `scripts/` beside this crate and reach the cluster in
//! the lab's setup-scripts ConfigMap (only those of kinds the lab has).

use fedilab_profile::names::{self, Component};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, EnvVar, PodTemplateSpec, Volume,
};

use crate::instance::{Base, Db, POSTGRES_IMAGE, POSTGRES_PORT, POSTGRES_UID};
use crate::lab::lab_meta;
use crate::pod::{env, env_from_secret, init_resources, mount, restricted_container, s};

/// Misskey's setup script and its key in the setup-scripts ConfigMap.
pub(crate) const MISSKEY_SCRIPT: (&str, &str) = (
    "misskey-setup.sh",
    include_str!("../scripts/misskey-setup.sh"),
);
/// GoToSocial's first step (in its own image): the admin account.
pub(crate) const GOTOSOCIAL_ADMIN_SCRIPT: (&str, &str) = (
    "gotosocial-admin.sh",
    include_str!("../scripts/gotosocial-admin.sh"),
);
/// GoToSocial's second step (in the PostgreSQL image): the API token.
pub(crate) const GOTOSOCIAL_TOKEN_SCRIPT: (&str, &str) = (
    "gotosocial-token.sh",
    include_str!("../scripts/gotosocial-token.sh"),
);
/// Where the setup scripts are mounted.
pub(crate) const SETUP_DIR: &str = "/etc/fedilab/setup";

/// The admin's credentials from the admin Secret, as the scripts read them.
pub(crate) fn admin_env(b: &Base<'_>) -> Vec<EnvVar> {
    let admin = names::admin_secret(&b.instance.name);
    vec![
        env_from_secret(
            "FEDILAB_ADMIN_USERNAME",
            &admin,
            names::admin_keys::USERNAME,
        ),
        env_from_secret("FEDILAB_ADMIN_EMAIL", &admin, names::admin_keys::EMAIL),
        env_from_secret(
            "FEDILAB_ADMIN_PASSWORD",
            &admin,
            names::admin_keys::PASSWORD,
        ),
        env_from_secret("FEDILAB_API_TOKEN", &admin, names::admin_keys::API_TOKEN),
        env("FEDILAB_OAUTH_APP", names::OAUTH_APP_NAME),
    ]
}

/// The scripts ConfigMap as a volume named `setup`.
pub(crate) fn scripts_volume() -> Volume {
    Volume {
        name: s("setup"),
        config_map: Some(ConfigMapVolumeSource {
            name: s(names::SETUP_SCRIPTS_CONFIGMAP),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// A Job running `script` (its ConfigMap key) with `sh` in the PostgreSQL
/// image, with the database's `PG*` variables, the admin's credentials and
/// `extra`. Retried three times; an hour bounds a stuck run.
pub(crate) fn job(b: &Base<'_>, db: &Db<'_>, script: (&str, &str), extra: Vec<EnvVar>) -> Job {
    let (key, _) = script;
    let mut vars = vec![
        env("PGHOST", &b.name(Component::Postgres)),
        env("PGPORT", &POSTGRES_PORT.to_string()),
        env("PGUSER", db.user),
        env("PGDATABASE", db.name),
        env_from_secret("PGPASSWORD", &db.password_secret, db.password_key),
    ];
    vars.extend(admin_env(b));
    vars.extend(extra);
    let container = Container {
        name: s("setup"),
        image: Some(s(POSTGRES_IMAGE)),
        command: Some(vec![s("sh"), format!("{SETUP_DIR}/{key}")]),
        env: Some(vars),
        volume_mounts: Some(vec![mount("setup", SETUP_DIR, true)]),
        security_context: Some(restricted_container()),
        resources: Some(init_resources()),
        ..Container::default()
    };
    let mut pod = b.pod(POSTGRES_UID, vec![container]);
    pod.restart_policy = Some(s("Never"));
    pod.volumes = Some(vec![scripts_volume()]);
    let component = Component::Setup;
    Job {
        metadata: lab_meta(b.spec, &b.name(component), b.labels(component)),
        spec: Some(JobSpec {
            backoff_limit: Some(3),
            active_deadline_seconds: Some(3600),
            template: PodTemplateSpec {
                metadata: b.pod_meta(component),
                spec: Some(pod),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}
