//! The real host: runs commands with a per-command timeout and writes files under a target root.
//!
//! This is the only module of the crate that starts processes or touches the file system.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::host::{Command, CommandOutput, FileWrite, Host, HostError};

/// How long to wait for a killed or finished command's pipes to close before giving up on them
/// (a background process it started may hold them open forever).
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// Runs commands on this machine and writes files under `root`.
///
/// Every command runs in its own process group with stdin closed; at its timeout the whole group
/// gets `SIGKILL`. Files are written under `root` (eDeploy's `/post_rsync`: the agent copies that
/// tree over the installed role tree), through a temporary file renamed into place; paths that
/// are relative, contain `..`, or resolve outside `root` through a symlink are refused.
#[derive(Debug, Clone)]
pub struct SystemHost {
    root: PathBuf,
    accounts_root: Option<PathBuf>,
}

impl SystemHost {
    /// A host writing files under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            accounts_root: None,
        }
    }

    /// Resolves `user:group` names in file owners with `<dir>/etc/passwd` and `<dir>/etc/group`
    /// (the installed tree); without it, names are looked up under the file root. `root` and
    /// numeric ids always work.
    pub fn with_accounts_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.accounts_root = Some(dir.into());
        self
    }

    /// The directory files are written under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Maps an absolute target path to a path under the root, refusing any escape.
    fn resolve(&self, path: &str) -> Result<PathBuf, HostError> {
        let escape = || HostError::PathEscapesRoot {
            path: path.to_owned(),
        };
        let p = Path::new(path);
        if !p.is_absolute() {
            return Err(escape());
        }
        let mut out = self.root.clone();
        for c in p.components() {
            match c {
                Component::RootDir => {}
                Component::Normal(n) => out.push(n),
                Component::CurDir | Component::ParentDir | Component::Prefix(_) => {
                    return Err(escape())
                }
            }
        }
        if out == self.root {
            return Err(escape());
        }
        Ok(out)
    }

    /// Checks that an existing directory, once symlinks are resolved, is still under the root.
    fn check_inside(&self, dir: &Path, path: &str) -> Result<(), HostError> {
        let read_err = |source| HostError::WriteFile {
            path: path.to_owned(),
            source,
        };
        let root = fs::canonicalize(&self.root).map_err(read_err)?;
        let real = fs::canonicalize(dir).map_err(read_err)?;
        if real.starts_with(&root) {
            Ok(())
        } else {
            Err(HostError::PathEscapesRoot {
                path: path.to_owned(),
            })
        }
    }

    fn resolve_owner(&self, owner: &str) -> Result<(u32, u32), HostError> {
        let err = |reason: &str| HostError::Owner {
            owner: owner.to_owned(),
            reason: reason.to_owned(),
        };
        let (user, group) = owner.split_once(':').unwrap_or((owner, owner));
        let base = self.accounts_root.as_deref().unwrap_or(&self.root);
        let uid = lookup_id(base, "etc/passwd", user).ok_or_else(|| err("no such user"))?;
        let gid = lookup_id(base, "etc/group", group).ok_or_else(|| err("no such group"))?;
        Ok((uid, gid))
    }
}

/// A numeric id, `root`, or the third field of the matching line of an account file.
fn lookup_id(base: &Path, file: &str, name: &str) -> Option<u32> {
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    if name == "root" {
        return Some(0);
    }
    let text = fs::read_to_string(base.join(file)).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name)
            .then(|| fields.nth(1)?.parse().ok())
            .flatten()
    })
}

impl Host for SystemHost {
    fn run(&self, command: &Command) -> Result<CommandOutput, HostError> {
        let line = command.line();
        let (program, args) = command.argv.split_first().ok_or(HostError::EmptyCommand)?;
        let mut child = std::process::Command::new(program)
            .args(args.iter().map(OsString::from))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|source| HostError::Spawn {
                command: line.clone(),
                source,
            })?;
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let status =
            wait_until(&mut child, Instant::now() + command.timeout).map_err(|source| {
                HostError::Wait {
                    command: line.clone(),
                    source,
                }
            })?;
        let Some(status) = status else {
            let pid = rustix::process::Pid::from_child(&child);
            // The group may already be gone; the kill of the child itself is the fallback.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            let _ = child.kill();
            let _ = child.wait();
            return Err(HostError::Timeout {
                command: line,
                timeout: command.timeout,
            });
        };
        let code = status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(-1);
        Ok(CommandOutput {
            status: code,
            stdout: collect(stdout),
            stderr: collect(stderr),
        })
    }

    fn write_file(&self, file: &FileWrite) -> Result<(), HostError> {
        let target = self.resolve(&file.path)?;
        let write_err = |source| HostError::WriteFile {
            path: file.path.clone(),
            source,
        };
        let parent = target.parent().ok_or_else(|| HostError::PathEscapesRoot {
            path: file.path.clone(),
        })?;
        fs::create_dir_all(parent).map_err(write_err)?;
        self.check_inside(parent, &file.path)?;
        if fs::symlink_metadata(&target).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(HostError::PathEscapesRoot {
                path: file.path.clone(),
            });
        }
        let owner = file
            .owner
            .as_deref()
            .map(|o| self.resolve_owner(o))
            .transpose()?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!(".{name}.rdeploy-tmp"));
        let result = (|| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(file.mode)
                .open(&tmp)?;
            f.write_all(file.contents.as_bytes())?;
            // The umask may have cleared bits the profile asked for.
            f.set_permissions(fs::Permissions::from_mode(file.mode))?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
            }
            f.sync_all()?;
            fs::rename(&tmp, &target)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(write_err)
    }

    fn read_file(&self, path: &str) -> Result<String, HostError> {
        let target = self.resolve(path)?;
        if let Some(parent) = target.parent().filter(|p| p.exists()) {
            self.check_inside(parent, path)?;
        }
        fs::read_to_string(&target).map_err(|source| HostError::ReadFile {
            path: path.to_owned(),
            source,
        })
    }
}

/// Polls the child until it exits or the deadline passes (`None`).
fn wait_until(
    child: &mut Child,
    deadline: Instant,
) -> io::Result<Option<std::process::ExitStatus>> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Reads a pipe to its end on a thread; the receiver gets the bytes.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
    } else {
        let _ = tx.send(Vec::new());
    }
    rx
}

fn collect(rx: mpsc::Receiver<Vec<u8>>) -> String {
    match rx.recv_timeout(PIPE_GRACE) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => "<output not collected: a background process still holds the pipe>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn runs_a_command_and_collects_its_output() {
        let host = SystemHost::new("/nonexistent");
        let out = host
            .run(&Command::new(
                ["sh", "-c", "echo out; echo err >&2; exit 3"],
                secs(10),
            ))
            .map_err(|e| e.to_string());
        assert_eq!(
            out,
            Ok(CommandOutput {
                status: 3,
                stdout: "out\n".into(),
                stderr: "err\n".into()
            })
        );
    }

    #[test]
    fn kills_a_command_at_its_timeout_with_its_children() {
        let host = SystemHost::new("/nonexistent");
        let start = Instant::now();
        let r = host.run(&Command::new(
            ["sh", "-c", "sleep 30 & sleep 30"],
            Duration::from_millis(300),
        ));
        assert!(matches!(r, Err(HostError::Timeout { .. })), "{r:?}");
        assert!(start.elapsed() < secs(10), "took {:?}", start.elapsed());
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let host = SystemHost::new("/nonexistent");
        let r = host.run(&Command::new(["/nonexistent/prog"], secs(1)));
        assert!(matches!(r, Err(HostError::Spawn { .. })), "{r:?}");
    }

    #[test]
    fn writes_files_under_the_root_with_mode() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let host = SystemHost::new(dir.path());
        host.write_file(&FileWrite {
            path: "/etc/ssh/sshd_config.d/x.conf".into(),
            contents: "hello\n".into(),
            mode: 0o600,
            owner: None,
        })?;
        let p = dir.path().join("etc/ssh/sshd_config.d/x.conf");
        assert_eq!(fs::read_to_string(&p)?, "hello\n");
        assert_eq!(fs::metadata(&p)?.permissions().mode() & 0o7777, 0o600);
        assert_eq!(host.read_file("/etc/ssh/sshd_config.d/x.conf")?, "hello\n");
        Ok(())
    }

    #[test]
    fn refuses_paths_escaping_the_root() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let outside = tempfile::tempdir()?;
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link"))?;
        let host = SystemHost::new(dir.path());
        for path in ["etc/x", "/../x", "/etc/../../x", "/link/x", "/"] {
            let r = host.write_file(&FileWrite {
                path: path.into(),
                contents: String::new(),
                mode: 0o644,
                owner: None,
            });
            assert!(
                matches!(r, Err(HostError::PathEscapesRoot { .. })),
                "{path}: {r:?}"
            );
        }
        assert_eq!(fs::read_dir(outside.path())?.count(), 0);
        Ok(())
    }

    #[test]
    fn owner_names_come_from_the_accounts_root() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        fs::create_dir_all(dir.path().join("etc"))?;
        fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nsvc:x:123:456::/:/bin/false\n",
        )?;
        fs::write(dir.path().join("etc/group"), "root:x:0:\nsvc:x:456:\n")?;
        let host = SystemHost::new("/nonexistent").with_accounts_root(dir.path());
        assert_eq!(host.resolve_owner("svc:svc").ok(), Some((123, 456)));
        assert_eq!(host.resolve_owner("svc").ok(), Some((123, 456)));
        assert_eq!(host.resolve_owner("0:7").ok(), Some((0, 7)));
        assert!(host.resolve_owner("nobody-here").is_err());
        Ok(())
    }
}
