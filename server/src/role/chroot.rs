//! Running commands inside a tree being built: `unshare --mount` then `chroot`, with `/proc`,
//! `/sys` (read-only), a private `/dev` (a few device nodes bound from the host, a new
//! `devpts`) and a `/run` tmpfs mounted in a mount namespace of their own. The mounts die with
//! the command, whatever happens to the build (no mount is ever left behind in the tree).

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Mounts the kernel file systems in `$1` (the tree), then `exec chroot "$1" "$@"`.
const SETUP: &str = r#"set -eu
t=$1; shift
mount -t proc proc "$t/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$t/sys"
mount -t tmpfs -o mode=0755,nosuid,size=16m rdeploy-dev "$t/dev"
for d in null zero full random urandom tty; do
  : > "$t/dev/$d"
  mount --bind "/dev/$d" "$t/dev/$d"
done
mkdir "$t/dev/pts" "$t/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$t/dev/pts"
ln -s pts/ptmx "$t/dev/ptmx"
ln -s /proc/self/fd "$t/dev/fd"
ln -s /proc/self/fd/0 "$t/dev/stdin"
ln -s /proc/self/fd/1 "$t/dev/stdout"
ln -s /proc/self/fd/2 "$t/dev/stderr"
mount -t tmpfs -o mode=0755,nosuid,nodev rdeploy-run "$t/run"
mkdir -p "$t/run/lock"
exec chroot "$t" "$@"
"#;

/// Where commands run: a tree and the environment they get (nothing else of the caller's).
#[derive(Debug, Clone)]
pub struct Chroot<'a> {
    /// The tree.
    pub tree: &'a Path,
    /// The whole environment of the commands.
    pub env: Vec<(String, String)>,
}

impl Chroot<'_> {
    /// Makes sure `proc`, `sys`, `dev` and `run` are directories of the tree (not symlinks
    /// that would send a mount elsewhere).
    pub fn prepare(&self) -> Result<()> {
        for d in ["proc", "sys", "dev", "run"] {
            let p = self.tree.join(d);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => bail!("{} is not a directory: cannot mount on it", p.display()),
                Err(_) => std::fs::create_dir(&p)
                    .with_context(|| format!("cannot create {}", p.display()))?,
            }
        }
        Ok(())
    }

    fn command(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("unshare");
        c.args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            SETUP,
        ])
        .arg("rdeploy-chroot")
        .arg(self.tree)
        .args(argv)
        .env_clear()
        .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Runs `argv` in the tree; its output goes to the console. A failure names the command.
    pub fn run(&self, argv: &[&str]) -> Result<()> {
        let status = self
            .command(argv)
            .stdin(Stdio::null())
            .status()
            .context("cannot run unshare (util-linux)")?;
        if !status.success() {
            bail!("`{}` in the tree failed ({status})", argv.join(" "));
        }
        Ok(())
    }

    /// Runs `argv` in the tree with `input` on its standard input.
    pub fn run_with_input(&self, argv: &[&str], input: &[u8]) -> Result<()> {
        let mut child = self
            .command(argv)
            .stdin(Stdio::piped())
            .spawn()
            .context("cannot run unshare (util-linux)")?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(input)
                .with_context(|| format!("cannot feed `{}`", argv.join(" ")))?;
        }
        let status = child.wait()?;
        if !status.success() {
            bail!("`{}` in the tree failed ({status})", argv.join(" "));
        }
        Ok(())
    }
}
