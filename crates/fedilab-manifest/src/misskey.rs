//! The objects of one Misskey instance: its configuration file, PostgreSQL
//! and Redis, the server, its Service and route, and the setup Job.
//!
//! Facts from Misskey's image and source that these objects rely on: the
//! app lives in `/misskey` and runs as uid 991; `pnpm run migrateandstart`
//! (the image's command) migrates on every start, which wants about 2 GB;
//! `/misskey/.config/default.yml` is mandatory (env overrides only a few
//! keys), so the whole file is rendered here and mounted from a Secret (it
//! holds the database password and the setup password); media lives in
//! `/misskey/files`; Node adds `NODE_EXTRA_CA_CERTS` to its roots; `GET
//! /healthz` checks the database and Redis; the first admin is created
//! through `POST /api/admin/accounts/create` with `setupPassword` while no
//! root user exists, and the native API token is the `"user".token`
//! column, 16 characters in plain text.

use std::collections::BTreeMap;

use fedilab_profile::names::{self, Component};
use fedilab_profile::{InstanceKind, InstanceSpec, LabSpec, MisskeySpec};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, ContainerPort, SecretVolumeSource, Volume};
use k8s_openapi::api::networking::v1::Ingress;
use serde::Serialize;

use crate::instance::{Base, CA_DIR, CA_FILE, Db, POSTGRES_PORT, REDIS_PORT, lab_ca_volume};
use crate::objects::{InstanceObjects, Manifest};
use crate::pod::{
    env, env_from_secret, http_probe, mount, resources, restricted_container, s, startup, tcp_probe,
};
use crate::routing::{self, IngressPath, Proxy};
use crate::secrets::MastodonSecrets;
use crate::setup;
use crate::tls::LeafPem;

const UID: i64 = 991;
/// The port the server listens on (from the config file).
pub const PORT: i32 = 3000;
const DB_NAME: &str = "misskey";
const DB_USER: &str = "misskey";
/// The key of the Secret's PostgreSQL password, and of the config file.
const DB_PASS_KEY: &str = "DB_PASS";
const CONFIG_KEY: &str = "default.yml";
const SETUP_PASSWORD_KEY: &str = "setup-password";
const CONFIG_PATH: &str = "/misskey/.config/default.yml";
/// Where Misskey keeps uploaded and fetched files.
pub const MEDIA_DIR: &str = "/misskey/files";
const MEDIA_SIZE: &str = "5Gi";

/// Misskey's `default.yml`, the keys fedilab sets. Field names are
/// Misskey's.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    url: String,
    port: i32,
    db: DbConfig,
    redis: RedisConfig,
    /// The id scheme; `aidx` is the one Misskey's example recommends.
    id: &'static str,
    /// Guards account creation while no admin exists.
    setup_password: String,
    /// Federation inside the lab goes to private addresses, which Misskey
    /// refuses unless listed here.
    allowed_private_networks: Vec<String>,
    fulltext_search: FulltextSearch,
    /// One worker process: a lab instance is small.
    cluster_limit: u32,
    /// Sign outgoing ActivityPub GETs (what servers requiring signed
    /// fetches expect).
    sign_to_activity_pub_get: bool,
}

#[derive(Debug, Serialize)]
struct DbConfig {
    host: String,
    port: i32,
    db: &'static str,
    user: &'static str,
    pass: String,
}

#[derive(Debug, Serialize)]
struct RedisConfig {
    host: String,
    port: i32,
}

#[derive(Debug, Serialize)]
struct FulltextSearch {
    /// Search in PostgreSQL: no Meilisearch in a lab.
    provider: &'static str,
}

impl Config {
    /// The config of `instance` in `spec`.
    pub fn new(spec: &LabSpec, instance: &InstanceSpec, secrets: &MastodonSecrets) -> Config {
        Config {
            url: format!("https://{}/", instance.host),
            port: PORT,
            db: DbConfig {
                host: names::component_object(&instance.name, Component::Postgres),
                port: POSTGRES_PORT,
                db: DB_NAME,
                user: DB_USER,
                pass: secrets.db_password.clone(),
            },
            redis: RedisConfig {
                host: names::component_object(&instance.name, Component::Redis),
                port: REDIS_PORT,
            },
            id: "aidx",
            setup_password: setup_password(secrets),
            allowed_private_networks: spec.egress_cidrs.iter().map(ToString::to_string).collect(),
            fulltext_search: FulltextSearch {
                provider: "sqlLike",
            },
            cluster_limit: 1,
            sign_to_activity_pub_get: true,
        }
    }

    /// The file's text (YAML; every string quoted where YAML 1.1 would
    /// read it as something else).
    ///
    /// # Panics
    /// Never: the struct has only strings, numbers and booleans.
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).unwrap_or_else(|e| panic!("Misskey config as YAML: {e}"))
    }
}

/// Misskey's `setupPassword`: the instance's generated secret key base
/// (Misskey has no use for one otherwise).
fn setup_password(secrets: &MastodonSecrets) -> String {
    secrets.secret_key_base.clone()
}

/// Builds one instance's objects. With a `proxy`, Traefik reaches the
/// instance through the inspector; without, straight.
pub(crate) fn build(
    spec: &LabSpec,
    instance: &InstanceSpec,
    m: &MisskeySpec,
    secrets: &MastodonSecrets,
    leaf: &LeafPem,
    proxy: Option<Proxy>,
) -> InstanceObjects {
    let b = Base {
        spec,
        instance,
        app: InstanceKind::Misskey.as_str(),
    };
    let route = match proxy {
        None => vec![Manifest::Ingress(ingress(&b))],
        Some(proxy) => routing::inspector_route(spec, instance, b.app, proxy, None).into(),
    };
    let config = Config::new(spec, instance, secrets).to_yaml();
    let setup_password = setup_password(secrets);
    let settings = BTreeMap::from([
        (s(CONFIG_KEY), &config),
        (s(DB_PASS_KEY), &secrets.db_password),
        (s(SETUP_PASSWORD_KEY), &setup_password),
    ]);
    let db = Db {
        name: DB_NAME,
        user: DB_USER,
        password_secret: names::env_secret(&instance.name),
        password_key: DB_PASS_KEY,
        resources: &m.resources.postgres,
    };
    let mut workloads = vec![
        Manifest::Service(b.service(Component::Web, PORT, false)),
        Manifest::Deployment(web(&b, m)),
    ];
    workloads.extend(route);
    InstanceObjects {
        config: vec![
            Manifest::Secret(b.secret(&names::env_secret(&instance.name), settings)),
            Manifest::Secret(b.admin_secret(secrets)),
            Manifest::Secret(b.tls_secret(leaf)),
        ],
        stateful: [
            Manifest::Service(b.service(Component::Postgres, POSTGRES_PORT, true)),
            Manifest::StatefulSet(b.postgres(&db)),
        ]
        .into_iter()
        // Resolution always gives Misskey a Redis.
        .chain(m.resources.redis.as_ref().into_iter().flat_map(|r| {
            [
                Manifest::Service(b.service(Component::Redis, REDIS_PORT, false)),
                Manifest::Deployment(b.redis(r)),
            ]
        }))
        .chain([Manifest::PersistentVolumeClaim(b.media_pvc(MEDIA_SIZE))])
        .collect(),
        workloads,
        jobs: vec![Manifest::Job(setup_job(&b, &db))],
    }
}

fn web(b: &Base<'_>, m: &MisskeySpec) -> Deployment {
    let main = Container {
        name: s("web"),
        image: Some(s(&m.image)),
        env: Some(vec![
            env("NODE_ENV", "production"),
            env("NODE_EXTRA_CA_CERTS", CA_FILE),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some(s("http")),
            container_port: PORT,
            ..ContainerPort::default()
        }]),
        resources: Some(resources(&m.resources.web)),
        // Migrations run before the server listens: a first start (and an
        // upgrade) may take many minutes on a small VM.
        startup_probe: Some(startup(http_probe("/healthz", PORT, 5, 1), 20)),
        readiness_probe: Some(http_probe("/healthz", PORT, 10, 3)),
        liveness_probe: Some(tcp_probe(PORT, 20, 6)),
        volume_mounts: Some(vec![
            config_mount(),
            mount("lab-ca", CA_DIR, true),
            mount("media", MEDIA_DIR, false),
        ]),
        security_context: Some(restricted_container()),
        ..Container::default()
    };
    let mut pod = b.pod(UID, vec![main]);
    pod.volumes = Some(vec![config_volume(b), lab_ca_volume(), b.media_volume()]);
    b.deployment(Component::Web, pod, true)
}

/// The config file alone, over the image's `.config` directory's other
/// files.
fn config_mount() -> k8s_openapi::api::core::v1::VolumeMount {
    let mut m = mount("config", CONFIG_PATH, true);
    m.sub_path = Some(s(CONFIG_KEY));
    m
}

fn config_volume(b: &Base<'_>) -> Volume {
    Volume {
        name: s("config"),
        secret: Some(SecretVolumeSource {
            secret_name: Some(names::env_secret(&b.instance.name)),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn ingress(b: &Base<'_>) -> Ingress {
    routing::ingress(
        b.spec,
        b.instance,
        b.instance_labels(),
        vec![IngressPath {
            prefix: "/",
            service: b.name(Component::Web),
            port: PORT,
        }],
    )
}

/// The setup Job: waits for the server, creates the admin through the
/// setup-password API, sets the native token to fedilab's value and checks
/// it (`scripts/misskey-setup.sh`, run in the PostgreSQL image for `psql`
/// and busybox `wget`).
fn setup_job(b: &Base<'_>, db: &Db<'_>) -> Job {
    let url = format!("http://{}:{PORT}", b.name(Component::Web));
    let extra = vec![
        env("FEDILAB_URL", &url),
        env_from_secret(
            "FEDILAB_SETUP_PASSWORD",
            &names::env_secret(&b.instance.name),
            SETUP_PASSWORD_KEY,
        ),
    ];
    setup::job(b, db, setup::MISSKEY_SCRIPT, extra)
}

#[cfg(test)]
mod tests {
    use fedilab_profile::{LabProfile, LabSpec, Overrides};

    use super::*;

    fn lab() -> LabSpec {
        let profile = LabProfile::from_yaml(
            "network: {egress_cidrs: [10.42.0.0/15, 10.60.0.0/16]}\ninstances: [{kind: misskey}]\n",
            "t",
        )
        .expect("profile");
        LabSpec::resolve(&profile, &Overrides::default()).expect("valid")
    }

    #[test]
    fn the_config_file_names_the_lab_services_and_networks() {
        let spec = lab();
        let instance = &spec.instances[0];
        let secrets = MastodonSecrets::generate_for(&instance.kind, [7; 32], &instance.name);
        let yaml = Config::new(&spec, instance, &secrets).to_yaml();
        let read: serde_json::Value = serde_saphyr::from_str(&yaml).expect("YAML reads back");
        assert_eq!(read["url"], "https://misskey1.fediverse.local/");
        assert_eq!(read["port"], 3000);
        assert_eq!(read["db"]["host"], "misskey1-postgres");
        assert_eq!(read["db"]["pass"], secrets.db_password.as_str());
        assert_eq!(read["redis"]["host"], "misskey1-redis");
        assert_eq!(read["id"], "aidx");
        assert_eq!(read["setupPassword"], secrets.secret_key_base.as_str());
        assert_eq!(
            read["allowedPrivateNetworks"],
            serde_json::json!(["10.42.0.0/15", "10.60.0.0/16"])
        );
        assert_eq!(read["fulltextSearch"]["provider"], "sqlLike");
        assert_eq!(read["clusterLimit"], 1);
        assert_eq!(secrets.api_token.len(), 16, "Misskey's native token length");
    }
}
