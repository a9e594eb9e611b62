//! The `fedilab` binary's integration tests, in one test binary (ripgrep's
//! `tests/tests.rs` shape): one module per area, the shared helpers in
//! `common`. Run them with `cargo test -p fedilab --test integration`.

mod common;

mod cli_backup;
mod cli_ca;
mod cli_dns;
mod cli_exec;
mod cli_inspect;
mod cli_orchestrator;
mod cli_render;
mod cli_serve;
mod cli_snapshot;
mod cli_verify;
mod messages;
