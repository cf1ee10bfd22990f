//! The provisioning run: detect, upload, configure, install the role tree and the boot
//! loader, report each step, ask for local boot, and reboot (or whatever `onsuccess` says).
//!
//! - [`cmdline`]: the kernel command line (`rdeploy.server=`, eDeploy's `SERV=` ...);
//! - [`client`] and [`backoff`]: HTTP calls to the server with time limits and retries;
//! - [`report`]: progress events in order; [`console`]: the console and the log;
//! - [`logged`]: the host wrapper that logs every command; [`install`]: fstab, boot loader,
//!   records and end actions as commands through the configure [`Host`].
//!
//! Every side effect on the machine goes through a [`Host`]: [`SystemHost`] in a real run,
//! [`RecordingHost`] in a dry run, which prints the plan instead. A dry run still talks to
//! the server (upload, events), so it shows what the server would hand this machine.

pub mod backoff;
pub mod client;
pub mod cmdline;
pub mod console;
pub mod install;
pub mod logged;
pub mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use rdeploy_configure::wire::{ProgressEvent, Step, UploadReply};
use rdeploy_configure::{
    compile, Host, Options, Outcome, RecordingHost, RoleSelection, SystemHost,
};

use self::backoff::{seed_of, Backoff};
use self::client::Client;
use self::cmdline::{parse_duration, EndAction, KernelParams};
use self::console::Console;
use self::install::{BootLoader, Firmware, Steps};
use self::logged::LoggedHost;
use self::report::{unix_now, EventSink, Reporter};
use crate::tls::Trust;

const EXAMPLES: &str = "\
Examples:
  # In the installer: everything from the kernel command line (rdeploy.server=URL ...)
  rdeploy-agent run
  # See what the server would make this machine do, changing nothing on it:
  rdeploy-agent run --dry-run --server http://10.0.0.1:8080 --hw hw.json --firmware bios
  # Wait at most 5 minutes for the server, 10 minutes per command, stay at the console:
  rdeploy-agent run --server http://10.0.0.1:8080 --retry-for 5m --command-timeout 10m \
      --onsuccess console

Kernel command line: rdeploy.server=URL[,URL...] (or eDeploy's SERV=HOST HTTP_PORT=PORT HTTP_PATH=PATH),
rdeploy.ca=FILE (the only CA an https:// server's certificate may chain to; default
/etc/rdeploy/ca.pem when the initramfs has it, put there by rdeploy-initrd build --ca),
rdeploy.onsuccess= and rdeploy.onfailure= (reboot|kexec|halt|console; eDeploy's ONSUCCESS=,
ONFAILURE=), rdeploy.command_timeout=, rdeploy.retry_for=, BOOTIF= (the boot MAC).
Flags win over the kernel command line.

Exit status: 0 installed, 1 the run failed (reported to the server), 2 bad usage.";

/// `rdeploy-agent run`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct RunArgs {
    /// The rdeploy server (default: `rdeploy.server=` from the kernel command line); several
    /// servers sharing one rollout separated by commas, tried in turn when one is unreachable.
    #[arg(long, value_name = "URL[,URL...]")]
    pub server: Option<String>,
    /// Trust only this CA or pinned certificate (PEM) for the https:// server [default:
    /// rdeploy.ca=, else /etc/rdeploy/ca.pem when it exists]; with one, http:// is refused.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Read the kernel command line from FILE instead of /proc/cmdline.
    #[arg(long, value_name = "FILE")]
    pub cmdline: Option<PathBuf>,
    /// Upload this inventory (JSON or Python-literal 4-tuples) instead of detecting the hardware.
    #[arg(long, value_name = "FILE")]
    pub hw: Option<PathBuf>,
    /// Detect the hardware of a tree captured by `rdeploy-agent capture` instead of this machine.
    #[arg(long, value_name = "DIR", conflicts_with = "hw")]
    pub root: Option<PathBuf>,
    /// Talk to the server, but only print the commands and files of the script, role tree,
    /// boot loader and end action; change nothing on this machine.
    #[arg(long)]
    pub dry_run: bool,
    /// How long to keep trying an unreachable or busy server [default: 24h, or
    /// rdeploy.retry_for=].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub retry_for: Option<Duration>,
    /// Time limit of each command the script or the agent runs [default: 30m, or
    /// rdeploy.command_timeout=].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub command_timeout: Option<Duration>,
    /// Time limit of each HTTP request.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60s")]
    pub http_timeout: Duration,
    /// What to do once installed [default: reboot, or rdeploy.onsuccess=].
    #[arg(long, value_enum)]
    pub onsuccess: Option<EndAction>,
    /// What to do when the run fails [default: console, or rdeploy.onfailure=].
    #[arg(long, value_enum)]
    pub onfailure: Option<EndAction>,
    /// Where the script's config() files are staged before they go over the role tree
    /// (eDeploy's /post_rsync).
    #[arg(long, value_name = "DIR", default_value = "/post_rsync")]
    pub staging: PathBuf,
    /// Where the script's mount(dev, "/") mounts the target (eDeploy's /chroot).
    #[arg(long, value_name = "DIR", default_value = "/chroot")]
    pub target: PathBuf,
    /// Firmware to install the boot loader for.
    #[arg(long, value_enum, default_value = "auto")]
    pub firmware: Firmware,
    /// Also append the log to FILE as the run goes.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

/// Everything a run needs, flags and kernel command line resolved.
#[derive(Debug, Clone)]
struct Settings {
    /// The server, or several that share the rollout, separated by commas (tried in turn).
    server: String,
    dry_run: bool,
    hw: Option<PathBuf>,
    sysroot: Option<PathBuf>,
    retry_for: Duration,
    command_timeout: Duration,
    http_timeout: Duration,
    onsuccess: EndAction,
    onfailure: EndAction,
    staging: String,
    target_root: String,
    firmware: Firmware,
    boot_mac: Option<String>,
    /// The server certificates trusted.
    trust: Trust,
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().trim_end_matches('/').to_owned()
}

impl Settings {
    fn resolve(args: &RunArgs, params: &KernelParams) -> anyhow::Result<Self> {
        let server = args
            .server
            .clone()
            .or_else(|| params.server.clone())
            .context("no server: pass --server URL or boot with rdeploy.server=URL (or eDeploy's SERV=HOST HTTP_PORT=PORT)")?;
        let servers = client::server_list(&server);
        if servers.is_empty() {
            anyhow::bail!("server {server:?}: no URL in it");
        }
        let trust = Trust::resolve(args.ca.as_deref().or(params.ca.as_deref()))?;
        for s in &servers {
            trust.check_url(s)?;
        }
        Ok(Self {
            server: servers.join(","),
            dry_run: args.dry_run,
            hw: args.hw.clone(),
            sysroot: args.root.clone(),
            retry_for: args
                .retry_for
                .or(params.retry_for)
                .unwrap_or(Duration::from_secs(24 * 3600)),
            command_timeout: args
                .command_timeout
                .or(params.command_timeout)
                .unwrap_or(Options::default().command_timeout),
            http_timeout: args.http_timeout,
            onsuccess: args
                .onsuccess
                .or(params.onsuccess)
                .unwrap_or(EndAction::Reboot),
            onfailure: args
                .onfailure
                .or(params.onfailure)
                .unwrap_or(EndAction::Console),
            staging: path_str(&args.staging),
            target_root: path_str(&args.target),
            firmware: args.firmware.resolve(),
            boot_mac: params.boot_mac.clone(),
            trust,
        })
    }
}

/// Runs `run`.
pub fn main(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let cmdline = match &args.cmdline {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read the kernel command line from {}", p.display()))?,
        // Not in an installer (a dry run on a workstation): no kernel parameters is fine.
        None => std::fs::read_to_string("/proc/cmdline").unwrap_or_default(),
    };
    let params = KernelParams::parse(&cmdline);
    let settings = Settings::resolve(args, &params)?;
    let console = Rc::new(Console::new(args.log_file.as_deref())?);
    for p in &params.problems {
        console.say(&format!("kernel command line: ignored {p}"));
    }
    let client = Client::new(
        &settings.server,
        settings.http_timeout,
        Backoff::new(settings.retry_for, seed_of(settings.server.as_bytes())),
        &settings.trust,
    )?;
    let mut run = Run {
        s: settings,
        console,
        client,
        reporter: Reporter::new(Box::new(unix_now)),
        inventory: None,
        profile: None,
    };
    match run.provision() {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            let step = run.fail(&e);
            eprintln!("rdeploy-agent: provisioning failed at step {step}: {e:#}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Sends events to the server (through the retrying client).
struct ServerSink<'a> {
    client: &'a Client,
    console: &'a Console,
}

impl EventSink for ServerSink<'_> {
    fn send(&mut self, node: &str, event: &ProgressEvent) -> Result<(), String> {
        self.client
            .event(self.console, node, event)
            .map_err(|e| e.to_string())
    }
}

/// One provisioning run.
struct Run {
    s: Settings,
    console: Rc<Console>,
    client: Client,
    reporter: Reporter,
    inventory: Option<String>,
    profile: Option<String>,
}

fn step_name(step: Step) -> String {
    serde_json::to_value(step)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{step:?}"))
}

impl Run {
    fn start(&mut self, step: Step, message: &str) -> anyhow::Result<()> {
        self.console.say(&format!("{}: {message}", step_name(step)));
        let mut sink = ServerSink {
            client: &self.client,
            console: &self.console,
        };
        self.reporter
            .start(&mut sink, step, message)
            .map_err(|e| anyhow!(e))
    }

    fn succeed(&mut self, step: Step, message: &str) -> anyhow::Result<()> {
        self.console.say(&format!(
            "{}: done{}{message}",
            step_name(step),
            if message.is_empty() { "" } else { ": " }
        ));
        let mut sink = ServerSink {
            client: &self.client,
            console: &self.console,
        };
        self.reporter
            .succeed(&mut sink, step, message)
            .map_err(|e| anyhow!(e))
    }

    /// A host for one part of the run: the real machine (commands echoed), or a fresh
    /// recording host whose plan the caller prints.
    fn host(&self) -> (Rc<dyn Host>, Option<Rc<RecordingHost>>) {
        if self.s.dry_run {
            let rec = Rc::new(RecordingHost::new());
            let logged = LoggedHost::new(rec.clone(), self.console.clone(), false);
            (Rc::new(logged), Some(rec))
        } else {
            let real = Rc::new(SystemHost::new("/"));
            (
                Rc::new(LoggedHost::new(real, self.console.clone(), true)),
                None,
            )
        }
    }

    /// Prints a dry-run section: a `## title` line, then the plan.
    fn print_plan(&self, title: &str, body: &str) {
        if self.s.dry_run {
            println!("## {title}");
            print!("{body}");
        }
    }

    /// The whole run, step by step; the first error stops it (the caller reports it).
    fn provision(&mut self) -> anyhow::Result<()> {
        if self.s.dry_run {
            self.console
                .say("dry run: the server is real, the machine is not touched");
        }
        let inventory = self.step_detect()?;
        let reply = self.step_upload(&inventory)?;
        let outcome = self.step_configure(&reply)?;
        let Some(role) = outcome.role.clone() else {
            anyhow::bail!(
                "{}.configure selected no role tree (set_role was not called): nothing to install",
                reply.profile
            );
        };
        // Where the target's root is mounted: the script's mount(dev, "/"), else --target.
        let target = outcome.mounts.iter().find(|m| m.path == "/").map_or_else(
            || self.s.target_root.clone(),
            |m| m.mountpoint.trim_end_matches('/').to_owned(),
        );
        let fstab = self.step_install_role(&reply, &outcome, &role, &target)?;
        self.step_bootloader(&outcome, &role, &target)?;
        let root = install::root_of(&fstab).unwrap_or_else(|| role.disk.clone());
        let after = self.records_and_unmount(&reply, &inventory, &outcome, &target, &root)?;
        self.step_localboot(&reply, &inventory)?;
        let msg = format!(
            "installed profile {}, role {} {} in {:.0} s",
            reply.profile,
            role.role,
            role.version,
            self.console.elapsed_secs()
        );
        self.start(Step::Finish, "reporting success")?;
        self.succeed(Step::Finish, &msg)?;
        self.end_action(self.s.onsuccess, "onsuccess", &after)
    }

    /// `detect`: the inventory, as the JSON text to upload.
    fn step_detect(&mut self) -> anyhow::Result<String> {
        self.start(Step::Detect, "hardware inventory")?;
        let inventory = self.detect()?;
        // Retry pauses spread by machine: seeded by what makes this one different.
        self.client = self.client.with_backoff(Backoff::new(
            self.s.retry_for,
            seed_of(inventory.as_bytes()),
        ));
        self.inventory = Some(inventory.clone());
        self.succeed(Step::Detect, "")?;
        Ok(inventory)
    }

    /// `upload`: the profile, variables, script and node id; the held events go out.
    fn step_upload(&mut self, inventory: &str) -> anyhow::Result<UploadReply> {
        self.start(Step::Upload, &format!("to {}", self.client.base()))?;
        let reply = self.client.upload(&self.console, inventory)?;
        // Every later call proves it comes from this node with the reply's token.
        self.client.set_token(reply.token.clone());
        self.profile = Some(reply.profile.clone());
        match &reply.node {
            Some(node) => {
                self.console
                    .say(&format!("upload: the server filed this machine as node {node}"));
                let mut sink = ServerSink {
                    client: &self.client,
                    console: &self.console,
                };
                self.reporter
                    .set_node(&mut sink, node)
                    .map_err(|e| anyhow!(e))?;
            }
            None => self.console.say(
                "upload: the server did not name the node (an older server?): no progress events will be sent",
            ),
        }
        let ip = reply
            .var
            .get("ip")
            .and_then(|v| v.as_str())
            .map(|ip| format!(", ip {ip}"))
            .unwrap_or_default();
        self.succeed(
            Step::Upload,
            &format!("matched profile {}{ip}", reply.profile),
        )?;
        if self.s.dry_run {
            println!(
                "# rdeploy-agent dry run: profile {}, node {}",
                reply.profile,
                reply.node.as_deref().unwrap_or("?")
            );
        }
        Ok(reply)
    }

    /// `configure`: the script's outcome.
    fn step_configure(&mut self, reply: &UploadReply) -> anyhow::Result<Outcome> {
        self.start(
            Step::Configure,
            &format!("running {}.configure", reply.profile),
        )?;
        let outcome = self.configure(reply)?;
        self.succeed(
            Step::Configure,
            &format!(
                "{} commands, {} files",
                outcome.commands.len(),
                outcome.files.len()
            ),
        )?;
        Ok(outcome)
    }

    /// `install_role`: the role tree, the staged files over it, `/etc/fstab`. Returns the
    /// installed system's fstab (empty when there is none).
    fn step_install_role(
        &mut self,
        reply: &UploadReply,
        outcome: &Outcome,
        role: &RoleSelection,
        target: &str,
    ) -> anyhow::Result<String> {
        self.start(
            Step::InstallRole,
            &format!("{} {} into {target}", role.role, role.version),
        )?;
        let spec = crate::tree::InstallSpec {
            // The server that answered the upload (after any failover).
            server: self.client.base().to_owned(),
            role: role.role.clone(),
            version: role.version.clone(),
            profile: reply.profile.clone(),
            target: PathBuf::from(target),
            node: self.reporter.node().map(str::to_owned),
            token: reply.token.clone(),
            jobs: 0,
            trust: self.s.trust.clone(),
            // A stream that receives nothing for as long as any HTTP call may take is broken
            // off and asked for again from the file it stopped at.
            stall: self.s.http_timeout,
        };
        let console = self.console.clone();
        let mut progress_lines = String::new();
        let dry = self.s.dry_run;
        let stats = crate::tree::install(&spec, dry, &mut |line: &str| {
            console.say(&format!("install_role: {line}"));
            if dry {
                progress_lines.push_str(&format!("# {line}\n"));
            }
        })
        .with_context(|| format!("cannot install role tree {} {}", role.role, role.version))?;
        let (host, rec) = self.host();
        let steps = Steps {
            host: host.as_ref(),
            timeout: self.s.command_timeout,
        };
        if !outcome.files.is_empty() {
            steps.copy_staged(&self.s.staging, target)?;
        }
        let fstab = match outcome.files.iter().rev().find(|f| f.path == "/etc/fstab") {
            Some(f) => f.contents.clone(),
            None if outcome.mounts.is_empty() => String::new(),
            None => steps.write_fstab(target, &outcome.mounts, &outcome.filesystems)?,
        };
        if let Some(rec) = rec {
            self.print_plan(
                &format!("install_role: {} {} into {target}", role.role, role.version),
                &format!("{progress_lines}{}", rec.render()),
            );
        }
        self.succeed(
            Step::InstallRole,
            &format!("{} files, {} bytes", stats.files, stats.bytes),
        )?;
        Ok(fstab)
    }

    /// `bootloader`: GRUB in a chroot of the target.
    fn step_bootloader(
        &mut self,
        outcome: &Outcome,
        role: &RoleSelection,
        target: &str,
    ) -> anyhow::Result<()> {
        let grub = BootLoader::flavour(target);
        let firmware = self.s.firmware;
        let fw = if firmware == Firmware::Uefi {
            "UEFI"
        } else {
            "BIOS"
        };
        self.start(
            Step::Bootloader,
            &format!("{grub} for {fw} on {}", role.disk),
        )?;
        let bl = BootLoader {
            target: target.to_owned(),
            disk: role.disk.clone(),
            firmware,
            options: outcome.grub_options.clone(),
            efi_dir: outcome
                .mounts
                .iter()
                .map(|m| m.path.clone())
                .find(|p| p == "/boot/efi" || p == "/efi")
                .unwrap_or_else(|| "/boot/efi".to_owned()),
        };
        let (host, rec) = self.host();
        let steps = Steps {
            host: host.as_ref(),
            timeout: self.s.command_timeout,
        };
        if self.s.dry_run || BootLoader::tree_has_grub(target, grub) {
            bl.install(&steps, grub)?;
        } else {
            self.console
                .say("bootloader: the role tree has no grub-install: using the initramfs's");
            bl.install_from_initramfs(&steps)?;
        }
        if let Some(rec) = rec {
            self.print_plan(
                &format!("bootloader: {grub}, {fw}, {}", role.disk),
                &rec.render(),
            );
        }
        self.succeed(Step::Bootloader, "")
    }

    /// The records under `/var/log/rdeploy`, the end action's preparation (kexec loads the
    /// installed kernel while it is mounted), then the script's mounts unmounted. Returns the
    /// end action's remaining commands.
    fn records_and_unmount(
        &mut self,
        reply: &UploadReply,
        inventory: &str,
        outcome: &Outcome,
        target: &str,
        root: &str,
    ) -> anyhow::Result<Vec<Vec<String>>> {
        let (host, rec) = self.host();
        let steps = Steps {
            host: host.as_ref(),
            timeout: self.s.command_timeout,
        };
        self.console.say(&format!(
            "writing the install records under {target}/var/log/rdeploy"
        ));
        self.write_records(&steps, target, reply, inventory, outcome)?;
        let (before, after) =
            install::end_action(self.s.onsuccess, target, root, &outcome.grub_options);
        for argv in &before {
            steps.run(argv)?;
        }
        steps.unmount(&outcome.mounts)?;
        if let Some(rec) = rec {
            let mut body = String::new();
            for f in rec.files_written() {
                body.push_str(&format!(
                    "--- {} (mode {:04o}, {} bytes, not shown)\n",
                    f.path,
                    f.mode,
                    f.contents.len()
                ));
            }
            for l in rec.command_lines() {
                body.push_str(&format!("$ {l}\n"));
            }
            self.print_plan("records and unmount", &body);
        }
        Ok(after)
    }

    /// `localboot`: PXE Manager's `GET /localboot/<mac>` for the boot MAC.
    fn step_localboot(&mut self, reply: &UploadReply, inventory: &str) -> anyhow::Result<()> {
        self.start(
            Step::Localboot,
            "asking the server to boot this machine from its disk",
        )?;
        let mac = self.boot_mac(reply, inventory);
        match &mac {
            Some(mac) => {
                let answer = self.client.localboot(&self.console, mac)?;
                self.console.log(&answer);
            }
            None => self
                .console
                .say("localboot: no boot MAC known (no BOOTIF=): the finish report flips the boot"),
        }
        self.succeed(Step::Localboot, mac.as_deref().unwrap_or(""))
    }

    /// Runs the end action's last commands (`reboot -f` ...); a dry run prints them.
    fn end_action(
        &self,
        action: EndAction,
        which: &str,
        after: &[Vec<String>],
    ) -> anyhow::Result<()> {
        match action {
            EndAction::Console => self.console.say(&format!(
                "{which}: console: the machine stays in the installer{}",
                if which == "onfailure" {
                    "; the log is above"
                } else {
                    ""
                }
            )),
            _ => self.console.say(&format!("{which}: {action}")),
        }
        let (host, rec) = self.host();
        let steps = Steps {
            host: host.as_ref(),
            timeout: self.s.command_timeout,
        };
        for argv in after {
            steps.run(argv)?;
        }
        if let Some(rec) = rec {
            let mut plan = rec.render();
            if plan.is_empty() {
                plan = "# nothing to run: the agent exits, the console is a person's\n".to_owned();
            }
            self.print_plan(&format!("{which}: {action}"), &plan);
        }
        Ok(())
    }

    /// The inventory to upload: `--hw FILE`, else the detection of `--root DIR` or of this
    /// machine.
    fn detect(&self) -> anyhow::Result<String> {
        let Some(path) = &self.s.hw else {
            let root = match &self.s.sysroot {
                Some(dir) => crate::detect::Root::dir(dir),
                None => crate::detect::Root::live(),
            };
            let inventory = crate::detect::detect(&root);
            let n = inventory.lines.len();
            if n == 0 {
                anyhow::bail!(
                    "hardware detection found nothing under {}",
                    root.base().display()
                );
            }
            self.console.say(&format!(
                "detect: {n} entries from {}",
                root.base().display()
            ));
            return Ok(inventory.to_json().to_string());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let inventory = rdeploy_specs::Inventory::parse(&text)
            .map_err(|problems| anyhow!("{}: {problems}", path.display()))?;
        self.console.say(&format!(
            "detect: read {} ({} entries)",
            path.display(),
            inventory.to_json().as_array().map_or(0, Vec::len)
        ));
        Ok(inventory.to_json().to_string())
    }

    /// Runs the configure script; the error names the script line and, for a failed command,
    /// what it printed.
    fn configure(&self, reply: &UploadReply) -> anyhow::Result<Outcome> {
        let name = format!("{}.configure", reply.profile);
        let script = compile(&name, &reply.script).map_err(|e| anyhow!("{e}"))?;
        let options = Options {
            command_timeout: self.s.command_timeout,
            target_root: self.s.target_root.clone(),
            ..Options::default()
        };
        let (host, rec) = if self.s.dry_run {
            let rec = Rc::new(RecordingHost::new());
            let h: Rc<dyn Host> =
                Rc::new(LoggedHost::new(rec.clone(), self.console.clone(), false));
            (h, Some(rec))
        } else {
            let real = Rc::new(SystemHost::new(&self.s.staging));
            let h: Rc<dyn Host> = Rc::new(LoggedHost::new(real, self.console.clone(), true));
            (h, None)
        };
        match rdeploy_configure::run(&script, &reply.var, host, &options) {
            Ok(outcome) => {
                self.console.log(&outcome.summary());
                if let Some(rec) = rec {
                    self.print_plan(
                        &format!("configure: {name}"),
                        &format!("{}{}", outcome.summary(), rec.render()),
                    );
                }
                Ok(outcome)
            }
            Err(e) => {
                self.console.log(&e.partial.summary());
                if let Some(f) = &e.error.failure {
                    self.console.log(&format!(
                        "--- stdout of `{}`\n{}\n--- stderr\n{}",
                        f.command, f.stdout, f.stderr
                    ));
                }
                Err(anyhow!("{}", e.error))
            }
        }
    }

    /// `/var/log/rdeploy/` on the installed system: the log, the inventory, the script and
    /// its variables.
    fn write_records(
        &self,
        steps: &Steps<'_>,
        target: &str,
        reply: &UploadReply,
        inventory: &str,
        outcome: &Outcome,
    ) -> anyhow::Result<()> {
        let dir = format!("{target}/var/log/rdeploy");
        let pretty =
            |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
        let inv: serde_json::Value = serde_json::from_str(inventory).unwrap_or_default();
        steps.write(&format!("{dir}/inventory.json"), pretty(&inv), 0o644)?;
        steps.write(
            &format!("{dir}/{}.configure", reply.profile),
            reply.script.clone(),
            0o644,
        )?;
        steps.write(
            &format!("{dir}/var.json"),
            pretty(&serde_json::Value::Object(reply.var.clone())),
            0o600,
        )?;
        steps.write(
            &format!("{dir}/configure-outcome.json"),
            pretty(&serde_json::to_value(outcome).unwrap_or_default()),
            0o600,
        )?;
        steps.write(&format!("{dir}/install.log"), self.console.text(), 0o600)
    }

    /// The MAC to ask local boot for: `BOOTIF=`, else the `mac` variable, else the first
    /// network interface of the inventory with a link.
    fn boot_mac(&self, reply: &UploadReply, inventory: &str) -> Option<String> {
        if let Some(m) = &self.s.boot_mac {
            return Some(m.clone());
        }
        if let Some(m) = reply.var.get("mac").and_then(|v| v.as_str()) {
            return Some(m.to_owned());
        }
        let inv: Vec<Vec<serde_json::Value>> = serde_json::from_str(inventory).ok()?;
        let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        let linked: Vec<String> = inv
            .iter()
            .filter(|l| {
                l.len() == 4 && s(&l[0]) == "network" && s(&l[2]) == "link" && s(&l[3]) == "yes"
            })
            .map(|l| s(&l[1]))
            .collect();
        inv.iter()
            .filter(|l| l.len() == 4 && s(&l[0]) == "network" && s(&l[2]) == "serial")
            .find(|l| linked.contains(&s(&l[1])))
            .map(|l| s(&l[3]))
    }

    /// After a failure: report the failed step with the log, upload the log, give the quota
    /// back, and do the `onfailure` action. Returns the failed step's name.
    fn fail(&mut self, error: &anyhow::Error) -> String {
        let message = format!("{error:#}");
        self.console.say(&format!("FAILED: {message}"));
        // A failing server should not keep a broken machine waiting for a day.
        let client = self
            .client
            .with_total(self.s.retry_for.min(Duration::from_secs(300)));
        let log = self.console.text();
        let mut sink = ServerSink {
            client: &client,
            console: &self.console,
        };
        let (step, sent) = self.reporter.fail(&mut sink, &message, Some(log.clone()));
        let step = step_name(step);
        if let Some(node) = self.reporter.node().map(str::to_owned) {
            if let Err(e) = sent {
                self.console
                    .say(&format!("could not report the failure: {e}"));
            }
            match client.upload_log(&self.console, &node, &log) {
                Ok(()) => self.console.say(&format!(
                    "log uploaded to {}/nodes/{node}/log",
                    client.base()
                )),
                Err(e) => self.console.say(&format!("could not upload the log: {e}")),
            }
        }
        if let (Some(profile), Some(inv)) = (self.profile.clone(), self.inventory.clone()) {
            match client.report_failure(&self.console, &profile, &inv) {
                Ok(m) => self.console.say(&format!("failure reported: {m}")),
                Err(e) => self
                    .console
                    .say(&format!("could not report the failure: {e}")),
            }
        }
        let action = self.s.onfailure;
        let (_, after) = install::end_action(action, &self.s.target_root, "", "");
        if let Err(e) = self.end_action(action, "onfailure", &after) {
            self.console
                .say(&format!("onfailure {action} failed: {e:#}"));
        }
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn settings(flags: &[&str], cmdline: &str) -> anyhow::Result<Settings> {
        let cli = Cli::try_parse_from(std::iter::once("run").chain(flags.iter().copied()))?;
        Settings::resolve(&cli.run, &KernelParams::parse(cmdline))
    }

    #[test]
    fn flags_win_over_the_kernel_command_line_which_wins_over_defaults() -> anyhow::Result<()> {
        let cmdline = "rdeploy.server=http://10.0.0.1:8080 rdeploy.onsuccess=kexec \
                       rdeploy.command_timeout=5m ONFAILURE=halt BOOTIF=01-aa-bb-cc-dd-ee-ff";
        let s = settings(&[], cmdline)?;
        assert_eq!(s.server, "http://10.0.0.1:8080");
        assert_eq!(s.onsuccess, EndAction::Kexec);
        assert_eq!(s.onfailure, EndAction::Halt);
        assert_eq!(s.command_timeout, Duration::from_secs(300));
        assert_eq!(s.retry_for, Duration::from_secs(24 * 3600));
        assert_eq!(s.boot_mac.as_deref(), Some("aa:bb:cc:dd:ee:ff"));
        let s = settings(
            &[
                "--server",
                "http://other/",
                "--onsuccess",
                "console",
                "--command-timeout",
                "90s",
                "--retry-for",
                "1m",
            ],
            cmdline,
        )?;
        assert_eq!(s.server, "http://other");
        assert_eq!(s.onsuccess, EndAction::Console);
        assert_eq!(s.command_timeout, Duration::from_secs(90));
        assert_eq!(s.retry_for, Duration::from_secs(60));
        let s = settings(&["--server", "http://x"], "")?;
        assert_eq!(
            (s.onsuccess, s.onfailure),
            (EndAction::Reboot, EndAction::Console)
        );
        assert_eq!(s.command_timeout, Duration::from_secs(30 * 60));
        Ok(())
    }

    #[test]
    fn a_server_is_required_and_https_once_a_ca_is_given() -> anyhow::Result<()> {
        let e = settings(&[], "quiet")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("no server: pass --server URL"), "{e}");
        let e = settings(&["--server", "ftp://x"], "")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("not an http:// or https:// URL"), "{e}");
        // rdeploy.ca= names the CA; with one, plain http:// is refused.
        let tmp = tempfile::tempdir()?;
        let ca = tmp.path().join("ca.pem");
        std::fs::write(&ca, "junk")?;
        let cmdline = format!("rdeploy.server=https://x rdeploy.ca={}", ca.display());
        let e = settings(&[], &cmdline)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(e.contains("ca.pem: no certificate"), "{e}");
        Ok(())
    }
}
