//! `pxemngr`: the `rdeploy` binary invoked under that name (a symlink) takes PXE Manager's
//! command lines unchanged, `pxemngr VERB ARGS...`, and runs them against the server
//! (`RDEPLOY_SERVER`, else PXE Manager's `PXEMNGR_URL`, else `http://127.0.0.1:8080`; the
//! admin token from `RDEPLOY_TOKEN_FILE` or `RDEPLOY_TOKEN`; the CA of an https:// server from
//! `RDEPLOY_CA`).
//!
//! Every verb is one arm of [`run`]; a new verb is a [`Verb`] variant, its name in
//! [`Verb::ALL`], its usage line, and an arm. The systems' verbs are `rdeploy system ...`
//! sub-commands too (`crate::ops`); the test system's (`synctestnames`, `nexttest`,
//! `dpytest`) are `crate::testops`. As PXE Manager's scripts did, a wrong command line or an
//! error prints one line on stderr and exits 1.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{NextbootArgs, ServerArgs};
use crate::commands::Outcome;
use crate::{ops, testops};

/// PXE Manager's verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    AddSystem,
    DelSystem,
    DpySystem,
    SyncBootNames,
    SyncSystems,
    NextBoot,
    /// The test system (`synctestnames`, `nexttest`, `dpytest`).
    SyncTestNames,
    NextTest,
    DpyTest,
}

impl Verb {
    /// Every verb with its name, in PXE Manager's listing order.
    pub const ALL: &'static [(&'static str, Verb)] = &[
        ("addsystem", Verb::AddSystem),
        ("delsystem", Verb::DelSystem),
        ("dpysystem", Verb::DpySystem),
        ("nextboot", Verb::NextBoot),
        ("syncbootnames", Verb::SyncBootNames),
        ("syncsystems", Verb::SyncSystems),
        ("dpytest", Verb::DpyTest),
        ("nexttest", Verb::NextTest),
        ("synctestnames", Verb::SyncTestNames),
    ];

    /// The verb of that name.
    pub fn parse(name: &str) -> Option<Verb> {
        Verb::ALL.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    /// PXE Manager's usage line (its arguments).
    fn usage(self) -> &'static str {
        match self {
            Verb::AddSystem => "addsystem <system name> <MAC|IPV4> [<MAC2|IPV4>...]",
            Verb::DelSystem => "delsystem <system name>",
            Verb::DpySystem => "dpysystem <system name|MAC|IPV4>|-l",
            Verb::NextBoot => "nextboot <system name>|default <boot name>",
            Verb::SyncBootNames => "syncbootnames",
            Verb::SyncSystems => "syncsystems",
            Verb::SyncTestNames => "synctestnames",
            Verb::NextTest => "nexttest <system name> <test name> [<test name2>...]",
            Verb::DpyTest => "dpytest <system name>|-l",
        }
    }
}

/// The server the verbs talk to.
fn server() -> ServerArgs {
    let url = std::env::var("RDEPLOY_SERVER")
        .or_else(|_| std::env::var("PXEMNGR_URL"))
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    ServerArgs {
        server: url.trim().trim_end_matches('/').to_owned(),
        token_file: std::env::var_os("RDEPLOY_TOKEN_FILE").map(Into::into),
        ca: std::env::var_os("RDEPLOY_CA").map(Into::into),
    }
}

fn usage_text() -> String {
    let mut s = String::from("Usage: pxemngr <sub-command> [<args>...]\nAvailable sub-commands:\n");
    for (name, _) in Verb::ALL {
        s.push_str(&format!("    {name}\n"));
    }
    s
}

/// `pxemngr ARGS...` (the words after the program name): exit 0 on success, 1 on a wrong
/// command line or an error.
pub fn main(args: &[String]) -> ExitCode {
    let Some((first, rest)) = args.split_first() else {
        eprint!("{}", usage_text());
        return ExitCode::from(1);
    };
    let Some(verb) = Verb::parse(first) else {
        eprint!("Invalid pxemngr sub-command {first}\n{}", usage_text());
        return ExitCode::from(1);
    };
    match run(verb, rest, &server()) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("pxemngr {first}: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Runs one verb with its arguments.
pub fn run(verb: Verb, args: &[String], server: &ServerArgs) -> Result<Outcome> {
    let wrong = || anyhow::anyhow!("Usage: pxemngr {}", verb.usage());
    match (verb, args) {
        (Verb::AddSystem, [name, addrs @ ..]) if !addrs.is_empty() => {
            ops::system_add(server, name, addrs)
        }
        (Verb::DelSystem, [name]) => ops::system_del(server, name),
        (Verb::DpySystem, [flag]) if flag == "-l" => ops::system_show(server, None),
        (Verb::DpySystem, [key]) => ops::system_show(server, Some(key)),
        (Verb::NextBoot, [name, target]) => ops::nextboot(&NextbootArgs {
            name: name.clone(),
            target: target.clone(),
            server: server.clone(),
        }),
        (Verb::SyncBootNames, []) => ops::system_profiles(server),
        (Verb::SyncSystems, []) => {
            // PXE Manager rewrote every system's symlinks from its database; rdeploy's
            // server keeps the files in step itself after every change.
            println!("rdeploy keeps every system's PXELINUX files in step itself: nothing to do");
            Ok(Outcome::Ok)
        }
        (Verb::SyncTestNames, []) => testops::sync(server),
        (Verb::NextTest, [system, tests @ ..]) if !tests.is_empty() => {
            testops::queue(server, system, tests)
        }
        (Verb::DpyTest, [flag]) if flag == "-l" => testops::names(server),
        (Verb::DpyTest, [system]) => testops::list(server, Some(system)),
        _ => Err(wrong()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verb_has_a_name_and_a_usage() {
        for (name, verb) in Verb::ALL {
            assert_eq!(Verb::parse(name), Some(*verb));
            assert!(verb.usage().starts_with(name), "{name}");
        }
        assert_eq!(Verb::parse("nope"), None);
    }

    #[test]
    fn wrong_command_lines_say_the_usage_and_reach_no_server() {
        // Port 9 (discard) on loopback: nothing is sent, the arguments are refused first.
        let server = ServerArgs {
            server: "http://127.0.0.1:9".into(),
            token_file: None,
            ca: None,
        };
        let words = |w: &[&str]| w.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        for (verb, args) in [
            (Verb::AddSystem, words(&["h1"])),
            (Verb::DelSystem, words(&[])),
            (Verb::NextBoot, words(&["h1"])),
            (Verb::SyncBootNames, words(&["x"])),
            (Verb::NextTest, words(&["h1"])),
            (Verb::DpyTest, words(&[])),
        ] {
            let err = run(verb, &args, &server).err().map(|e| e.to_string());
            assert_eq!(
                err.as_deref(),
                Some(format!("Usage: pxemngr {}", verb.usage()).as_str())
            );
        }
    }
}
