//! The objects of one Mastodon instance: its configuration and secrets,
//! PostgreSQL and Redis, the web, streaming and Sidekiq workloads, their
//! Services, the Ingress with TLS and the setup Job.
//!
//! Facts from Mastodon's images and chart that these objects rely on: the
//! app lives in `/opt/mastodon` and runs as uid 991; Puma listens on `BIND`
//! and `PORT` and answers `/health` (exempt from the HTTPS redirect); the
//! streaming server answers `/api/v1/streaming/health`; the image sets
//! `MASTODON_SIDEKIQ_READY_FILENAME`, so Sidekiq touches a file in `tmp/`
//! once it takes jobs (4.3+).
//!
//! One piece: the objects of an instance refer to each other by name, port
//! and mount (env ConfigMap, Secrets, volumes, probes), and reading them
//! side by side is how a reviewer checks they agree. Building blocks every
//! kind shares live in `pod.rs`.

use std::collections::BTreeMap;

use fedilab_profile::names::{self, Component};
use fedilab_profile::{InstanceSpec, LabSpec, MastodonSpec};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EnvFromSource, Pod,
    PodAffinity, PodAffinityTerm, PodSpec, PodTemplateSpec, ResourceRequirements, Secret,
    SecretEnvSource,
};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

use crate::instance::{
    Base, CA_DIR, CA_FILE, Db, POSTGRES_IMAGE, POSTGRES_PORT, REDIS_PORT, TRUST_BUNDLE, TRUST_DIR,
    trust_bundle_init, trust_volumes,
};
use crate::lab::lab_meta;
use crate::objects::{InstanceObjects, Manifest};
use crate::pod::{
    env, exec_probe, http_probe, init_resources, mount, resources, restricted_container, s,
    startup, tcp_probe,
};
use crate::routing::{self, IngressPath, Proxy};
use crate::secrets::MastodonSecrets;
use crate::setup::{self, SETUP_DIR};
use crate::tls::LeafPem;

const APP: &str = "mastodon";
const MASTODON_UID: i64 = 991;
/// The port Mastodon's web Service (Puma) listens on.
pub const WEB_PORT: i32 = 3000;
const STREAMING_PORT: i32 = 4000;
/// The database Mastodon uses in its PostgreSQL.
pub const DB_NAME: &str = "mastodon";
/// The PostgreSQL role Mastodon connects as (the image's superuser).
pub const DB_USER: &str = "mastodon";
const DB_PASS_KEY: &str = "DB_PASS";

/// Where the media volume is mounted in the web and Sidekiq containers.
pub const MEDIA_DIR: &str = "/opt/mastodon/public/system";
const SIDEKIQ_READY_FILE: &str =
    "/opt/mastodon/tmp/sidekiq_process_has_started_and_will_begin_processing_jobs";
const MEDIA_SIZE: &str = "5Gi";

/// Builds one instance's objects. With a `proxy`, Traefik reaches the
/// instance through the inspector; without, straight.
pub(crate) fn build(
    spec: &LabSpec,
    instance: &InstanceSpec,
    m: &MastodonSpec,
    secrets: &MastodonSecrets,
    leaf: &LeafPem,
    proxy: Option<Proxy>,
) -> InstanceObjects {
    let b = Builder::new(spec, instance, m);
    let route = match proxy {
        None => vec![Manifest::Ingress(b.ingress())],
        Some(proxy) => routing::inspector_route(spec, instance, APP, proxy, None).into(),
    };
    let mut objects = InstanceObjects {
        config: vec![
            Manifest::ConfigMap(b.env_configmap()),
            Manifest::Secret(b.env_secret(secrets)),
            Manifest::Secret(b.admin_secret(secrets)),
            Manifest::Secret(b.tls_secret(leaf)),
        ],
        stateful: vec![
            Manifest::Service(b.service(Component::Postgres, POSTGRES_PORT, true)),
            Manifest::StatefulSet(b.postgres(&b.db())),
            Manifest::Service(b.service(Component::Redis, REDIS_PORT, false)),
            Manifest::Deployment(b.redis(&m.resources.redis)),
            Manifest::PersistentVolumeClaim(b.media_pvc(MEDIA_SIZE)),
        ],
        workloads: vec![
            Manifest::Service(b.service(Component::Web, WEB_PORT, false)),
            Manifest::Deployment(b.web()),
            Manifest::Service(b.service(Component::Streaming, STREAMING_PORT, false)),
            Manifest::Deployment(b.streaming()),
            Manifest::Deployment(b.sidekiq()),
        ],
        jobs: vec![Manifest::Job(b.setup_job())],
    };
    objects.workloads.extend(route);
    objects
}

/// The pod of a short-lived check (`fedilab verify`) that runs `main` in
/// the instance's Mastodon image as the instance's own pods run: the same
/// pod security, trust-bundle init container and instance environment
/// (`SSL_CERT_FILE`, `ALLOWED_PRIVATE_ADDRESSES`, ...), no media volume,
/// never restarted. Labelled for the lab and instance, and with
/// [`names::VERIFY_KEY`] = `check`. `main` gets the image, the restricted
/// container security context and, if it has none, small resources.
pub fn check_pod(
    spec: &LabSpec,
    instance: &InstanceSpec,
    m: &MastodonSpec,
    name: &str,
    check: &str,
    mut main: Container,
) -> Pod {
    let b = Builder::new(spec, instance, m);
    main.image = Some(s(&m.image));
    main.resources.get_or_insert_with(check_resources);
    let pod = b.mastodon_pod(&m.image, main, false);
    one_shot(spec, b.instance_labels(), name, check, pod)
}

/// The pod of a short-lived check (`fedilab verify`) that runs `main` in
/// the Mastodon `image` as a client of `instance`, which runs another kind
/// (Misskey, GoToSocial: GoToSocial's image has no scripting runtime, so
/// the check's Ruby runs in Mastodon's). As [`check_pod`] runs it, minus
/// the instance's environment (it has no Mastodon one): Mastodon's uid and
/// pod security, the trust-bundle init container in the same image, and
/// `SSL_CERT_FILE` pointing at the joined bundle; never restarted.
/// Labelled for the lab and `instance` (its kind as the app) and with
/// [`names::VERIFY_KEY`] = `check`.
pub fn client_check_pod(
    spec: &LabSpec,
    instance: &InstanceSpec,
    image: &str,
    name: &str,
    check: &str,
    mut main: Container,
) -> Pod {
    let b = Base {
        spec,
        instance,
        app: instance.kind.kind().as_str(),
    };
    main.image = Some(s(image));
    main.resources.get_or_insert_with(check_resources);
    main.security_context = Some(restricted_container());
    main.env
        .get_or_insert_with(Vec::new)
        .insert(0, env("SSL_CERT_FILE", TRUST_BUNDLE));
    main.volume_mounts.get_or_insert_with(Vec::new).extend([
        mount("trust", TRUST_DIR, true),
        mount("lab-ca", CA_DIR, true),
    ]);
    let mut pod = b.pod(MASTODON_UID, vec![main]);
    pod.init_containers = Some(vec![trust_bundle_init(image)]);
    pod.volumes = Some(trust_volumes());
    one_shot(spec, b.instance_labels(), name, check, pod)
}

/// A check's pod: `pod`, never restarted, labelled `labels` plus
/// [`names::VERIFY_KEY`] = `check`.
fn one_shot(
    spec: &LabSpec,
    mut labels: BTreeMap<String, String>,
    name: &str,
    check: &str,
    mut pod: PodSpec,
) -> Pod {
    pod.restart_policy = Some(s("Never"));
    labels.insert(s(names::VERIFY_KEY), s(check));
    Pod {
        metadata: lab_meta(spec, name, labels),
        spec: Some(pod),
        ..Pod::default()
    }
}

/// A check container's resources, unless it brings its own.
fn check_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            (s("cpu"), K8sQuantity(s("50m"))),
            (s("memory"), K8sQuantity(s("64Mi"))),
        ])),
        limits: Some(BTreeMap::from([(s("memory"), K8sQuantity(s("256Mi")))])),
        ..ResourceRequirements::default()
    }
}

struct Builder<'a> {
    base: Base<'a>,
    m: &'a MastodonSpec,
}

impl<'a> std::ops::Deref for Builder<'a> {
    type Target = Base<'a>;
    fn deref(&self) -> &Base<'a> {
        &self.base
    }
}

impl<'a> Builder<'a> {
    fn new(spec: &'a LabSpec, instance: &'a InstanceSpec, m: &'a MastodonSpec) -> Self {
        Builder {
            base: Base {
                spec,
                instance,
                app: APP,
            },
            m,
        }
    }

    fn db(&self) -> Db<'a> {
        Db {
            name: DB_NAME,
            user: DB_USER,
            password_secret: names::env_secret(&self.base.instance.name),
            password_key: DB_PASS_KEY,
            resources: &self.m.resources.postgres,
        }
    }
}

impl Builder<'_> {
    fn env_configmap(&self) -> ConfigMap {
        let m = self.m;
        let cidrs: Vec<String> = self
            .spec
            .egress_cidrs
            .iter()
            .map(ToString::to_string)
            .collect();
        let bool_str = |b: bool| if b { "true" } else { "false" };
        let pg = self.name(Component::Postgres);
        let redis = self.name(Component::Redis);
        let data: BTreeMap<String, String> = [
            ("LOCAL_DOMAIN", self.host()),
            ("RAILS_ENV", "production"),
            ("NODE_ENV", "production"),
            ("RAILS_LOG_LEVEL", "info"),
            ("RAILS_SERVE_STATIC_FILES", "true"),
            ("BIND", "0.0.0.0"),
            ("DB_HOST", &pg),
            ("DB_PORT", "5432"),
            ("DB_NAME", DB_NAME),
            ("DB_USER", DB_USER),
            ("REDIS_HOST", &redis),
            ("REDIS_PORT", "6379"),
            ("ES_ENABLED", "false"),
            ("S3_ENABLED", "false"),
            // Federation inside the lab goes to private addresses; without
            // this Mastodon refuses with PrivateNetworkAddressError.
            ("ALLOWED_PRIVATE_ADDRESSES", &cidrs.join(",")),
            // Ruby (web, Sidekiq) trusts the joined bundle; Node adds the
            // lab CA to its own roots.
            ("SSL_CERT_FILE", TRUST_BUNDLE),
            ("NODE_EXTRA_CA_CERTS", CA_FILE),
            ("AUTHORIZED_FETCH", bool_str(m.authorized_fetch)),
            ("LIMITED_FEDERATION_MODE", bool_str(m.limited_federation)),
            // Lean for a developer VM: Puma in single mode, few threads.
            ("WEB_CONCURRENCY", "0"),
            ("MAX_THREADS", "5"),
            ("SIDEKIQ_CONCURRENCY", "5"),
            ("MALLOC_ARENA_MAX", "2"),
            // Egress is closed: the update check (every 30 minutes) could
            // only fail. Empty turns it off (SoftwareUpdate.check_enabled?).
            ("UPDATE_CHECK_URL", ""),
            // No mail server in the lab: mails are written to tmp/mails.
            ("SMTP_DELIVERY_METHOD", "file"),
            (
                "SMTP_FROM_ADDRESS",
                &format!("notifications@{}", self.host()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (s(k), s(v)))
        .collect();
        ConfigMap {
            metadata: lab_meta(
                self.spec,
                &names::env_configmap(&self.instance.name),
                self.instance_labels(),
            ),
            data: Some(data),
            ..ConfigMap::default()
        }
    }

    fn env_secret(&self, secrets: &MastodonSecrets) -> Secret {
        let mut data = BTreeMap::from([
            (s("SECRET_KEY_BASE"), &secrets.secret_key_base),
            (s("VAPID_PRIVATE_KEY"), &secrets.vapid_private_key),
            (s("VAPID_PUBLIC_KEY"), &secrets.vapid_public_key),
            (
                s("ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY"),
                &secrets.ar_deterministic_key,
            ),
            (
                s("ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT"),
                &secrets.ar_key_derivation_salt,
            ),
            (
                s("ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY"),
                &secrets.ar_primary_key,
            ),
            (s(DB_PASS_KEY), &secrets.db_password),
        ]);
        if self.m.version.needs_otp_secret() {
            data.insert(s("OTP_SECRET"), &secrets.otp_secret);
        }
        self.secret(&names::env_secret(&self.instance.name), data)
    }

    /// A pod running the Mastodon image with the lab trust bundle: an init
    /// container joins the image's system CA bundle and the lab CA into a
    /// shared emptyDir.
    fn mastodon_pod(&self, image: &str, mut main: Container, media: bool) -> PodSpec {
        main.env_from = Some(vec![
            EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: names::env_configmap(&self.instance.name),
                    optional: None,
                }),
                ..EnvFromSource::default()
            },
            EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: names::env_secret(&self.instance.name),
                    optional: None,
                }),
                ..EnvFromSource::default()
            },
        ]);
        main.security_context = Some(restricted_container());
        let mut mounts = vec![
            mount("trust", TRUST_DIR, true),
            mount("lab-ca", CA_DIR, true),
        ];
        if media {
            mounts.push(mount("media", MEDIA_DIR, false));
        }
        main.volume_mounts
            .get_or_insert_with(Vec::new)
            .extend(mounts);
        let init = trust_bundle_init(image);
        let mut volumes = trust_volumes();
        if media {
            volumes.push(self.media_volume());
        }
        let mut pod = self.pod(MASTODON_UID, vec![main]);
        pod.init_containers = Some(vec![init]);
        pod.volumes = Some(volumes);
        pod
    }

    fn web(&self) -> Deployment {
        let container = Container {
            name: s("web"),
            image: Some(s(&self.m.image)),
            command: Some(
                ["bundle", "exec", "puma", "-C", "config/puma.rb"]
                    .map(s)
                    .to_vec(),
            ),
            env: Some(vec![env("PORT", &WEB_PORT.to_string())]),
            ports: Some(vec![ContainerPort {
                name: Some(s("http")),
                container_port: WEB_PORT,
                ..ContainerPort::default()
            }]),
            resources: Some(resources(&self.m.resources.web)),
            startup_probe: Some(startup(http_probe("/health", WEB_PORT, 5, 1), 5)),
            readiness_probe: Some(http_probe("/health", WEB_PORT, 10, 3)),
            liveness_probe: Some(tcp_probe(WEB_PORT, 20, 6)),
            ..Container::default()
        };
        let pod = self.mastodon_pod(&self.m.image, container, true);
        self.deployment(Component::Web, pod, true)
    }

    fn streaming(&self) -> Deployment {
        let health = "/api/v1/streaming/health";
        let container = Container {
            name: s("streaming"),
            image: Some(s(&self.m.streaming_image)),
            command: Some(["node", "./streaming/index.js"].map(s).to_vec()),
            env: Some(vec![env("PORT", &STREAMING_PORT.to_string())]),
            ports: Some(vec![ContainerPort {
                name: Some(s("streaming")),
                container_port: STREAMING_PORT,
                ..ContainerPort::default()
            }]),
            resources: Some(resources(&self.m.resources.streaming)),
            startup_probe: Some(startup(http_probe(health, STREAMING_PORT, 5, 1), 3)),
            readiness_probe: Some(http_probe(health, STREAMING_PORT, 10, 3)),
            liveness_probe: Some(http_probe(health, STREAMING_PORT, 20, 6)),
            ..Container::default()
        };
        let pod = self.mastodon_pod(&self.m.streaming_image, container, false);
        self.deployment(Component::Streaming, pod, false)
    }

    fn sidekiq(&self) -> Deployment {
        let ready = ["cat", SIDEKIQ_READY_FILE];
        let container = Container {
            name: s("sidekiq"),
            image: Some(s(&self.m.image)),
            command: Some(["bundle", "exec", "sidekiq"].map(s).to_vec()),
            resources: Some(resources(&self.m.resources.sidekiq)),
            startup_probe: Some(startup(exec_probe(&ready, 5, 1), 5)),
            readiness_probe: Some(exec_probe(&ready, 10, 3)),
            ..Container::default()
        };
        let mut pod = self.mastodon_pod(&self.m.image, container, true);
        // The media volume is ReadWriteOnce: Sidekiq (which stores fetched
        // remote media) must run on the web pod's node.
        pod.affinity = Some(Affinity {
            pod_affinity: Some(PodAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                    label_selector: Some(self.selector(Component::Web)),
                    topology_key: s("kubernetes.io/hostname"),
                    ..PodAffinityTerm::default()
                }]),
                preferred_during_scheduling_ignored_during_execution: None,
            }),
            ..Affinity::default()
        });
        self.deployment(Component::Sidekiq, pod, true)
    }

    fn ingress(&self) -> Ingress {
        let path = |prefix, component, port| IngressPath {
            prefix,
            service: self.name(component),
            port,
        };
        routing::ingress(
            self.spec,
            self.instance,
            self.instance_labels(),
            vec![
                path(
                    names::MASTODON_STREAMING_PATH,
                    Component::Streaming,
                    STREAMING_PORT,
                ),
                path("/", Component::Web, WEB_PORT),
            ],
        )
    }

    fn setup_job(&self) -> Job {
        let container = Container {
            name: s("setup"),
            image: Some(s(&self.m.image)),
            command: Some(vec![s("bash"), format!("{SETUP_DIR}/setup.sh")]),
            env: Some(setup::admin_env(&self.base)),
            volume_mounts: Some(vec![mount("setup", SETUP_DIR, true)]),
            resources: Some(resources(&self.m.resources.web)),
            ..Container::default()
        };
        let mut container = container;
        let allowed = crate::federation::allowed_domains(self.spec, self.instance);
        if !allowed.is_empty() {
            container
                .env
                .get_or_insert_with(Vec::new)
                .push(env(crate::ALLOW_DOMAINS_ENV, &allowed.join(",")));
        }
        let mut pod = self.mastodon_pod(&self.m.image, container, false);
        pod.restart_policy = Some(s("Never"));
        pod.volumes
            .get_or_insert_with(Vec::new)
            .push(setup::scripts_volume());
        // Wait for PostgreSQL before booting Rails, so a slow database is
        // not counted as a failed attempt.
        let wait = format!(
            "until pg_isready -h {} -p {POSTGRES_PORT} -U {DB_USER}; do sleep 2; done",
            self.name(Component::Postgres)
        );
        pod.init_containers
            .get_or_insert_with(Vec::new)
            .push(Container {
                name: s("wait-for-postgres"),
                image: Some(s(POSTGRES_IMAGE)),
                command: Some(vec![s("sh"), s("-c"), wait]),
                security_context: Some(restricted_container()),
                resources: Some(init_resources()),
                ..Container::default()
            });
        let component = Component::Setup;
        Job {
            metadata: lab_meta(self.spec, &self.name(component), self.labels(component)),
            spec: Some(JobSpec {
                backoff_limit: Some(3),
                // Image pulls and first boots are slow; an hour bounds a stuck run.
                active_deadline_seconds: Some(3600),
                template: PodTemplateSpec {
                    metadata: self.pod_meta(component),
                    spec: Some(pod),
                },
                ..JobSpec::default()
            }),
            ..Job::default()
        }
    }
}
