//! `rdeploy-agent`: the program in the PXE initramfs (detect, upload, configure, install) and on
//! deployed hosts (upgrades).
//!
//! Thin: parse the command line, set up logging, run one function per subcommand, turn the
//! outcome into an exit code. The command runs on a thread with a large stack (`rdeploy_configure::run_on_command_stack`).
//! Invoked as `edeploy` (a symlink), it takes eDeploy's host verbs (`edeploy upgrade
//! VERSION`, `list`, `verify` ...): see `tree::edeploy_args`.

use clap::Parser;
use std::process::ExitCode;

use rdeploy_agent::cli::{Cli, Command};
use rdeploy_agent::{detect, run, testloop, tree};

/// The name this program was invoked under (`edeploy` for eDeploy's host tool).
fn program_name() -> Option<String> {
    let arg0 = std::env::args_os().next()?;
    let name = std::path::Path::new(&arg0).file_name()?;
    Some(name.to_string_lossy().into_owned())
}

fn main() -> ExitCode {
    rdeploy_configure::run_on_command_stack("rdeploy-agent", command)
}

fn command() -> ExitCode {
    let cli = if program_name().as_deref() == Some("edeploy") {
        let args: Vec<String> = std::env::args_os()
            .skip(1)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let Some(words) = tree::edeploy_args(&args) else {
            eprintln!("{}", tree::EDEPLOY_USAGE);
            return ExitCode::from(1);
        };
        Cli::parse_from(words)
    } else {
        Cli::parse()
    };
    init_tracing(cli.verbose);
    let result = match cli.command {
        Command::Detect(args) => detect::main(&args),
        Command::Capture(args) => detect::capture_main(&args),
        Command::Run(args) => run::main(&args),
        Command::Upgrade(args) => tree::upgrade_main(&args),
        Command::TestLoop(args) => testloop::main(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rdeploy-agent: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RDEPLOY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
