//! The lab's certificate authority: one name-constrained root per lab domain
//! and a leaf per instance host.
//!
//! Trusting a home-made CA must never let it vouch for any other site, so the
//! root carries *critical* X.509 name constraints that permit only the lab
//! domain's DNS subtree (and exclude every IP address): a leaf for
//! `example.com` signed with the lab key is rejected by OpenSSL, rustls and
//! browsers alike.
//!
//! - [`issue`] is pure: [`Ca::generate`], [`Ca::issue_leaf`] and the reuse
//!   rule [`Ca::check_leaf`] take `now` as a parameter and touch no file.
//! - [`store`] is the thin file-system layer: `<data_dir>/ca/<domain>/` with
//!   mode 0700, `ca.pem`, `ca.key` (0600), `<host>.pem` and `<host>.key`,
//!   atomic writes, and refusal of key files others may read.
//! - [`inspect`] reads what `fedilab ca show` prints; [`trust`] plans the
//!   commands that add the root to the host's trust stores.
//!
//! This crate never talks to the cluster, never runs a command and never
//! prints; private keys travel as [`KeyPem`], whose `Debug` is redacted.
#![warn(missing_docs, clippy::print_stdout, clippy::dbg_macro)]

mod host;
pub mod inspect;
pub mod issue;
pub mod store;
pub mod trust;

pub use host::{HostName, HostNameError};
pub use inspect::{CertInfo, ConstraintsInfo, InspectError, format_time};
pub use issue::{
    CA_VALIDITY, Ca, CaParseError, IssueError, KeyPem, LEAF_VALIDITY, Leaf, RENEW_BEFORE, Reissue,
};
pub use store::{
    CaStore, Init, InitError, LeafAction, LeafError, LeafPaths, ListError, LoadError, StoredLeaf,
    local_host_name,
};
