//! PostgreSQL mode (`rdeploy serve --database-url postgres://...`): several servers share
//! one database and answer as one server would.
//!
//! The database holds:
//! - what the SQLite store holds (node records, inventories, the log index, registered
//!   systems), behind the same [`Backend`] trait ([`PgStore`]);
//! - the mutable half of the config dir ([`PgShared`], a [`Shared`] for the snapshot):
//!   `state`, each `<profile>.cmdb` (and `.cmdb.orig`) and the ledger of installs under way
//!   (which machine holds which entry, what it was before), one row per file in the very
//!   text eDeploy's files have, with the version that last wrote it.
//!
//! Allocation: every batch of the writer thread is one transaction that starts with
//! `SELECT ... FOR UPDATE` on the single `config_lock` row. Servers therefore allocate one
//! batch at a time, each seeing every earlier batch's quotas, entries and holds (re-read
//! only when their version moved), and a batch's quota decrements, CMDB entries and holds
//! commit together or not at all. No entry can be given twice, and quotas are exact: it
//! is the config dir's exclusive lock and journaled commit, with the database as the
//! lock and the journal.
//!
//! The specs and configure scripts still come from `--config-dir` (read only). The first
//! server to start on an empty database imports that dir's `state` and CMDBs; after that
//! `rdeploy config push` changes them (checked, in one transaction) and `rdeploy config
//! pull` writes them back as files.
//!
//! Migrations are versioned (`rdeploy_schema`) and run at start under an advisory lock,
//! so servers starting together migrate once.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::Context as _;
use postgres::{Client, NoTls};
use rdeploy_cmdb::shared::Shared;
use rdeploy_cmdb::store::{StoreError, Write};

use super::store::{Backend, Change, Loaded};

/// The ledger's owner in this mode: one for every server of the database (a machine's
/// install under way is the same whichever server it asks).
pub const OWNER: &str = "database";

/// The schema, one script per version (`rdeploy_schema.version` is the number applied).
const MIGRATIONS: &[&str] = &[
    // 1: the store's tables (as in SQLite), and the mutable half of the config.
    "CREATE TABLE nodes (id TEXT PRIMARY KEY, record TEXT NOT NULL);
     CREATE TABLE inventories (node TEXT PRIMARY KEY, text TEXT NOT NULL);
     CREATE TABLE systems (name TEXT PRIMARY KEY, record TEXT NOT NULL);
     CREATE TABLE logs (node TEXT NOT NULL, file TEXT NOT NULL, bytes BIGINT NOT NULL,
                        PRIMARY KEY (node, file));
     CREATE TABLE config_lock (id INTEGER PRIMARY KEY CHECK (id = 1),
                               version BIGINT NOT NULL, seeded BOOLEAN NOT NULL);
     INSERT INTO config_lock VALUES (1, 0, false);
     CREATE TABLE config_files (name TEXT PRIMARY KEY, text TEXT NOT NULL,
                                version BIGINT NOT NULL);",
];

/// Any number that identifies rdeploy's migration lock among advisory locks.
const MIGRATION_LOCK: i64 = 0x0072_6465_706c_6f79;

static DATABASE: OnceLock<Database> = OnceLock::new();

/// The database this process serves from, if `--database-url` was given.
pub fn database() -> Option<&'static Database> {
    DATABASE.get()
}

/// Sets the process's database (once, before the server opens its state).
pub fn set_database(db: Database) -> anyhow::Result<()> {
    DATABASE
        .set(db)
        .map_err(|_| anyhow::anyhow!("the database is already set"))
}

/// A database URL, checked and migrated.
#[derive(Debug, Clone)]
pub struct Database {
    url: String,
    label: String,
}

impl Database {
    /// Connects once, migrates the schema, and keeps the URL for the connections to come.
    pub fn open(url: &str) -> anyhow::Result<Database> {
        let config: postgres::Config = url
            .parse()
            .with_context(|| "--database-url: not a PostgreSQL URL")?;
        let label = label(&config);
        let db = Database {
            url: url.to_owned(),
            label,
        };
        let mut client = db.connect()?;
        migrate(&mut client).with_context(|| format!("{}: cannot migrate", db.label))?;
        Ok(db)
    }

    /// The URL without its password, for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// A new connection.
    pub fn connect(&self) -> anyhow::Result<Client> {
        Client::connect(&self.url, NoTls)
            .with_context(|| format!("cannot connect to {}", self.label))
    }

    /// The node store over this database.
    pub fn store(&self) -> anyhow::Result<PgStore> {
        Ok(PgStore {
            client: Conn::new(self.clone()),
        })
    }

    /// The mutable half of the config for the writer's snapshot. The first server on an
    /// empty database imports `config_dir`'s `state` and CMDBs.
    pub fn shared(&self, config_dir: &Path) -> anyhow::Result<PgShared> {
        off_runtime(|| {
            let mut client = self.connect()?;
            seed(&mut client, config_dir).with_context(|| {
                format!(
                    "{}: cannot import the config of {}",
                    self.label,
                    config_dir.display()
                )
            })
        })?;
        Ok(PgShared {
            client: Conn::new(self.clone()),
            version: 0,
            open: false,
        })
    }
}

/// Runs `f` on a thread of its own: the blocking client runs a runtime of its own, which
/// cannot be entered from the server's async tasks.
pub fn off_runtime<T: Send>(f: impl FnOnce() -> anyhow::Result<T> + Send) -> anyhow::Result<T> {
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the database thread panicked")))
    })
}

fn label(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("postgres://{host}:{port}/{db}")
}

/// Runs the migrations not applied yet (under an advisory lock: one server migrates).
fn migrate(client: &mut Client) -> Result<(), postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS rdeploy_schema (version INTEGER NOT NULL)")?;
    let version: i32 = match tx.query_opt("SELECT version FROM rdeploy_schema", &[])? {
        Some(row) => row.get(0),
        None => {
            tx.execute("INSERT INTO rdeploy_schema VALUES (0)", &[])?;
            0
        }
    };
    let applied = usize::try_from(version).unwrap_or(0);
    if applied > MIGRATIONS.len() {
        tracing::error!(
            version,
            known = MIGRATIONS.len(),
            "the database's schema is newer than this rdeploy: use a newer rdeploy"
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.batch_execute(sql)?;
        let v = i32::try_from(i + 1).unwrap_or(i32::MAX);
        tx.execute("UPDATE rdeploy_schema SET version = $1", &[&v])?;
        tracing::info!(version = v, "database schema migrated");
    }
    tx.commit()
}

/// Imports the config dir's `state`, CMDBs and `.cmdb.orig` files into an empty database
/// (once: the first server to start).
fn seed(client: &mut Client, config_dir: &Path) -> anyhow::Result<()> {
    let mut tx = client.transaction()?;
    let row = tx.query_one(
        "SELECT seeded FROM config_lock WHERE id = 1 FOR UPDATE",
        &[],
    )?;
    if row.get::<_, bool>(0) {
        return Ok(());
    }
    let files = mutable_files(config_dir)?;
    for (name, text) in &files {
        tx.execute(
            "INSERT INTO config_files (name, text, version) VALUES ($1, $2, 1)
             ON CONFLICT (name) DO UPDATE SET text = EXCLUDED.text, version = 1",
            &[name, text],
        )?;
    }
    tx.execute(
        "UPDATE config_lock SET seeded = true, version = 1 WHERE id = 1",
        &[],
    )?;
    tx.commit()?;
    tracing::info!(files = files.len(), dir = %config_dir.display(), "imported the config dir's state and CMDBs into the database");
    Ok(())
}

/// The files of a config dir that the database keeps (`state`, `*.cmdb`, `*.cmdb.orig`;
/// not the ledgers of file-mode servers).
pub fn mutable_files(config_dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let read = std::fs::read_dir(config_dir)
        .with_context(|| format!("cannot list {}", config_dir.display()))?;
    for entry in read {
        let entry = entry.with_context(|| format!("cannot list {}", config_dir.display()))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name.starts_with('.') || !rdeploy_cmdb::shared::is_shared_name(&name) {
            continue;
        }
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path())
            .with_context(|| format!("cannot read {}", entry.path().display()))?;
        out.push((name, text));
    }
    out.sort();
    Ok(out)
}

/// A connection made again when the last one broke (a database restart, a cut network).
struct Conn {
    db: Database,
    client: Option<Client>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("db", &self.db.label).finish()
    }
}

impl Conn {
    fn new(db: Database) -> Conn {
        Conn { db, client: None }
    }

    fn get(&mut self) -> Result<&mut Client, String> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            let client = self.db.connect().map_err(|e| format!("{e:#}"))?;
            self.client = Some(client);
        }
        self.client
            .as_mut()
            .ok_or_else(|| format!("{}: not connected", self.db.label))
    }

    /// An error of the connection: the message, and the connection dropped when it broke.
    fn fail(&mut self, e: &postgres::Error) -> String {
        if self.client.as_ref().is_some_and(Client::is_closed) || e.is_closed() {
            self.client = None;
        }
        format!("{}: {e}", self.db.label)
    }
}

/// Node records, inventories, the log index and systems in PostgreSQL.
#[derive(Debug)]
pub struct PgStore {
    client: Conn,
}

impl Backend for PgStore {
    fn load(&mut self) -> Result<Loaded, String> {
        // Called where the store is opened, maybe on an async task: off the runtime.
        let conn = &mut self.client;
        off_runtime(|| {
            let client = conn.get().map_err(anyhow::Error::msg)?;
            let result = (|| -> Result<Loaded, postgres::Error> {
                let mut loaded = Loaded::default();
                for row in client.query("SELECT id, record FROM nodes", &[])? {
                    loaded.nodes.push((row.get(0), row.get(1)));
                }
                for row in client.query("SELECT name, record FROM systems", &[])? {
                    loaded.systems.push((row.get(0), row.get(1)));
                }
                Ok(loaded)
            })();
            result.map_err(|e| anyhow::anyhow!(conn.fail(&e)))
        })
        .map_err(|e| format!("{e:#}"))
    }

    fn commit(&mut self, changes: &[Change]) -> Result<(), String> {
        let client = self.client.get()?;
        let result = (|| -> Result<(), postgres::Error> {
            let mut tx = client.transaction()?;
            for c in changes {
                match c {
                    Change::Node { id, record } => tx.execute(
                        "INSERT INTO nodes (id, record) VALUES ($1, $2)
                         ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record",
                        &[id, record],
                    )?,
                    Change::Inventory { node, text } => tx.execute(
                        "INSERT INTO inventories (node, text) VALUES ($1, $2)
                         ON CONFLICT (node) DO UPDATE SET text = EXCLUDED.text",
                        &[node, text],
                    )?,
                    Change::ForgetNode { id } => {
                        tx.execute("DELETE FROM inventories WHERE node = $1", &[id])?;
                        tx.execute("DELETE FROM nodes WHERE id = $1", &[id])?
                    }
                    Change::System {
                        name,
                        record: Some(record),
                    } => tx.execute(
                        "INSERT INTO systems (name, record) VALUES ($1, $2)
                         ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record",
                        &[name, record],
                    )?,
                    Change::System { name, record: None } => {
                        tx.execute("DELETE FROM systems WHERE name = $1", &[name])?
                    }
                    Change::Log { node, file, bytes } => {
                        let bytes = i64::try_from(*bytes).unwrap_or(i64::MAX);
                        tx.execute(
                            "INSERT INTO logs (node, file, bytes) VALUES ($1, $2, $3)
                             ON CONFLICT (node, file) DO UPDATE SET bytes = EXCLUDED.bytes",
                            &[node, file, &bytes],
                        )?
                    }
                };
            }
            tx.commit()
        })();
        result.map_err(|e| self.client.fail(&e))
    }

    fn inventory(&mut self, node: &str) -> Result<Option<String>, String> {
        let client = self.client.get()?;
        let result = client
            .query_opt("SELECT text FROM inventories WHERE node = $1", &[&node])
            .map(|row| row.map(|r| r.get(0)));
        result.map_err(|e| self.client.fail(&e))
    }
}

/// A boxed backend is a backend (the server picks SQLite or PostgreSQL at start).
impl Backend for Box<dyn Backend> {
    fn load(&mut self) -> Result<Loaded, String> {
        (**self).load()
    }
    fn commit(&mut self, changes: &[Change]) -> Result<(), String> {
        (**self).commit(changes)
    }
    fn inventory(&mut self, node: &str) -> Result<Option<String>, String> {
        (**self).inventory(node)
    }
}

/// `state`, the CMDBs and the ledger in PostgreSQL (see the module doc).
#[derive(Debug)]
pub struct PgShared {
    client: Conn,
    /// The version the current batch began with.
    version: i64,
    /// A batch is open (BEGIN sent).
    open: bool,
}

impl PgShared {
    fn err(&mut self, e: &postgres::Error) -> StoreError {
        self.open = false;
        StoreError::Shared(self.client.fail(e))
    }
}

impl Shared for PgShared {
    fn begin(&mut self) -> Result<HashMap<String, u64>, StoreError> {
        let client = self.client.get().map_err(StoreError::Shared)?;
        let result = (|| -> Result<(i64, HashMap<String, u64>), postgres::Error> {
            client.batch_execute("BEGIN")?;
            let row = client.query_one(
                "SELECT version FROM config_lock WHERE id = 1 FOR UPDATE",
                &[],
            )?;
            let mut versions = HashMap::new();
            for row in client.query("SELECT name, version FROM config_files", &[])? {
                let v: i64 = row.get(1);
                versions.insert(row.get(0), u64::try_from(v).unwrap_or(0));
            }
            Ok((row.get(0), versions))
        })();
        match result {
            Ok((version, versions)) => {
                self.version = version;
                self.open = true;
                Ok(versions)
            }
            Err(e) => {
                let e = self.err(&e);
                self.rollback();
                Err(e)
            }
        }
    }

    fn read(&mut self, name: &str) -> Result<Option<String>, StoreError> {
        let client = self.client.get().map_err(StoreError::Shared)?;
        let result = client
            .query_opt("SELECT text FROM config_files WHERE name = $1", &[&name])
            .map(|row| row.map(|r| r.get(0)));
        result.map_err(|e| self.err(&e))
    }

    fn commit(&mut self, writes: &[Write]) -> Result<u64, StoreError> {
        let next = self.version + 1;
        let client = self.client.get().map_err(StoreError::Shared)?;
        let result = (|| -> Result<i64, postgres::Error> {
            if writes.is_empty() {
                client.batch_execute("COMMIT")?;
                return Ok(self.version);
            }
            for w in writes {
                match w {
                    Write::Replace(name, text) => client.execute(
                        "INSERT INTO config_files (name, text, version) VALUES ($1, $2, $3)
                         ON CONFLICT (name) DO UPDATE
                         SET text = EXCLUDED.text, version = EXCLUDED.version",
                        &[name, text, &next],
                    )?,
                    Write::Append(name, text) => client.execute(
                        "INSERT INTO config_files (name, text, version) VALUES ($1, $2, $3)
                         ON CONFLICT (name) DO UPDATE
                         SET text = config_files.text || EXCLUDED.text,
                             version = EXCLUDED.version",
                        &[name, text, &next],
                    )?,
                };
            }
            client.execute("UPDATE config_lock SET version = $1 WHERE id = 1", &[&next])?;
            client.batch_execute("COMMIT")?;
            Ok(next)
        })();
        self.open = false;
        match result {
            Ok(v) => Ok(u64::try_from(v).unwrap_or(0)),
            Err(e) => Err(self.err(&e)),
        }
    }

    fn rollback(&mut self) {
        if let Some(client) = self.client.client.as_mut() {
            if client.batch_execute("ROLLBACK").is_err() {
                self.client.client = None;
            }
        }
        self.open = false;
    }

    fn label(&self) -> String {
        self.client.db.label.clone()
    }
}
