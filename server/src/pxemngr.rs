//! The `rdeploy` binary invoked as `pxemngr` (a symlink or a copy named so) takes PXE
//! Manager's verbs, with PXE Manager's arguments and output, as clients of a running
//! server (`RDEPLOY_SERVER`, default `http://127.0.0.1:8080`; the admin token from
//! `RDEPLOY_TOKEN` or `RDEPLOY_TOKEN_FILE`). Errors exit 1, as PXE Manager's did.
//!
//! Verbs: `synctestnames`, `nexttest SYSTEM TEST [TEST...]`, `dpytest SYSTEM`, `dpytest -l`
//! (the test system, `testops.rs`).

use std::process::ExitCode;

use crate::cli::ServerArgs;
use crate::commands::Outcome;
use crate::testops;

const USAGE: &str = "\
usage: pxemngr <verb> [args]
  synctestnames                          learn the tests of the server's tests dir
  nexttest <system name> <test name> [<test name2>...]
                                         queue tests for a system
  dpytest <system name>|-l               the tests run or scheduled for a system, or the tests
The server: RDEPLOY_SERVER (default http://127.0.0.1:8080); admin token: RDEPLOY_TOKEN or RDEPLOY_TOKEN_FILE.";

/// Runs the pxemngr verb of the command line when the program is called `pxemngr`;
/// `None` otherwise.
pub fn dispatch() -> Option<ExitCode> {
    let mut args = std::env::args();
    let argv0 = args.next()?;
    let name = std::path::Path::new(&argv0)
        .file_name()?
        .to_str()?
        .to_owned();
    if name != "pxemngr" {
        return None;
    }
    let args: Vec<String> = args.collect();
    Some(run(&args))
}

/// The server to talk to, from the environment.
fn server() -> ServerArgs {
    ServerArgs {
        server: std::env::var("RDEPLOY_SERVER")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned()),
        token_file: std::env::var_os("RDEPLOY_TOKEN_FILE").map(Into::into),
    }
}

fn usage(program: &str, line: &str) -> ExitCode {
    eprintln!("Usage: {program} {line}");
    ExitCode::from(1)
}

/// One verb and its arguments.
pub fn run(args: &[String]) -> ExitCode {
    let Some((verb, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(1);
    };
    let server = server();
    let result = match (verb.as_str(), rest) {
        ("synctestnames", []) => testops::sync(&server),
        ("synctestnames", _) => return usage("synctestnames", ""),
        ("nexttest", [system, tests @ ..]) if !tests.is_empty() => {
            testops::queue(&server, system, tests)
        }
        ("nexttest", _) => return usage("nexttest", "<system name> <test name> [<test name2>...]"),
        ("dpytest", [flag]) if flag == "-l" => testops::names(&server),
        ("dpytest", [system]) => testops::list(&server, Some(system)),
        ("dpytest", _) => return usage("dpytest", "<system name>|-l"),
        (other, _) => {
            eprintln!("pxemngr: unknown verb {other:?}\n{USAGE}");
            return ExitCode::from(1);
        }
    };
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("pxemngr {verb}: {e:#}");
            ExitCode::from(1)
        }
    }
}
