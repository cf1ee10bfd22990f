//! The store: everything the server keeps besides the eDeploy config dir — node records
//! (with their events and next boot), the inventories they sent, the index of their uploaded
//! logs, and the registered systems — behind one [`Backend`] trait.
//!
//! One thread owns the backend ([`Store`] is the handle). It takes every change waiting (up
//! to [`BATCH`]), applies them in one transaction, and answers them all once it is durable:
//! a storm of uploads costs a handful of syncs, not one per node (group commit, like the
//! config writer's). Reads happen once, at start ([`Store::open`] loads every record; the
//! in-memory maps of `nodes.rs` and `systems.rs` serve reads after that).
//!
//! The default backend is SQLite (`<data-dir>/rdeploy.db`, WAL, `synchronous=FULL`: a
//! change is answered only when its transaction is on disk). Its schema is versioned
//! (`PRAGMA user_version`) and migrated at start; a data dir of the earlier file layout
//! (`nodes/<id>.json`, `systems.json`) is imported into it on first start, in one
//! transaction, and the files are left where they were (renamed `*.imported`).

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use tokio::sync::oneshot;

/// Changes committed together at most.
const BATCH: usize = 1024;

/// One change to the store.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A node record's new version (JSON).
    Node { id: String, record: String },
    /// The inventory a node sent (eDeploy's Python-literal form).
    Inventory { node: String, text: String },
    /// A node forgotten: its record and its inventory leave the store.
    ForgetNode { id: String },
    /// A registered system's new version (JSON), or its removal.
    System {
        name: String,
        record: Option<String>,
    },
    /// An uploaded log file of a node (the file itself stays under `nodes/`).
    Log {
        node: String,
        file: String,
        bytes: u64,
    },
}

/// What the store holds at start.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Node records (JSON), by id.
    pub nodes: Vec<(String, String)>,
    /// Registered systems (JSON), by name.
    pub systems: Vec<(String, String)>,
}

/// A store that failed (nothing of the failed transaction was kept).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The thread that owns the store is gone.
    #[error("the store's thread is gone")]
    Gone,
    /// The backend failed (the message says which step).
    #[error("store: {0}")]
    Backend(String),
}

/// A database the store can run on.
pub trait Backend: Send + 'static {
    /// Everything to load at start.
    fn load(&mut self) -> Result<Loaded, String>;
    /// Applies changes in one transaction, durably.
    fn commit(&mut self, changes: &[Change]) -> Result<(), String>;
    /// The inventory a node sent last, if any.
    fn inventory(&mut self, node: &str) -> Result<Option<String>, String>;
}

/// The handle: cheap to clone; every clone talks to the one thread.
#[derive(Debug, Clone)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
}

enum Job {
    Commit(Change, oneshot::Sender<Result<(), StoreError>>),
    Inventory(String, oneshot::Sender<Result<Option<String>, StoreError>>),
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl Store {
    /// Loads the backend's content, then starts the thread that owns it.
    pub fn open(mut backend: impl Backend) -> anyhow::Result<(Store, Loaded)> {
        let loaded = backend.load().map_err(anyhow::Error::msg)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("rdeploy-store".into())
            .spawn(move || run(backend, &queue))?;
        Ok((Store { jobs }, loaded))
    }

    /// Applies one change; answers once it is durable (with the changes of its batch).
    pub async fn commit(&self, change: Change) -> Result<(), StoreError> {
        let (done, answer) = oneshot::channel();
        self.jobs
            .send(Job::Commit(change, done))
            .map_err(|_| StoreError::Gone)?;
        answer.await.map_err(|_| StoreError::Gone)?
    }

    /// The inventory a node sent last.
    pub async fn inventory(&self, node: &str) -> Result<Option<String>, StoreError> {
        let (done, answer) = oneshot::channel();
        self.jobs
            .send(Job::Inventory(node.to_owned(), done))
            .map_err(|_| StoreError::Gone)?;
        answer.await.map_err(|_| StoreError::Gone)?
    }
}

fn run(mut backend: impl Backend, queue: &mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Commit(change, done) => batch.push((change, done)),
                Job::Inventory(node, done) => {
                    let _ = done.send(backend.inventory(&node).map_err(StoreError::Backend));
                }
            }
            if batch.len() < BATCH {
                next = queue.try_recv().ok();
            }
        }
        if batch.is_empty() {
            continue;
        }
        let changes: Vec<Change> = batch.iter().map(|(c, _)| c.clone()).collect();
        let result = backend.commit(&changes).map_err(StoreError::Backend);
        if let Err(e) = &result {
            tracing::error!(error = %e, changes = changes.len(), "store commit failed");
        }
        for (_, done) in batch {
            let _ = done.send(result.clone());
        }
    }
}

/// SQLite in the data dir.
#[derive(Debug)]
pub struct Sqlite {
    conn: rusqlite::Connection,
    data_dir: PathBuf,
}

/// The schema, one script per version (`PRAGMA user_version` is the number applied).
const MIGRATIONS: &[&str] = &[
    // 1: records as JSON documents, keyed; the inventory and the log index beside them.
    "CREATE TABLE nodes (id TEXT PRIMARY KEY, record TEXT NOT NULL);
     CREATE TABLE inventories (node TEXT PRIMARY KEY, text TEXT NOT NULL);
     CREATE TABLE systems (name TEXT PRIMARY KEY, record TEXT NOT NULL);
     CREATE TABLE logs (node TEXT NOT NULL, file TEXT NOT NULL, bytes INTEGER NOT NULL,
                        PRIMARY KEY (node, file));",
];

impl Sqlite {
    /// Opens (creating) `<data-dir>/rdeploy.db`, migrates it, and imports the earlier file
    /// layout on first start.
    pub fn open(data_dir: &Path) -> anyhow::Result<Sqlite> {
        use anyhow::Context as _;
        let path = data_dir.join("rdeploy.db");
        let mut conn = rusqlite::Connection::open(&path)
            .with_context(|| format!("cannot open the database {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|()| conn.pragma_update(None, "synchronous", "FULL"))
            .and_then(|()| conn.pragma_update(None, "busy_timeout", 5000))
            .with_context(|| format!("{}: cannot set up the database", path.display()))?;
        let version: usize = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .with_context(|| format!("{}: cannot read the schema version", path.display()))?;
        anyhow::ensure!(
            version <= MIGRATIONS.len(),
            "{}: schema version {version} is newer than this rdeploy knows ({}): use a newer rdeploy",
            path.display(),
            MIGRATIONS.len()
        );
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)
                .with_context(|| format!("{}: migration {} failed", path.display(), i + 1))?;
            tx.pragma_update(None, "user_version", i + 1)?;
            if i == 0 {
                import_files(&tx, data_dir)?;
            }
            tx.commit()
                .with_context(|| format!("{}: migration {} failed", path.display(), i + 1))?;
            if i == 0 {
                mark_imported(data_dir);
            }
            tracing::info!(db = %path.display(), version = i + 1, "database schema migrated");
        }
        Ok(Sqlite {
            conn,
            data_dir: data_dir.to_owned(),
        })
    }
}

/// Reads the file layout of earlier versions (`nodes/<id>.json`, `systems.json`) into the
/// new database (inside its first migration's transaction).
fn import_files(tx: &rusqlite::Transaction<'_>, data_dir: &Path) -> anyhow::Result<()> {
    let mut nodes = 0;
    if let Ok(read) = std::fs::read_dir(data_dir.join("nodes")) {
        for entry in read.flatten() {
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(text) if serde_json::from_str::<serde_json::Value>(&text).is_ok() => {
                    tx.execute(
                        "INSERT OR REPLACE INTO nodes (id, record) VALUES (?1, ?2)",
                        (id, text.trim_end()),
                    )?;
                    nodes += 1;
                }
                _ => tracing::warn!(file = %path.display(), "node record unreadable: not imported"),
            }
        }
    }
    let mut systems = 0;
    if let Ok(text) = std::fs::read_to_string(data_dir.join("systems.json")) {
        match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text) {
            Ok(map) => {
                for (name, record) in map {
                    tx.execute(
                        "INSERT OR REPLACE INTO systems (name, record) VALUES (?1, ?2)",
                        (name, record.to_string()),
                    )?;
                    systems += 1;
                }
            }
            Err(e) => tracing::warn!(error = %e, "systems.json unreadable: not imported"),
        }
    }
    if nodes + systems > 0 {
        tracing::info!(
            nodes,
            systems,
            "imported the records of the earlier file layout into the database"
        );
    }
    Ok(())
}

/// Renames the imported files (`*.imported`) so nobody edits them believing they count.
fn mark_imported(data_dir: &Path) {
    let systems = data_dir.join("systems.json");
    if systems.exists() {
        let _ = std::fs::rename(&systems, data_dir.join("systems.json.imported"));
    }
    if let Ok(read) = std::fs::read_dir(data_dir.join("nodes")) {
        for entry in read.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                let _ = std::fs::rename(&path, path.with_extension("json.imported"));
            }
        }
    }
}

impl Backend for Sqlite {
    fn load(&mut self) -> Result<Loaded, String> {
        let err =
            |e: rusqlite::Error| format!("{}: {e}", self.data_dir.join("rdeploy.db").display());
        let mut loaded = Loaded::default();
        let mut stmt = self
            .conn
            .prepare("SELECT id, record FROM nodes")
            .map_err(err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(err)?;
        for row in rows {
            loaded.nodes.push(row.map_err(err)?);
        }
        let mut stmt = self
            .conn
            .prepare("SELECT name, record FROM systems")
            .map_err(err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(err)?;
        for row in rows {
            loaded.systems.push(row.map_err(err)?);
        }
        Ok(loaded)
    }

    fn commit(&mut self, changes: &[Change]) -> Result<(), String> {
        let tx = self.conn.transaction().map_err(|e| e.to_string())?;
        {
            let mut node = tx
                .prepare_cached("INSERT OR REPLACE INTO nodes (id, record) VALUES (?1, ?2)")
                .map_err(|e| e.to_string())?;
            let mut inventory = tx
                .prepare_cached("INSERT OR REPLACE INTO inventories (node, text) VALUES (?1, ?2)")
                .map_err(|e| e.to_string())?;
            let mut system = tx
                .prepare_cached("INSERT OR REPLACE INTO systems (name, record) VALUES (?1, ?2)")
                .map_err(|e| e.to_string())?;
            let mut no_system = tx
                .prepare_cached("DELETE FROM systems WHERE name = ?1")
                .map_err(|e| e.to_string())?;
            let mut forget = tx
                .prepare_cached("DELETE FROM nodes WHERE id = ?1")
                .map_err(|e| e.to_string())?;
            let mut forget_inventory = tx
                .prepare_cached("DELETE FROM inventories WHERE node = ?1")
                .map_err(|e| e.to_string())?;
            let mut log = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO logs (node, file, bytes) VALUES (?1, ?2, ?3)",
                )
                .map_err(|e| e.to_string())?;
            for c in changes {
                let done = match c {
                    Change::Node { id, record } => node.execute((id, record)),
                    Change::Inventory { node, text } => inventory.execute((node, text)),
                    Change::ForgetNode { id } => forget
                        .execute([id])
                        .and_then(|_| forget_inventory.execute([id])),
                    Change::System {
                        name,
                        record: Some(record),
                    } => system.execute((name, record)),
                    Change::System { name, record: None } => no_system.execute([name]),
                    Change::Log { node, file, bytes } => {
                        log.execute((node, file, i64::try_from(*bytes).unwrap_or(i64::MAX)))
                    }
                };
                done.map_err(|e| e.to_string())?;
            }
        }
        tx.commit().map_err(|e| e.to_string())
    }

    fn inventory(&mut self, node: &str) -> Result<Option<String>, String> {
        use rusqlite::OptionalExtension as _;
        self.conn
            .query_row(
                "SELECT text FROM inventories WHERE node = ?1",
                [node],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn changes_survive_a_reopen_and_the_file_layout_is_imported(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        std::fs::create_dir_all(tmp.path().join("nodes"))?;
        std::fs::write(tmp.path().join("nodes/old.json"), "{\"id\": \"old\"}\n")?;
        std::fs::write(
            tmp.path().join("systems.json"),
            "{\"rack1\": {\"macs\": [], \"boot\": {\"target\": \"local\"}}}\n",
        )?;
        let (store, loaded) = Store::open(Sqlite::open(tmp.path())?)?;
        assert_eq!(
            loaded.nodes,
            vec![("old".to_owned(), "{\"id\": \"old\"}".to_owned())]
        );
        assert_eq!(loaded.systems.len(), 1);
        assert!(tmp.path().join("nodes/old.json.imported").exists());
        let writes: Vec<_> = (0..50)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .commit(Change::Node {
                            id: format!("n{i}"),
                            record: format!("{{\"id\": \"n{i}\"}}"),
                        })
                        .await
                })
            })
            .collect();
        for w in writes {
            w.await??;
        }
        store
            .commit(Change::Inventory {
                node: "n1".into(),
                text: "[('a', 'b', 'c', 'd')]".into(),
            })
            .await?;
        store
            .commit(Change::System {
                name: "rack1".into(),
                record: None,
            })
            .await?;
        drop(store);
        let (again, loaded) = Store::open(Sqlite::open(tmp.path())?)?;
        assert_eq!(loaded.nodes.len(), 51);
        assert!(loaded.systems.is_empty());
        assert_eq!(
            again.inventory("n1").await?.as_deref(),
            Some("[('a', 'b', 'c', 'd')]")
        );
        Ok(())
    }
}
