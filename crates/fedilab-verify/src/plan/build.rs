//! Building the check plan from a [`LabSpec`]: the pods of each check
//! (scripts, environment), the host-side queries, the expectations and
//! the likely causes of each failure. Pure.

use fedilab_profile::names::{self, Component};
use fedilab_profile::{
    DEFAULT_MASTODON_IMAGE, DEFAULT_MASTODON_VERSION, InstanceKind, InstanceSpec, InstanceSpecKind,
    LabSpec, MastodonSpec,
};

use super::{
    Cause, Check, CheckId, EnvSource, EnvVar, FEDERATION_ACTIVITIES, HostDnsStep, InspectorQuery,
    InspectorStep, PlanInputs, PodStep, Script, Step, StepRun, VerifyPlan,
};

/// Public addresses a lab pod must not reach over TCP.
const BLOCKED_TCP: &[&str] = &["1.1.1.1:443", "9.9.9.9:443"];
/// A public resolver a lab pod must not get an answer from.
const BLOCKED_DNS: &[&str] = &["8.8.8.8:53"];

/// The Mastodon settings of `instance`. The checks run Ruby in Mastodon's
/// image: only Mastodon instances get egress, names and trust pods; the
/// federation check drives other kinds through their API from a Mastodon
/// image.
fn mastodon(instance: &InstanceSpec) -> Option<&MastodonSpec> {
    match &instance.kind {
        InstanceSpecKind::Mastodon(m) => Some(m),
        InstanceSpecKind::Misskey(_)
        | InstanceSpecKind::GoToSocial(_)
        | InstanceSpecKind::External(_) => None,
    }
}

fn value(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        from: EnvSource::Value {
            value: value.into(),
        },
    }
}

fn secret(name: &str, secret: String, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        from: EnvSource::SecretKeyRef {
            secret,
            key: key.to_owned(),
        },
    }
}

fn cause(code: &'static str, text: String) -> Cause {
    Cause { code, text }
}

struct Builder<'a> {
    spec: &'a LabSpec,
    inputs: &'a PlanInputs,
    namespace: String,
    mastodons: Vec<(&'a InstanceSpec, &'a MastodonSpec)>,
}

impl Builder<'_> {
    fn pod(&self, check: CheckId, from: usize, script: Script, env: Vec<EnvVar>) -> Step {
        let (instance, m) = self.mastodons[from];
        Step {
            id: format!("{check}@{}", instance.name),
            run: StepRun::Pod(PodStep {
                pod: names::verify_pod(&instance.name, check.as_str()),
                namespace: self.namespace.clone(),
                instance: instance.name.to_string(),
                image: m.image.clone(),
                script,
                env,
                client_only: false,
            }),
        }
    }

    fn timeout_env(&self) -> EnvVar {
        value(
            "FEDILAB_PROBE_TIMEOUT",
            self.inputs.probe_timeout_secs.to_string(),
        )
    }

    fn no_pod(&self) -> Option<String> {
        self.mastodons
            .is_empty()
            .then(|| "the lab has no Mastodon instance to run a check pod from".to_owned())
    }

    fn common_causes(&self) -> Vec<Cause> {
        vec![
            cause(
                "pod_not_run",
                format!(
                    "the check pod could not be created; `kubectl -n {} get events` may say why",
                    self.namespace
                ),
            ),
            cause(
                "pod_timed_out",
                format!(
                    "the check pod did not finish in time: it stayed Pending (no room on the node, \
                     image not present) or hung; `kubectl -n {} get pods -l {}` while it runs",
                    self.namespace,
                    names::VERIFY_KEY
                ),
            ),
            cause(
                "script_failed",
                "the check script failed before reporting; its log is in the evidence".to_owned(),
            ),
        ]
    }

    fn egress(&self) -> Check {
        let mut check = Check {
            id: CheckId::Egress,
            title: "egress is closed: public addresses unreachable, the lab reachable".to_owned(),
            skipped: self.no_pod(),
            steps: Vec::new(),
            expect: vec![
                format!(
                    "TCP to {} fails within {}s",
                    BLOCKED_TCP.join(" and "),
                    self.inputs.probe_timeout_secs
                ),
                format!("a DNS query to {} gets no answer", BLOCKED_DNS.join(", ")),
                "TCP to another instance's web Service connects".to_owned(),
            ],
            likely_causes: vec![
                cause(
                    "network_policy_not_enforced",
                    format!(
                        "NetworkPolicy is not enforced: k3s runs with --disable-network-policy \
                         (remove it from the k3s service, restart k3s), or the lab's policy is \
                         missing (`kubectl -n {} get networkpolicy {}`)",
                        self.namespace,
                        names::EGRESS_POLICY
                    ),
                ),
                cause(
                    "lab_unreachable",
                    "a lab pod cannot reach another instance's Service: the profile's \
                     network.egress_cidrs do not cover the cluster's pod and service networks \
                     (k3s: 10.42.0.0/15), or that instance's web pod is not ready \
                     (`fedilab status`)"
                        .to_owned(),
                ),
            ],
            notes: Vec::new(),
        };
        check.likely_causes.extend(self.common_causes());
        if check.skipped.is_none() {
            let target = self.mastodons.get(1).unwrap_or(&self.mastodons[0]).0;
            let service = format!(
                "{}.{}.svc.cluster.local:{}",
                names::component_object(&target.name, Component::Web),
                self.namespace,
                fedilab_manifest::WEB_PORT
            );
            check.steps.push(self.pod(
                CheckId::Egress,
                0,
                Script::Egress,
                vec![
                    value("FEDILAB_BLOCKED_TCP", BLOCKED_TCP.join(",")),
                    value("FEDILAB_BLOCKED_DNS", BLOCKED_DNS.join(",")),
                    value("FEDILAB_ALLOWED_TCP", service),
                    self.timeout_env(),
                ],
            ));
        }
        check
    }

    fn names(&self) -> Check {
        let hosts: Vec<String> = self
            .spec
            .instances
            .iter()
            .map(|i| i.host.to_string())
            .collect();
        let coredns_key = names::coredns_key(&self.spec.name);
        let mut check = Check {
            id: CheckId::Names,
            title: "names: every instance host resolves in the cluster and on the host".to_owned(),
            skipped: None,
            steps: Vec::new(),
            expect: vec![
                "in a lab pod, Ruby's Resolv::DNS (as Mastodon) resolves every host to \
                 Traefik's ClusterIP"
                    .to_owned(),
                "on the host, the embedded DNS answers every host with the node address".to_owned(),
            ],
            likely_causes: vec![
                cause(
                    "coredns_not_serving",
                    format!(
                        "CoreDNS does not serve the lab domain: the key {coredns_key} of \
                         kube-system/{} is missing, or CoreDNS was not restarted after it \
                         changed (`kubectl -n kube-system rollout restart deployment {}`; \
                         `fedilab up` does both)",
                        names::COREDNS_CUSTOM_CONFIGMAP,
                        names::COREDNS_DEPLOYMENT
                    ),
                ),
                cause(
                    "coredns_wrong_answer",
                    format!(
                        "the name resolves, but not to Traefik: another CoreDNS block or \
                         another lab answers for {}",
                        self.spec.domain
                    ),
                ),
                cause(
                    "traefik_missing",
                    format!(
                        "kube-system/{} has no ClusterIP: k3s runs without its packaged \
                         Traefik (--disable traefik)",
                        names::TRAEFIK_SERVICE
                    ),
                ),
                cause(
                    "serve_not_running",
                    format!(
                        "the lab's host side is not answering: start `fedilab serve --lab {}` \
                         (`fedilab up` starts it)",
                        self.spec.name
                    ),
                ),
                cause(
                    "host_dns_wrong_answer",
                    "the embedded DNS answers with another address than the node's: the node \
                     address changed since `fedilab up`; run it again"
                        .to_owned(),
                ),
            ],
            notes: Vec::new(),
        };
        check.likely_causes.extend(self.common_causes());
        if let Some(reason) = self.no_pod() {
            check.notes.push(format!("no in-cluster lookup: {reason}"));
        } else {
            check.steps.push(self.pod(
                CheckId::Names,
                0,
                Script::Names,
                vec![
                    value("FEDILAB_HOSTS", hosts.join(",")),
                    EnvVar {
                        name: "FEDILAB_TRAEFIK_IP".to_owned(),
                        from: EnvSource::TraefikClusterIp,
                    },
                    self.timeout_env(),
                ],
            ));
        }
        check.steps.push(Step {
            id: format!("{}@host", CheckId::Names),
            run: StepRun::HostDns(HostDnsStep {
                server: self.inputs.host.as_ref().map(|h| h.dns),
                hosts,
                expected: self.inputs.host.as_ref().and_then(|h| h.node_address),
            }),
        });
        check
    }

    fn trust(&self) -> Check {
        let mut check = Check {
            id: CheckId::Trust,
            title: "trust: HTTPS between instances verifies with the lab CA, and only with it"
                .to_owned(),
            skipped: self.no_pod(),
            steps: Vec::new(),
            expect: vec![
                format!(
                    "from each Mastodon pod, GET https://<other host>/.well-known/webfinger?\
                     resource=acct:{}@<other host> verifies with the lab trust bundle \
                     (SSL_CERT_FILE)",
                    names::ADMIN_USERNAME
                ),
                format!(
                    "the same request fails certificate verification with only the image's \
                     system bundle ({})",
                    fedilab_manifest::SYSTEM_BUNDLE_PATH
                ),
            ],
            likely_causes: vec![
                cause(
                    "ca_not_in_bundle",
                    format!(
                        "the lab CA is not in the pods' trust bundle, or the instance's \
                         certificate is not from it: ConfigMap {} holds another CA than the \
                         one that issued the certificates (`fedilab up` again), or Traefik \
                         serves its default certificate (the instance's TLS Secret is missing: \
                         `kubectl -n {} get secrets`)",
                        names::LAB_CA_CONFIGMAP,
                        self.namespace
                    ),
                ),
                cause(
                    "trusted_without_lab_ca",
                    "the certificate verifies without the lab CA: it does not come from the \
                     lab CA, so the trust check proves nothing"
                        .to_owned(),
                ),
                cause(
                    "instance_unreachable",
                    "the instance is not reachable over HTTPS from the lab: see the names and \
                     egress checks; is its web pod ready (`fedilab status`)?"
                        .to_owned(),
                ),
            ],
            notes: Vec::new(),
        };
        check.likely_causes.extend(self.common_causes());
        if check.skipped.is_some() {
            return check;
        }
        for (index, (instance, _)) in self.mastodons.iter().enumerate() {
            let mut targets: Vec<String> = self
                .mastodons
                .iter()
                .filter(|(other, _)| other.name != instance.name)
                .map(|(other, _)| other.host.to_string())
                .collect();
            if targets.is_empty() {
                targets.push(instance.host.to_string());
            }
            check.steps.push(self.pod(
                CheckId::Trust,
                index,
                Script::Trust,
                vec![
                    value("FEDILAB_HOSTS", targets.join(",")),
                    value("FEDILAB_ADMIN_USERNAME", names::ADMIN_USERNAME),
                    value(
                        "FEDILAB_SYSTEM_BUNDLE",
                        fedilab_manifest::SYSTEM_BUNDLE_PATH,
                    ),
                    self.timeout_env(),
                ],
            ));
        }
        check
    }

    fn federation(&self) -> Check {
        let wait = self.inputs.federation_wait_secs;
        let pairs = federation_pairs(self.spec);
        let kinds = kinds_present(self.spec);
        let mut check = Check {
            id: CheckId::Federation,
            title: "federation: a follow, its accept and a post travel between instances, for \
                    each pair of server kinds"
                .to_owned(),
            skipped: pairs.is_empty().then(|| {
                "the round trip needs two instances that fedilab runs (Mastodon, Misskey or \
                 GoToSocial)"
                    .to_owned()
            }),
            steps: Vec::new(),
            expect: vec![
                format!(
                    "for each pair A -> B: A resolves {}@B through its API and follows; B \
                     accepts within {wait}s (a locked admin, GoToSocial's default, has the \
                     request approved through B's API first)",
                    names::ADMIN_USERNAME
                ),
                format!(
                    "B posts a public status with the pair's nonce ({}-<A>-<B>); it reaches \
                     A's home timeline within {wait}s",
                    self.inputs.nonce
                ),
                "the inspector recorded the Follow (A to B), the Accept and the Create (B to A) \
                 as inbox POSTs with valid signatures"
                    .to_owned(),
                format!(
                    "each side through its own API: {}",
                    kinds
                        .iter()
                        .map(|k| api_of(*k))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            ],
            likely_causes: vec![
                cause(
                    "private_addresses_refused",
                    format!(
                        "a server refuses to connect to private addresses: {}",
                        kinds
                            .iter()
                            .map(|k| private_address_setting(*k))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                ),
                cause(
                    "token_rejected",
                    "the admin API token was rejected: the setup Job has not finished or was \
                     changed (`fedilab status`, then `fedilab up`)"
                        .to_owned(),
                ),
                cause(
                    "not_delivered",
                    format!(
                        "an activity did not arrive in time: the sender's delivery queue is not \
                         processing, or its deliveries fail ({}); the names and trust checks \
                         above cover the usual reasons",
                        kinds
                            .iter()
                            .map(|k| self.delivery_logs(*k))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                ),
                cause(
                    "serve_not_running",
                    format!(
                        "the inspector is not answering: start `fedilab serve --lab {}` \
                         (`fedilab up` starts it)",
                        self.spec.name
                    ),
                ),
                cause(
                    "inspector_bypassed",
                    "the inspector did not record the delivery: Traefik routes straight to the \
                     instances (the lab was set up with --no-inspector), or the inspector was \
                     restarted without --persist"
                        .to_owned(),
                ),
                cause(
                    "bad_signature",
                    "the inspector judged the delivery's HTTP signature not valid; its \
                     problems are in the evidence (`fedilab inspect` UI shows the exchange)"
                        .to_owned(),
                ),
            ],
            notes: Vec::new(),
        };
        check.likely_causes.extend(self.common_causes());
        if check.skipped.is_some() {
            return check;
        }
        let token = names::admin_keys::API_TOKEN;
        let mut inspector_steps = Vec::new();
        for (a, b) in pairs {
            let pair = format!("{}>{}", a.name, b.name);
            let nonce = format!("{}-{}-{}", self.inputs.nonce, a.name, b.name);
            let (image, client_only) = match mastodon(a) {
                Some(m) => (m.image.clone(), false),
                None => (self.client_image(), true),
            };
            let step_id = format!("{}@{pair}", CheckId::Federation);
            check.steps.push(Step {
                id: step_id.clone(),
                run: StepRun::Pod(PodStep {
                    pod: names::verify_pair_pod(&a.name, &b.name, CheckId::Federation.as_str()),
                    namespace: self.namespace.clone(),
                    instance: a.name.to_string(),
                    image,
                    script: Script::Federation,
                    env: vec![
                        value("FEDILAB_FROM_HOST", a.host.to_string()),
                        value("FEDILAB_FROM_KIND", a.kind.kind().as_str()),
                        value("FEDILAB_TO_HOST", b.host.to_string()),
                        value("FEDILAB_TO_KIND", b.kind.kind().as_str()),
                        secret("FEDILAB_FROM_TOKEN", names::admin_secret(&a.name), token),
                        secret("FEDILAB_TO_TOKEN", names::admin_secret(&b.name), token),
                        value("FEDILAB_ADMIN_USERNAME", names::ADMIN_USERNAME),
                        value("FEDILAB_NONCE", nonce.clone()),
                        value("FEDILAB_WAIT", wait.to_string()),
                    ],
                    client_only,
                }),
            });
            let (from_a, from_b) = (a.host.to_string(), b.host.to_string());
            let query =
                |activity: &str, from: &str, to: &str, text: Option<String>| InspectorQuery {
                    activity: activity.to_owned(),
                    from: from.to_owned(),
                    to: to.to_owned(),
                    text,
                };
            match &self.inputs.host {
                Some(host) if host.inspector.is_none() => {}
                host => inspector_steps.push(Step {
                    id: format!("{}@inspector:{pair}", CheckId::Federation),
                    run: StepRun::Inspector(InspectorStep {
                        api: host.as_ref().and_then(|h| h.inspector),
                        round_trip: Some(step_id),
                        queries: vec![
                            query(FEDERATION_ACTIVITIES[0], &from_a, &from_b, None),
                            query(FEDERATION_ACTIVITIES[1], &from_b, &from_a, None),
                            query(FEDERATION_ACTIVITIES[2], &from_b, &from_a, Some(nonce)),
                        ],
                    }),
                }),
            }
        }
        check.steps.extend(inspector_steps);
        if self
            .inputs
            .host
            .as_ref()
            .is_some_and(|h| h.inspector.is_none())
        {
            check.notes.push(
                "the lab runs without the inspector: deliveries are not checked on the wire"
                    .to_owned(),
            );
        }
        check
    }

    /// The image a client-only check pod runs: the lab's first Mastodon
    /// instance's, or the pinned default in a lab without Mastodon.
    fn client_image(&self) -> String {
        self.mastodons.first().map_or_else(
            || format!("{DEFAULT_MASTODON_IMAGE}:{DEFAULT_MASTODON_VERSION}"),
            |(_, m)| m.image.clone(),
        )
    }

    /// Where a kind's outgoing deliveries can be watched.
    fn delivery_logs(&self, kind: InstanceKind) -> String {
        let ns = &self.namespace;
        match kind {
            InstanceKind::Mastodon => {
                format!("Mastodon: Sidekiq, `kubectl -n {ns} logs deploy/<instance>-sidekiq`")
            }
            InstanceKind::Misskey => {
                format!("Misskey: its job queue, `kubectl -n {ns} logs deploy/<instance>-web`")
            }
            InstanceKind::Gotosocial => {
                format!("GoToSocial: `kubectl -n {ns} logs deploy/<instance>-web`")
            }
            InstanceKind::External => "an external server: its own logs".to_owned(),
        }
    }
}

/// The kinds of the lab's in-cluster instances, in [`InstanceKind::ALL`]
/// order.
fn kinds_present(spec: &LabSpec) -> Vec<InstanceKind> {
    InstanceKind::ALL
        .into_iter()
        .filter(|k| *k != InstanceKind::External)
        .filter(|k| spec.instances.iter().any(|i| i.kind.kind() == *k))
        .collect()
}

/// The ordered pairs (A, B) of the federation round trip: for a kind with
/// two or more instances, its first towards its second; for every two
/// kinds present, the first instance of each, both ways. One round trip
/// per pair of kinds, not per pair of instances: the kinds are what differ.
/// External servers are left out (fedilab holds no token for them).
fn federation_pairs(spec: &LabSpec) -> Vec<(&InstanceSpec, &InstanceSpec)> {
    let by_kind: Vec<Vec<&InstanceSpec>> = kinds_present(spec)
        .into_iter()
        .map(|k| {
            spec.instances
                .iter()
                .filter(|i| i.kind.kind() == k)
                .collect()
        })
        .collect();
    let mut pairs = Vec::new();
    for same in &by_kind {
        if let [first, second, ..] = same[..] {
            pairs.push((first, second));
        }
    }
    for (n, one) in by_kind.iter().enumerate() {
        for other in &by_kind[n + 1..] {
            pairs.push((one[0], other[0]));
            pairs.push((other[0], one[0]));
        }
    }
    pairs
}

/// The client API the round trip uses on a kind.
fn api_of(kind: InstanceKind) -> &'static str {
    match kind {
        InstanceKind::Mastodon => "Mastodon's REST API (Bearer token)",
        InstanceKind::Misskey => "Misskey's POST /api/* with the token as `i`",
        InstanceKind::Gotosocial => "GoToSocial's Mastodon-compatible API (Bearer token)",
        InstanceKind::External => "none (external servers are not driven)",
    }
}

/// The setting that lets a kind connect to the lab's private addresses.
fn private_address_setting(kind: InstanceKind) -> &'static str {
    match kind {
        InstanceKind::Mastodon => {
            "Mastodon (PrivateNetworkAddressError): ALLOWED_PRIVATE_ADDRESSES is missing from \
             the instance's environment or does not cover the cluster networks"
        }
        InstanceKind::Misskey => {
            "Misskey: allowedPrivateNetworks in its default.yml does not cover the cluster \
             networks"
        }
        InstanceKind::Gotosocial => {
            "GoToSocial: http-client.allow-ips in its config.yaml does not cover the cluster \
             networks"
        }
        InstanceKind::External => "an external server: its own settings",
    }
}

/// The checks of `spec`'s lab. Only Mastodon instances get the egress,
/// names and trust pods: the first one runs the egress and names pods,
/// each runs a trust pod. The federation check runs one pod per pair of
/// kinds ([`federation_pairs`]), in A's Mastodon image or, for another
/// kind, as a client in a Mastodon image.
pub fn plan(spec: &LabSpec, inputs: &PlanInputs) -> VerifyPlan {
    let b = Builder {
        spec,
        inputs,
        namespace: names::namespace(&spec.name),
        mastodons: spec
            .instances
            .iter()
            .filter_map(|i| mastodon(i).map(|m| (i, m)))
            .collect(),
    };
    VerifyPlan {
        lab: spec.name.to_string(),
        namespace: b.namespace.clone(),
        checks: vec![b.egress(), b.names(), b.trust(), b.federation()],
    }
}
