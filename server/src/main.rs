//! `rdeploy`: the provisioning server and the operator's command line.
//!
//! Thin: parse the command line, set up logging, run one function per subcommand, turn
//! the outcome into an exit code (0 ok, 1 no match, 2 error, 3 matching too costly). The
//! command runs on a thread with a large stack (`rdeploy_configure::run_on_command_stack`). Invoked as `pxemngr` (a
//! symlink), it takes PXE Manager's verbs instead ([`pxemngr`]).

mod check;
mod cli;
mod commands;
mod config_db;
mod dhcp;
mod ops;
mod pxemngr;
mod role;
mod serve;
mod testops;
mod vm;
mod wire;

use clap::Parser;
use std::process::ExitCode;

/// The name this program was invoked under (`pxemngr` for the multi-call form).
fn program_name() -> Option<String> {
    let arg0 = std::env::args_os().next()?;
    let name = std::path::Path::new(&arg0).file_name()?;
    Some(name.to_string_lossy().into_owned())
}

fn main() -> ExitCode {
    if program_name().as_deref() == Some("pxemngr") {
        init_tracing(0);
        let args: Vec<String> = std::env::args_os()
            .skip(1)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        return pxemngr::main(&args);
    }
    rdeploy_configure::run_on_command_stack("rdeploy", command)
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
        cli::Command::Config(cli::ConfigCommand::Push(args)) => config_db::push(&args),
        cli::Command::Config(cli::ConfigCommand::Pull(args)) => config_db::pull(&args),
        cli::Command::Nodes(args) => ops::nodes(&args),
        cli::Command::Node(cli::NodeCommand::Show(args)) => ops::node_show(&args),
        cli::Command::System(cmd) => system(cmd),
        cli::Command::Nextboot(args) => ops::nextboot(&args),
        cli::Command::Localboot(args) => ops::nextboot(&cli::NextbootArgs {
            name: args.name,
            target: "local".into(),
            server: args.server,
        }),
        cli::Command::Quota(args) => ops::quota(&args),
        cli::Command::Test(cli::TestCommand::Sync(args)) => testops::sync(&args),
        cli::Command::Test(cli::TestCommand::Queue(a)) => {
            testops::queue(&a.server, &a.system, &a.tests)
        }
        cli::Command::Test(cli::TestCommand::List(a)) => {
            testops::list(&a.server, a.system.as_deref())
        }
        cli::Command::DnsmasqConfig(args) => ops::dnsmasq_config(&args),
        cli::Command::DhcpConfig(args) => dhcp::run(&args),
        cli::Command::Vm(cmd) => match *cmd {
            cli::VmCommand::Create(a) => vm::create(&a.vm, a.format, a.out.as_deref()),
            cli::VmCommand::Start(a) => vm::start(&a),
        },
        cli::Command::ConvertConfigure(args) => commands::convert_configure(&args),
        cli::Command::Roles(args) => serve::roles::roles_main(&args),
        cli::Command::Role(cmd) => role::main(&cmd),
    };
    match result {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("rdeploy: error: {e:#}");
            commands::Outcome::Error.into()
        }
    }
}

/// `rdeploy system ...`.
fn system(cmd: cli::SystemCommand) -> anyhow::Result<commands::Outcome> {
    use cli::SystemCommand as S;
    match cmd {
        S::Add(a) if a.ip.is_some() || a.auto => ops::system_add_lab(&a),
        S::Add(a) => match (&a.name, a.addrs.is_empty()) {
            (Some(name), false) => ops::system_add(&a.server, name, &a.addrs),
            _ => anyhow::bail!(
                "system add: give a NAME and at least one MAC or IPv4 address (or --ip / --auto for a lab host)"
            ),
        },
        S::Del(a) => ops::system_del(&a.server, &a.name),
        S::Show(a) => ops::system_show(&a.server, a.key.as_deref().filter(|_| !a.list)),
        S::List(server) => ops::system_list(&server),
        S::Profiles(server) => ops::system_profiles(&server),
        S::Nextboot(a) => ops::nextboot(&a),
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
