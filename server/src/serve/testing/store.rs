//! Where test runs and test names are kept: behind [`RunStore`], so they can move to the
//! server's database later. [`FileStore`] keeps them in the data dir today:
//! `testruns/<id>.json` (one record per run), `testruns/<id>.log` (the raw output as
//! uploaded) and `testnames.json`, each written atomically through the disk thread.
//!
//! [`TestRuns`] is the in-memory index over a store: run ids, the moves of each run (one
//! lock, so two requests never move a run twice or hand out one id twice).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::super::disk::{Disk, DiskError};
use super::run::{Refused, RunId, TestRun};

/// A test name PXE Manager's `synctestnames` learnt, and whether its file is still there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestName {
    pub available: bool,
    /// The template's syntax error at the last sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// A read or write of the store that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot save {what}")]
    Save {
        what: String,
        #[source]
        err: DiskError,
    },
    #[error("cannot encode {what}")]
    Encode {
        what: String,
        #[source]
        err: serde_json::Error,
    },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        err: std::io::Error,
    },
}

/// The storage of test runs, their raw outputs and the test names.
pub trait RunStore: Send + Sync + std::fmt::Debug + 'static {
    /// Every run and the test names, at start.
    fn load(&self) -> Result<(Vec<TestRun>, BTreeMap<String, TestName>), StoreError>;
    fn save_run(&self, run: &TestRun) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn save_output(
        &self,
        id: RunId,
        bytes: Vec<u8>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The raw output of a run, if it has one.
    fn output(&self, id: RunId)
        -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;
    fn save_names(
        &self,
        names: &BTreeMap<String, TestName>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Runs and names as files in the data dir.
#[derive(Debug, Clone)]
pub struct FileStore {
    runs: PathBuf,
    names: PathBuf,
    disk: Disk,
}

impl FileStore {
    /// `<data-dir>/testruns/` (created) and `<data-dir>/testnames.json`.
    pub fn open(data_dir: &std::path::Path, disk: Disk) -> std::io::Result<FileStore> {
        let runs = data_dir.join("testruns");
        std::fs::create_dir_all(&runs)?;
        Ok(FileStore {
            runs,
            names: data_dir.join("testnames.json"),
            disk,
        })
    }
}

impl RunStore for FileStore {
    fn load(&self) -> Result<(Vec<TestRun>, BTreeMap<String, TestName>), StoreError> {
        let read_err = |path: &PathBuf| {
            let path = path.clone();
            move |err| StoreError::Read { path, err }
        };
        let mut runs = Vec::new();
        for entry in std::fs::read_dir(&self.runs).map_err(read_err(&self.runs))? {
            let path = entry.map_err(read_err(&self.runs))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let parsed = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str::<TestRun>(&t).map_err(|e| e.to_string()));
            match parsed {
                Ok(run) => runs.push(run),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "test run record skipped")
                }
            }
        }
        let names = match std::fs::read_to_string(&self.names) {
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!(file = %self.names.display(), error = %e, "test names unreadable: run `rdeploy test sync`");
                BTreeMap::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(read_err(&self.names)(e)),
        };
        Ok((runs, names))
    }

    async fn save_run(&self, run: &TestRun) -> Result<(), StoreError> {
        let what = format!("test run {}", run.id);
        let text = serde_json::to_string_pretty(run).map_err(|err| StoreError::Encode {
            what: what.clone(),
            err,
        })? + "\n";
        self.disk
            .write_atomic(self.runs.clone(), format!("{}.json", run.id), text)
            .await
            .map_err(|err| StoreError::Save { what, err })
    }

    async fn save_output(&self, id: RunId, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.disk
            .write_bytes_atomic(self.runs.clone(), format!("{id}.log"), bytes)
            .await
            .map_err(|err| StoreError::Save {
                what: format!("the output of test run {id}"),
                err,
            })
    }

    async fn output(&self, id: RunId) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.runs.join(format!("{id}.log"));
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(StoreError::Read { path, err }),
        }
    }

    async fn save_names(&self, names: &BTreeMap<String, TestName>) -> Result<(), StoreError> {
        let what = "the test names".to_owned();
        let text = serde_json::to_string_pretty(names).map_err(|err| StoreError::Encode {
            what: what.clone(),
            err,
        })? + "\n";
        let dir = self
            .names
            .parent()
            .map(std::path::Path::to_owned)
            .unwrap_or_default();
        self.disk
            .write_atomic(dir, "testnames.json".into(), text)
            .await
            .map_err(|err| StoreError::Save { what, err })
    }
}

/// A change to the runs that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RunsError {
    #[error("no test run {id}")]
    NoSuchRun { id: RunId },
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Default)]
struct Index {
    runs: BTreeMap<RunId, TestRun>,
    names: BTreeMap<String, TestName>,
}

/// The runs and names in memory, over a store.
#[derive(Debug)]
pub struct TestRuns<S: RunStore> {
    store: S,
    index: tokio::sync::Mutex<Index>,
    /// A run sent this long ago with no upload is `lost`.
    pub timeout: Duration,
}

impl<S: RunStore> TestRuns<S> {
    pub fn open(store: S, timeout: Duration) -> Result<TestRuns<S>, StoreError> {
        let (runs, names) = store.load()?;
        Ok(TestRuns {
            store,
            index: tokio::sync::Mutex::new(Index {
                runs: runs.into_iter().map(|r| (r.id, r)).collect(),
                names,
            }),
            timeout,
        })
    }

    pub async fn names(&self) -> BTreeMap<String, TestName> {
        self.index.lock().await.names.clone()
    }

    /// Replaces the test names.
    pub async fn set_names(&self, names: BTreeMap<String, TestName>) -> Result<(), StoreError> {
        let mut index = self.index.lock().await;
        self.store.save_names(&names).await?;
        index.names = names;
        Ok(())
    }

    /// Queues `tests` for `system`, in order, with new ids.
    pub async fn queue(
        &self,
        system: &str,
        tests: &[String],
        now: SystemTime,
    ) -> Result<Vec<TestRun>, StoreError> {
        let mut index = self.index.lock().await;
        let first = index.runs.keys().next_back().map_or(1, |id| id + 1);
        let mut queued = Vec::new();
        for (id, test) in (first..).zip(tests) {
            let run = TestRun::queued(id, system, test, now);
            self.store.save_run(&run).await?;
            index.runs.insert(run.id, run.clone());
            queued.push(run);
        }
        Ok(queued)
    }

    /// Runs matching `keep`, oldest first.
    pub async fn select(&self, keep: impl Fn(&TestRun) -> bool) -> Vec<TestRun> {
        self.index
            .lock()
            .await
            .runs
            .values()
            .filter(|r| keep(r))
            .cloned()
            .collect()
    }

    pub async fn get(&self, id: RunId) -> Option<TestRun> {
        self.index.lock().await.runs.get(&id).cloned()
    }

    /// Applies `change` to run `id` and saves the result (a refusal changes nothing).
    pub async fn change(
        &self,
        id: RunId,
        change: impl FnOnce(&TestRun) -> Result<TestRun, Refused>,
    ) -> Result<TestRun, RunsError> {
        let mut index = self.index.lock().await;
        let run = index.runs.get(&id).ok_or(RunsError::NoSuchRun { id })?;
        let changed = change(run)?;
        self.store.save_run(&changed).await?;
        index.runs.insert(id, changed.clone());
        Ok(changed)
    }

    /// Marks `lost` every run sent more than the timeout ago.
    pub async fn sweep(&self, now: SystemTime) -> Result<usize, StoreError> {
        let mut index = self.index.lock().await;
        let lost: Vec<TestRun> = index
            .runs
            .values()
            .filter_map(|r| r.expired(self.timeout, now))
            .collect();
        for run in &lost {
            self.store.save_run(run).await?;
            tracing::warn!(run = run.id, system = %run.system, test = %run.test, "test run lost: no output within the test timeout");
            index.runs.insert(run.id, run.clone());
        }
        Ok(lost.len())
    }

    pub async fn save_output(&self, id: RunId, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.store.save_output(id, bytes).await
    }

    pub async fn output(&self, id: RunId) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.output(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::testing::parse::parse;
    use crate::serve::testing::run::RunState;

    #[tokio::test]
    async fn runs_and_names_survive_a_reopen() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let disk = Disk::default();
        let now = SystemTime::now();
        let runs = TestRuns::open(
            FileStore::open(tmp.path(), disk.clone())?,
            Duration::from_secs(60),
        )?;
        let names = BTreeMap::from([(
            "hello".to_owned(),
            TestName {
                available: true,
                problem: None,
            },
        )]);
        runs.set_names(names.clone()).await?;
        let q = runs
            .queue("s1", &["hello".into(), "hello".into()], now)
            .await?;
        assert_eq!(q.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 2]);
        let sent = runs.change(1, |r| r.sent("mac m", now)).await?;
        assert_eq!(sent.state, RunState::Running);
        assert!(runs.change(1, |r| r.sent("mac m", now)).await.is_err());
        assert!(runs.change(9, |r| r.sent("mac m", now)).await.is_err());
        runs.save_output(1, b"E: bad\n".to_vec()).await?;
        runs.change(1, |r| r.uploaded(parse("E: bad\n"), 7, Some(0), now))
            .await?;

        let again = TestRuns::open(FileStore::open(tmp.path(), disk)?, Duration::from_secs(60))?;
        assert_eq!(again.names().await, names);
        let all = again.select(|_| true).await;
        let states: Vec<RunState> = all.iter().map(|r| r.state).collect();
        assert_eq!(states, [RunState::Done, RunState::Queued]);
        assert_eq!(again.output(1).await?, Some(b"E: bad\n".to_vec()));
        assert_eq!(again.output(2).await?, None);
        let q = again.queue("s2", &["hello".into()], now).await?;
        assert_eq!(q[0].id, 3);
        let late = now + Duration::from_secs(3600);
        again.change(3, |r| r.sent("x", now)).await?;
        assert_eq!(again.sweep(late).await?, 1);
        assert_eq!(again.get(3).await.map(|r| r.state), Some(RunState::Lost));
        Ok(())
    }
}
