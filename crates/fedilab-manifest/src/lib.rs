//! Builds every Kubernetes object of a lab from its [`LabSpec`], as typed
//! k8s-openapi structs (DynamicObject only for k3s's own CRDs). Never YAML
//! text templates. Pure: no network, no cluster, no files.
#![warn(missing_docs, clippy::print_stdout, clippy::dbg_macro)]

mod tls;

pub use tls::{LeafPem, TlsMaterial};
