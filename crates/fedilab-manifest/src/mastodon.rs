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
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, StatefulSet, StatefulSetSpec,
};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMap, ConfigMapEnvSource, ConfigMapVolumeSource, Container, ContainerPort,
    EmptyDirVolumeSource, EnvFromSource, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, Pod, PodAffinity, PodAffinityTerm, PodSpec, PodTemplateSpec,
    ResourceRequirements, Secret, SecretEnvSource, Service, ServicePort, ServiceSpec, Volume,
    VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::lab::lab_meta;
use crate::objects::{InstanceObjects, Manifest};
use crate::pod::{
    env, env_from_secret, exec_probe, http_probe, init_resources, mount, pod_security, resources,
    restricted_container, s, startup, tcp_probe,
};
use crate::routing::{self, IngressPath, Proxy};
use crate::secrets::MastodonSecrets;
use crate::tls::{self, LeafPem};

/// PostgreSQL image (Mastodon 4.5 needs 14 or newer).
pub const POSTGRES_IMAGE: &str = "docker.io/library/postgres:17-alpine";
/// Redis image (Mastodon 4.5 needs 7.0 or newer).
pub const REDIS_IMAGE: &str = "docker.io/library/redis:7-alpine";

const APP: &str = "mastodon";
const MASTODON_UID: i64 = 991;
const POSTGRES_UID: i64 = 70; // `postgres` in the Alpine image
const REDIS_UID: i64 = 999; // `redis` in the Alpine image
/// The port Mastodon's web Service (Puma) listens on.
pub const WEB_PORT: i32 = 3000;
const STREAMING_PORT: i32 = 4000;
const POSTGRES_PORT: i32 = 5432;
const REDIS_PORT: i32 = 6379;
/// The database Mastodon uses in its PostgreSQL.
pub const DB_NAME: &str = "mastodon";
/// The PostgreSQL role Mastodon connects as (the image's superuser).
pub const DB_USER: &str = "mastodon";
const DB_PASS_KEY: &str = "DB_PASS";

const TRUST_DIR: &str = "/etc/fedilab/trust";
const TRUST_BUNDLE: &str = "/etc/fedilab/trust/ca-certificates.crt";
/// Where Mastodon pods find the joined trust bundle (the image's system CAs
/// and the lab CA); their `SSL_CERT_FILE` points here.
pub const TRUST_BUNDLE_PATH: &str = TRUST_BUNDLE;
/// The Mastodon image's own CA bundle (Debian's), without the lab CA.
pub const SYSTEM_BUNDLE_PATH: &str = "/etc/ssl/certs/ca-certificates.crt";
const CA_DIR: &str = "/etc/fedilab/ca";
const CA_FILE: &str = "/etc/fedilab/ca/ca.pem";
const SETUP_DIR: &str = "/etc/fedilab/setup";
/// Where the media volume is mounted in the web and Sidekiq containers.
pub const MEDIA_DIR: &str = "/opt/mastodon/public/system";
const SIDEKIQ_READY_FILE: &str =
    "/opt/mastodon/tmp/sidekiq_process_has_started_and_will_begin_processing_jobs";
const MEDIA_SIZE: &str = "5Gi";
const POSTGRES_SIZE: &str = "2Gi";

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
    let b = Builder { spec, instance, m };
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
            Manifest::StatefulSet(b.postgres()),
            Manifest::Service(b.service(Component::Redis, REDIS_PORT, false)),
            Manifest::Deployment(b.redis()),
            Manifest::PersistentVolumeClaim(b.media_pvc()),
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
    let b = Builder { spec, instance, m };
    main.image = Some(s(&m.image));
    main.resources.get_or_insert_with(|| ResourceRequirements {
        requests: Some(BTreeMap::from([
            (s("cpu"), K8sQuantity(s("50m"))),
            (s("memory"), K8sQuantity(s("64Mi"))),
        ])),
        limits: Some(BTreeMap::from([(s("memory"), K8sQuantity(s("256Mi")))])),
        ..ResourceRequirements::default()
    });
    let mut pod = b.mastodon_pod(&m.image, main, false);
    pod.restart_policy = Some(s("Never"));
    let mut labels = b.instance_labels();
    labels.insert(s(names::VERIFY_KEY), s(check));
    Pod {
        metadata: lab_meta(spec, name, labels),
        spec: Some(pod),
        ..Pod::default()
    }
}

struct Builder<'a> {
    spec: &'a LabSpec,
    instance: &'a InstanceSpec,
    m: &'a MastodonSpec,
}

impl Builder<'_> {
    fn name(&self, component: Component) -> String {
        names::component_object(&self.instance.name, component)
    }

    fn labels(&self, component: Component) -> BTreeMap<String, String> {
        names::component_labels(&self.spec.name, &self.instance.name, APP, component)
    }

    fn instance_labels(&self) -> BTreeMap<String, String> {
        names::instance_labels(&self.spec.name, &self.instance.name, APP)
    }

    fn selector(&self, component: Component) -> LabelSelector {
        LabelSelector {
            match_labels: Some(names::component_selector(
                &self.spec.name,
                &self.instance.name,
                component,
            )),
            match_expressions: None,
        }
    }

    fn host(&self) -> &str {
        self.instance.host.as_str()
    }

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

    fn admin_secret(&self, secrets: &MastodonSecrets) -> Secret {
        let email = format!("{}@{}", names::ADMIN_USERNAME, self.host());
        let username = s(names::ADMIN_USERNAME);
        let data = BTreeMap::from([
            (s(names::admin_keys::USERNAME), &username),
            (s(names::admin_keys::EMAIL), &email),
            (s(names::admin_keys::PASSWORD), &secrets.admin_password),
            (s(names::admin_keys::API_TOKEN), &secrets.api_token),
        ]);
        self.secret(&names::admin_secret(&self.instance.name), data)
    }

    fn tls_secret(&self, leaf: &LeafPem) -> Secret {
        tls::tls_secret(self.spec, self.instance, self.instance_labels(), leaf)
    }

    fn secret(&self, name: &str, data: BTreeMap<String, &String>) -> Secret {
        Secret {
            metadata: lab_meta(self.spec, name, self.instance_labels()),
            data: Some(
                data.into_iter()
                    .map(|(k, v)| (k, ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    fn service(&self, component: Component, port: i32, headless: bool) -> Service {
        Service {
            metadata: lab_meta(self.spec, &self.name(component), self.labels(component)),
            spec: Some(ServiceSpec {
                selector: self.selector(component).match_labels,
                cluster_ip: headless.then(|| s("None")),
                ports: Some(vec![ServicePort {
                    name: Some(s(component.as_str())),
                    port,
                    target_port: Some(IntOrString::Int(port)),
                    protocol: Some(s("TCP")),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    fn pod_meta(&self, component: Component) -> Option<ObjectMeta> {
        Some(ObjectMeta {
            labels: Some(self.labels(component)),
            ..ObjectMeta::default()
        })
    }

    /// Pod-level settings every lab pod shares: no API token, no service
    /// environment variables (they would collide with Mastodon's own
    /// variables such as REDIS_PORT), non-root.
    fn pod(&self, uid: i64, containers: Vec<Container>) -> PodSpec {
        PodSpec {
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(pod_security(uid)),
            containers,
            ..PodSpec::default()
        }
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
        let join_bundle = format!(
            "{{ cat {SYSTEM_BUNDLE_PATH} 2>/dev/null || true; cat {CA_FILE}; }} > {TRUST_BUNDLE}"
        );
        let init = Container {
            name: s("trust-bundle"),
            image: Some(s(image)),
            command: Some(vec![s("sh"), s("-c"), join_bundle]),
            volume_mounts: Some(vec![
                mount("trust", TRUST_DIR, false),
                mount("lab-ca", CA_DIR, true),
            ]),
            security_context: Some(restricted_container()),
            resources: Some(init_resources()),
            ..Container::default()
        };
        let mut volumes = vec![
            Volume {
                name: s("trust"),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            },
            Volume {
                name: s("lab-ca"),
                config_map: Some(ConfigMapVolumeSource {
                    name: s(names::LAB_CA_CONFIGMAP),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
        ];
        if media {
            volumes.push(Volume {
                name: s("media"),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: names::media_pvc(&self.instance.name),
                    read_only: None,
                }),
                ..Volume::default()
            });
        }
        let mut pod = self.pod(MASTODON_UID, vec![main]);
        pod.init_containers = Some(vec![init]);
        pod.volumes = Some(volumes);
        pod
    }

    fn deployment(&self, component: Component, pod: PodSpec, recreate: bool) -> Deployment {
        Deployment {
            metadata: lab_meta(self.spec, &self.name(component), self.labels(component)),
            spec: Some(DeploymentSpec {
                replicas: Some(1),
                selector: self.selector(component),
                strategy: recreate.then(|| DeploymentStrategy {
                    type_: Some(s("Recreate")),
                    rolling_update: None,
                }),
                template: PodTemplateSpec {
                    metadata: self.pod_meta(component),
                    spec: Some(pod),
                },
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        }
    }

    fn postgres(&self) -> StatefulSet {
        let r = &self.m.resources.postgres;
        let ready = [
            "pg_isready",
            "-h",
            "127.0.0.1",
            "-U",
            DB_USER,
            "-d",
            DB_NAME,
        ];
        let container = Container {
            name: s("postgres"),
            image: Some(s(POSTGRES_IMAGE)),
            ports: Some(vec![ContainerPort {
                name: Some(s("postgres")),
                container_port: POSTGRES_PORT,
                ..ContainerPort::default()
            }]),
            env: Some(vec![
                env("POSTGRES_USER", DB_USER),
                env("POSTGRES_DB", DB_NAME),
                env_from_secret(
                    "POSTGRES_PASSWORD",
                    &names::env_secret(&self.instance.name),
                    DB_PASS_KEY,
                ),
                // A subdirectory: the volume's root is not PostgreSQL's to chmod.
                env("PGDATA", "/var/lib/postgresql/data/pgdata"),
            ]),
            volume_mounts: Some(vec![mount("data", "/var/lib/postgresql/data", false)]),
            resources: Some(resources(r)),
            startup_probe: Some(startup(exec_probe(&ready, 5, 1), 5)),
            readiness_probe: Some(exec_probe(&ready, 5, 3)),
            liveness_probe: Some(exec_probe(&ready, 20, 6)),
            security_context: Some(restricted_container()),
            ..Container::default()
        };
        let component = Component::Postgres;
        StatefulSet {
            metadata: lab_meta(self.spec, &self.name(component), self.labels(component)),
            spec: Some(StatefulSetSpec {
                replicas: Some(1),
                service_name: Some(self.name(component)),
                selector: self.selector(component),
                template: PodTemplateSpec {
                    metadata: self.pod_meta(component),
                    spec: Some(self.pod(POSTGRES_UID, vec![container])),
                },
                volume_claim_templates: Some(vec![PersistentVolumeClaim {
                    metadata: ObjectMeta {
                        name: Some(s("data")),
                        labels: Some(self.labels(component)),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.pvc_spec(POSTGRES_SIZE)),
                    ..PersistentVolumeClaim::default()
                }]),
                ..StatefulSetSpec::default()
            }),
            ..StatefulSet::default()
        }
    }

    fn pvc_spec(&self, size: &str) -> PersistentVolumeClaimSpec {
        PersistentVolumeClaimSpec {
            access_modes: Some(vec![s("ReadWriteOnce")]),
            storage_class_name: Some(s(names::STORAGE_CLASS)),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(s("storage"), K8sQuantity(s(size)))])),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }
    }

    fn media_pvc(&self) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: lab_meta(
                self.spec,
                &names::media_pvc(&self.instance.name),
                self.instance_labels(),
            ),
            spec: Some(self.pvc_spec(MEDIA_SIZE)),
            ..PersistentVolumeClaim::default()
        }
    }

    fn redis(&self) -> Deployment {
        let ping = ["redis-cli", "ping"];
        let container = Container {
            name: s("redis"),
            image: Some(s(REDIS_IMAGE)),
            // A lab's Redis holds caches and queues only: no persistence.
            args: Some(vec![s("--save"), s(""), s("--appendonly"), s("no")]),
            ports: Some(vec![ContainerPort {
                name: Some(s("redis")),
                container_port: REDIS_PORT,
                ..ContainerPort::default()
            }]),
            resources: Some(resources(&self.m.resources.redis)),
            startup_probe: Some(startup(exec_probe(&ping, 5, 1), 2)),
            readiness_probe: Some(exec_probe(&ping, 5, 3)),
            liveness_probe: Some(tcp_probe(REDIS_PORT, 20, 6)),
            security_context: Some(restricted_container()),
            ..Container::default()
        };
        self.deployment(Component::Redis, self.pod(REDIS_UID, vec![container]), true)
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
        let admin = names::admin_secret(&self.instance.name);
        let container = Container {
            name: s("setup"),
            image: Some(s(&self.m.image)),
            command: Some(vec![s("bash"), format!("{SETUP_DIR}/setup.sh")]),
            env: Some(vec![
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
            ]),
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
        pod.volumes.get_or_insert_with(Vec::new).push(Volume {
            name: s("setup"),
            config_map: Some(ConfigMapVolumeSource {
                name: s(names::SETUP_SCRIPTS_CONFIGMAP),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
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
