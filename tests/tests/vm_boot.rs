//! The VM boot test: a QEMU machine goes through rdeploy's whole chain, nothing simulated.
//!
//! QEMU's iPXE ROM gets `http://10.0.2.100/boot.ipxe` from QEMU's user-mode DHCP; every
//! guest connection to 10.0.2.100:80 is relayed (`socat`, one per connection) to a real
//! `rdeploy serve` on loopback. iPXE chains to the machine's script, loads the kernel and the
//! initramfs built by `rdeploy-initrd` (`scripts/build-boot-images`), the agent detects the
//! VM, uploads its inventory, gets the `kvm` profile of `examples/vm-config` (a RAID1 mirror
//! of two disks, a GPT on the third), installs the role tree `base` served by rdeploy (the
//! Debian 12 of `examples/roles/base.toml`, built by `rdeploy role build` in
//! `scripts/build-roles`) and GRUB from that tree, reports success and powers off. The second
//! boot of the same VM asks the server again, is sent to its disk, and boots the installed
//! Debian: the serial console shows systemd reaching `multi-user.target` and a login prompt
//! with the hostname and address of the node's CMDB entry, and the VM's SSH server (host keys
//! made at first boot) answers through a QEMU port forward to that address. The disks are
//! then read from the host (`sfdisk`, `mdadm --examine`, `debugfs`, never mounted). A second
//! VM with one disk matches no profile: it says so, the server records it, and its disk stays
//! blank. A third VM does the install and the local boot under UEFI (OVMF): GRUB x86_64-efi on
//! the EFI system partition, then the same Debian. A fourth VM is the QEMU script `rdeploy
//! vm create --like NODE` writes (`docs/labs.md`): it installs, and its agent's inventory has
//! the CPU count and memory asked for. A fifth boots through real DHCP: dnsmasq with the
//! config of `rdeploy dhcp-config --dnsmasq`, in a network namespace with a bridge, the VM
//! on a tap device (needs root, `ip netns`).
//!
//! Every QEMU run has a hard time limit (it is killed); the serial console goes to a file
//! whose tail is printed on failure. The accelerator is chosen by booting a probe (KVM when
//! it really works, else TCG). Missing prerequisites fail the test with the command to run.
//! Needs: `bash scripts/deps && bash scripts/vm-deps && bash scripts/build-boot-images &&
//! bash scripts/build-roles` (which `bash scripts/test` runs first).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, ensure, Context, Result};
use rdeploy_tests::{copy_dir, workspace_path, Server};
use serde_json::Value;

/// One VM at a time: two TCG guests on two cores would only slow each other down.
static ONE_VM_AT_A_TIME: Mutex<()> = Mutex::new(());

/// What QEMU reaches the server at (`--public-url`); the guest's DHCP lease is 10.0.2.15.
const GUEST_SERVER: &str = "10.0.2.100";
/// The role the VM installs (examples/roles/base.toml) and where scripts/build-roles puts it.
const ROLE: &str = "base";
const ROLE_VERSION: &str = "D12-1.0";
const BUILT_ROLES: &str = "target/roles";
/// systemd's console line when the installed Debian reached its default target (the base
/// role sets multi-user.target).
const DEFAULT_TARGET_REACHED: &str = "Reached target multi-user.target";
/// The line `/init` prints for `rdeploy.probe` (initrd/src/init.rs).
const PROBE_OK: &str = "rdeploy-init: probe ok";
/// Time limits of one QEMU run under TCG (KVM is much faster); the QEMU process is killed
/// past them.
const INSTALL_LIMIT: Duration = Duration::from_secs(900);
const LOCAL_BOOT_LIMIT: Duration = Duration::from_secs(400);
const PROBE_LIMIT: Duration = Duration::from_secs(25);
/// UEFI firmware (OVMF) is slower to start under TCG, and tries its own network boot
/// entries before the disk.
const UEFI_INSTALL_LIMIT: Duration = Duration::from_secs(1000);
const UEFI_LOCAL_BOOT_LIMIT: Duration = Duration::from_secs(500);

const KERNEL_ARGS: &str = "console=ttyS0 rdeploy.onsuccess=halt rdeploy.onfailure=halt";

fn say(line: &str) {
    eprintln!("vm_boot: {line}");
}

/// The boot images and host tools, or an error that says what to run.
#[derive(Debug, Clone)]
struct Prerequisites {
    images: PathBuf,
    qemu: PathBuf,
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].iter().map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// The newest modification time of the Rust sources under `dir`.
fn newest_source(dir: &Path) -> Option<SystemTime> {
    let mut best = None;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else if e.path().extension().is_some_and(|x| x == "rs") {
                if let Ok(m) = meta.modified() {
                    best = best.max(Some(m));
                }
            }
        }
    }
    best
}

const SETUP: &str = "bash scripts/deps && bash scripts/vm-deps && bash scripts/build-boot-images && bash scripts/build-roles";

fn prerequisites() -> Result<Prerequisites> {
    let mut missing = Vec::new();
    for tool in [
        "qemu-system-x86_64",
        "socat",
        "sfdisk",
        "mdadm",
        "debugfs",
        "fsck.fat",
    ] {
        if which(tool).is_none() {
            missing.push(tool);
        }
    }
    ensure!(
        missing.is_empty(),
        "the VM boot test needs {}: run `{SETUP}` (as root, on Debian bookworm)",
        missing.join(", ")
    );
    let rom = [
        "/usr/share/qemu/efi-virtio.rom",
        "/usr/lib/ipxe/qemu/efi-virtio.rom",
    ];
    ensure!(
        rom.iter().any(|r| Path::new(r).exists()),
        "no iPXE ROM for virtio-net ({}): run `bash scripts/vm-deps` (ipxe-qemu)",
        rom.join(", ")
    );
    let images = std::env::var_os("RDEPLOY_BOOT_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_path("target/boot-images"));
    let initrd = images.join("initrd.img");
    let built = std::fs::metadata(&initrd)
        .and_then(|m| m.modified())
        .with_context(|| {
            format!(
                "no {}: run `bash scripts/build-boot-images` (or `{SETUP}`)",
                initrd.display()
            )
        })?;
    ensure!(
        images.join("vmlinuz").is_file(),
        "no {}: run `bash scripts/build-boot-images`",
        images.join("vmlinuz").display()
    );
    // An initramfs older than the agent's sources would test yesterday's agent.
    for src in ["agent/src", "configure/src", "specs/src", "initrd/src"] {
        if let Some(t) = newest_source(&workspace_path(src)) {
            ensure!(
                t <= built,
                "{} is older than {src}: run `bash scripts/build-boot-images` to rebuild it",
                initrd.display()
            );
        }
    }
    let stamp = workspace_path(BUILT_ROLES).join(".base.stamp");
    let role_built = std::fs::metadata(&stamp)
        .and_then(|m| m.modified())
        .with_context(|| format!("no {}: run `bash scripts/build-roles`", stamp.display()))?;
    let role_file = workspace_path("examples/roles/base.toml");
    ensure!(
        std::fs::metadata(&role_file)?.modified()? <= role_built,
        "{} changed since the role was built: run `bash scripts/build-roles`",
        role_file.display()
    );
    let qemu = which("qemu-system-x86_64").context("qemu-system-x86_64")?;
    Ok(Prerequisites { images, qemu })
}

/// A finished QEMU run.
#[derive(Debug)]
struct Run {
    /// QEMU's exit status (`None`: killed by a signal).
    status: Option<i32>,
    /// When QEMU started.
    started: SystemTime,
    /// Seconds until QEMU exited.
    seconds: f64,
    /// The serial console.
    console: String,
    /// QEMU's own messages (stderr).
    qemu_log: String,
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn read_lossy(path: &Path) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_end(&mut bytes);
    }
    without_escapes(&String::from_utf8_lossy(&bytes))
}

/// The text without terminal escape sequences (`ESC [ ... letter`): systemd colours its
/// status lines (`Reached target \x1b[0;1;39mmulti-user.target\x1b[0m`).
fn without_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Kills QEMU if the test stops half-way (a failed assertion, a panic).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Runs QEMU with `args` until it exits or `limit` passes (then it is killed and this is an
/// error with the console's tail). The serial console goes to `console`.
fn run_qemu(qemu: &Path, args: &[String], console: &Path, limit: Duration) -> Result<Run> {
    run_qemu_until(qemu, args, console, limit, &|_| false)
}

/// [`run_qemu`], and QEMU is also stopped (status `None`) as soon as `done` holds for the
/// console's text.
fn run_qemu_until(
    qemu: &Path,
    args: &[String],
    console: &Path,
    limit: Duration,
    done: &dyn Fn(&str) -> bool,
) -> Result<Run> {
    let _ = std::fs::remove_file(console);
    let started = SystemTime::now();
    let t0 = Instant::now();
    let log = console.with_extension("qemu.log");
    let child = Command::new(qemu)
        .args(args)
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).with_context(|| format!("{}", log.display()))?)
        .spawn()
        .with_context(|| format!("cannot start {}", qemu.display()))?;
    let mut guard = Guard(child);
    let mut last_report = Instant::now();
    let status = loop {
        if let Some(st) = guard.0.try_wait()? {
            break Some(st);
        }
        if done(&read_lossy(console)) {
            let _ = guard.0.kill();
            let _ = guard.0.wait();
            break None;
        }
        if t0.elapsed() > limit {
            let _ = guard.0.kill();
            let _ = guard.0.wait();
            bail!(
                "QEMU still running after {} s: killed. Console ({}), last lines:\n{}\nQEMU: {}",
                limit.as_secs(),
                console.display(),
                tail(&read_lossy(console), 40),
                read_lossy(&log).trim()
            );
        }
        if last_report.elapsed() > Duration::from_secs(15) {
            last_report = Instant::now();
            let text = read_lossy(console);
            let last = text
                .lines()
                .rev()
                .find(|l| {
                    l.starts_with("rdeploy")
                        || l.contains("iPXE")
                        || l.contains("Reached target")
                        || l.contains("login:")
                })
                .unwrap_or("(booting)");
            say(&format!("  {:>4.0} s: {last}", t0.elapsed().as_secs_f64()));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    Ok(Run {
        status: status.and_then(|s| s.code()),
        started,
        seconds: t0.elapsed().as_secs_f64(),
        console: read_lossy(console),
        qemu_log: read_lossy(&log),
    })
}

/// KVM when a probe boot under KVM works, else TCG. `RDEPLOY_VM_ACCEL=kvm|tcg` skips the probe.
fn accelerator(p: &Prerequisites, dir: &Path) -> &'static str {
    static ACCEL: OnceLock<&'static str> = OnceLock::new();
    ACCEL.get_or_init(|| {
        match std::env::var("RDEPLOY_VM_ACCEL").as_deref() {
            Ok("kvm") => return "kvm",
            Ok("tcg") => return "tcg",
            _ => {}
        }
        if !Path::new("/dev/kvm").exists() {
            say("accelerator: no /dev/kvm: TCG");
            return "tcg";
        }
        let args: Vec<String> = [
            "-accel",
            "kvm",
            "-cpu",
            "host",
            "-m",
            "512",
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
            "-kernel",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([
            p.images.join("vmlinuz").display().to_string(),
            "-initrd".into(),
            p.images.join("initrd.img").display().to_string(),
            "-append".into(),
            "console=ttyS0 rdeploy.probe panic=-1 quiet".into(),
        ])
        .collect();
        match run_qemu(&p.qemu, &args, &dir.join("probe-kvm.console"), PROBE_LIMIT) {
            Ok(run) if run.console.contains(PROBE_OK) => {
                say(&format!(
                    "accelerator: KVM (probe booted in {:.1} s)",
                    run.seconds
                ));
                "kvm"
            }
            Ok(run) => {
                say(&format!(
                    "accelerator: the KVM probe ended without booting (status {:?}; {}): TCG",
                    run.status,
                    run.qemu_log.lines().next().unwrap_or("no message")
                ));
                "tcg"
            }
            Err(_) => {
                say("accelerator: the KVM probe did not finish: TCG");
                "tcg"
            }
        }
    })
}

/// UEFI firmware (Debian's ovmf): code, and the variable store each VM gets a copy of.
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// One test machine: its disks and MAC, and with UEFI its variable store.
struct Vm {
    dir: PathBuf,
    name: &'static str,
    mac: &'static str,
    disks: Vec<PathBuf>,
    uefi_vars: Option<PathBuf>,
}

impl Vm {
    /// The same machine with UEFI firmware (OVMF) instead of SeaBIOS.
    fn uefi(dir: &Path, name: &'static str, mac: &'static str, disks: usize) -> Result<Vm> {
        for f in [OVMF_CODE, OVMF_VARS] {
            ensure!(
                Path::new(f).is_file(),
                "no {f}: run `bash scripts/vm-deps` (ovmf)"
            );
        }
        let mut vm = Vm::new(dir, name, mac, disks)?;
        let vars = dir.join(format!("{name}-OVMF_VARS.fd"));
        std::fs::copy(OVMF_VARS, &vars).with_context(|| format!("{}", vars.display()))?;
        vm.uefi_vars = Some(vars);
        Ok(vm)
    }

    fn new(dir: &Path, name: &'static str, mac: &'static str, disks: usize) -> Result<Vm> {
        let mut paths = Vec::new();
        for i in 0..disks {
            let p = dir.join(format!("{name}-vd{}.img", (b'a' + i as u8) as char));
            let f = std::fs::File::create(&p).with_context(|| format!("{}", p.display()))?;
            f.set_len(2 << 30)?; // 2 GiB, sparse
            paths.push(p);
        }
        Ok(Vm {
            dir: dir.to_owned(),
            name,
            mac,
            disks: paths,
            uefi_vars: None,
        })
    }

    /// QEMU's arguments: network boot first (iPXE), then the last disk (the boot disk).
    fn args(&self, accel: &str, server_port: u16) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "-accel".into(),
            accel.into(),
            "-smp".into(),
            "2".into(),
            "-m".into(),
            "1024".into(),
            "-display".into(),
            "none".into(),
            "-monitor".into(),
            "none".into(),
            "-no-reboot".into(),
            "-netdev".into(),
            format!(
                "user,id=n0,restrict=on,guestfwd=tcp:{GUEST_SERVER}:80-cmd:socat - TCP:127.0.0.1:{server_port},bootfile=http://{GUEST_SERVER}/boot.ipxe"
            ),
            "-device".into(),
            format!("virtio-net-pci,netdev=n0,mac={},bootindex=1", self.mac),
            // Entropy: without it the agent's first getrandom() blocks for minutes under TCG.
            "-device".into(),
            "virtio-rng-pci".into(),
        ];
        if accel == "kvm" {
            a.extend(["-cpu".into(), "host".into()]);
        }
        if let Some(vars) = &self.uefi_vars {
            a.push("-drive".into());
            a.push(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"));
            a.push("-drive".into());
            a.push(format!("if=pflash,format=raw,file={}", vars.display()));
            // After iPXE's `exit`, OVMF tries its own network boot options before the disk,
            // each with its time-outs: leave out those it has switches for (PXE, IPv6).
            for knob in ["IPv6Support", "IPv4PXESupport", "IPv6PXESupport"] {
                a.push("-fw_cfg".into());
                a.push(format!("name=opt/org.tianocore/{knob},string=no"));
            }
        }
        let last = self.disks.len().saturating_sub(1);
        for (i, d) in self.disks.iter().enumerate() {
            a.push("-drive".into());
            a.push(format!("file={},if=none,id=d{i},format=raw", d.display()));
            a.push("-device".into());
            if i == last {
                a.push(format!("virtio-blk-pci,drive=d{i},bootindex=2"));
            } else {
                a.push(format!("virtio-blk-pci,drive=d{i}"));
            }
        }
        a
    }

    fn boot(
        &self,
        p: &Prerequisites,
        accel: &str,
        port: u16,
        what: &str,
        limit: Duration,
    ) -> Result<Run> {
        say(&format!(
            "{}: {what} (QEMU, {accel}, at most {} s)",
            self.name,
            limit.as_secs()
        ));
        let console = self.dir.join(format!("{}-{what}.console", self.name));
        let run = run_qemu(&p.qemu, &self.args(accel, port), &console, limit)?;
        say(&format!(
            "{}: {what}: QEMU exited with status {:?} after {:.1} s",
            self.name, run.status, run.seconds
        ));
        Ok(run)
    }

    /// The boot of the installed Debian: QEMU runs until the console shows the default
    /// target reached and the login prompt, and the SSH server answered through a port
    /// forward (`hostfwd`, QEMU user networking) to the guest's address 10.0.2.15, or until
    /// `limit` (an error). Returns the run and the SSH server's banner.
    fn boot_installed(
        &self,
        p: &Prerequisites,
        accel: &str,
        port: u16,
        limit: Duration,
    ) -> Result<(Run, String)> {
        let what = "local-boot";
        let ssh_port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        say(&format!(
            "{}: {what} (QEMU, {accel}, at most {} s; the guest's SSH at 127.0.0.1:{ssh_port})",
            self.name,
            limit.as_secs()
        ));
        let args: Vec<String> = self
            .args(accel, port)
            .into_iter()
            .map(|a| {
                a.replacen(
                    "user,id=n0,restrict=on,",
                    &format!(
                        "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{ssh_port}-10.0.2.15:22,"
                    ),
                    1,
                )
            })
            .collect();
        let banner = std::cell::RefCell::new(String::new());
        let done = |console: &str| {
            if !(console.contains(DEFAULT_TARGET_REACHED) && console.contains("login:")) {
                return false;
            }
            if banner.borrow().is_empty() {
                if let Some(b) = ssh_banner(ssh_port) {
                    *banner.borrow_mut() = b;
                }
            }
            !banner.borrow().is_empty()
        };
        let console = self.dir.join(format!("{}-{what}.console", self.name));
        let run = run_qemu_until(&p.qemu, &args, &console, limit, &done)?;
        say(&format!(
            "{}: {what}: {} after {:.1} s",
            self.name,
            match run.status {
                None => "Debian up, QEMU stopped".to_owned(),
                Some(s) => format!("QEMU exited with status {s}"),
            },
            run.seconds
        ));
        let banner = banner.into_inner();
        Ok((run, banner))
    }
}

/// The first line an SSH server sends (`SSH-2.0-OpenSSH_...`), if one answers at
/// 127.0.0.1:`port` within a few seconds.
fn ssh_banner(port: u16) -> Option<String> {
    use std::io::BufRead as _;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut line = String::new();
    std::io::BufReader::new(stream).read_line(&mut line).ok()?;
    line.starts_with("SSH-").then(|| line.trim().to_owned())
}

/// Everything one scenario needs: a server on a copy of examples/vm-config.
/// `RDEPLOY_VM_KEEP=1` keeps the directory (consoles, disks, server log, data dir).
struct Setup {
    dir: tempfile::TempDir,
    server: Server,
    port: u16,
    tftp: PathBuf,
}

fn setup(p: &Prerequisites) -> Result<Setup> {
    setup_with(p, &format!("http://{GUEST_SERVER}"))
}

/// [`setup`] with another URL for the machines (`--public-url`).
fn setup_with(p: &Prerequisites, public: &str) -> Result<Setup> {
    let mut dir = tempfile::Builder::new().prefix("rdeploy-vm-").tempdir()?;
    if std::env::var_os("RDEPLOY_VM_KEEP").is_some() {
        dir.disable_cleanup(true);
        say(&format!("keeping {}", dir.path().display()));
    }
    let config = dir.path().join("config");
    copy_dir(&workspace_path("examples/vm-config"), &config)?;
    let data = dir.path().join("data");
    // The built role, hard-linked (the server only reads it): the same manifest, no copy.
    let built = workspace_path(BUILT_ROLES).join(format!("install/{ROLE_VERSION}/{ROLE}"));
    let served = data.join(format!("install/{ROLE_VERSION}"));
    std::fs::create_dir_all(&served)?;
    command(
        "cp",
        &[
            "-al",
            &built.display().to_string(),
            &served.display().to_string(),
        ],
    )?;
    let tftp = dir.path().join("tftp");
    std::fs::create_dir_all(&tftp)?;
    let images = p.images.display().to_string();
    let tftp_s = tftp.display().to_string();
    let server = Server::start(
        &config,
        &data,
        &[
            "--public-url",
            public,
            "--images-dir",
            &images,
            "--tftp-root",
            &tftp_s,
            "--kernel-args",
            KERNEL_ARGS,
        ],
    )?;
    let port = server
        .base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no port in {}", server.base))?;
    Ok(Setup {
        dir,
        server,
        port,
        tftp,
    })
}

/// The node record of the machine with `mac`.
fn node_by_mac(server: &Server, mac: &str) -> Result<Value> {
    let list = server.get_json("/nodes")?;
    let nodes = list
        .as_array()
        .or_else(|| list.get("nodes").and_then(Value::as_array))
        .with_context(|| format!("GET /nodes: not a list: {list}"))?;
    let id = nodes
        .iter()
        .find(|n| n.to_string().to_lowercase().contains(mac))
        .and_then(|n| n.get("id"))
        .and_then(Value::as_str)
        .with_context(|| format!("no node with MAC {mac} in {list}"))?;
    server.get_json(&format!("/nodes/{id}"))
}

fn command(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    ensure!(
        out.status.success(),
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A file of an ext4 file system that starts `offset` bytes into `image`, read with debugfs.
fn debugfs_cat(image: &Path, offset: u64, path: &str) -> Result<String> {
    let dev = format!("{}?offset={offset}", image.display());
    let out = Command::new("debugfs")
        .args(["-R", &format!("cat {path}"), &dev])
        .stdin(Stdio::null())
        .output()
        .context("cannot run debugfs")?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success() && !err.contains("File not found"),
        "debugfs {dev}: cat {path}: {err}"
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `Key : value` of `mdadm --examine`.
fn examine_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(" : ")?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// Seconds from `start` to a node record's time (`2026-11-21T21:49:19Z`, UTC); negative
/// when before (the record has whole seconds).
fn seconds_after(start: SystemTime, rfc3339: &str) -> Option<f64> {
    let (date, time) = rfc3339.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':').map(|x| x.parse::<f64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let at = days as f64 * 86_400.0 + hh * 3600.0 + mm * 60.0 + ss;
    let start = start
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    Some(at - start)
}

/// `(state, at)` of the node's history, in order.
fn history(node: &Value) -> Vec<(String, String)> {
    node.get("history")
        .and_then(Value::as_array)
        .map(|h| {
            h.iter()
                .map(|e| {
                    (
                        e.get("state")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                        e.get("at").and_then(Value::as_str).unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// An install boot: QEMU ended with the guest's power-off, and the console shows `lines`.
fn powered_off_after(run: &Run, lines: &[&str]) -> Result<()> {
    ensure!(
        run.status == Some(0),
        "the install boot should end with a power-off (status 0), not {:?}",
        run.status
    );
    for line in lines {
        ensure!(run.console.contains(line), "the console has no {line:?}");
    }
    Ok(())
}

/// The second boot of an installed VM: the installed Debian came up from the disk with the
/// node's CMDB identity (hostname and address on the login banner the base role's
/// /etc/issue writes), its SSH server answered, and the installer did not run again.
fn booted_installed_debian(run: &Run, banner: &str, hostname: &str, ip: &str) -> Result<()> {
    ensure!(
        run.console.contains(DEFAULT_TARGET_REACHED),
        "the installed system did not reach its default target (no {DEFAULT_TARGET_REACHED:?})"
    );
    ensure!(
        run.console.contains(&format!("{hostname} login:")),
        "no login prompt of {hostname} on the console"
    );
    let issue = format!("host {hostname} address {ip} role {ROLE} {ROLE_VERSION}");
    ensure!(
        run.console.contains(&issue),
        "the login banner does not say {issue:?}"
    );
    ensure!(
        run.console.contains("Linux version") && run.console.contains("console=ttyS0"),
        "the kernel did not log its command line with console=ttyS0"
    );
    ensure!(
        banner.starts_with("SSH-2.0-OpenSSH"),
        "the guest's SSH server did not answer at {ip}:22 ({banner:?})"
    );
    ensure!(
        !run.console.contains("rdeploy-agent"),
        "the second boot ran the installer again"
    );
    Ok(())
}

/// On failure: the tail of each console, and a copy of the whole of it kept in
/// `target/vm-consoles/` (the test's directory goes away with it).
fn on_failure<T>(result: Result<T>, consoles: &[&Path]) -> Result<T> {
    if result.is_err() {
        let keep = workspace_path("target/vm-consoles");
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for c in consoles {
            let text = read_lossy(c);
            if !text.is_empty() {
                eprintln!("--- {} (last lines)\n{}", c.display(), tail(&text, 40));
                let name = c
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
                let copy = keep.join(format!("{stamp}-{name}"));
                if std::fs::create_dir_all(&keep).is_ok() && std::fs::copy(c, &copy).is_ok() {
                    eprintln!("--- the whole console: {}", copy.display());
                }
            }
        }
    }
    result
}

/// The agent's lines about transfers it broke off and asked for again (none on a good
/// network).
fn transfer_retries(console: &str) -> Vec<&str> {
    console
        .lines()
        .filter(|l| l.contains("transfer failed at file"))
        .collect()
}

/// Install, then local boot, then the disks read from the host.
#[test]
fn a_vm_installs_through_the_whole_chain_then_boots_its_disk() -> Result<()> {
    let _one = ONE_VM_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let p = prerequisites()?;
    let s = setup(&p)?;
    let accel = accelerator(&p, s.dir.path());
    let vm = Vm::new(s.dir.path(), "vm1", "52:54:00:12:34:56", 3)?;
    let install_console = s.dir.path().join("vm1-install.console");
    let local_console = s.dir.path().join("vm1-local-boot.console");
    let consoles = [install_console.as_path(), local_console.as_path()];

    // 1. Network boot: install.
    let run = on_failure(
        vm.boot(&p, accel, s.port, "install", INSTALL_LIMIT),
        &consoles,
    )?;
    for line in transfer_retries(&run.console) {
        say(&format!("{}: the agent asked again: {line}", vm.name));
    }
    on_failure(
        powered_off_after(
            &run,
            &[
                "rdeploy-init: starting rdeploy-agent run",
                "matched profile kvm",
                "mdadm --create /dev/md0",
                "install_role: done",
                "grub-install --target=i386-pc",
                "onsuccess: halt",
            ],
        ),
        &consoles,
    )?;

    // The server's record: states in order, the CMDB entry, local boot.
    let node = node_by_mac(&s.server, vm.mac)?;
    let states: Vec<String> = history(&node).into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        states,
        [
            "discovered",
            "matched",
            "configuring",
            "installing",
            "installed"
        ],
        "{node:#}"
    );
    assert_eq!(node["profile"], "kvm", "{node:#}");
    assert_eq!(node["var"]["hostname"], "rdeploy-vm01", "{node:#}");
    assert_eq!(node["var"]["mac"], vm.mac, "{node:#}");
    assert_eq!(node["boot"]["target"], "local", "{node:#}");
    let state = std::fs::read_to_string(s.server.config_dir.join("state"))?;
    assert!(
        state.contains("('kvm', 2)"),
        "quota not decremented: {state}"
    );
    let cmdb = std::fs::read_to_string(s.server.config_dir.join("kvm.cmdb"))?;
    let used: Vec<&str> = cmdb.lines().filter(|l| l.contains("'used': 1")).collect();
    assert_eq!(used.len(), 1, "{cmdb}");
    assert!(
        used[0].contains("rdeploy-vm01") && used[0].contains(vm.mac),
        "{cmdb}"
    );
    let pxe = s.tftp.join("pxelinux.cfg/01-52-54-00-12-34-56");
    let pxe_text = std::fs::read_to_string(&pxe).with_context(|| format!("{}", pxe.display()))?;
    assert!(
        pxe_text.contains("LOCALBOOT"),
        "{}: {pxe_text}",
        pxe.display()
    );

    // The agent's progress events, in order, each step started then succeeded.
    let events = node["events"].as_array().cloned().unwrap_or_default();
    let progress: Vec<(String, String, String)> = events
        .iter()
        .filter(|e| e["kind"] == "progress")
        .map(|e| {
            let f = |k: &str| e[k].as_str().unwrap_or("").to_owned();
            (f("step"), f("status"), f("at"))
        })
        .collect();
    let steps: Vec<String> = progress
        .iter()
        .map(|(step, status, _)| format!("{step} {status}"))
        .collect();
    let expected = [
        "detect started",
        "detect succeeded",
        "upload started",
        "upload succeeded",
        "configure started",
        "configure succeeded",
        "install_role started",
        "install_role succeeded",
        "bootloader started",
        "bootloader succeeded",
    ];
    let mut at = 0;
    for want in expected {
        match steps[at..].iter().position(|s| s == want) {
            Some(i) => at += i + 1,
            None => panic!("no {want:?} after the events before it: {steps:#?}"),
        }
    }
    assert!(
        !steps.iter().any(|s| s.ends_with("failed")),
        "a step failed: {steps:#?}"
    );

    // Timings for docs/benchmarks.md (the server's clock, whole seconds).
    let when = |step: &str| {
        progress
            .iter()
            .find(|(s, st, _)| s == step && st == "succeeded")
            .and_then(|(_, _, at)| seconds_after(run.started, at))
            .map_or("?".to_owned(), |t| format!("{t:.0}"))
    };
    let received = events
        .iter()
        .find(|e| e["kind"] == "upload")
        .and_then(|e| e["at"].as_str())
        .and_then(|at| seconds_after(run.started, at))
        .map_or("?".to_owned(), |t| format!("{t:.0}"));
    say(&format!(
        "install timeline ({accel}; seconds after QEMU started): upload received {received}, configure done {}, role tree installed {}, boot loader installed {}, power-off {:.1}",
        when("configure"),
        when("install_role"),
        when("bootloader"),
        run.seconds
    ));

    // 2. The same VM again: the server sends it to its disk, which boots Debian.
    let (run2, banner) = on_failure(
        vm.boot_installed(&p, accel, s.port, LOCAL_BOOT_LIMIT),
        &consoles,
    )?;
    on_failure(
        booted_installed_debian(&run2, &banner, "rdeploy-vm01", "10.0.2.15"),
        &consoles,
    )?;
    say(&format!(
        "local boot: Debian's login prompt and SSH ({banner}) after {:.1} s",
        run2.seconds
    ));
    let node = node_by_mac(&s.server, vm.mac)?;
    assert_eq!(node["state"], "installed", "{node:#}");
    assert!(
        node.to_string()
            .contains("network-booted again: answered local"),
        "no alert for the second network boot: {node:#}"
    );

    // 3. The disks, read from the host.
    let (vda, vdb, vdc) = (&vm.disks[0], &vm.disks[1], &vm.disks[2]);
    let table: Value =
        serde_json::from_str(&command("sfdisk", &["--json", &vdc.display().to_string()])?)?;
    let parts = table["partitiontable"]["partitions"]
        .as_array()
        .context("no partitions on vdc")?;
    assert_eq!(table["partitiontable"]["label"], "gpt", "{table:#}");
    let types: Vec<&str> = parts.iter().filter_map(|p| p["type"].as_str()).collect();
    assert_eq!(
        types,
        [
            "21686148-6449-6E6F-744E-656564454649",
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
        ],
        "{table:#}"
    );
    assert_eq!(parts[1]["name"], "EFI", "{table:#}");
    assert_eq!(parts[2]["name"], "boot", "{table:#}");
    let sector = table["partitiontable"]["sectorsize"]
        .as_u64()
        .unwrap_or(512);
    let boot_offset = parts[2]["start"].as_u64().context("no start")? * sector;

    let mut uuids = Vec::new();
    let mut data_offset = 0;
    for d in [vda, vdb] {
        let text = command("mdadm", &["--examine", &d.display().to_string()])?;
        assert_eq!(examine_field(&text, "Raid Level"), Some("raid1"), "{text}");
        assert_eq!(examine_field(&text, "Raid Devices"), Some("2"), "{text}");
        assert_eq!(examine_field(&text, "Version"), Some("1.2"), "{text}");
        uuids.push(
            examine_field(&text, "Array UUID")
                .unwrap_or_default()
                .to_owned(),
        );
        let sectors: u64 = examine_field(&text, "Data Offset")
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("no data offset: {text}"))?;
        data_offset = sectors * 512;
    }
    assert_eq!(uuids[0], uuids[1], "the two disks are not one array");

    // The root file system on the mirror: the role tree and the script's files, on both halves.
    for d in [vda, vdb] {
        assert_eq!(
            debugfs_cat(d, data_offset, "/etc/hostname")?,
            "rdeploy-vm01\n"
        );
        assert_eq!(
            debugfs_cat(d, data_offset, "/etc/rdeploy-release")?,
            format!("{ROLE} {ROLE_VERSION}\n")
        );
        let interfaces = debugfs_cat(d, data_offset, "/etc/network/interfaces")?;
        assert!(
            interfaces.contains("iface eth0 inet static") && interfaces.contains("10.0.2.15"),
            "{interfaces}"
        );
        let fstab = debugfs_cat(d, data_offset, "/etc/fstab")?;
        assert!(
            fstab.contains(" / ext4")
                && fstab.contains(" /boot ext4")
                && fstab.contains(" /boot/efi vfat"),
            "{fstab}"
        );
        let test = debugfs_cat(d, data_offset, "/etc/rdeploy-test")?;
        assert!(test.contains("ip=10.0.2.15"), "{test}");
    }
    // /boot on vdc3: the kernel of the role tree, the grub.cfg grub-mkconfig wrote in the
    // installed tree (with the profile's grub_options), the modules grub-install wrote.
    let grub_cfg = debugfs_cat(vdc, boot_offset, "/grub/grub.cfg")?;
    assert!(
        grub_cfg.contains("/vmlinuz-")
            && grub_cfg.contains("console=ttyS0,115200")
            && grub_cfg.contains("net.ifnames=0"),
        "{grub_cfg}"
    );
    assert!(!debugfs_cat(vdc, boot_offset, "/grub/i386-pc/normal.mod")?.is_empty());
    // GRUB's boot code in vdc's first sector.
    let mut mbr = [0u8; 512];
    std::fs::File::open(vdc)?.read_exact(&mut mbr)?;
    assert!(
        mbr.windows(4).any(|w| w == b"GRUB"),
        "no GRUB boot code on vdc"
    );
    assert_eq!(&mbr[510..], &[0x55, 0xaa]);
    Ok(())
}

/// A VM that matches no profile: a clear no-match on its console and in the server's record,
/// and nothing written to its disk.
#[test]
fn a_vm_that_matches_no_profile_is_told_so_and_keeps_its_disk() -> Result<()> {
    let _one = ONE_VM_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let p = prerequisites()?;
    let s = setup(&p)?;
    let accel = accelerator(&p, s.dir.path());
    let vm = Vm::new(s.dir.path(), "stranger", "52:54:00:ab:cd:ef", 1)?;
    let console = s.dir.path().join("stranger-install.console");
    let run = on_failure(
        vm.boot(&p, accel, s.port, "install", INSTALL_LIMIT),
        &[&console],
    )?;
    on_failure(
        (|| {
            ensure!(
                run.console.contains("no_match"),
                "the console does not say no_match"
            );
            ensure!(
                run.status == Some(0),
                "the failed run should power off (rdeploy.onfailure=halt), not {:?}",
                run.status
            );
            ensure!(!run.console.contains("configure: running"), "a script ran");
            Ok(())
        })(),
        &[&console],
    )?;
    for line in run.console.lines().filter(|l| l.contains("no_match")) {
        say(&format!("stranger's console: {line}"));
    }
    let node = node_by_mac(&s.server, vm.mac)?;
    assert!(node.to_string().contains("no_match"), "{node:#}");
    assert_ne!(node["state"], "installed", "{node:#}");
    let state = std::fs::read_to_string(s.server.config_dir.join("state"))?;
    assert!(state.contains("('kvm', 3)"), "the quota moved: {state}");
    // Nothing was written to the disk: the sparse file still has no block allocated, and
    // its first MiB (where a partition table or RAID superblock would go) reads as zeros.
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(&vm.disks[0])?;
    assert_eq!(meta.len(), 2 << 30);
    assert_eq!(
        meta.blocks(),
        0,
        "blocks were written to the stranger's disk"
    );
    let mut head = vec![0u8; 1 << 20];
    std::fs::File::open(&vm.disks[0])?.read_exact(&mut head)?;
    assert!(
        head.iter().all(|b| *b == 0),
        "the stranger's disk was written"
    );
    Ok(())
}

/// The EFI system partition's file list (`fsck.fat -n -l` on a copy of the partition).
fn esp_files(disk: &Path, dir: &Path) -> Result<String> {
    let table: Value = serde_json::from_str(&command(
        "sfdisk",
        &["--json", &disk.display().to_string()],
    )?)?;
    let parts = table["partitiontable"]["partitions"]
        .as_array()
        .context("no partitions")?;
    let esp = parts
        .iter()
        .find(|p| p["type"] == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
        .with_context(|| format!("no EFI system partition: {table:#}"))?;
    let (start, size) = (
        esp["start"].as_u64().context("start")?,
        esp["size"].as_u64().context("size")?,
    );
    let mut bytes = vec![0u8; (size * 512) as usize];
    let mut f = std::fs::File::open(disk)?;
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(start * 512))?;
    f.read_exact(&mut bytes)?;
    let copy = dir.join("esp.img");
    std::fs::write(&copy, &bytes)?;
    let out = Command::new("fsck.fat")
        .args(["-n", "-l"])
        .arg(&copy)
        .output()
        .context("cannot run fsck.fat")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "fsck.fat on the ESP: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(text)
}

/// The same chain under UEFI (OVMF): iPXE's EFI ROM, the kernel's EFI stub, GRUB x86_64-efi
/// on the EFI system partition (with a boot entry through efibootmgr and at the removable
/// path), and the second boot through the firmware's boot manager to the disk.
#[test]
fn a_uefi_vm_installs_through_the_whole_chain_then_boots_its_disk() -> Result<()> {
    let _one = ONE_VM_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let p = prerequisites()?;
    let s = setup(&p)?;
    let accel = accelerator(&p, s.dir.path());
    let vm = Vm::uefi(s.dir.path(), "uefi1", "52:54:00:12:34:58", 3)?;
    let consoles_owned = [
        s.dir.path().join("uefi1-install.console"),
        s.dir.path().join("uefi1-local-boot.console"),
    ];
    let consoles: Vec<&Path> = consoles_owned.iter().map(PathBuf::as_path).collect();

    let run = on_failure(
        vm.boot(&p, accel, s.port, "install", UEFI_INSTALL_LIMIT),
        &consoles,
    )?;
    for line in transfer_retries(&run.console) {
        say(&format!("{}: the agent asked again: {line}", vm.name));
    }
    on_failure(
        powered_off_after(
            &run,
            &[
                "grub for UEFI",
                "grub-install --target=x86_64-efi",
                "--removable",
                "finish: done",
                "onsuccess: halt",
            ],
        ),
        &consoles,
    )?;
    let node = node_by_mac(&s.server, vm.mac)?;
    assert_eq!(node["state"], "installed", "{node:#}");
    assert_eq!(node["boot"]["target"], "local", "{node:#}");
    say(&format!(
        "uefi install: power-off after {:.1} s",
        run.seconds
    ));

    // The ESP as the install left it (the booted Debian mounts it, and QEMU is stopped
    // without unmounting: its dirty flag would be set).
    let files = esp_files(&vm.disks[2], s.dir.path())?;
    for f in ["/EFI/BOOT/BOOTX64.EFI", "/EFI/rdeploy/grubx64.efi"] {
        assert!(files.contains(f), "{f} not on the ESP: {files}");
    }

    let hostname = node["var"]["hostname"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let ip = node["var"]["ip"].as_str().unwrap_or_default().to_owned();
    let (run2, banner) = on_failure(
        vm.boot_installed(&p, accel, s.port, UEFI_LOCAL_BOOT_LIMIT),
        &consoles,
    )?;
    on_failure(
        booted_installed_debian(&run2, &banner, &hostname, &ip),
        &consoles,
    )?;
    say(&format!(
        "uefi local boot: Debian's login prompt and SSH after {:.1} s",
        run2.seconds
    ));
    Ok(())
}

/// `docs/labs.md`: `rdeploy vm create --like NODE --format qemu` writes the VM, shaped like
/// a stored inventory (the KVM guest fixture's 2 CPUs; a quarter of its 4 GiB), with the MAC
/// of the system it registers on the spot. That VM network-boots through the chain and
/// installs, and the inventory its agent sends reads back the CPU count and the memory asked
/// for.
#[test]
fn a_vm_made_by_vm_create_like_a_stored_inventory_installs() -> Result<()> {
    let _one = ONE_VM_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let p = prerequisites()?;
    let s = setup(&p)?;
    let accel = accelerator(&p, s.dir.path());
    std::fs::write(
        s.server.config_dir.join("labs.toml"),
        "range = \"10.0.2.50-10.0.2.59\"\n",
    )?;
    let fixture = workspace_path("tests/fixtures/hw/kvm-guest.json");
    let upload = rdeploy_tests::curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-D",
        "-",
        "-F",
        &format!("file=@{}", fixture.display()),
        &s.server.url("/upload"),
    ])?;
    let like = upload
        .stdout
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-rdeploy-node")
                .then(|| v.trim().to_owned())
        })
        .with_context(|| format!("no node in the upload's answer: {}", upload.stdout))?;
    let script = s.dir.path().join("lab-vm.sh");
    let disks = s.dir.path().join("disks");
    let relay = format!("127.0.0.1:{}", s.port);
    let out = rdeploy_tests::run_binary(
        "rdeploy",
        &[
            "vm",
            "create",
            "lab-vm",
            "--like",
            &like,
            "--memory-ratio",
            "0.25",
            "--disk",
            "2G",
            "--disk",
            "2G",
            "--disk",
            "2G",
            "--user-net",
            &relay,
            "--disk-dir",
            &disks.display().to_string(),
            "--format",
            "qemu",
            "--out",
            &script.display().to_string(),
            "--server",
            &s.server.base,
        ],
    )?;
    ensure!(out.code == Some(0), "vm create: {}", out.stderr);
    std::fs::create_dir_all(&disks)?;
    let shown = rdeploy_tests::run_binary(
        "rdeploy",
        &["system", "show", "lab-vm", "--server", &s.server.base],
    )?;
    let mac = shown
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Mac: "))
        .with_context(|| format!("no MAC: {}", shown.stdout))?
        .to_owned();
    say(&format!("lab-vm: MAC {mac}, like {like}"));

    // The script as an operator runs it, with the accelerator the probe chose and QEMU's
    // -no-reboot (the agent halts after the install) and the console in a file.
    let console = s.dir.path().join("lab-vm-install.console");
    let run = on_failure(
        run_qemu(
            Path::new("/usr/bin/env"),
            &[
                format!("RDEPLOY_VM_ACCEL={accel}"),
                "sh".into(),
                script.display().to_string(),
                "-no-reboot".into(),
                "-monitor".into(),
                "none".into(),
            ],
            &console,
            INSTALL_LIMIT,
        ),
        &[&console],
    )?;
    on_failure(
        powered_off_after(
            &run,
            &[
                "rdeploy-init: starting rdeploy-agent run",
                "matched profile kvm",
                "onsuccess: halt",
            ],
        ),
        &[&console],
    )?;
    let node = node_by_mac(&s.server, &mac)?;
    assert_eq!(node["state"], "installed", "{node:#}");
    let id = node["id"].as_str().context("no id")?;
    let inventory = s.server.get_text(&format!("/nodes/{id}/inventory"))?;
    let value = |a: &str, b: &str, c: &str| {
        let key = format!("('{a}', '{b}', '{c}', ");
        inventory.lines().find_map(|l| {
            let rest = &l[l.find(&key)? + key.len()..];
            Some(
                rest.trim_end_matches([')', ',', ']'])
                    .trim_matches('\'')
                    .to_owned(),
            )
        })
    };
    assert_eq!(
        value("cpu", "logical", "number").as_deref(),
        Some("2"),
        "{inventory}"
    );
    let memory: u64 = value("memory", "total", "size")
        .and_then(|m| m.parse().ok())
        .with_context(|| format!("no memory total: {inventory}"))?;
    let asked = 1024u64 << 20;
    assert!(
        memory <= asked && memory >= asked - (128 << 20),
        "memory {memory}, asked {asked}: {inventory}"
    );
    Ok(())
}

/// Processes and a network namespace, ended and removed when dropped.
struct Netns {
    name: String,
    children: Vec<Child>,
}

impl Netns {
    /// `ip netns exec NAME PROGRAM ARGS...`, in the background.
    fn spawn(&mut self, program: &str, args: &[&str], log: &Path) -> Result<()> {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).with_context(|| format!("{}", log.display()))?)
            .spawn()
            .with_context(|| format!("cannot start {program} in {}", self.name))?;
        self.children.push(child);
        Ok(())
    }

    fn run(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend(args);
        command("ip", &all).map(|_| ())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// `docs/boot-setup.md` and `docs/labs.md` as an operator follows them, with real DHCP: in a
/// network namespace, a bridge with a tap device, real dnsmasq running the config `rdeploy
/// dhcp-config --dnsmasq` printed, and the QEMU script of `rdeploy vm create --tap` on the
/// tap. The VM gets its fixed address and its boot file from dnsmasq (not from QEMU's own
/// DHCP), network-boots through iPXE and installs. The server stays on loopback: socat
/// relays the namespace's 10.77.0.1:8080 to it through a Unix socket.
#[test]
fn a_vm_boots_through_real_dnsmasq_in_a_network_namespace() -> Result<()> {
    let _one = ONE_VM_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let p = prerequisites()?;
    for tool in ["dnsmasq", "ip"] {
        ensure!(which(tool).is_some(), "no {tool}: run `bash scripts/deps`");
    }
    let s = setup_with(&p, "http://10.77.0.1:8080")?;
    let accel = accelerator(&p, s.dir.path());
    let dir = s.dir.path();
    let mut ns = Netns {
        name: format!("rdeploy-lab-{}", std::process::id()),
        children: Vec::new(),
    };
    command("ip", &["netns", "add", &ns.name])?;
    for cmd in [
        "ip link set lo up",
        "ip link add br0 type bridge",
        "ip addr add 10.77.0.1/24 dev br0",
        "ip link set br0 up",
        "ip tuntap add dev tap0 mode tap",
        "ip link set tap0 master br0",
        "ip link set tap0 up",
    ] {
        ns.run(&cmd.split(' ').collect::<Vec<_>>())?;
    }
    // The server, reached at 10.77.0.1:8080 inside the namespace.
    let sock = dir.join("server.sock");
    let relay = Command::new("socat")
        .arg(format!("UNIX-LISTEN:{},fork", sock.display()))
        .arg(format!("TCP:127.0.0.1:{}", s.port))
        .stdin(Stdio::null())
        .spawn()
        .context("socat")?;
    ns.children.push(relay);
    ns.spawn(
        "socat",
        &[
            "TCP-LISTEN:8080,bind=10.77.0.1,fork,reuseaddr",
            &format!("UNIX-CONNECT:{}", sock.display()),
        ],
        &dir.join("relay.log"),
    )?;

    let rdeploy = |args: &[&str]| -> Result<String> {
        let mut all = args.to_vec();
        all.extend(["--server", &s.server.base]);
        let out = rdeploy_tests::run_binary("rdeploy", &all)?;
        ensure!(
            out.code == Some(0),
            "rdeploy {}: {}",
            args.join(" "),
            out.stderr
        );
        Ok(out.stdout)
    };
    let script = dir.join("lab-tap.sh");
    let disks = dir.join("disks");
    rdeploy(&[
        "vm",
        "create",
        "lab-tap",
        "--ip",
        "10.77.0.50",
        "--cpus",
        "2",
        "--memory",
        "1024",
        "--disk",
        "2G",
        "--disk",
        "2G",
        "--disk",
        "2G",
        "--tap",
        "tap0",
        "--disk-dir",
        &disks.display().to_string(),
        "--format",
        "qemu",
        "--out",
        &script.display().to_string(),
    ])?;
    let shown = rdeploy(&["system", "show", "lab-tap"])?;
    let mac = shown
        .lines()
        .find_map(|l| l.strip_prefix("Mac: "))
        .with_context(|| format!("no MAC: {shown}"))?
        .to_owned();
    let tftp = dir.join("tftp-dnsmasq");
    std::fs::create_dir_all(&tftp)?;
    let conf = dir.join("dnsmasq.conf");
    rdeploy(&[
        "dhcp-config",
        "--dnsmasq",
        "--subnet",
        "10.77.0.0/24",
        "--public-url",
        "http://10.77.0.1:8080",
        "--tftp-root",
        &tftp.display().to_string(),
        "--write",
        &conf.display().to_string(),
    ])?;
    let text = std::fs::read_to_string(&conf)?;
    ensure!(
        text.contains(&format!("dhcp-host={mac},10.77.0.50,lab-tap")),
        "{text}"
    );
    let log = dir.join("dnsmasq.log");
    ns.spawn(
        "dnsmasq",
        &[
            "--keep-in-foreground",
            &format!("--conf-file={}", conf.display()),
            "--interface=br0",
            "--bind-interfaces",
            "--user=root",
            &format!("--dhcp-leasefile={}", dir.join("leases").display()),
            &format!("--pid-file={}", dir.join("dnsmasq.pid").display()),
            &format!("--log-facility={}", log.display()),
        ],
        &dir.join("dnsmasq.stderr"),
    )?;

    let console = dir.join("lab-tap-install.console");
    let accel_env = format!("RDEPLOY_VM_ACCEL={accel}");
    let script_s = script.display().to_string();
    let mut args: Vec<String> = vec!["netns".into(), "exec".into(), ns.name.clone()];
    args.extend(
        [
            "env",
            &accel_env,
            "sh",
            &script_s,
            "-no-reboot",
            "-monitor",
            "none",
        ]
        .iter()
        .map(|s| (*s).to_owned()),
    );
    let run = on_failure(
        run_qemu(Path::new("/usr/sbin/ip"), &args, &console, INSTALL_LIMIT),
        &[&console, &log],
    )?;
    on_failure(
        powered_off_after(
            &run,
            &[
                "rdeploy-init: starting rdeploy-agent run",
                "matched profile kvm",
                "onsuccess: halt",
            ],
        ),
        &[&console, &log],
    )?;
    let leases = read_lossy(&log);
    ensure!(
        leases.contains(&format!("DHCPACK(br0) 10.77.0.50 {mac}")),
        "dnsmasq gave no 10.77.0.50 to {mac}:\n{}",
        tail(&leases, 30)
    );
    let node = node_by_mac(&s.server, &mac)?;
    assert_eq!(node["state"], "installed", "{node:#}");
    Ok(())
}
