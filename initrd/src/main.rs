//! `rdeploy-initrd`: builds the PXE kernel and initramfs that carry `rdeploy-agent`, and
//! lists what an initramfs holds.
//!
//! Thin: parse the command line, set up logging, call the library, write the files.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use rdeploy_initrd::build::{build, BuildOptions};
use rdeploy_initrd::image::{Compression, Image, Member};

/// rdeploy-initrd: the install kernel and initramfs for PXE boots.
#[derive(Debug, Parser)]
#[command(name = "rdeploy-initrd", version, about, long_about = None)]
struct Cli {
    /// More log output (-v: debug). RDEPLOY_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write DIR/vmlinuz (the kernel, copied), DIR/initrd.img (newc cpio, zstd) and
    /// DIR/manifest.json (what went in). Same inputs, same bytes.
    #[command(
        after_help = "Example:\n  rdeploy-initrd build --kernel /boot/vmlinuz-6.1.0-56-amd64 \\\n      --agent target/static/x86_64-unknown-linux-gnu/release/rdeploy-agent --out /srv/rdeploy/images\n  rdeploy serve --images-dir /srv/rdeploy/images ..."
    )]
    Build(Box<BuildArgs>),
    /// List the members of an initramfs built by `build` (zstd, gzip or bare newc cpio).
    List {
        /// The initramfs.
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
struct BuildArgs {
    /// The kernel to boot (Debian: /boot/vmlinuz-VERSION from linux-image-amd64).
    #[arg(long, value_name = "FILE")]
    kernel: PathBuf,
    /// The static rdeploy-agent binary.
    #[arg(long, value_name = "FILE")]
    agent: PathBuf,
    /// Output directory (created).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The kernel's modules [default: /lib/modules/VERSION for vmlinuz-VERSION].
    #[arg(long, value_name = "DIR")]
    modules_dir: Option<PathBuf>,
    /// The busybox binary [default: busybox in /usr/sbin, /usr/bin, /sbin, /bin].
    #[arg(long, value_name = "FILE")]
    busybox: Option<PathBuf>,
    /// One more kernel module (with its dependencies); repeatable.
    #[arg(long = "module", value_name = "NAME")]
    modules: Vec<String>,
    /// One more tool, by name or path (with its libraries); repeatable.
    #[arg(long = "tool", value_name = "NAME")]
    tools: Vec<String>,
    /// Leave out an optional tool (e.g. ipmitool: 3 MB compressed with its libraries);
    /// repeatable.
    #[arg(long, value_name = "NAME")]
    without: Vec<String>,
    /// Leave GRUB (grub-install and its module directories) out.
    #[arg(long)]
    no_grub: bool,
    /// Compression of initrd.img: zstd (level 19; kernels >= 5.9) or gzip (level 9; any
    /// kernel).
    #[arg(long, value_name = "ALGO", default_value = "zstd", value_parser = ["zstd", "gzip"])]
    compress: String,
    /// The CA, or the server's own certificate to pin (PEM; `rdeploy serve
    /// --tls-self-signed` prints its path): put at /etc/rdeploy/ca.pem, where the agent
    /// takes it as its only trust root and talks to an https:// server only.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default = if cli.verbose > 0 { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RDEPLOY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let result = match cli.command {
        Command::Build(args) => build_main(&args),
        Command::List { file } => list_main(&file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rdeploy-initrd: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Writes `data` to `dir/name` through a temporary file and a rename.
fn write_file(dir: &Path, name: &str, data: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let dest = dir.join(name);
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &dest)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), dest.display()))?;
    Ok(())
}

fn build_main(args: &BuildArgs) -> Result<()> {
    let opts = BuildOptions {
        kernel: args.kernel.clone(),
        agent: args.agent.clone(),
        modules_dir: args.modules_dir.clone(),
        busybox: args.busybox.clone(),
        extra_modules: args.modules.clone(),
        extra_tools: args.tools.clone(),
        without: args.without.clone(),
        no_grub: args.no_grub,
        ca: args.ca.clone(),
    };
    let kernel = std::fs::read(&args.kernel)
        .with_context(|| format!("cannot read the kernel {}", args.kernel.display()))?;
    let mut built = build(&opts).context("cannot build the initramfs")?;
    if !built.manifest.agent_static {
        tracing::warn!(
            agent = %args.agent.display(),
            "the agent is dynamically linked: its libraries were added; build it static (RUSTFLAGS='-C target-feature=+crt-static')"
        );
    }
    let initrd = built
        .image
        .render(if args.compress == "gzip" {
            Compression::Gzip
        } else {
            Compression::Zstd
        })
        .context("cannot render the initramfs")?;
    built.manifest.initrd_bytes = initrd.len() as u64;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    write_file(&args.out, "vmlinuz", &kernel)?;
    write_file(&args.out, "initrd.img", &initrd)?;
    let mut manifest =
        serde_json::to_string_pretty(&built.manifest).context("cannot serialise the manifest")?;
    manifest.push('\n');
    write_file(&args.out, "manifest.json", manifest.as_bytes())?;
    let m = &built.manifest;
    println!(
        "rdeploy-initrd: {}/initrd.img: {:.1} MB ({} members, {:.1} MB unpacked): agent {:.1} MB{}, {} tools, {} libraries, {} modules, busybox with {} applets{}",
        args.out.display(),
        m.initrd_bytes as f64 / 1e6,
        m.members,
        m.content_bytes as f64 / 1e6,
        m.agent_bytes as f64 / 1e6,
        if m.agent_static { " (static)" } else { " (dynamic)" },
        m.tools.len(),
        m.libraries.len(),
        m.modules.len(),
        m.busybox_applets,
        if m.grub.is_empty() { String::new() } else { format!(", GRUB {}", m.grub.len()) },
    );
    println!(
        "rdeploy-initrd: {}/vmlinuz: kernel {} ({:.1} MB)",
        args.out.display(),
        m.kernel_version,
        kernel.len() as f64 / 1e6
    );
    if let Some(ca) = &m.ca {
        println!(
            "rdeploy-initrd: {ca} at {}: the agent trusts only it (boot with rdeploy.server=https://...)",
            rdeploy_initrd::build::CA_FILE
        );
    }
    if !m.modules_absent.is_empty() {
        println!(
            "rdeploy-initrd: modules this kernel does not have: {}",
            m.modules_absent.join(" ")
        );
    }
    Ok(())
}

fn list_main(file: &Path) -> Result<()> {
    let data = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let archive = if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::stream::decode_all(&data[..])
            .with_context(|| format!("{}: bad zstd data", file.display()))?
    } else if data.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&data[..]), &mut out)
            .with_context(|| format!("{}: bad gzip data", file.display()))?;
        out
    } else {
        data
    };
    let image = Image::from_cpio(&archive).with_context(|| format!("{}", file.display()))?;
    let mut out = std::io::stdout().lock();
    for (path, member) in image.members() {
        let line = match member {
            Member::Dir { mode } => format!("d {mode:04o} {path}/"),
            Member::File { mode, data } => format!("f {mode:04o} {path} {}", data.len()),
            Member::Symlink { target } => format!("l 0777 {path} -> {target}"),
            Member::CharDev { mode, major, minor } => {
                format!("c {mode:04o} {path} {major},{minor}")
            }
        };
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    Ok(())
}
