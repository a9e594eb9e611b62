//! How Traefik reaches an instance, and the objects every routed instance
//! has: its Ingress (TLS terminated with the instance's leaf certificate).
//!
//! [`Routing::Direct`]: the Ingress points at the instance's own Services.
//! [`Routing::Inspector`]: the Ingress sends every path to a selector-less
//! Service, `<instance>-inspector`, whose one EndpointSlice points at the
//! inspector's proxy on the host; the inspector forwards to the instance's
//! Services (or, for an external server, to its URL on the host).
//!
//! Builds objects only; which port the inspector listens on and which
//! instance it forwards where are the caller's business.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use fedilab_profile::{InstanceSpec, LabSpec, names};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::BuildError;
use crate::lab::lab_meta;
use crate::objects::Manifest;

/// The port of an inspector route's Service (Traefik connects to the
/// EndpointSlice's port, the inspector's).
const ROUTE_SERVICE_PORT: i32 = 80;

/// How Traefik sends each instance's traffic on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// Straight to the instance's Services (`fedilab up --no-inspector`).
    /// External instances cannot be routed this way.
    Direct,
    /// Through the inspector, the recording proxy on the host.
    Inspector {
        /// Where the inspector's proxy listens, as pods reach it: the node's
        /// address (not loopback, unspecified or link-local: Kubernetes
        /// refuses those as endpoint addresses) and the proxy's port.
        proxy: SocketAddr,
    },
}

/// The inspector's proxy address, checked to be one Kubernetes accepts as
/// an endpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Proxy(SocketAddr);

impl Routing {
    /// The checked proxy address, `None` for direct routing.
    pub(crate) fn proxy(&self) -> Result<Option<Proxy>, BuildError> {
        match *self {
            Routing::Direct => Ok(None),
            Routing::Inspector { proxy } => check_proxy(proxy).map(Some),
        }
    }
}

fn check_proxy(addr: SocketAddr) -> Result<Proxy, BuildError> {
    let refused = "Kubernetes refuses it as an endpoint address; give the node's address, \
                   where Traefik's pods reach the host";
    let ip = addr.ip().to_canonical();
    let what = if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if is_link_local(ip) {
        Some("a link-local address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else {
        None
    };
    if let Some(what) = what {
        return Err(BuildError::ProxyAddress {
            addr,
            problem: format!("{} is {what}: {refused}", addr.ip()),
        });
    }
    if addr.port() == 0 {
        return Err(BuildError::ProxyAddress {
            addr,
            problem: "port 0 is not a port; give the port the inspector's proxy listens on"
                .to_owned(),
        });
    }
    Ok(Proxy(SocketAddr::new(ip, addr.port())))
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    }
}

/// One path of an Ingress rule: a prefix and the Service (and port) it
/// goes to.
pub(crate) struct IngressPath {
    pub prefix: &'static str,
    pub service: String,
    pub port: i32,
}

/// The instance's Ingress: its host, TLS with its leaf certificate's
/// Secret, and `paths` in order.
pub(crate) fn ingress(
    spec: &LabSpec,
    instance: &InstanceSpec,
    labels: BTreeMap<String, String>,
    paths: Vec<IngressPath>,
) -> Ingress {
    let host = instance.host.to_string();
    let paths = paths
        .into_iter()
        .map(|p| HTTPIngressPath {
            path: Some(p.prefix.to_owned()),
            path_type: "Prefix".to_owned(),
            backend: IngressBackend {
                service: Some(IngressServiceBackend {
                    name: p.service,
                    port: Some(ServiceBackendPort {
                        number: Some(p.port),
                        name: None,
                    }),
                }),
                resource: None,
            },
        })
        .collect();
    Ingress {
        metadata: lab_meta(spec, &names::ingress(&instance.name), labels),
        spec: Some(IngressSpec {
            ingress_class_name: Some(names::TRAEFIK_INGRESS_CLASS.to_owned()),
            tls: Some(vec![IngressTLS {
                hosts: Some(vec![host.clone()]),
                secret_name: Some(names::tls_secret(&instance.name)),
            }]),
            rules: Some(vec![IngressRule {
                host: Some(host),
                http: Some(HTTPIngressRuleValue { paths }),
            }]),
            default_backend: None,
        }),
        ..Ingress::default()
    }
}

/// An instance's route through the inspector, in apply order: the
/// selector-less Service, its EndpointSlice, and the Ingress that sends
/// every path to it. `app` is the instance's `app.kubernetes.io/name`;
/// `upstream`, for an external server, is recorded on the Service.
pub(crate) fn inspector_route(
    spec: &LabSpec,
    instance: &InstanceSpec,
    app: &str,
    proxy: Proxy,
    upstream: Option<&str>,
) -> [Manifest; 3] {
    let Proxy(proxy) = proxy;
    let name = names::inspector_route(&instance.name);
    let labels = names::inspector_route_labels(&spec.name, &instance.name, app);
    let port_name = names::INSPECTOR_ROUTE_PORT_NAME.to_owned();

    let mut service_meta = lab_meta(spec, &name, labels.clone());
    service_meta.annotations =
        upstream.map(|u| BTreeMap::from([(names::UPSTREAM_ANNOTATION.to_owned(), u.to_owned())]));
    let service = Service {
        metadata: service_meta,
        spec: Some(ServiceSpec {
            // No selector: the EndpointSlice below is written by fedilab,
            // not by Kubernetes' endpoint controllers.
            selector: None,
            ports: Some(vec![ServicePort {
                name: Some(port_name.clone()),
                port: ROUTE_SERVICE_PORT,
                target_port: Some(IntOrString::Int(i32::from(proxy.port()))),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };

    let mut slice_labels = labels.clone();
    slice_labels.insert(names::SERVICE_NAME_KEY.to_owned(), name.clone());
    slice_labels.insert(
        names::ENDPOINTSLICE_MANAGED_BY_KEY.to_owned(),
        names::ENDPOINTSLICE_MANAGED_BY.to_owned(),
    );
    let slice = EndpointSlice {
        metadata: lab_meta(spec, &name, slice_labels),
        address_type: match proxy.ip() {
            IpAddr::V4(_) => "IPv4",
            IpAddr::V6(_) => "IPv6",
        }
        .to_owned(),
        endpoints: vec![Endpoint {
            addresses: vec![proxy.ip().to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                serving: None,
                terminating: None,
            }),
            ..Endpoint::default()
        }],
        ports: Some(vec![EndpointPort {
            name: Some(port_name),
            port: Some(i32::from(proxy.port())),
            protocol: Some("TCP".to_owned()),
            app_protocol: None,
        }]),
    };

    let ingress = ingress(
        spec,
        instance,
        names::instance_labels(&spec.name, &instance.name, app),
        vec![IngressPath {
            prefix: "/",
            service: name,
            port: ROUTE_SERVICE_PORT,
        }],
    );
    [
        Manifest::Service(service),
        Manifest::EndpointSlice(slice),
        Manifest::Ingress(ingress),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy_error(addr: &str) -> String {
        let addr: SocketAddr = addr.parse().expect("socket address");
        match check_proxy(addr) {
            Err(e) => e.to_string(),
            Ok(p) => panic!("{addr} accepted as {:?}", p.0),
        }
    }

    #[test]
    fn proxy_addresses_kubernetes_refuses_are_errors_that_say_why() {
        for (addr, says) in [
            ("127.0.0.1:8480", "loopback"),
            ("[::1]:8480", "loopback"),
            ("[::ffff:127.0.0.1]:8480", "loopback"),
            ("0.0.0.0:8480", "unspecified"),
            ("[::]:8480", "unspecified"),
            ("169.254.1.1:8480", "link-local"),
            ("[fe80::1]:8480", "link-local"),
            ("224.0.0.1:8480", "multicast"),
            ("192.0.2.10:0", "port 0"),
        ] {
            let err = proxy_error(addr);
            assert!(err.contains(says), "{addr}: {err}");
            assert!(err.contains("inspector"), "{addr}: {err}");
        }
        assert!(proxy_error("127.0.0.1:8480").contains("Kubernetes refuses it"));
        assert!(proxy_error("127.0.0.1:8480").contains("node's address"));
    }

    #[test]
    fn node_addresses_are_accepted() {
        for addr in ["192.0.2.10:8480", "10.0.0.5:1", "[2001:db8::10]:8480"] {
            let parsed: SocketAddr = addr.parse().expect("socket address");
            let checked = check_proxy(parsed).expect(addr);
            assert_eq!(checked.0, parsed);
        }
        // An IPv4-mapped IPv6 address is written as the IPv4 address it is.
        let mapped: SocketAddr = "[::ffff:192.0.2.10]:8480".parse().expect("socket address");
        assert_eq!(
            check_proxy(mapped).expect("valid").0,
            "192.0.2.10:8480"
                .parse::<SocketAddr>()
                .expect("socket address")
        );
    }
}
