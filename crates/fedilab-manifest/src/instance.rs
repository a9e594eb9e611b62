//! Building blocks of an in-cluster instance that every server kind
//! shares: names and labels, Services, Deployments, Secrets, the media
//! volume, PostgreSQL and Redis. Each kind's module (`mastodon`, `misskey`,
//! `gotosocial`) builds its own workloads, configuration and setup Job
//! from these, so the objects a kind does not own look the same for all.

use std::collections::BTreeMap;

use fedilab_profile::names::{self, Component};
use fedilab_profile::{ComponentResources, InstanceSpec, LabSpec};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, StatefulSet, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Secret,
    Service, ServicePort, ServiceSpec, Volume, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::lab::lab_meta;
use crate::pod::{
    env, env_from_secret, exec_probe, init_resources, mount, pod_security, resources,
    restricted_container, s, startup, tcp_probe,
};
use crate::secrets::MastodonSecrets;
use crate::tls::{self, LeafPem};

/// PostgreSQL image (Mastodon 4.5 needs 14 or newer; Misskey 15 or newer).
pub const POSTGRES_IMAGE: &str = "docker.io/library/postgres:17-alpine";
/// Redis image (Mastodon 4.5 needs 7.0 or newer).
pub const REDIS_IMAGE: &str = "docker.io/library/redis:7-alpine";
/// PostgreSQL's port.
pub(crate) const POSTGRES_PORT: i32 = 5432;
/// Redis's port.
pub(crate) const REDIS_PORT: i32 = 6379;
/// `postgres` in the Alpine image.
pub(crate) const POSTGRES_UID: i64 = 70;
const REDIS_UID: i64 = 999; // `redis` in the Alpine image
const POSTGRES_SIZE: &str = "2Gi";

pub(crate) const TRUST_DIR: &str = "/etc/fedilab/trust";
pub(crate) const TRUST_BUNDLE: &str = "/etc/fedilab/trust/ca-certificates.crt";
/// Where pods find the joined trust bundle (the image's system CAs and the
/// lab CA); `SSL_CERT_FILE` points here.
pub const TRUST_BUNDLE_PATH: &str = TRUST_BUNDLE;
/// The image's own CA bundle (Debian's in Mastodon's image, Alpine's in
/// GoToSocial's), without the lab CA.
pub const SYSTEM_BUNDLE_PATH: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Where the lab CA ConfigMap is mounted.
pub(crate) const CA_DIR: &str = "/etc/fedilab/ca";
/// The lab CA certificate (for `NODE_EXTRA_CA_CERTS`).
pub(crate) const CA_FILE: &str = "/etc/fedilab/ca/ca.pem";

/// The init container that joins `image`'s system CA bundle and the lab CA
/// into the `trust` emptyDir (see [`trust_volumes`]), for programs that
/// read one bundle file (Ruby, Go: `SSL_CERT_FILE`).
pub(crate) fn trust_bundle_init(image: &str) -> Container {
    let join_bundle = format!(
        "{{ cat {SYSTEM_BUNDLE_PATH} 2>/dev/null || true; cat {CA_FILE}; }} > {TRUST_BUNDLE}"
    );
    Container {
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
    }
}

/// The `trust` emptyDir and the `lab-ca` ConfigMap volume.
pub(crate) fn trust_volumes() -> Vec<Volume> {
    vec![
        Volume {
            name: s("trust"),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
        lab_ca_volume(),
    ]
}

/// The lab CA ConfigMap as a volume named `lab-ca`.
pub(crate) fn lab_ca_volume() -> Volume {
    Volume {
        name: s("lab-ca"),
        config_map: Some(ConfigMapVolumeSource {
            name: s(names::LAB_CA_CONFIGMAP),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// An instance's database, as its PostgreSQL is set up.
pub(crate) struct Db<'a> {
    /// The database's name.
    pub(crate) name: &'a str,
    /// Its owner, the image's superuser.
    pub(crate) user: &'a str,
    /// The Secret holding the password.
    pub(crate) password_secret: String,
    /// The password's key in that Secret.
    pub(crate) password_key: &'a str,
    /// CPU and memory.
    pub(crate) resources: &'a ComponentResources,
}

/// One instance of a lab, and the `app.kubernetes.io/name` of its kind.
pub(crate) struct Base<'a> {
    pub(crate) spec: &'a LabSpec,
    pub(crate) instance: &'a InstanceSpec,
    pub(crate) app: &'static str,
}

impl Base<'_> {
    pub(crate) fn name(&self, component: Component) -> String {
        names::component_object(&self.instance.name, component)
    }

    pub(crate) fn labels(&self, component: Component) -> BTreeMap<String, String> {
        names::component_labels(&self.spec.name, &self.instance.name, self.app, component)
    }

    pub(crate) fn instance_labels(&self) -> BTreeMap<String, String> {
        names::instance_labels(&self.spec.name, &self.instance.name, self.app)
    }

    pub(crate) fn selector(&self, component: Component) -> LabelSelector {
        LabelSelector {
            match_labels: Some(names::component_selector(
                &self.spec.name,
                &self.instance.name,
                component,
            )),
            match_expressions: None,
        }
    }

    pub(crate) fn host(&self) -> &str {
        self.instance.host.as_str()
    }

    /// The admin's credentials as `creds` and the setup read them.
    pub(crate) fn admin_secret(&self, secrets: &MastodonSecrets) -> Secret {
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

    pub(crate) fn tls_secret(&self, leaf: &LeafPem) -> Secret {
        tls::tls_secret(self.spec, self.instance, self.instance_labels(), leaf)
    }

    pub(crate) fn secret(&self, name: &str, data: BTreeMap<String, &String>) -> Secret {
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

    pub(crate) fn service(&self, component: Component, port: i32, headless: bool) -> Service {
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

    pub(crate) fn pod_meta(&self, component: Component) -> Option<ObjectMeta> {
        Some(ObjectMeta {
            labels: Some(self.labels(component)),
            ..ObjectMeta::default()
        })
    }

    /// Pod-level settings every lab pod shares: no API token, no service
    /// environment variables (they would collide with Mastodon's own
    /// variables such as REDIS_PORT), non-root.
    pub(crate) fn pod(&self, uid: i64, containers: Vec<Container>) -> PodSpec {
        PodSpec {
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(pod_security(uid)),
            containers,
            ..PodSpec::default()
        }
    }

    pub(crate) fn deployment(
        &self,
        component: Component,
        pod: PodSpec,
        recreate: bool,
    ) -> Deployment {
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

    /// PostgreSQL with database `db.name` owned by `db.user` (the image's
    /// superuser), its password from the instance's Secret.
    pub(crate) fn postgres(&self, db: &Db<'_>) -> StatefulSet {
        let r = db.resources;
        let ready = [
            "pg_isready",
            "-h",
            "127.0.0.1",
            "-U",
            db.user,
            "-d",
            db.name,
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
                env("POSTGRES_USER", db.user),
                env("POSTGRES_DB", db.name),
                env_from_secret("POSTGRES_PASSWORD", &db.password_secret, db.password_key),
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

    pub(crate) fn pvc_spec(&self, size: &str) -> PersistentVolumeClaimSpec {
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

    /// The media volume (`size`), mounted by the pods that store files.
    pub(crate) fn media_pvc(&self, size: &str) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: lab_meta(
                self.spec,
                &names::media_pvc(&self.instance.name),
                self.instance_labels(),
            ),
            spec: Some(self.pvc_spec(size)),
            ..PersistentVolumeClaim::default()
        }
    }

    /// Redis without persistence (a lab's Redis holds caches and queues).
    pub(crate) fn redis(&self, r: &ComponentResources) -> Deployment {
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
            resources: Some(resources(r)),
            startup_probe: Some(startup(exec_probe(&ping, 5, 1), 2)),
            readiness_probe: Some(exec_probe(&ping, 5, 3)),
            liveness_probe: Some(tcp_probe(REDIS_PORT, 20, 6)),
            security_context: Some(restricted_container()),
            ..Container::default()
        };
        self.deployment(Component::Redis, self.pod(REDIS_UID, vec![container]), true)
    }

    /// The media volume as a pod volume named `media`.
    pub(crate) fn media_volume(&self) -> Volume {
        Volume {
            name: s("media"),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: names::media_pvc(&self.instance.name),
                read_only: None,
            }),
            ..Volume::default()
        }
    }
}
