//! The one writer: a thread that owns the config dir's [`Snapshot`] and turns uploads into
//! allocations, many at a time under one lock and one atomic commit (group commit).
//!
//! Requests arrive over a channel. The writer takes the first, drains whatever else is
//! waiting (up to [`MAX_BATCH`]), runs them as one [`Snapshot::batch`] (refresh, plan each
//! in order, one journaled commit), then answers every request of the batch. Everything
//! about files, usability and allocation is the snapshot's (`rdeploy-cmdb`); this module
//! only owns the thread, the batching and the replies. When idle it refreshes every
//! [`IDLE_REFRESH`] so `/healthz` sees an operator's edit.
//!
//! After every batch it publishes the health and the specs uploads are matched against
//! ([`SpecsView`]): uploads are matched before they reach it ([`super::matching`]), and a
//! batch reuses those matches, so the thread every upload waits for spends no time on a
//! costly one.

use rdeploy_cmdb::snapshot::{
    Allocation, CmdbHost, ConfigHealth, FailureOutcome, Prematch, Refusal, SpecsView,
};
use rdeploy_cmdb::Snapshot;
use rdeploy_specs::Inventory;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot::{self, Sender};

/// Most requests handled under one lock.
pub const MAX_BATCH: usize = 512;

/// How often the writer looks at the files when no request comes.
const IDLE_REFRESH: Duration = Duration::from_secs(2);

/// One upload to match and allocate.
#[derive(Debug)]
pub struct UploadJob {
    pub inventory: Arc<Inventory>,
    /// Its matches made before the batch (reused where the specs did not change).
    pub prematch: Option<Prematch>,
    /// The machine (node id): an install it holds is answered again, uncounted (the
    /// snapshot's ledger).
    pub node: Option<String>,
}

/// Why the writer gave no allocation.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Refused by the config (no match, quota, CMDB, broken file): nothing changed.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The batch's commit failed: nothing of it was saved.
    #[error("cannot write the config dir: {0}")]
    Store(String),
    /// The writer is gone (the server is stopping).
    #[error("the server is stopping")]
    Stopped,
}

enum Request {
    Upload(UploadJob, Sender<Result<Allocation, WriteError>>),
    Failure(
        String,
        Option<String>,
        Sender<Result<FailureOutcome, WriteError>>,
    ),
    Finish(String, Sender<Result<bool, WriteError>>),
    Refresh(Sender<ConfigHealth>),
    Hosts(Sender<Vec<CmdbHost>>),
}

/// The handle the HTTP side uses: cheap to clone.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: mpsc::Sender<RequestBox>,
    published: Arc<Mutex<Published>>,
}

/// What the thread shows of the snapshot after each batch.
#[derive(Debug, Default)]
struct Published {
    health: ConfigHealth,
    specs: Arc<SpecsView>,
}

/// `Request` boxed so the handle can be `Debug` without exposing the channel types.
struct RequestBox(Request);

impl std::fmt::Debug for RequestBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Request")
    }
}

impl Writer {
    /// Starts the writer thread over a config dir. `baseline` makes it work like eDeploy's
    /// CGI, for comparison: one request per lock, every file read again for each.
    pub fn start(snapshot: Snapshot, baseline: bool) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::channel();
        let published = Arc::new(Mutex::new(Published {
            health: ConfigHealth {
                config_dir: snapshot.dir().path().display().to_string(),
                ..ConfigHealth::default()
            },
            specs: Arc::default(),
        }));
        let shared = Arc::clone(&published);
        std::thread::Builder::new()
            .name("rdeploy-writer".into())
            .spawn(move || run(snapshot, baseline, rx, shared))?;
        Ok(Writer { tx, published })
    }

    /// Matches and allocates one upload (waits for its batch to commit).
    pub async fn upload(&self, job: UploadJob) -> Result<Allocation, WriteError> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Upload(job, tx))?;
        rx.await.unwrap_or(Err(WriteError::Stopped))
    }

    /// Gives one install back: the one `node` holds, or (anonymous) one of `profile`.
    pub async fn failure(
        &self,
        profile: String,
        node: Option<String>,
    ) -> Result<FailureOutcome, WriteError> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Failure(profile, node, tx))?;
        rx.await.unwrap_or(Err(WriteError::Stopped))
    }

    /// A machine's install finished: it holds no install under way any more. Returns
    /// whether it held one.
    pub async fn finish(&self, node: String) -> Result<bool, WriteError> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Finish(node, tx))?;
        rx.await.unwrap_or(Err(WriteError::Stopped))
    }

    /// Makes the writer look at the files now and returns the config's health.
    pub async fn refresh(&self) -> ConfigHealth {
        let (tx, rx) = oneshot::channel();
        if self.send(Request::Refresh(tx)).is_err() {
            return self.health();
        }
        rx.await.unwrap_or_else(|_| self.health())
    }

    /// The CMDB entries with an `ip`, as the files are now (the writer looks first).
    pub async fn cmdb_hosts(&self) -> Result<Vec<CmdbHost>, WriteError> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Hosts(tx))?;
        rx.await.map_err(|_| WriteError::Stopped)
    }

    /// The health as of the last batch.
    pub fn health(&self) -> ConfigHealth {
        self.published
            .lock()
            .map(|p| p.health.clone())
            .unwrap_or_default()
    }

    /// The specs uploads are matched against, as of the last batch.
    pub fn specs(&self) -> Arc<SpecsView> {
        self.published
            .lock()
            .map(|p| Arc::clone(&p.specs))
            .unwrap_or_default()
    }

    fn send(&self, r: Request) -> Result<(), WriteError> {
        self.tx.send(RequestBox(r)).map_err(|_| WriteError::Stopped)
    }
}

fn run(
    mut snap: Snapshot,
    baseline: bool,
    rx: Receiver<RequestBox>,
    health: Arc<Mutex<Published>>,
) {
    // The files as they are at start (and an interrupted commit finished), so the first
    // uploads are matched ahead of their batch too.
    let _ = snap.batch(|_| ());
    publish(&snap, &health);
    loop {
        let first = match rx.recv_timeout(IDLE_REFRESH) {
            Ok(RequestBox(r)) => r,
            Err(RecvTimeoutError::Timeout) => {
                let _ = snap.batch(|_| ());
                publish(&snap, &health);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut requests = vec![first];
        let max = if baseline { 1 } else { MAX_BATCH };
        while requests.len() < max {
            match rx.try_recv() {
                Ok(RequestBox(r)) => requests.push(r),
                Err(_) => break,
            }
        }
        let span = tracing::debug_span!("batch", size = requests.len());
        let _enter = span.enter();
        run_batch(&mut snap, requests);
        if baseline {
            snap.forget();
        }
        publish(&snap, &health);
    }
}

fn publish(snap: &Snapshot, published: &Mutex<Published>) {
    let health = snap.health();
    let specs = Arc::new(snap.specs_view());
    if let Ok(mut p) = published.lock() {
        p.health = health;
        p.specs = specs;
    }
}

/// What one request of a batch got, before the commit.
enum Outcome {
    Upload(Result<Allocation, Refusal>),
    Failure(Result<FailureOutcome, Refusal>),
    Finish(bool),
    Refresh,
}

/// Runs one batch through the snapshot, then answers every request: with its outcome once
/// the batch is committed, or with the commit's error (nothing of the batch was saved).
fn run_batch(snap: &mut Snapshot, requests: Vec<Request>) {
    let result = snap.batch(|b| {
        requests
            .iter()
            .map(|r| match r {
                Request::Upload(job, _) => Outcome::Upload(b.upload_prematched(
                    &job.inventory,
                    job.node.as_deref(),
                    job.prematch.as_ref(),
                )),
                Request::Failure(profile, node, _) => {
                    Outcome::Failure(b.failure(profile, node.as_deref()))
                }
                Request::Finish(node, _) => Outcome::Finish(b.finish(node)),
                Request::Refresh(_) | Request::Hosts(_) => Outcome::Refresh,
            })
            .collect::<Vec<_>>()
    });
    let outcomes = match result {
        Ok(o) => o,
        Err(e) => {
            let why = e.to_string();
            tracing::error!(error = %why, "commit failed; answering the batch with errors");
            for r in requests {
                fail(r, why.clone(), snap);
            }
            return;
        }
    };
    // A requester that went away (client disconnected) is not an error.
    for (r, o) in requests.into_iter().zip(outcomes) {
        match (r, o) {
            (Request::Upload(_, tx), Outcome::Upload(o)) => {
                let _ = tx.send(o.map_err(WriteError::from));
            }
            (Request::Failure(_, _, tx), Outcome::Failure(o)) => {
                let _ = tx.send(o.map_err(WriteError::from));
            }
            (Request::Finish(_, tx), Outcome::Finish(held)) => {
                let _ = tx.send(Ok(held));
            }
            (Request::Refresh(tx), _) => {
                let _ = tx.send(snap.health());
            }
            (Request::Hosts(tx), _) => {
                let _ = tx.send(snap.cmdb_hosts());
            }
            (r, _) => fail(r, "internal: a reply lost its outcome".into(), snap),
        }
    }
}

/// Answers a request whose batch did not commit (a refresh gets the health as it is).
fn fail(r: Request, why: String, snap: &Snapshot) {
    match r {
        Request::Upload(_, tx) => {
            let _ = tx.send(Err(WriteError::Store(why)));
        }
        Request::Failure(_, _, tx) => {
            let _ = tx.send(Err(WriteError::Store(why)));
        }
        Request::Finish(_, tx) => {
            let _ = tx.send(Err(WriteError::Store(why)));
        }
        Request::Refresh(tx) => {
            let _ = tx.send(snap.health());
        }
        Request::Hosts(tx) => {
            let _ = tx.send(snap.cmdb_hosts());
        }
    }
}
