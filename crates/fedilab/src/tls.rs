//! Glue between the lab CA (`fedilab-ca`) and the manifests. Interim: the CA
//! crate is being written; this file is replaced by its glue.

use std::path::Path;

use fedilab_manifest::TlsMaterial;
use fedilab_profile::LabSpec;

/// The lab CA certificate and one leaf per instance.
///
/// # Errors
/// Always, until the CA crate lands.
pub fn lab_tls(_spec: &LabSpec, _data_dir: &Path) -> anyhow::Result<TlsMaterial> {
    anyhow::bail!("the lab CA is not wired in yet")
}
