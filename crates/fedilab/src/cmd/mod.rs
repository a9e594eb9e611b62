//! One module per subcommand; [`run`] dispatches.

pub mod attach;
pub mod backup;
pub mod bootstrap;
pub mod ca;
pub mod creds;
pub mod dns;
pub mod down;
pub mod exec;
pub mod fault;
pub mod inspect;
pub mod render;
pub mod serve;
pub mod snapshot;
pub mod status;
pub mod up;
pub mod verify;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs the parsed command line.
///
/// # Errors
/// Whatever the command failed with; `main` prints it and picks the exit
/// code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Render(args) => render::run(&args),
        Command::Ca(args) => ca::run(&args),
        Command::Dns(args) => dns::run(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::Fault(args) => fault::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Up(args) => up::run(&args),
        Command::Status(args) => status::run(&args),
        Command::Creds(args) => creds::run(&args),
        Command::Attach(args) => attach::attach(&args),
        Command::Detach(args) => attach::detach(&args),
        Command::Down(args) => down::run(&args),
        Command::Exec(args) => exec::exec(&args),
        Command::Tootctl(args) => exec::tootctl(&args),
        Command::Backup(args) => backup::backup(&args),
        Command::Restore(args) => backup::restore(&args),
        Command::Import(args) => backup::import(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Bootstrap(args) => bootstrap::run(&args),
        Command::Reset(args) => snapshot::reset(&args),
        Command::Snapshot(args) => snapshot::snapshot(&args),
    }
}
