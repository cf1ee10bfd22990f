//! The config dir on disk: the only place this crate does IO.
//!
//! Every change happens inside [`ConfigDir::transaction`], which holds an exclusive
//! `fd-lock` on `<dir>/.rdeploy.lock` for the whole read-modify-write, so concurrent
//! `rdeploy match` processes (or a server and an operator's CLI) never hand out the same
//! CMDB entry.
//!
//! A commit that changes several files (the quota in `state` *and* the entry in the CMDB)
//! is atomic through a journal:
//!
//! 1. each new content is written to `.<name>.rdeploy-new` and fsynced;
//! 2. the journal `.rdeploy-journal` naming those files is written (temp file, fsync,
//!    rename, fsync of the directory) — this is the commit point;
//! 3. each new file is renamed over its target, the directory fsynced, the journal removed.
//!
//! A process killed before step 2 leaves the old files (the stray `.rdeploy-new` files are
//! removed by the next transaction); killed after it, the next transaction finishes the
//! renames. Either way readers see all of the change or none of it.

use crate::state::State;
use rdeploy_specs::Problems;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const LOCK_FILE: &str = ".rdeploy.lock";
const JOURNAL: &str = ".rdeploy-journal";
const NEW_SUFFIX: &str = ".rdeploy-new";
/// Temporary files of single-file writes (unique per writer).
const TMP_SUFFIX: &str = ".rdeploy-tmp";

/// Errors of the store, each naming the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {problems}", path.display())]
    Parse { path: PathBuf, problems: Problems },
    #[error("{}: the state file is missing (it lists the profiles to try, e.g. [('hp', 4), ('vm', '*')])", path.display())]
    NoState { path: PathBuf },
    #[error("{}: the journal of an interrupted commit cannot be read: {reason}", path.display())]
    Journal { path: PathBuf, reason: String },
    /// The shared store of the mutable half failed (`crate::shared`; the message names it).
    #[error("{0}")]
    Shared(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A config dir (`state`, `<profile>.specs`, `<profile>.cmdb`, `<profile>.configure`).
///
/// The lock file is opened by the first transaction and kept open (clones share it): a
/// server out of descriptors can still take the lock. It is opened again if someone
/// replaced it.
#[derive(Clone, Debug)]
pub struct ConfigDir {
    dir: PathBuf,
    lock: Arc<Mutex<Option<LockFile>>>,
}

/// The open lock file and the inode it was opened at.
struct LockFile {
    lock: fd_lock::RwLock<File>,
    ino: u64,
}

impl std::fmt::Debug for LockFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LockFile(inode {})", self.ino)
    }
}

impl ConfigDir {
    pub fn new(dir: impl Into<PathBuf>) -> ConfigDir {
        ConfigDir {
            dir: dir.into(),
            lock: Arc::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Path of a file in the dir.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Runs `f` with the dir locked exclusively; finishes an interrupted commit first.
    pub fn transaction<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let lock_path = self.file(LOCK_FILE);
        let mut held = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let on_disk = fs::metadata(&lock_path).ok().map(|m| m.ino());
        let lock = match held.take() {
            Some(open) if Some(open.ino) == on_disk => held.insert(open),
            _ => {
                let file = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .read(true)
                    .write(true)
                    .open(&lock_path)
                    .map_err(io_err(&lock_path))?;
                let ino = file.metadata().map_err(io_err(&lock_path))?.ino();
                held.insert(LockFile {
                    lock: fd_lock::RwLock::new(file),
                    ino,
                })
            }
        };
        let _guard = lock.lock.write().map_err(io_err(&lock_path))?;
        recover(&self.dir)?;
        let mut tx = Transaction { dir: self };
        f(&mut tx)
    }

    /// Reads a file of the dir; `None` when it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<String>, StoreError> {
        let path = self.file(name);
        match fs::read_to_string(&path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Io { path, source: e }),
        }
    }

    /// Reads and parses `state`.
    pub fn read_state(&self) -> Result<State, StoreError> {
        let path = self.file("state");
        let text = self
            .read("state")?
            .ok_or(StoreError::NoState { path: path.clone() })?;
        State::parse(&text).map_err(|problems| StoreError::Parse { path, problems })
    }

    /// Whether an interrupted commit is waiting to be finished.
    pub fn has_pending_commit(&self) -> bool {
        self.file(JOURNAL).exists()
    }
}

/// The locked dir: files are written through [`Transaction::commit`].
#[derive(Debug)]
pub struct Transaction<'a> {
    dir: &'a ConfigDir,
}

impl Transaction<'_> {
    pub fn dir(&self) -> &ConfigDir {
        self.dir
    }

    /// Replaces files atomically as one change (see the module doc).
    pub fn commit(&mut self, writes: &[(String, String)]) -> Result<(), StoreError> {
        let writes: Vec<Write> = writes
            .iter()
            .map(|(n, c)| Write::Replace(n.clone(), c.clone()))
            .collect();
        commit(&self.dir.dir, &writes)
    }

    /// Replaces and appends to files atomically as one change.
    pub fn commit_all(&mut self, writes: &[Write]) -> Result<(), StoreError> {
        commit(&self.dir.dir, writes)
    }
}

fn new_name(target: &str) -> String {
    format!(".{target}{NEW_SUFFIX}")
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Writes `content` to `path` durably, keeping the target's permissions if it exists.
fn write_synced(path: &Path, content: &[u8], like: &Path) -> Result<(), StoreError> {
    let mut f = File::create(path).map_err(io_err(path))?;
    f.write_all(content).map_err(io_err(path))?;
    if let Ok(meta) = fs::metadata(like) {
        f.set_permissions(meta.permissions())
            .map_err(io_err(path))?;
    }
    f.sync_all().map_err(io_err(path))
}

/// Replaces one file atomically (temp, fsync, rename, fsync dir). Safe to call from
/// several threads or processes for the same file: each writer has its own temporary
/// file, and the last rename wins.
pub fn write_atomic(dir: &Path, name: &str, content: &str) -> Result<(), StoreError> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let target = dir.join(name);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{seq}{TMP_SUFFIX}", std::process::id()));
    let result = write_synced(&tmp, content.as_bytes(), &target)
        .and_then(|()| fs::rename(&tmp, &target).map_err(io_err(&target)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir)
}

/// One file change of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// The file's whole new content.
    Replace(String, String),
    /// Text added at the end of the file (created if missing).
    Append(String, String),
}

impl Write {
    fn name(&self) -> &str {
        match self {
            Write::Replace(n, _) | Write::Append(n, _) => n,
        }
    }

    fn content(&self) -> &str {
        match self {
            Write::Replace(_, c) | Write::Append(_, c) => c,
        }
    }
}

fn commit(dir: &Path, writes: &[Write]) -> Result<(), StoreError> {
    match writes {
        [] => Ok(()),
        [Write::Replace(name, content)] => write_atomic(dir, name, content),
        _ => {
            // Every staged file is written and synced on its own thread: the file system
            // folds concurrent syncs into few journal commits, so a batch that touches
            // `state`, several CMDBs and the ledger waits about one sync, not one per file.
            let staged: Vec<Result<(), StoreError>> = std::thread::scope(|scope| {
                let handles: Vec<_> = writes
                    .iter()
                    .map(|w| {
                        scope.spawn(move || {
                            let name = w.name();
                            write_synced(
                                &dir.join(new_name(name)),
                                w.content().as_bytes(),
                                &dir.join(name),
                            )
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(StoreError::Journal {
                                path: dir.to_owned(),
                                reason: "a staging thread panicked".into(),
                            })
                        })
                    })
                    .collect()
            });
            if let Some(Err(e)) = staged.into_iter().find(Result::is_err) {
                for w in writes {
                    let _ = fs::remove_file(dir.join(new_name(w.name())));
                }
                return Err(e);
            }
            let mut journal = Vec::with_capacity(writes.len());
            for w in writes {
                let name = w.name().to_owned();
                let target = dir.join(&name);
                journal.push(match w {
                    Write::Replace(..) => journal::Entry::Replace(name),
                    Write::Append(..) => {
                        let offset = match fs::metadata(&target) {
                            Ok(m) => m.len(),
                            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
                            Err(e) => return Err(io_err(&target)(e)),
                        };
                        journal::Entry::Append { name, offset }
                    }
                });
            }
            write_atomic(dir, JOURNAL, &journal::to_text(&journal))?;
            finish(dir, &journal)
        }
    }
}

/// Puts every journaled change in place, then drops the journal. Idempotent: an append
/// first cuts its file back to the length it had, so a second run adds nothing twice.
fn finish(dir: &Path, journal: &[journal::Entry]) -> Result<(), StoreError> {
    for entry in journal {
        match entry {
            journal::Entry::Replace(name) => {
                let tmp = dir.join(new_name(name));
                if tmp.exists() {
                    fs::rename(&tmp, dir.join(name)).map_err(io_err(&tmp))?;
                }
            }
            journal::Entry::Append { name, offset } => {
                let tmp = dir.join(new_name(name));
                let chunk = match fs::read(&tmp) {
                    Ok(c) => c,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err(&tmp)(e)),
                };
                let target = dir.join(name);
                let mut f = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&target)
                    .map_err(io_err(&target))?;
                f.set_len(*offset).map_err(io_err(&target))?;
                use std::io::Seek;
                f.seek(io::SeekFrom::End(0)).map_err(io_err(&target))?;
                f.write_all(&chunk).map_err(io_err(&target))?;
                f.sync_data().map_err(io_err(&target))?;
                fs::remove_file(&tmp).map_err(io_err(&tmp))?;
            }
        }
    }
    sync_dir(dir)?;
    let j = dir.join(JOURNAL);
    fs::remove_file(&j).map_err(io_err(&j))?;
    sync_dir(dir)
}

/// Finishes an interrupted commit, or removes the leftovers of one that never committed.
fn recover(dir: &Path) -> Result<(), StoreError> {
    let jpath = dir.join(JOURNAL);
    if let Some(text) = match fs::read_to_string(&jpath) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(StoreError::Io {
                path: jpath,
                source: e,
            })
        }
    } {
        let entries = journal::from_text(&text).map_err(|reason| StoreError::Journal {
            path: jpath.clone(),
            reason,
        })?;
        tracing::warn!(dir = %dir.display(), files = entries.len(), "finishing an interrupted commit");
        finish(dir, &entries)?;
    }
    // Leftovers of a commit that died before its commit point.
    if let Ok(read) = fs::read_dir(dir) {
        for entry in read.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && (name.ends_with(NEW_SUFFIX) || name.ends_with(TMP_SUFFIX)) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    Ok(())
}

/// The journal format: one change per line, `replace NAME` or `append OFFSET NAME` (v2);
/// v1 journals (a bare file name per line: a replacement) are still read. Names never
/// contain a newline or a `/`: they are `state`, `<profile>.<ext>` with checked profile
/// names, or the ledger's hidden file.
mod journal {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Entry {
        Replace(String),
        Append { name: String, offset: u64 },
    }

    pub fn to_text(entries: &[Entry]) -> String {
        let mut s = String::from("rdeploy-journal v2\n");
        for e in entries {
            match e {
                Entry::Replace(name) => s.push_str(&format!("replace {name}\n")),
                Entry::Append { name, offset } => {
                    s.push_str(&format!("append {offset} {name}\n"));
                }
            }
        }
        s.push_str("end\n");
        s
    }

    pub fn from_text(text: &str) -> Result<Vec<Entry>, String> {
        let mut lines = text.lines();
        let v2 = match lines.next() {
            Some("rdeploy-journal v1") => false,
            Some("rdeploy-journal v2") => true,
            _ => return Err("unknown journal format".into()),
        };
        let mut out = Vec::new();
        for line in lines {
            if line == "end" {
                return Ok(out);
            }
            let entry = if !v2 {
                Entry::Replace(line.to_owned())
            } else if let Some(name) = line.strip_prefix("replace ") {
                Entry::Replace(name.to_owned())
            } else if let Some(rest) = line.strip_prefix("append ") {
                let (offset, name) = rest
                    .split_once(' ')
                    .ok_or_else(|| format!("bad entry '{line}'"))?;
                let offset = offset
                    .parse()
                    .map_err(|_| format!("bad offset in '{line}'"))?;
                Entry::Append {
                    name: name.to_owned(),
                    offset,
                }
            } else {
                return Err(format!("bad entry '{line}'"));
            };
            let name = match &entry {
                Entry::Replace(n) | Entry::Append { name: n, .. } => n,
            };
            if name.is_empty() || name.contains('/') {
                return Err(format!("bad entry '{line}'"));
            }
            out.push(entry);
        }
        Err("truncated journal".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock_inode(dir: &ConfigDir) -> Option<u64> {
        dir.lock.lock().ok()?.as_ref().map(|l| l.ino)
    }

    #[test]
    fn the_lock_file_stays_open_across_transactions_and_is_reopened_when_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ConfigDir::new(tmp.path());
        let clone = dir.clone();
        dir.transaction(|_| Ok::<_, StoreError>(())).unwrap();
        let first = lock_inode(&dir);
        assert!(first.is_some());
        clone.transaction(|_| Ok::<_, StoreError>(())).unwrap();
        assert_eq!(lock_inode(&dir), first, "clones share the open lock file");
        // Someone replaced the lock file: a lock on the old one would exclude nobody.
        let path = tmp.path().join(LOCK_FILE);
        fs::write(tmp.path().join("other"), "").unwrap();
        fs::rename(tmp.path().join("other"), &path).unwrap();
        dir.transaction(|_| Ok::<_, StoreError>(())).unwrap();
        let now = fs::metadata(&path).unwrap().ino();
        assert_eq!(lock_inode(&dir), Some(now));
        assert_ne!(Some(now), first);
    }

    #[test]
    fn multi_file_commit_is_all_or_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ConfigDir::new(tmp.path());
        fs::write(tmp.path().join("state"), "[('a', 1)]").unwrap();
        fs::write(tmp.path().join("a.cmdb"), "[{'ip': '1'}]").unwrap();
        // Simulate a crash after the commit point: new files and journal, no renames.
        for (n, c) in [
            ("state", "[('a', 0)]\n"),
            ("a.cmdb", "[{'ip': '1', 'used': 1}]\n"),
        ] {
            fs::write(tmp.path().join(new_name(n)), c).unwrap();
        }
        let journal = vec![
            journal::Entry::Replace("state".into()),
            journal::Entry::Replace("a.cmdb".into()),
        ];
        fs::write(tmp.path().join(JOURNAL), journal::to_text(&journal)).unwrap();
        assert!(dir.has_pending_commit());
        dir.transaction(|_| Ok::<_, StoreError>(())).unwrap();
        assert_eq!(
            fs::read_to_string(tmp.path().join("state")).unwrap(),
            "[('a', 0)]\n"
        );
        assert_eq!(
            fs::read_to_string(tmp.path().join("a.cmdb")).unwrap(),
            "[{'ip': '1', 'used': 1}]\n"
        );
        assert!(!dir.has_pending_commit());
    }

    #[test]
    fn leftovers_before_the_commit_point_are_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ConfigDir::new(tmp.path());
        fs::write(tmp.path().join("state"), "[('a', 1)]").unwrap();
        fs::write(tmp.path().join(new_name("state")), "[('a', 0)]").unwrap();
        dir.transaction(|_| Ok::<_, StoreError>(())).unwrap();
        assert_eq!(
            fs::read_to_string(tmp.path().join("state")).unwrap(),
            "[('a', 1)]"
        );
        assert!(!tmp.path().join(new_name("state")).exists());
    }

    #[test]
    fn an_interrupted_append_is_finished_once() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let dir = ConfigDir::new(tmp.path());
        fs::write(tmp.path().join("log"), "a\n")?;
        fs::write(tmp.path().join("state"), "[('a', 1)]")?;
        // A crash after the commit point: the staged chunk and the journal, nothing applied.
        fs::write(tmp.path().join(new_name("log")), "b\n")?;
        fs::write(tmp.path().join(new_name("state")), "[('a', 0)]\n")?;
        let journal = vec![
            journal::Entry::Append {
                name: "log".into(),
                offset: 2,
            },
            journal::Entry::Replace("state".into()),
        ];
        fs::write(tmp.path().join(JOURNAL), journal::to_text(&journal))?;
        // The chunk was even applied once before the crash (a crash during `finish`).
        fs::write(tmp.path().join("log"), "a\nb\n")?;
        dir.transaction(|_| Ok::<_, StoreError>(()))?;
        assert_eq!(fs::read_to_string(tmp.path().join("log"))?, "a\nb\n");
        assert_eq!(
            fs::read_to_string(tmp.path().join("state"))?,
            "[('a', 0)]\n"
        );
        assert!(!dir.has_pending_commit());
        // A normal commit appends and replaces together.
        dir.transaction(|tx| {
            tx.commit_all(&[
                Write::Append("log".into(), "c\n".into()),
                Write::Replace("state".into(), "[('a', 1)]\n".into()),
            ])
        })?;
        assert_eq!(fs::read_to_string(tmp.path().join("log"))?, "a\nb\nc\n");
        Ok(())
    }

    #[test]
    fn commit_writes_every_file_and_keeps_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = ConfigDir::new(tmp.path());
        fs::write(tmp.path().join("state"), "old").unwrap();
        fs::set_permissions(tmp.path().join("state"), fs::Permissions::from_mode(0o640)).unwrap();
        dir.transaction(|tx| {
            tx.commit(&[
                ("state".into(), "new".into()),
                ("x.cmdb".into(), "[]".into()),
            ])
        })
        .unwrap();
        assert_eq!(fs::read_to_string(tmp.path().join("state")).unwrap(), "new");
        assert_eq!(fs::read_to_string(tmp.path().join("x.cmdb")).unwrap(), "[]");
        let mode = fs::metadata(tmp.path().join("state"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
        assert!(!dir.has_pending_commit());
    }

    #[test]
    fn concurrent_single_file_writes_do_not_collide() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        write_atomic(&dir, "node.json", &format!("writer {t} round {i}\n"))
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = fs::read_to_string(dir.join("node.json")).unwrap();
        assert!(
            text.starts_with("writer ") && text.ends_with(" round 49\n"),
            "{text}"
        );
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec!["node.json".to_owned()],
            "no temporary file left"
        );
    }

    #[test]
    fn journal_parse_rejects_garbage() {
        assert!(journal::from_text("rdeploy-journal v1\nstate\n").is_err());
        assert!(journal::from_text("x").is_err());
        assert!(journal::from_text("rdeploy-journal v1\n../x\nend\n").is_err());
    }
}
