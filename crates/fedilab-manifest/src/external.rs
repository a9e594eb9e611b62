//! The objects of an external instance, a server running outside the
//! cluster (on the host, usually): its TLS Secret and its route through the
//! inspector. Nothing runs in the cluster for it and it has no generated
//! secrets; the cluster reaches it only through the inspector, which
//! forwards to the server's URL.

use fedilab_profile::{ExternalSpec, InstanceKind, InstanceSpec, LabSpec, names};

use crate::objects::{InstanceObjects, Manifest};
use crate::routing::{self, Proxy};
use crate::tls::{self, LeafPem};

/// Builds one external instance's objects.
pub(crate) fn build(
    spec: &LabSpec,
    instance: &InstanceSpec,
    external: &ExternalSpec,
    leaf: &LeafPem,
    proxy: Proxy,
) -> InstanceObjects {
    let app = InstanceKind::External.as_str();
    let labels = names::instance_labels(&spec.name, &instance.name, app);
    let upstream = external.url.to_string();
    InstanceObjects {
        config: vec![Manifest::Secret(tls::tls_secret(
            spec, instance, labels, leaf,
        ))],
        stateful: Vec::new(),
        workloads: routing::inspector_route(spec, instance, app, proxy, Some(&upstream)).into(),
        jobs: Vec::new(),
    }
}
