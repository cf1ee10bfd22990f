//! `rdeploy`: the provisioning server and the operator's command line.
//!
//! Thin: parse the command line, set up logging, run one function per subcommand, turn
//! the outcome into an exit code (0 ok, 1 no match, 2 error, 3 matching too costly). The
//! command runs on a thread with a large stack (see [`STACK`]).

mod check;
mod cli;
mod commands;
mod ops;
mod serve;
mod wire;

use clap::Parser;
use std::process::ExitCode;

/// Stack of the thread the command runs on. A configure script's value may nest as deep as
/// its element limits allow (10,000 arrays and 10,000 map entries); comparing, copying or
/// dropping it recurses once per level. The memory is only reserved.
const STACK: usize = 256 << 20;

fn main() -> ExitCode {
    let spawned = std::thread::Builder::new()
        .name("rdeploy".into())
        .stack_size(STACK)
        .spawn(command);
    match spawned.map(std::thread::JoinHandle::join) {
        Ok(Ok(code)) => code,
        // The panic message is printed already; 101 is Rust's exit status for a panic.
        Ok(Err(_)) => ExitCode::from(101),
        Err(e) => {
            eprintln!("rdeploy: cannot start: {e}");
            ExitCode::from(2)
        }
    }
}

fn command() -> ExitCode {
    let cli = cli::Cli::parse();
    init_tracing(cli.verbose);
    let result = match cli.command {
        cli::Command::TryMatch(args) => commands::try_match(&args),
        cli::Command::Match(args) => commands::match_cmd(&args),
        cli::Command::Generate(args) => commands::generate(&args),
        cli::Command::Check(args) => check::run(&args),
        cli::Command::Serve(args) => serve::run(&args),
        cli::Command::Nodes(args) => ops::nodes(&args),
        cli::Command::Node(cli::NodeCommand::Show(args)) => ops::node_show(&args),
        cli::Command::System(cli::SystemCommand::Add(args)) => ops::system_add(&args),
        cli::Command::Nextboot(args) => ops::nextboot(&args),
        cli::Command::Localboot(args) => ops::nextboot(&cli::NextbootArgs {
            name: args.name,
            target: "local".into(),
            server: args.server,
        }),
        cli::Command::Quota(args) => ops::quota(&args),
        cli::Command::DnsmasqConfig(args) => ops::dnsmasq_config(&args),
        cli::Command::Roles(args) => serve::roles::roles_main(&args),
    };
    match result {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("rdeploy: error: {e:#}");
            commands::Outcome::Error.into()
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
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
