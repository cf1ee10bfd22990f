//! Role trees over HTTP: fresh installs and upgrades of deployed hosts.
//!
//! - [`install`]: a role tree onto a mounted target (the provisioning run calls it after the
//!   configure script), or `rdeploy-agent upgrade install` by hand;
//! - `rdeploy-agent upgrade list|test-upgrade|upgrade|verify|version|role|profile`: eDeploy's
//!   `edeploy` command of a deployed host, over HTTP to the server of
//!   `/var/lib/rdeploy/conf` ([`conf`]);
//! - [`upgrade`]: plan (what differs) and apply (fetch only changed content);
//! - [`filter`]: the rsync-style patterns of `exclude` and `add_only`;
//! - [`local`]: writing entries safely and walking the target; [`client`]: the HTTP side;
//! - [`rsync`]: the same commands against an eDeploy rsync daemon (`rsync://` servers);
//! - [`pkgmngr`]: eDeploy's `activate-pkgmngr` / `deactivate-pkgmngr`.
//!
//! The agent invoked as `edeploy` (a symlink) takes these verbs as eDeploy's own tool did:
//! `edeploy upgrade VERSION` is `rdeploy-agent upgrade upgrade VERSION` ([`edeploy_args`]).
//!
//! Operator guide: `docs/upgrades.md`; endpoints: `docs/roles.md`.

pub mod client;
pub mod conf;
pub mod fetch;
pub mod filter;
mod install;
pub mod local;
pub mod pkgmngr;
pub mod rsync;
pub mod upgrade;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use rdeploy_configure::tree_wire::{TreeAction, TreeReport, TreeStatus};

use client::Client;
use conf::Conf;
use upgrade::{Op, Rules};

pub use install::DEFAULT_JOBS;

/// `rdeploy-agent upgrade`: eDeploy's `edeploy` command for deployed hosts.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rdeploy-agent upgrade list\n  rdeploy-agent upgrade test-upgrade 2.0\n  rdeploy-agent upgrade upgrade 2.0     # or: rdeploy-agent upgrade 2.0\n  rdeploy-agent upgrade verify\n  rdeploy-agent upgrade --root /mnt/chroot version\n\nExit status: 0 ok, 1 verify found differences, 2 error, 100 the upgrade's post script asked for a reboot."
)]
pub struct UpgradeArgs {
    /// The system's root: every path (the conf, the tree) is taken under it.
    #[arg(long, value_name = "DIR", default_value = "/", global = true)]
    pub root: PathBuf,
    /// The server (default: SERVER= of ROOT/var/lib/rdeploy/conf).
    #[arg(long, value_name = "URL", global = true)]
    pub server: Option<String>,
    /// Parallel transfers.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_JOBS, global = true)]
    pub jobs: usize,
    /// Trust only this CA or pinned certificate (PEM) for an https:// server [default:
    /// /etc/rdeploy/ca.pem under ROOT when it exists, else the system's roots].
    #[arg(long, value_name = "FILE", env = "RDEPLOY_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// A transfer that receives nothing for this long (`60`, `2m`) is broken off and asked
    /// for again from the file it stopped at.
    #[arg(long, value_name = "DURATION", value_parser = crate::run::cmdline::parse_duration, default_value = "60s", global = true)]
    pub stall_timeout: Duration,
    /// What to do.
    #[command(subcommand)]
    pub command: UpgradeCommand,
}

/// The subcommands of `rdeploy-agent upgrade`.
#[derive(Debug, clap::Subcommand)]
pub enum UpgradeCommand {
    /// Versions the server offers an upgrade to (metadata/<current>/<role>/<to>/ exists).
    List,
    /// Say what `upgrade VERSION` would change and transfer; change nothing.
    TestUpgrade(VersionArg),
    /// Upgrade to VERSION: run pre, sync (delete after; excluded paths untouched; add_only
    /// paths only created when missing), run post, record the version.
    Upgrade(UpgradeRun),
    /// Files that differ from the current version's tree (excluded and add_only paths left
    /// out); exit 1 when there are some.
    Verify,
    /// The installed version.
    Version,
    /// The installed role.
    Role,
    /// The hardware profile the system was installed with.
    Profile,
    /// Install a role tree into --root from --server (what the provisioning run does).
    Install(InstallArgs),
    /// Turn apt-get and yum back on (eDeploy's activate-pkgmngr).
    ActivatePkgmngr,
    /// Turn apt-get and yum off: they print that they are deactivated (eDeploy's
    /// deactivate-pkgmngr; the real programs are kept as /usr/bin/TOOL.real).
    DeactivatePkgmngr,
    /// `rdeploy-agent upgrade VERSION [--itemize] [--no-reboot]`: short for `upgrade upgrade
    /// VERSION` (eDeploy's `edeploy upgrade VERSION` habit).
    #[command(external_subcommand)]
    Shorthand(Vec<String>),
}

/// The words after `rdeploy-agent upgrade` when they start with a version.
#[derive(Debug, clap::Parser)]
#[command(name = "rdeploy-agent upgrade")]
struct Shorthand {
    #[command(flatten)]
    run: UpgradeRun,
}

/// A version argument.
#[derive(Debug, clap::Args)]
pub struct VersionArg {
    /// The version to upgrade to.
    pub version: String,
}

/// `upgrade VERSION`.
#[derive(Debug, clap::Args)]
pub struct UpgradeRun {
    /// The version to upgrade to.
    pub version: String,
    /// Print one line per change as it is made.
    #[arg(short, long)]
    pub itemize: bool,
    /// When post exits 100, do not reboot (exit 100 instead). Implied unless --root is /.
    #[arg(long)]
    pub no_reboot: bool,
}

/// `install`.
#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// Role name.
    #[arg(long)]
    pub role: String,
    /// Role version.
    #[arg(long)]
    pub version: String,
    /// The profile recorded in the conf.
    #[arg(long, default_value = "")]
    pub profile: String,
    /// The server's node id (install reports go to /nodes/ID/tree).
    #[arg(long)]
    pub node: Option<String>,
    /// Only say what would be installed.
    #[arg(long)]
    pub dry_run: bool,
}

/// eDeploy's `edeploy` usage line.
pub const EDEPLOY_USAGE: &str = "Usage: edeploy ({test-}upgrade <target version>|list|verify|help|version|role|profile|activate-pkgmngr|deactivate-pkgmngr)";

/// The command line of `rdeploy-agent` for `edeploy ARGS...` (the agent invoked as
/// `edeploy`): `edeploy VERB ARGS` is `rdeploy-agent upgrade VERB ARGS`, `edeploy help` the
/// help of `rdeploy-agent upgrade`. `None` for no verb at all (eDeploy printed its usage and
/// exited 1).
pub fn edeploy_args(args: &[String]) -> Option<Vec<String>> {
    let (verb, rest) = args.split_first()?;
    let mut out = vec!["rdeploy-agent".to_owned(), "upgrade".to_owned()];
    if verb == "help" {
        out.push("--help".to_owned());
    } else {
        out.push(verb.clone());
        out.extend(rest.iter().cloned());
    }
    Some(out)
}

/// `rdeploy-agent upgrade VERSION [--itemize] [--no-reboot]` read as `upgrade upgrade ...`.
fn shorthand_run(words: &[String]) -> Result<UpgradeRun> {
    let parsed = <Shorthand as clap::Parser>::try_parse_from(
        std::iter::once("rdeploy-agent upgrade").chain(words.iter().map(String::as_str)),
    )
    .context("expected `rdeploy-agent upgrade VERSION [--itemize] [--no-reboot]` or a subcommand (see --help)")?;
    Ok(parsed.run)
}

/// The certificates an upgrade trusts: `--ca`, else ROOT/etc/rdeploy/ca.pem when it
/// exists, else the system's roots.
fn trust(args: &UpgradeArgs) -> Result<crate::tls::Trust> {
    let on_host = args.root.join(crate::tls::CA_FILE.trim_start_matches('/'));
    match &args.ca {
        Some(f) => crate::tls::Trust::from_file(f),
        None if on_host.exists() => crate::tls::Trust::from_file(&on_host),
        None => Ok(crate::tls::Trust::system()),
    }
}

/// Runs `upgrade`.
pub fn upgrade_main(args: &UpgradeArgs) -> Result<ExitCode> {
    let root = &args.root;
    let shorthand;
    let command = match &args.command {
        UpgradeCommand::Shorthand(words) => {
            shorthand = UpgradeCommand::Upgrade(shorthand_run(words)?);
            &shorthand
        }
        other => other,
    };
    match command {
        UpgradeCommand::ActivatePkgmngr | UpgradeCommand::DeactivatePkgmngr => {
            let (done, state) = if matches!(command, UpgradeCommand::ActivatePkgmngr) {
                (pkgmngr::activate(root)?, "activated")
            } else {
                (pkgmngr::deactivate(root)?, "deactivated")
            };
            for tool in done {
                println!("{tool}: {state}");
            }
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    if let UpgradeCommand::Install(i) = command {
        let server = args.server.clone().context("install needs --server URL")?;
        let spec = InstallSpec {
            server,
            role: i.role.clone(),
            version: i.version.clone(),
            profile: i.profile.clone(),
            target: root.clone(),
            node: i.node.clone(),
            // The node's token, to report the install on it (RDEPLOY_NODE_TOKEN).
            token: std::env::var("RDEPLOY_NODE_TOKEN").ok(),
            jobs: args.jobs,
            trust: trust(args)?,
            stall: args.stall_timeout,
        };
        install(&spec, i.dry_run, &mut |line| println!("{line}"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let conf = Conf::load(root)?;
    let server = args.server.clone().unwrap_or_else(|| conf.server.clone());
    if server.starts_with("rsync://") {
        return match command {
            UpgradeCommand::List => {
                for v in rsync::list(&server, &conf)? {
                    println!("{v}");
                }
                Ok(ExitCode::SUCCESS)
            }
            UpgradeCommand::TestUpgrade(v) => {
                rsync::upgrade(root, &conf, &server, &v.version, false, true)
            }
            UpgradeCommand::Upgrade(u) => {
                rsync::upgrade(root, &conf, &server, &u.version, true, u.no_reboot)
            }
            UpgradeCommand::Verify => rsync::verify(root, &conf, &server),
            UpgradeCommand::Version => {
                println!("{}", conf.version);
                Ok(ExitCode::SUCCESS)
            }
            UpgradeCommand::Role => {
                println!("{}", conf.role);
                Ok(ExitCode::SUCCESS)
            }
            UpgradeCommand::Profile => {
                println!("{}", conf.profile);
                Ok(ExitCode::SUCCESS)
            }
            UpgradeCommand::Install(_)
            | UpgradeCommand::Shorthand(_)
            | UpgradeCommand::ActivatePkgmngr
            | UpgradeCommand::DeactivatePkgmngr => Ok(ExitCode::SUCCESS),
        };
    }
    match command {
        UpgradeCommand::Version => println!("{}", conf.version),
        UpgradeCommand::Role => println!("{}", conf.role),
        UpgradeCommand::Profile => println!("{}", conf.profile),
        UpgradeCommand::List => {
            let client = Client::new(&server, &trust(args)?, args.stall_timeout)?;
            for v in client.upgrades(&conf.role, &conf.version)?.to {
                println!("{v}");
            }
        }
        UpgradeCommand::Verify => {
            return verify(root, &conf, &server, &trust(args)?, args.stall_timeout)
        }
        UpgradeCommand::TestUpgrade(v) => {
            return run_upgrade(root, &conf, &server, &v.version, args, None)
        }
        UpgradeCommand::Upgrade(u) => {
            return run_upgrade(root, &conf, &server, &u.version, args, Some(u))
        }
        UpgradeCommand::Install(_)
        | UpgradeCommand::Shorthand(_)
        | UpgradeCommand::ActivatePkgmngr
        | UpgradeCommand::DeactivatePkgmngr => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// Rules `verify` uses: the implicit excludes and the `exclude`/`add_only` files the last
/// upgrade saved in `var/lib/rdeploy/`.
fn saved_rules(root: &Path) -> Rules {
    let read = |name: &str| std::fs::read_to_string(root.join("var/lib/rdeploy").join(name));
    Rules::new(
        &read("exclude").unwrap_or_default(),
        &read("add_only").unwrap_or_default(),
    )
}

fn verify(
    root: &Path,
    conf: &Conf,
    server: &str,
    trust: &crate::tls::Trust,
    stall: Duration,
) -> Result<ExitCode> {
    let client = Client::new(server, trust, stall)?;
    let m = client.manifest(&conf.role, &conf.version)?;
    let rules = saved_rules(root);
    let as_root = rustix::process::geteuid().is_root();
    let plan = upgrade::plan(&m, root, &rules, true, as_root)?;
    for c in &plan.changes {
        let what = match c.op {
            Op::Create => "missing",
            Op::Update => "differs",
            Op::Meta => "attrs  ",
            Op::Delete => "extra  ",
        };
        match c.why.as_str() {
            "" => println!("{what} {}", c.path),
            why => println!("{what} {} ({why})", c.path),
        }
    }
    if plan.changes.is_empty() {
        println!(
            "{} {}: the tree matches the manifest ({} entries)",
            conf.role,
            conf.version,
            m.entries.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{} {}: {} differences",
            conf.role,
            conf.version,
            plan.changes.len()
        );
        Ok(ExitCode::from(1))
    }
}

fn report(client: &Client, conf: &Conf, r: TreeReport) {
    let Some(node) = &conf.node else { return };
    if let Err(e) = client.report(node, &r) {
        tracing::warn!(error = %format!("{e:#}"), "upgrade report not delivered");
    }
}

/// `test-upgrade` (`run` is `None`) and `upgrade`.
fn run_upgrade(
    root: &Path,
    conf: &Conf,
    server: &str,
    to: &str,
    args: &UpgradeArgs,
    run: Option<&UpgradeRun>,
) -> Result<ExitCode> {
    let jobs = args.jobs;
    let from = conf.version.as_str();
    let role = conf.role.as_str();
    let client =
        Client::new(server, &trust(args)?, args.stall_timeout)?.with_token(conf::load_token(root));
    let paths = client.upgrades(role, from)?;
    anyhow::ensure!(
        paths.to.iter().any(|v| v == to),
        "no upgrade path from {role} {from} to {to} on {server} (no metadata/{from}/{role}/{to}/); offered: {}",
        if paths.to.is_empty() { "none".to_owned() } else { paths.to.join(", ") }
    );
    let mut meta: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    for name in ["exclude", "add_only", "pre", "post"] {
        if let Some(b) = client.metadata(role, from, to, name)? {
            meta.insert(name, b);
        }
    }
    // eDeploy's refusals.
    let Some(exclude) = meta.get("exclude") else {
        anyhow::bail!("metadata/{from}/{role}/{to}/ has no exclude file: refusing to upgrade (eDeploy requires one; an empty file excludes nothing)");
    };
    let exclude = String::from_utf8_lossy(exclude).into_owned();
    let add_only = match meta.get("add_only") {
        Some(a) => {
            let text = String::from_utf8_lossy(a).into_owned();
            anyhow::ensure!(
                !filter::Filter::parse(&text).is_empty(),
                "metadata/{from}/{role}/{to}/add_only is empty: refusing to upgrade (eDeploy refuses an empty add_only; delete it instead)"
            );
            text
        }
        None => String::new(),
    };
    let rules = Rules::new(&exclude, &add_only);
    let m = client.manifest(role, to)?;
    let as_root = rustix::process::geteuid().is_root();
    let tree_bytes = m.bytes();

    let Some(run) = run else {
        let plan = upgrade::plan(&m, root, &rules, false, as_root)?;
        for c in &plan.changes {
            println!("{}", c.line(&m));
        }
        if meta.contains_key("pre") {
            println!("would run pre");
        }
        if meta.contains_key("post") {
            println!("would run post");
        }
        println!(
            "test-upgrade {role} {from} -> {to}: {} changes, {} bytes to transfer of a {tree_bytes}-byte tree ({:.2}%); nothing written",
            plan.changes.len(),
            plan.fetch_bytes,
            percent(plan.fetch_bytes, tree_bytes)
        );
        return Ok(ExitCode::SUCCESS);
    };

    let base = TreeReport {
        action: TreeAction::Upgrade,
        status: TreeStatus::Started,
        role: role.to_owned(),
        from: Some(from.to_owned()),
        version: to.to_owned(),
        bytes: 0,
        tree_bytes,
        changes: 0,
        message: String::new(),
    };
    report(&client, conf, base.clone());
    let result = (|| -> Result<(upgrade::Applied, i32)> {
        let dir = upgrade::save_metadata(root, to, &meta)?;
        let env = [
            ("RDEPLOY_ROLE", role),
            ("RDEPLOY_FROM", from),
            ("RDEPLOY_TO", to),
        ];
        if meta.contains_key("pre") {
            let code = upgrade::run_script(&dir.join("pre"), root, &env)?;
            anyhow::ensure!(code == 0, "pre exited with {code}: upgrade not started");
        }
        let plan = upgrade::plan(&m, root, &rules, false, as_root)?;
        let itemize = run.itemize;
        let total = plan.changes.len();
        println!(
            "upgrading {role} {from} -> {to}: {total} changes, {} bytes to transfer",
            plan.fetch_bytes
        );
        // Without --itemize, a progress line every few seconds.
        let progress = std::sync::Mutex::new((std::time::Instant::now(), 0usize));
        let applied = upgrade::apply(&plan, &m, root, &client, jobs, &|line| {
            if itemize {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                return;
            }
            if let Ok(mut p) = progress.lock() {
                p.1 += 1;
                if p.0.elapsed() >= std::time::Duration::from_secs(2) {
                    p.0 = std::time::Instant::now();
                    println!(
                        "upgrading {role} {from} -> {to}: {}/{total} changes made",
                        p.1
                    );
                }
            }
        })?;
        for d in &applied.kept_dirs {
            println!("kept {d}/: something excluded is still inside");
        }
        let mut post = 0;
        if meta.contains_key("post") {
            post = upgrade::run_script(&dir.join("post"), root, &env)?;
            anyhow::ensure!(
                post == 0 || post == 100,
                "post exited with {post}: the tree is synced, the version stays {from}; run the upgrade again"
            );
        }
        // Record what this system is now, and the rules `verify` uses.
        let mut next = conf.clone();
        next.version = to.to_owned();
        next.server = server.to_owned();
        let lib = root.join("var/lib/rdeploy");
        conf::write_atomic(&lib.join("exclude"), exclude.as_bytes())?;
        conf::write_atomic(&lib.join("add_only"), add_only.as_bytes())?;
        next.save(root)?;
        Ok((applied, post))
    })();
    match result {
        Ok((applied, post)) => {
            let line = format!(
                "upgraded {role} {from} -> {to}: {} changes, {} bytes transferred of a {tree_bytes}-byte tree ({:.2}%)",
                applied.changes,
                applied.bytes,
                percent(applied.bytes, tree_bytes)
            );
            println!("{line}");
            report(
                &client,
                conf,
                TreeReport {
                    status: TreeStatus::Succeeded,
                    bytes: applied.bytes,
                    changes: applied.changes,
                    message: if post == 100 {
                        "reboot requested by post".into()
                    } else {
                        String::new()
                    },
                    ..base
                },
            );
            if post == 100 {
                println!("post asked for a reboot (exit 100)");
                if root == Path::new("/") && !run.no_reboot {
                    let _ = std::io::stdout().flush();
                    let st = std::process::Command::new("reboot").status();
                    if !st.is_ok_and(|s| s.success()) {
                        eprintln!("rdeploy-agent: reboot failed; reboot by hand");
                    }
                }
                return Ok(ExitCode::from(100));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            report(
                &client,
                conf,
                TreeReport {
                    status: TreeStatus::Failed,
                    message: format!("{e:#}"),
                    ..base
                },
            );
            Err(e)
        }
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// A fresh install of a role tree onto a mounted target.
#[derive(Debug, Clone, Default)]
pub struct InstallSpec {
    /// The server's base URL (`http://10.0.0.1:8080`), or `rsync://host[:port]` for an
    /// eDeploy-style rsync daemon (the agent runs `rsync`).
    pub server: String,
    /// Role name (`install/<version>/<role>/` on the server).
    pub role: String,
    /// Role version.
    pub version: String,
    /// The profile the machine matched (recorded in `/var/lib/rdeploy/conf`).
    pub profile: String,
    /// Where the target's root filesystem is mounted (`/chroot`).
    pub target: PathBuf,
    /// The server's node id: recorded in the conf (`NODE=`); the install is reported on it
    /// (`POST /nodes/{id}/tree`) so `GET /nodes` shows the role and version.
    pub node: Option<String>,
    /// The node's token (the upload reply's): the install report carries it.
    pub token: Option<String>,
    /// Parallel streams (0: [`DEFAULT_JOBS`]).
    pub jobs: usize,
    /// The server certificates trusted.
    pub trust: crate::tls::Trust,
    /// The longest a transfer may go without receiving anything before it is broken off and
    /// asked for again from the file it stopped at (zero: [`client::DEFAULT_STALL`]).
    pub stall: Duration,
}

/// What an install moved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstallStats {
    /// Entries created (files, directories, links).
    pub files: u64,
    /// Bytes of file content transferred.
    pub bytes: u64,
}

/// Installs the role tree `spec` names under `spec.target`; `progress` gets one line for a
/// person now and then (bytes, files, rate). With `dry_run`, fetches the manifest and says what
/// it would install, writing nothing (the stats are then what would be installed).
///
/// Every file is checked against its sha256; modes, numeric owners (when running as root),
/// symlinks, hard links, devices, xattrs and times are set as the manifest says; the system's
/// `/var/lib/rdeploy/conf` is written last.
pub fn install(
    spec: &InstallSpec,
    dry_run: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<InstallStats> {
    install::install(spec, dry_run, progress)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn parse(args: &[&str]) -> Result<UpgradeCommand, clap::Error> {
        crate::cli::Cli::try_parse_from(args).map(|cli| match cli.command {
            crate::cli::Command::Upgrade(u) => u.command,
            other => panic!("not an upgrade: {other:?}"),
        })
    }

    #[test]
    fn a_version_alone_is_short_for_upgrade_upgrade() -> Result<()> {
        let UpgradeCommand::Shorthand(words) =
            parse(&["rdeploy-agent", "upgrade", "2.0", "--no-reboot"])?
        else {
            anyhow::bail!("not the shorthand");
        };
        let run = shorthand_run(&words)?;
        assert_eq!(run.version, "2.0");
        assert!(run.no_reboot);
        assert!(!run.itemize);
        // The subcommands keep their meaning.
        assert!(matches!(
            parse(&["rdeploy-agent", "upgrade", "verify"])?,
            UpgradeCommand::Verify
        ));
        // A stray flag after the version is an error that says what is expected.
        let UpgradeCommand::Shorthand(words) =
            parse(&["rdeploy-agent", "upgrade", "2.0", "--nope"])?
        else {
            anyhow::bail!("not the shorthand");
        };
        let err = shorthand_run(&words).err().map(|e| format!("{e:#}"));
        assert!(err.is_some_and(|e| e.contains("upgrade VERSION")));
        Ok(())
    }

    #[test]
    fn edeploys_verbs_are_the_upgrade_subcommands() -> Result<()> {
        let words = |w: &[&str]| w.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let parse_edeploy = |w: &[&str]| -> Result<UpgradeCommand> {
            let args = edeploy_args(&words(w)).context("no verb")?;
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Ok(parse(&args)?)
        };
        let UpgradeCommand::Upgrade(run) = parse_edeploy(&["upgrade", "D7-H.1.1.0"])? else {
            anyhow::bail!("edeploy upgrade VERSION is not upgrade");
        };
        assert_eq!(run.version, "D7-H.1.1.0");
        assert!(matches!(
            parse_edeploy(&["test-upgrade", "D7-H.1.1.0"])?,
            UpgradeCommand::TestUpgrade(_)
        ));
        for (verb, ok) in [
            (
                "list",
                matches!(parse_edeploy(&["list"])?, UpgradeCommand::List),
            ),
            (
                "verify",
                matches!(parse_edeploy(&["verify"])?, UpgradeCommand::Verify),
            ),
            (
                "version",
                matches!(parse_edeploy(&["version"])?, UpgradeCommand::Version),
            ),
            (
                "role",
                matches!(parse_edeploy(&["role"])?, UpgradeCommand::Role),
            ),
            (
                "profile",
                matches!(parse_edeploy(&["profile"])?, UpgradeCommand::Profile),
            ),
            (
                "activate-pkgmngr",
                matches!(
                    parse_edeploy(&["activate-pkgmngr"])?,
                    UpgradeCommand::ActivatePkgmngr
                ),
            ),
            (
                "deactivate-pkgmngr",
                matches!(
                    parse_edeploy(&["deactivate-pkgmngr"])?,
                    UpgradeCommand::DeactivatePkgmngr
                ),
            ),
        ] {
            assert!(ok, "edeploy {verb}");
        }
        assert_eq!(
            edeploy_args(&words(&["help"])),
            Some(words(&["rdeploy-agent", "upgrade", "--help"]))
        );
        assert_eq!(edeploy_args(&[]), None);
        Ok(())
    }
}
