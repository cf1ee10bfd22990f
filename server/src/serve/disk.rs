//! File writes from async handlers (the agents' logs; node records and inventories are in
//! the store): atomic and durable, with group commit.
//!
//! One thread owns these writes. It takes every write waiting (up to [`BATCH`]), writes each
//! to its own temporary file, syncs those files side by side (the file system folds
//! concurrent syncs into few journal commits), renames them into place, and syncs each
//! directory touched once; then it answers them all. Under a boot storm a batch holds dozens
//! of records, so the directory syncs drop from one per file to one per batch. (`syncfs(2)`
//! was tried for the file syncs and rejected: it also flushes every other writer's dirty
//! data on the file system, and got slower whenever something else was writing.)
//!
//! A crash at any point leaves every target either as it was or as written: a write is
//! answered only after its rename is durable. Leftover temporary files start with `.` and
//! end in `.rdeploy-tmp`; readers skip them, and the server removes them when it starts
//! ([`remove_leftovers`]).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use tokio::sync::oneshot;

/// Writes committed together at most.
const BATCH: usize = 512;

/// Threads writing and syncing one batch's files.
const SYNCERS: usize = 32;

struct Job {
    dir: PathBuf,
    name: String,
    content: Vec<u8>,
    done: oneshot::Sender<Result<(), String>>,
}

/// A write that did not happen (the target is as it was).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiskError {
    /// The thread that owns the writes is gone.
    #[error("the disk writer thread is gone")]
    Gone,
    /// The write itself failed (the message names the file and the step).
    #[error("{0}")]
    Write(String),
}

/// The queue every record and inventory write goes through (clones share the one thread).
#[derive(Debug, Clone)]
pub struct Disk {
    jobs: mpsc::Sender<Job>,
}

impl Default for Disk {
    fn default() -> Disk {
        let (jobs, queue) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("rdeploy-disk".into())
            .spawn(move || {
                while let Ok(first) = queue.recv() {
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match queue.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    commit(batch);
                }
            });
        if let Err(e) = spawned {
            // Without the thread every write answers an error (the sender sees a closed
            // queue); the server keeps serving what needs no write.
            tracing::error!(error = %e, "cannot start the disk writer thread");
        }
        Disk { jobs }
    }
}

impl Disk {
    /// Replaces `dir/name` with `text` atomically and durably.
    pub async fn write_atomic(
        &self,
        dir: PathBuf,
        name: String,
        text: String,
    ) -> Result<(), DiskError> {
        self.write_bytes_atomic(dir, name, text.into_bytes()).await
    }

    /// Replaces `dir/name` with `content` atomically and durably.
    pub async fn write_bytes_atomic(
        &self,
        dir: PathBuf,
        name: String,
        content: impl Into<Vec<u8>>,
    ) -> Result<(), DiskError> {
        let (done, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                dir,
                name,
                content: content.into(),
                done,
            })
            .map_err(|_| DiskError::Gone)?;
        answer
            .await
            .map_err(|_| DiskError::Gone)?
            .map_err(DiskError::Write)
    }
}

/// Removes the temporary files an interrupted write left in `dirs` (`.NAME.PID.SEQ` ending
/// in `.rdeploy-tmp`: a server killed between writing one and renaming it). A missing
/// directory is skipped. Returns how many were removed.
pub fn remove_leftovers(dirs: &[PathBuf]) -> usize {
    let mut removed = 0;
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !(name.starts_with('.') && name.ends_with(".rdeploy-tmp")) {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(file = %entry.path().display(), error = %e, "cannot remove a leftover temporary file");
                }
            }
        }
    }
    removed
}

/// Replaces `dir/name` atomically but without syncing (a copy of data kept durably
/// elsewhere, such as eDeploy's `.hw` files beside the store). Blocking.
pub fn write_unsynced(dir: &std::path::Path, name: &str, text: &str) -> std::io::Result<()> {
    let tmp = dir.join(temp_name(name));
    let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, dir.join(name)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn temp_name(name: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!(".{name}.{}.{seq}.rdeploy-tmp", std::process::id())
}

/// Writes `job`'s content to a new temporary file beside its target and syncs it.
fn stage(job: &Job) -> Result<PathBuf, String> {
    let tmp = job.dir.join(temp_name(&job.name));
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(&job.content)?;
        f.sync_data()
    });
    match written {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(format!("cannot write {}: {e}", tmp.display()))
        }
    }
}

/// Stages every job, side by side (up to [`SYNCERS`] threads): the file system folds
/// concurrent syncs into few journal commits. A file that cannot be written or synced fails
/// its write alone.
fn stage_all(batch: Vec<Job>) -> Vec<(Job, Result<PathBuf, String>)> {
    let mut staged: Vec<(Job, Result<PathBuf, String>)> = batch
        .into_iter()
        .map(|job| (job, Err(String::new())))
        .collect();
    let stage_part = |part: &mut [(Job, Result<PathBuf, String>)]| {
        for (job, tmp) in part {
            *tmp = stage(job);
        }
    };
    if staged.len() == 1 {
        stage_part(&mut staged);
        return staged;
    }
    let chunk = staged.len().div_ceil(SYNCERS).max(1);
    std::thread::scope(|scope| {
        for part in staged.chunks_mut(chunk) {
            scope.spawn(move || stage_part(part));
        }
    });
    staged
}

/// Writes a batch: synced temporary files, renames, one sync per directory.
fn commit(batch: Vec<Job>) {
    let mut staged = stage_all(batch);
    let dirs: BTreeSet<PathBuf> = staged
        .iter()
        .filter(|(_, tmp)| tmp.is_ok())
        .map(|(job, _)| job.dir.clone())
        .collect();
    // Renames in arrival order: two writes of one file in a batch end with the later one.
    for (job, tmp) in &mut staged {
        if let Ok(path) = tmp {
            let target = job.dir.join(&job.name);
            if let Err(e) = std::fs::rename(&*path, &target) {
                let _ = std::fs::remove_file(&*path);
                *tmp = Err(format!("cannot rename into {}: {e}", target.display()));
            }
        }
    }
    let dir_errors: Vec<(PathBuf, String)> = dirs
        .iter()
        .filter_map(|dir| {
            let synced = File::open(dir).and_then(|d| d.sync_all());
            synced
                .err()
                .map(|e| (dir.clone(), format!("cannot sync {}: {e}", dir.display())))
        })
        .collect();
    for (job, tmp) in staged {
        let result =
            tmp.map(drop).and_then(
                |()| match dir_errors.iter().find(|(dir, _)| *dir == job.dir) {
                    Some((_, e)) => Err(e.clone()),
                    None => Ok(()),
                },
            );
        let _ = job.done.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_of_writes_lands_whole_and_leaves_no_temporary_file(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        std::fs::create_dir_all(&a)?;
        std::fs::create_dir_all(&b)?;
        let disk = std::sync::Arc::new(Disk::default());
        let mut writes = Vec::new();
        for i in 0..200 {
            let disk = disk.clone();
            let dir = if i % 2 == 0 { a.clone() } else { b.clone() };
            writes.push(tokio::spawn(async move {
                disk.write_atomic(dir, format!("{}.json", i % 50), format!("{i}\n"))
                    .await
            }));
        }
        for w in writes {
            w.await??;
        }
        let mut names: Vec<String> = std::fs::read_dir(&a)?
            .chain(std::fs::read_dir(&b)?)
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?;
        names.sort();
        assert_eq!(names.len(), 50, "{names:?}");
        assert!(names.iter().all(|n| !n.starts_with('.')));
        // Each file holds one whole write of its own name.
        for n in 0..50 {
            let dir = if n % 2 == 0 { &a } else { &b };
            let text = std::fs::read_to_string(dir.join(format!("{n}.json")))?;
            let i: usize = text.trim().parse()?;
            assert_eq!(i % 50, n);
        }
        Ok(())
    }

    #[test]
    fn leftovers_of_a_crash_are_removed_and_nothing_else() -> Result<(), Box<dyn std::error::Error>>
    {
        let tmp = tempfile::tempdir()?;
        let d = tmp.path();
        std::fs::write(d.join(".n1.json.4242.7.rdeploy-tmp"), "half")?;
        std::fs::write(d.join("n1.json"), "{}")?;
        std::fs::write(d.join(".hidden"), "")?;
        std::fs::write(d.join("x.rdeploy-tmp"), "not ours: no leading dot")?;
        let removed = remove_leftovers(&[d.to_owned(), d.join("missing")]);
        assert_eq!(removed, 1);
        let mut left: Vec<String> = std::fs::read_dir(d)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?;
        left.sort();
        assert_eq!(left, [".hidden", "n1.json", "x.rdeploy-tmp"]);
        Ok(())
    }

    #[tokio::test]
    async fn a_write_into_a_missing_directory_fails_alone() -> Result<(), Box<dyn std::error::Error>>
    {
        let tmp = tempfile::tempdir()?;
        let disk = Disk::default();
        let gone = tmp.path().join("missing");
        let (bad, good) = tokio::join!(
            disk.write_atomic(gone, "x.json".into(), "{}".into()),
            disk.write_atomic(tmp.path().to_owned(), "y.json".into(), "{}".into())
        );
        assert!(bad.is_err());
        good?;
        assert_eq!(std::fs::read_to_string(tmp.path().join("y.json"))?, "{}");
        Ok(())
    }
}
