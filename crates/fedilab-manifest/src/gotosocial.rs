//! The objects of one GoToSocial instance: its environment and config
//! file, PostgreSQL, the server, its Service and route, and the two-step
//! setup Job.
//!
//! Facts from GoToSocial's image and source that these objects rely on:
//! the binary is `/gotosocial/gotosocial` in an Alpine image (busybox `sh`
//! and `wget`), running as uid 1000 with `server start`; every setting has
//! a `GTS_*` variable, except that before 0.20 the nested
//! `http-client.allow-ips` is read only from a config file
//! (`GTS_CONFIG_PATH`); private addresses are refused at dial time unless
//! allowed there; Go reads the CA bundle named by `SSL_CERT_FILE`;
//! `/readyz` checks the database and `/livez` the process; migrations run
//! at start; the admin CLI needs a migrated database; tokens are stored in
//! plain text (`tokens.access`).

use std::collections::BTreeMap;

use fedilab_profile::names::{self, Component};
use fedilab_profile::{GoToSocialSpec, InstanceKind, InstanceSpec, LabSpec};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapEnvSource, ConfigMapVolumeSource, Container, ContainerPort, EnvFromSource,
    EnvVar, SecurityContext, Volume,
};
use k8s_openapi::api::networking::v1::Ingress;
use serde::Serialize;

use crate::instance::{
    Base, CA_DIR, Db, POSTGRES_PORT, TRUST_BUNDLE, TRUST_DIR, trust_bundle_init, trust_volumes,
};
use crate::lab::lab_meta;
use crate::objects::{InstanceObjects, Manifest};
use crate::pod::{
    env, env_from_secret, http_probe, mount, resources, restricted_container, s, startup,
};
use crate::routing::{self, IngressPath, Proxy};
use crate::secrets::MastodonSecrets;
use crate::setup::{self, SETUP_DIR};
use crate::tls::LeafPem;

const UID: i64 = 1000;
/// The port the server listens on.
pub const PORT: i32 = 8080;
const DB_NAME: &str = "gotosocial";
const DB_USER: &str = "gotosocial";
const DB_PASS_KEY: &str = "DB_PASS";
const CONFIG_DIR: &str = "/gotosocial/config";
const CONFIG_KEY: &str = "config.yaml";
/// Where GoToSocial keeps media.
pub const MEDIA_DIR: &str = "/gotosocial/storage";
const MEDIA_SIZE: &str = "5Gi";

/// GoToSocial's `config.yaml`: only what has no environment variable.
#[derive(Debug, Serialize)]
pub struct Config {
    #[serde(rename = "http-client")]
    http_client: HttpClient,
}

#[derive(Debug, Serialize)]
struct HttpClient {
    /// The lab's networks: federation inside the lab goes to private
    /// addresses, which GoToSocial refuses to dial otherwise.
    #[serde(rename = "allow-ips")]
    allow_ips: Vec<String>,
}

impl Config {
    /// The config of a GoToSocial instance in `spec`.
    pub fn new(spec: &LabSpec) -> Config {
        Config {
            http_client: HttpClient {
                allow_ips: spec.egress_cidrs.iter().map(ToString::to_string).collect(),
            },
        }
    }

    /// The file's text.
    ///
    /// # Panics
    /// Never: the struct has only strings.
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).unwrap_or_else(|e| panic!("GoToSocial config as YAML: {e}"))
    }
}

/// The instance's `GTS_*` environment (the password comes from the Secret).
pub fn environment(spec: &LabSpec, instance: &InstanceSpec) -> BTreeMap<String, String> {
    let cidrs: Vec<String> = spec.egress_cidrs.iter().map(ToString::to_string).collect();
    [
        ("GTS_HOST", instance.host.to_string()),
        ("GTS_PROTOCOL", s("https")),
        ("GTS_BIND_ADDRESS", s("0.0.0.0")),
        ("GTS_PORT", PORT.to_string()),
        // 0.20 has no default database type.
        ("GTS_DB_TYPE", s("postgres")),
        (
            "GTS_DB_ADDRESS",
            names::component_object(&instance.name, Component::Postgres),
        ),
        ("GTS_DB_PORT", POSTGRES_PORT.to_string()),
        ("GTS_DB_USER", s(DB_USER)),
        ("GTS_DB_DATABASE", s(DB_NAME)),
        // Traefik runs in the pod network: trust its X-Forwarded-For.
        ("GTS_TRUSTED_PROXIES", cidrs.join(",")),
        ("GTS_STORAGE_LOCAL_BASE_PATH", s(MEDIA_DIR)),
        ("GTS_LETSENCRYPT_ENABLED", s("false")),
        ("GTS_ACCOUNTS_REGISTRATION_OPEN", s("false")),
        // Every lab server shares Traefik's address: no rate limit.
        ("GTS_ADVANCED_RATE_LIMIT_REQUESTS", s("0")),
        ("GTS_CONFIG_PATH", format!("{CONFIG_DIR}/{CONFIG_KEY}")),
        ("SSL_CERT_FILE", s(TRUST_BUNDLE)),
    ]
    .into_iter()
    .map(|(k, v)| (s(k), v))
    .collect()
}

/// Builds one instance's objects. With a `proxy`, Traefik reaches the
/// instance through the inspector; without, straight.
pub(crate) fn build(
    spec: &LabSpec,
    instance: &InstanceSpec,
    g: &GoToSocialSpec,
    secrets: &MastodonSecrets,
    leaf: &LeafPem,
    proxy: Option<Proxy>,
) -> InstanceObjects {
    let b = Base {
        spec,
        instance,
        app: InstanceKind::Gotosocial.as_str(),
    };
    let route = match proxy {
        None => vec![Manifest::Ingress(ingress(&b))],
        Some(proxy) => routing::inspector_route(spec, instance, b.app, proxy, None).into(),
    };
    let db = Db {
        name: DB_NAME,
        user: DB_USER,
        password_secret: names::env_secret(&instance.name),
        password_key: DB_PASS_KEY,
        resources: &g.resources.postgres,
    };
    let mut workloads = vec![
        Manifest::Service(b.service(Component::Web, PORT, false)),
        Manifest::Deployment(web(&b, g)),
    ];
    workloads.extend(route);
    InstanceObjects {
        config: vec![
            Manifest::ConfigMap(configmap(
                &b,
                names::env_configmap(&instance.name),
                environment(spec, instance),
            )),
            Manifest::ConfigMap(configmap(
                &b,
                names::config_configmap(&instance.name),
                BTreeMap::from([(s(CONFIG_KEY), Config::new(spec).to_yaml())]),
            )),
            Manifest::Secret(b.secret(
                &names::env_secret(&instance.name),
                BTreeMap::from([(s(DB_PASS_KEY), &secrets.db_password)]),
            )),
            Manifest::Secret(b.admin_secret(secrets)),
            Manifest::Secret(b.tls_secret(leaf)),
        ],
        stateful: vec![
            Manifest::Service(b.service(Component::Postgres, POSTGRES_PORT, true)),
            Manifest::StatefulSet(b.postgres(&db)),
            Manifest::PersistentVolumeClaim(b.media_pvc(MEDIA_SIZE)),
        ],
        workloads,
        jobs: vec![Manifest::Job(setup_job(&b, g, &db))],
    }
}

fn configmap(b: &Base<'_>, name: String, data: BTreeMap<String, String>) -> ConfigMap {
    ConfigMap {
        metadata: lab_meta(b.spec, &name, b.instance_labels()),
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// A container in GoToSocial's image with the instance's environment and
/// config file.
fn gts_container(b: &Base<'_>, g: &GoToSocialSpec, name: &str) -> Container {
    Container {
        name: s(name),
        image: Some(s(&g.image)),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: names::env_configmap(&b.instance.name),
                optional: None,
            }),
            ..EnvFromSource::default()
        }]),
        env: Some(vec![db_password(b)]),
        volume_mounts: Some(vec![
            mount("config", CONFIG_DIR, true),
            mount("trust", TRUST_DIR, true),
            mount("lab-ca", CA_DIR, true),
        ]),
        security_context: Some(restricted_container()),
        ..Container::default()
    }
}

fn db_password(b: &Base<'_>) -> EnvVar {
    env_from_secret(
        "GTS_DB_PASSWORD",
        &names::env_secret(&b.instance.name),
        DB_PASS_KEY,
    )
}

/// The config ConfigMap, the trust bundle's volumes.
fn gts_volumes(b: &Base<'_>) -> Vec<Volume> {
    let mut volumes = vec![Volume {
        name: s("config"),
        config_map: Some(ConfigMapVolumeSource {
            name: names::config_configmap(&b.instance.name),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }];
    volumes.extend(trust_volumes());
    volumes
}

fn web(b: &Base<'_>, g: &GoToSocialSpec) -> Deployment {
    let mut main = gts_container(b, g, "web");
    main.ports = Some(vec![ContainerPort {
        name: Some(s("http")),
        container_port: PORT,
        ..ContainerPort::default()
    }]);
    main.resources = Some(resources(&g.resources.web));
    // Migrations run at start.
    main.startup_probe = Some(startup(http_probe("/readyz", PORT, 5, 1), 10));
    main.readiness_probe = Some(http_probe("/readyz", PORT, 10, 3));
    main.liveness_probe = Some(http_probe("/livez", PORT, 20, 6));
    main.volume_mounts
        .get_or_insert_with(Vec::new)
        .push(mount("media", MEDIA_DIR, false));
    let mut pod = b.pod(UID, vec![main]);
    pod.init_containers = Some(vec![trust_bundle_init(&g.image)]);
    let mut volumes = gts_volumes(b);
    volumes.push(b.media_volume());
    pod.volumes = Some(volumes);
    b.deployment(Component::Web, pod, true)
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

/// The setup Job: first, in GoToSocial's image, the admin account
/// (`scripts/gotosocial-admin.sh`); then, in the PostgreSQL image, the API
/// token (`scripts/gotosocial-token.sh`).
fn setup_job(b: &Base<'_>, g: &GoToSocialSpec, db: &Db<'_>) -> Job {
    let mut job = setup::job(b, db, setup::GOTOSOCIAL_TOKEN_SCRIPT, Vec::new());
    let mut admin = gts_container(b, g, "admin");
    let (script, _) = setup::GOTOSOCIAL_ADMIN_SCRIPT;
    admin.command = Some(vec![s("sh"), format!("{SETUP_DIR}/{script}")]);
    admin.env.get_or_insert_with(Vec::new).extend(
        [env(
            "FEDILAB_URL",
            &format!("http://{}:{PORT}", b.name(Component::Web)),
        )]
        .into_iter()
        .chain(setup::admin_env(b)),
    );
    admin
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(mount("setup", SETUP_DIR, true));
    // The Job's pod runs as PostgreSQL's user; GoToSocial's CLI as its own.
    admin.security_context = Some(SecurityContext {
        run_as_user: Some(UID),
        run_as_group: Some(UID),
        ..restricted_container()
    });
    admin.resources = Some(resources(&g.resources.web));
    if let Some(pod) = job
        .spec
        .as_mut()
        .and_then(|spec| spec.template.spec.as_mut())
    {
        pod.init_containers = Some(vec![trust_bundle_init(&g.image), admin]);
        pod.volumes
            .get_or_insert_with(Vec::new)
            .extend(gts_volumes(b));
    }
    job
}

#[cfg(test)]
mod tests {
    use fedilab_profile::{LabProfile, LabSpec, Overrides};

    use super::*;

    #[test]
    fn environment_and_config_allow_the_lab_and_nothing_else_needs_a_file() {
        let profile =
            LabProfile::from_yaml("instances: [{kind: gotosocial}]\n", "t").expect("profile");
        let spec = LabSpec::resolve(&profile, &Overrides::default()).expect("valid");
        let env = environment(&spec, &spec.instances[0]);
        assert_eq!(env["GTS_HOST"], "gts1.fediverse.local");
        assert_eq!(env["GTS_DB_TYPE"], "postgres");
        assert_eq!(env["GTS_DB_ADDRESS"], "gts1-postgres");
        assert_eq!(env["GTS_TRUSTED_PROXIES"], "10.42.0.0/15");
        assert_eq!(env["GTS_ADVANCED_RATE_LIMIT_REQUESTS"], "0");
        assert_eq!(env["SSL_CERT_FILE"], TRUST_BUNDLE);
        assert!(
            env.keys()
                .all(|k| k.starts_with("GTS_") || k == "SSL_CERT_FILE")
        );
        let read: serde_json::Value =
            serde_saphyr::from_str(&Config::new(&spec).to_yaml()).expect("YAML reads back");
        assert_eq!(
            read,
            serde_json::json!({"http-client": {"allow-ips": ["10.42.0.0/15"]}})
        );
    }
}
