//! A lab's life cycle: [`up`], [`down`], [`attach`] and [`detach`], each the
//! whole sequence from the profile and the host state to the cluster and
//! the host side (`fedilab serve`), so a test can call it and the CLI only
//! parses flags and prints the report.
//!
//! ```text
//! UpPlan::prepare(UpRequest)       attached servers, secrets, certificates (no cluster)
//! up(&Cluster, &UpPlan, host, ..)  node, facts -> build -> preflight -> apply -> upstreams
//!                                  -> lab.json -> serve -> wait -> credentials
//! down(&Cluster, &DownRequest, ..) cluster objects -> serve stopped -> purge
//! AttachPlan::prepare / attach     leaf, objects, attached.json + lab.json, serve
//! DetachPlan::prepare / detach     objects, leaf, state, serve
//! backup / restore / import        one instance's state to and from an archive
//! reset / snapshot_save|list|delete  per instance through exec, then the inspector's marker
//! record_fresh                     `up`'s post-setup snapshot `fresh`
//! ```
//!
//! Each `prepare` does the local checks first, so a refusal never needs a
//! cluster. Nothing here prints: live progress goes through [`Progress`],
//! results come back as reports, refusals as errors whose
//! `is_usage()` tells the CLI to exit 2.
#![warn(missing_docs, clippy::print_stdout, clippy::dbg_macro)]

/// `From<E>` for an error enum whose variant holds `Box<E>` (the cluster
/// errors are large; a boxed variant keeps every `Result` small).
macro_rules! boxed_from {
    ($enum:ident :: $variant:ident ($source:ty)) => {
        impl From<$source> for $enum {
            fn from(e: $source) -> Self {
                $enum::$variant(Box::new(e))
            }
        }
    };
}

mod backup;
mod down;
mod host;
mod members;
mod recorded;
mod reset;
mod tls;
mod up;

pub use backup::{
    BackupReport, BackupRequest, ImportRequest, RestoreReport, RestoreRequest, SETUP_BUDGET,
    TransferError, TransferEvent, TransferProgress, backup, check_instance, import, restore,
};
pub use down::{DownError, DownReport, DownRequest, down};
pub use host::{Daemon, HostSide};
pub use members::{
    AttachError, AttachPlan, AttachReport, AttachRequest, DetachError, DetachPlan, DetachReport,
    NotUp, attach, detach, with_attached,
};
pub use recorded::{OtherLab, check_same_lab, recorded_counts};
pub use reset::{
    Recordings, SnapshotRow, StateError, StatePlan, StateReport, StateRequest,
    delete as snapshot_delete, list as snapshot_list, record_fresh, reset, rows as snapshot_rows,
    save as snapshot_save,
};
pub use tls::{TlsError, lab_tls};
pub use up::{Event, Progress, UpError, UpPlan, UpReport, UpRequest, up};
