//! The config dir parsed once and kept: the one place that decides whether each file can be
//! used, plans uploads and failure reports against it, says what is wrong with it, and
//! commits what changed as one atomic write.
//!
//! Every path that hands out installs goes through a [`Snapshot`]: the server's writer
//! thread keeps one alive across batches, `rdeploy match` makes a fresh one for a batch of
//! one, `rdeploy check` reads one without locking. So the CLI and the server give the same
//! answers and the same refusals, and `/healthz` lists what `rdeploy check` prints.
//!
//! [`Snapshot::batch`], inside one [`ConfigDir::transaction`] (the exclusive lock):
//!
//! 1. refreshes the cache: every file whose fingerprint (mtime, ctime, size, inode)
//!    changed is read again; a file that no longer parses keeps its last good version;
//! 2. runs the caller's uploads and failure reports in order ([`Batch::upload`],
//!    [`Batch::failure`]), each applied in memory so the next one sees it;
//! 3. writes every touched file (`state`, `<profile>.cmdb`, `.cmdb.orig`) with one
//!    journaled commit. If that fails the cache is dropped and the caller gets the error
//!    for the whole batch.
//!
//! The usability policy, in one place ([`CmdbFile`]):
//! - `state` missing or broken (a quota that is not a number, a syntax error): an upload
//!   that would count against a quota is refused ([`Refusal::ConfigBroken`]); with an
//!   earlier good version, uploads to `'*'` profiles still work.
//! - a CMDB that is not a list of dicts (a dict, a list of non-dicts) or a `generate()`
//!   that cannot expand: a match of that profile is refused (eDeploy raised there).
//! - a CMDB that does not parse: eDeploy's "no CMDB" when there never was a good version
//!   (kept for compatibility, reported as an error); with a last good version that one is
//!   used and any upload that would rewrite the file is refused until it is fixed.
//! - an empty `[]` CMDB: no CMDB.
//! - a `.specs` missing or broken: the profile never matches (its last good version is
//!   used meanwhile).

use crate::cmdb::{Allocated, Cmdb, CmdbError};
use crate::ledger::{Change as LedgerChange, Hold, Ledger};
use crate::pipeline::{find_match, spec_skip, too_costly, MatchError, Plan, ProfileSource};
use crate::shared::Shared;
use crate::state::{check_profile_name, Quota, State};
use crate::store::{ConfigDir, StoreError, Write};
use rdeploy_specs::matcher::{
    match_all_with_budget, MatchResult, NoMatch, Severity, DEFAULT_STEP_BUDGET,
};
use rdeploy_specs::{Inventory, Pos, Specs};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What an upload got.
#[derive(Debug, Clone)]
pub struct Allocation {
    pub plan: Plan,
    /// The profile's `.configure` script (last good version).
    pub script: String,
    /// Whether this upload counted against the profile's quota.
    pub counted: bool,
}

/// Why an upload or a failure report got nothing. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No profile, or the matched profile's CMDB, could serve it.
    #[error(transparent)]
    Match(Box<MatchError>),
    /// The answer would have to rewrite a file that is missing or broken on disk.
    #[error("{file} is unusable and would have to be rewritten: {error}")]
    ConfigBroken { file: String, error: String },
}

impl Refusal {
    /// Whether the config dir itself is at fault (an operator must fix a file), as opposed
    /// to this machine matching nothing or a quota or CMDB being used up.
    pub fn is_config_error(&self) -> bool {
        match self {
            Refusal::ConfigBroken { .. } => true,
            Refusal::Match(m) => matches!(**m, MatchError::CmdbFile { .. }),
        }
    }
}

/// The outcome of a failure report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureOutcome {
    /// One install was given back to the profile.
    QuotaReturned,
    /// Unlimited quota or a profile not in `state`: nothing changed.
    Unchanged,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// eDeploy accepts it, but it is probably not what was meant.
    Warning,
    /// Something cannot work as written.
    Error,
}

impl From<Severity> for Level {
    fn from(s: Severity) -> Level {
        match s {
            Severity::Warning => Level::Warning,
            Severity::Error => Level::Error,
        }
    }
}

/// One thing wrong with a file of the config dir (what `rdeploy check` prints and
/// `/healthz` shows).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub level: Level,
    /// The file's name in the config dir (`vm.specs`).
    pub file: String,
    /// Where in the file (line 0: the whole file).
    pub line: u32,
    pub col: u32,
    pub message: String,
    /// The file does not parse and an earlier good version is used meanwhile.
    pub using_last_good: bool,
}

impl Finding {
    fn new(level: Level, file: &str, pos: Option<Pos>, message: impl Into<String>) -> Finding {
        let pos = pos.unwrap_or_default();
        Finding {
            level,
            file: file.to_owned(),
            line: pos.line,
            col: pos.col,
            message: message.into(),
            using_last_good: false,
        }
    }

    /// `DIR/file:line:col: message` (`DIR/file: message` for the whole file).
    pub fn located(&self, dir: &Path) -> String {
        let path = dir.join(&self.file);
        if self.line > 0 {
            format!(
                "{}:{}:{}: {}",
                path.display(),
                self.line,
                self.col,
                self.message
            )
        } else {
            format!("{}: {}", path.display(), self.message)
        }
    }
}

/// Checks a `.configure` script: each error with its position. The snapshot knows nothing
/// of the script language; the server and `rdeploy check` hand in the configure crate's
/// compiler.
pub type ScriptCheck = fn(name: &str, text: &str) -> Vec<(Option<Pos>, String)>;

/// A problem with one file (the `/healthz` form of an error finding).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileProblem {
    pub file: String,
    pub error: String,
    /// Whether an earlier good version of the file is being used meanwhile.
    pub using_last_good: bool,
}

/// How much of a profile's CMDB is handed out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CmdbUsage {
    pub profile: String,
    pub used: usize,
    pub total: usize,
}

/// A CMDB entry that holds an `ip`: what DHCP configs and free-address searches read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CmdbHost {
    /// `<profile>.cmdb`, where the entry is.
    pub profile: String,
    pub ip: String,
    /// The entry's `mac`, when it has one (lowercase as written).
    pub mac: Option<String>,
    pub hostname: Option<String>,
    /// Handed out already (`used` set).
    pub used: bool,
}

/// What the server shows of the config (`/healthz`, `/quota`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ConfigHealth {
    pub config_dir: String,
    /// Profiles in `state` order with their quota (`"*"` or installs left).
    pub profiles: Vec<(String, String)>,
    /// Each profile's CMDB: entries used and total (profiles without a CMDB are absent).
    pub cmdbs: Vec<CmdbUsage>,
    /// Every error finding: the config cannot work as written.
    pub problems: Vec<FileProblem>,
    /// Every warning finding (what `rdeploy check` warns about).
    pub warnings: Vec<FileProblem>,
    /// The last commit error, if the last commit failed.
    pub last_error: Option<String>,
    pub commits: u64,
    pub uploads: u64,
}

/// What identifies a version of a file: changes when it is rewritten or edited. The change
/// time is in it because nobody can set it back (`cp -p`, `touch -r` and `tar x` restore
/// the modification time, never the change time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    mtime: SystemTime,
    ctime: (i64, i64),
    len: u64,
    ino: u64,
}

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let meta = fs::metadata(path).ok()?;
    Some(Fingerprint {
        mtime: meta.modified().ok()?,
        ctime: (meta.ctime(), meta.ctime_nsec()),
        len: meta.len(),
        ino: meta.ino(),
    })
}

/// Problems of one file, each with its position.
type Problems = Vec<(Option<Pos>, String)>;

/// One cached file: the last good parsed value, and the problems of the current text.
#[derive(Debug)]
struct Tracked<T> {
    /// `None` until the file has been looked at; `Some(None)`: it does not exist.
    seen: Option<Option<Fingerprint>>,
    /// Last good value (`None`: missing, or never parsed).
    value: Option<T>,
    /// The current text does not parse (the value, if any, is the last good one).
    error: Option<Problems>,
    /// Hash of the text last read, and when it was read: an edit that keeps the size and
    /// lands in the same timestamp tick as an earlier read leaves the fingerprint as it
    /// was, so a file modified shortly before it was read is read again until it is older.
    hash: u64,
    read_at: Option<SystemTime>,
    /// The last version is the snapshot's own commit (not re-read for the check above).
    ours: bool,
}

impl<T> Default for Tracked<T> {
    fn default() -> Self {
        Tracked {
            seen: None,
            value: None,
            error: None,
            hash: 0,
            read_at: None,
            ours: false,
        }
    }
}

impl<T> Tracked<T> {
    fn missing(&self) -> bool {
        self.seen == Some(None)
    }

    /// The problems as one line, `path:line:col: message; ...`.
    fn error_line(&self, path: &Path) -> Option<String> {
        self.error.as_ref().map(|ps| render(path, ps))
    }
}

fn render(path: &Path, problems: &Problems) -> String {
    problems
        .iter()
        .map(|(pos, m)| match pos {
            Some(p) if p.line > 0 => format!("{}:{p}: {m}", path.display()),
            _ => format!("{}: {m}", path.display()),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// How long after its modification a file's fingerprint is not trusted alone.
const RACY: Duration = Duration::from_secs(2);

fn text_hash(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// Re-reads a file if its fingerprint changed; keeps the last good value on a parse error.
/// Returns whether the file was read again.
fn refresh_file<T>(
    t: &mut Tracked<T>,
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, Problems>,
) -> bool {
    let fp = fingerprint(path);
    let racy = match (fp, t.read_at) {
        (Some(f), Some(read)) => !t.ours && f.mtime + RACY > read,
        _ => false,
    };
    if t.seen == Some(fp) && !racy {
        return false;
    }
    let unchanged = t.seen == Some(fp);
    t.seen = Some(fp);
    if fp.is_none() {
        t.value = None;
        t.error = None;
        return true;
    }
    let read_at = SystemTime::now();
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read config file; keeping the last good version");
            t.error = Some(vec![(None, format!("cannot read: {e}"))]);
            t.seen = None;
            return true;
        }
    };
    let hash = text_hash(&text);
    t.read_at = Some(read_at);
    t.ours = false;
    if unchanged && hash == t.hash {
        return false;
    }
    t.hash = hash;
    take_text(t, path, &text, parse);
    true
}

/// Parses a file's new text into its tracked value (the last good one stays on an error).
fn take_text<T>(
    t: &mut Tracked<T>,
    path: &Path,
    text: &str,
    parse: impl FnOnce(&str) -> Result<T, Problems>,
) {
    match parse(text) {
        Ok(v) => {
            if t.error.take().is_some() || t.value.is_some() {
                tracing::info!(file = %path.display(), "config file reloaded");
            }
            t.value = Some(v);
        }
        Err(problems) => {
            let msg = render(path, &problems);
            if t.value.is_some() {
                tracing::error!(error = %msg, "config file does not parse; keeping the last good version");
            } else {
                tracing::error!(error = %msg, "config file does not parse");
            }
            t.error = Some(problems);
        }
    }
}

/// The fingerprint standing for a shared file's version (`crate::shared`).
fn version_print(version: u64) -> Fingerprint {
    Fingerprint {
        mtime: SystemTime::UNIX_EPOCH,
        ctime: (i64::try_from(version).unwrap_or(i64::MAX), 0),
        len: 0,
        ino: 0,
    }
}

/// [`refresh_file`] for a file of the shared half: read again when its version changed.
fn refresh_shared<T>(
    t: &mut Tracked<T>,
    shared: &mut dyn Shared,
    versions: &HashMap<String, u64>,
    name: &str,
    parse: impl FnOnce(&str) -> Result<T, Problems>,
) -> bool {
    let fp = versions.get(name).map(|v| version_print(*v));
    if t.seen == Some(fp) {
        return false;
    }
    let path = PathBuf::from(format!("{}#{name}", shared.label()));
    t.seen = Some(fp);
    t.ours = false;
    let text = match shared.read(name) {
        Ok(Some(text)) => text,
        Ok(None) => {
            t.value = None;
            t.error = None;
            return true;
        }
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read config file; keeping the last good version");
            t.error = Some(vec![(None, format!("cannot read: {e}"))]);
            t.seen = None;
            return true;
        }
    };
    take_text(t, &path, &text, parse);
    true
}

/// A CMDB file as the usability policy sees it (see the module doc).
#[derive(Debug)]
pub enum CmdbFile {
    /// Entries to allocate from.
    Present(Cmdb),
    /// No CMDB: `[]`, or a file that does not parse and never did (eDeploy's tolerance;
    /// the reason is kept for the findings).
    Absent { ignored: Option<CmdbError> },
    /// Not a list of dicts, or a `generate()` that cannot expand: a match of the profile is
    /// refused.
    Broken(CmdbError),
}

#[derive(Debug)]
struct CachedCmdb {
    file: CmdbFile,
    /// The text read, kept to save it as `.cmdb.orig` when it was a `generate()` model.
    text: String,
    /// Each entry in its file form, kept so a commit re-renders only the entries that
    /// changed (empty until the first write).
    lines: Vec<String>,
}

#[derive(Debug, Default)]
struct Profile {
    specs: Tracked<Arc<Specs>>,
    /// `value: None`: no file.
    cmdb: Tracked<CachedCmdb>,
    configure: Tracked<String>,
    /// The script checker's errors for the current `.configure` text.
    script_errors: Problems,
}

/// The parsed config dir (see the module doc).
#[derive(Debug)]
pub struct Snapshot {
    dir: ConfigDir,
    state: Tracked<State>,
    profiles: HashMap<String, Profile>,
    script_check: Option<ScriptCheck>,
    /// The installs under way and who holds them ([`crate::ledger`]), when the snapshot has
    /// an owner (the server's data dir); `None` until read.
    owner: Option<String>,
    ledger: Option<Ledger>,
    /// The mutable half in a shared store instead of the config dir ([`crate::shared`]),
    /// the versions its current batch began with, and the ledger's version last read.
    shared: Option<Box<dyn Shared>>,
    versions: HashMap<String, u64>,
    ledger_version: Option<u64>,
    last_error: Option<String>,
    commits: u64,
    uploads: u64,
}

/// The changes of one batch, to write at its end.
#[derive(Debug, Default)]
struct Touched {
    state: bool,
    ledger: bool,
    /// Each CMDB changed, with the indices of the entries that changed.
    cmdbs: BTreeMap<String, BTreeSet<usize>>,
}

/// The uploads and failure reports of one batch (see [`Snapshot::batch`]).
#[derive(Debug)]
pub struct Batch<'a> {
    snap: &'a mut Snapshot,
    touched: Touched,
}

impl Snapshot {
    /// A snapshot of `dir`; nothing is read until the first batch or [`Snapshot::refresh`].
    pub fn new(dir: ConfigDir) -> Snapshot {
        Snapshot {
            dir,
            state: Tracked::default(),
            profiles: HashMap::new(),
            script_check: None,
            owner: None,
            ledger: None,
            shared: None,
            versions: HashMap::new(),
            ledger_version: None,
            last_error: None,
            commits: 0,
            uploads: 0,
        }
    }

    /// Keeps `state`, the CMDBs and the ledger in `shared` (a database several servers
    /// share) instead of the config dir, which is then only read (specs, configure
    /// scripts). Each batch is one of its transactions (see [`crate::shared`]).
    pub fn with_shared(mut self, shared: Box<dyn Shared>) -> Snapshot {
        self.shared = Some(shared);
        self
    }

    /// Where a file of the config is (the shared store's name for the mutable half).
    fn file_path(&self, name: &str) -> PathBuf {
        match &self.shared {
            Some(s) if crate::shared::is_shared_name(name) => {
                PathBuf::from(format!("{}#{name}", s.label()))
            }
            _ => self.dir.file(name),
        }
    }

    /// Checks each profile's `.configure` with `check` (errors become findings).
    pub fn with_script_check(mut self, check: ScriptCheck) -> Snapshot {
        self.script_check = Some(check);
        self
    }

    /// Keeps a ledger of the installs under way for `owner` (the server's data dir id: see
    /// [`crate::ledger`]): a machine's retry gets its own allocation back, uncounted, even
    /// after a crash. `owner` must be `[A-Za-z0-9_-]{1,64}`.
    pub fn with_owner(mut self, owner: &str) -> Result<Snapshot, String> {
        if !crate::ledger::valid_owner(owner) {
            return Err(format!(
                "{owner:?} is not an owner id (letters, digits, '-', '_')"
            ));
        }
        self.owner = Some(owner.to_owned());
        Ok(self)
    }

    pub fn dir(&self) -> &ConfigDir {
        &self.dir
    }

    /// The install a machine holds, if any.
    pub fn hold(&self, node: &str) -> Option<&Hold> {
        self.ledger.as_ref()?.holds.get(node)
    }

    /// Forgets everything read: the next batch reads every file again.
    pub fn forget(&mut self) {
        self.state = Tracked::default();
        self.profiles.clear();
        self.ledger = None;
        self.ledger_version = None;
    }

    /// Locks the dir, refreshes, runs `f` over the batch, commits what it changed.
    /// `Err` means the commit failed: nothing of the batch was saved.
    pub fn batch<T>(&mut self, f: impl FnOnce(&mut Batch<'_>) -> T) -> Result<T, StoreError> {
        if let Some(shared) = self.shared.take() {
            return self.batch_shared(shared, f);
        }
        let dir = self.dir.clone();
        let result = dir.transaction(|tx| {
            self.refresh();
            let mut batch = Batch {
                snap: &mut *self,
                touched: Touched::default(),
            };
            let out = f(&mut batch);
            let touched = batch.touched;
            let (writes, ledger_change) = self.writes(&touched);
            if !writes.is_empty() {
                tx.commit_all(&writes)?;
                self.commits += 1;
                self.committed(&touched, ledger_change);
            }
            Ok::<_, StoreError>(out)
        });
        match &result {
            Ok(_) => self.last_error = None,
            Err(e) => {
                tracing::error!(error = %e, "commit failed; reading the config dir again");
                self.last_error = Some(e.to_string());
                // The memory may be ahead of the files: read everything again.
                self.forget();
            }
        }
        result
    }

    /// [`Snapshot::batch`] in one transaction of the shared store.
    fn batch_shared<T>(
        &mut self,
        mut shared: Box<dyn Shared>,
        f: impl FnOnce(&mut Batch<'_>) -> T,
    ) -> Result<T, StoreError> {
        let result = self.run_shared(&mut *shared, f);
        if result.is_err() {
            shared.rollback();
        }
        self.shared = Some(shared);
        match &result {
            Ok(_) => self.last_error = None,
            Err(e) => {
                tracing::error!(error = %e, "commit failed; reading the shared config again");
                self.last_error = Some(e.to_string());
                self.forget();
            }
        }
        result
    }

    fn run_shared<T>(
        &mut self,
        shared: &mut dyn Shared,
        f: impl FnOnce(&mut Batch<'_>) -> T,
    ) -> Result<T, StoreError> {
        self.versions = shared.begin()?;
        self.refresh_from(Some(&mut *shared));
        let mut batch = Batch {
            snap: &mut *self,
            touched: Touched::default(),
        };
        let out = f(&mut batch);
        let touched = batch.touched;
        let (writes, ledger_change) = self.writes(&touched);
        let version = shared.commit(&writes)?;
        if !writes.is_empty() {
            self.commits += 1;
            let print = Some(version_print(version));
            self.committed_as(&touched, ledger_change, |_| print);
            if touched.ledger {
                self.ledger_version = Some(version);
            }
        }
        Ok(out)
    }

    /// Reads every file that changed since last time (no lock: reads only).
    pub fn refresh(&mut self) {
        match self.shared.take() {
            Some(mut shared) => {
                self.refresh_from(Some(&mut *shared));
                self.shared = Some(shared);
            }
            None => self.refresh_from(None),
        }
    }

    /// [`Snapshot::refresh`], the mutable half from `shared` when there is one.
    fn refresh_from(&mut self, mut shared: Option<&mut dyn Shared>) {
        let dir = self.dir.clone();
        if let (Some(owner), Some(shared)) = (&self.owner, shared.as_deref_mut()) {
            let name = crate::ledger::file_name(owner);
            let version = self.versions.get(&name).copied();
            if self.ledger.is_none() || version != self.ledger_version {
                self.ledger = Some(match shared.read(&name) {
                    Ok(None) => Ledger::default(),
                    Ok(Some(text)) => Ledger::parse(&text).unwrap_or_else(|e| {
                        tracing::error!(store = %shared.label(), error = %e, "the ledger of installs under way is unreadable: starting without (retries will count again)");
                        Ledger::default()
                    }),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the ledger of installs under way");
                        Ledger::default()
                    }
                });
                self.ledger_version = version;
            }
        } else if let (Some(owner), None) = (&self.owner, &self.ledger) {
            let name = crate::ledger::file_name(owner);
            self.ledger = Some(match dir.read(&name) {
                Ok(None) => Ledger::default(),
                Ok(Some(text)) => Ledger::parse(&text).unwrap_or_else(|e| {
                    tracing::error!(file = %dir.file(&name).display(), error = %e, "the ledger of installs under way is unreadable: starting without (retries will count again)");
                    Ledger::default()
                }),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the ledger of installs under way");
                    Ledger::default()
                }
            });
        }
        let parse_state = |text: &str| {
            State::parse(text)
                .map_err(|p| p.0.into_iter().map(|p| (Some(p.pos), p.message)).collect())
        };
        match shared.as_deref_mut() {
            Some(sh) => {
                refresh_shared(&mut self.state, sh, &self.versions, "state", parse_state);
            }
            None => {
                refresh_file(&mut self.state, &dir.file("state"), parse_state);
            }
        }
        let names: Vec<String> = match &self.state.value {
            Some(s) => s.entries.iter().map(|e| e.profile.clone()).collect(),
            None => Vec::new(),
        };
        let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
        self.profiles.retain(|k, _| wanted.contains(k.as_str()));
        for name in &names {
            if check_profile_name(name).is_err() {
                continue;
            }
            let p = self.profiles.entry(name.clone()).or_default();
            refresh_file(&mut p.specs, &dir.file(&format!("{name}.specs")), |text| {
                rdeploy_specs::model::parse_specs(text)
                    .map(|lines| Arc::new(Specs::compile(lines)))
                    .map_err(|e| e.0.into_iter().map(|p| (Some(p.pos), p.message)).collect())
            });
            let had_good = matches!(
                p.cmdb.value.as_ref().map(|c| &c.file),
                Some(CmdbFile::Present(_))
            );
            let parse_cmdb = |text: &str| {
                let file = match Cmdb::parse(text) {
                    Ok(Some(c)) => CmdbFile::Present(c),
                    Ok(None) => CmdbFile::Absent { ignored: None },
                    Err(CmdbError::Syntax(e)) if had_good => {
                        return Err(vec![(Some(e.pos), e.message)]);
                    }
                    Err(e @ CmdbError::Syntax(_)) => CmdbFile::Absent { ignored: Some(e) },
                    Err(e) => CmdbFile::Broken(e),
                };
                Ok(CachedCmdb {
                    file,
                    text: text.to_owned(),
                    lines: Vec::new(),
                })
            };
            let cmdb_name = format!("{name}.cmdb");
            match shared.as_deref_mut() {
                Some(sh) => {
                    refresh_shared(&mut p.cmdb, sh, &self.versions, &cmdb_name, parse_cmdb);
                }
                None => {
                    refresh_file(&mut p.cmdb, &dir.file(&cmdb_name), parse_cmdb);
                }
            }
            let file = format!("{name}.configure");
            let check = self.script_check;
            if refresh_file(&mut p.configure, &dir.file(&file), |text| {
                Ok(text.to_owned())
            }) {
                p.script_errors = match (&p.configure.value, check) {
                    (Some(text), Some(check)) => check(&file, text),
                    _ => Vec::new(),
                };
            }
        }
    }

    /// The specs an upload would be matched against now, for matching it before its
    /// batch ([`SpecsView::prematch`]).
    pub fn specs_view(&self) -> SpecsView {
        let mut view = SpecsView {
            profiles: Vec::new(),
            all: self
                .profiles
                .iter()
                .filter_map(|(name, p)| Some((name.clone(), Arc::clone(p.specs.value.as_ref()?))))
                .collect(),
        };
        let Some(state) = &self.state.value else {
            return view;
        };
        for entry in state.entries.iter().filter(|e| e.quota.available()) {
            if view.profiles.iter().any(|(p, _)| *p == entry.profile) {
                continue;
            }
            if let Some(specs) = view.all.get(&entry.profile) {
                view.profiles
                    .push((entry.profile.clone(), Arc::clone(specs)));
            }
        }
        view
    }

    /// Plans an upload without changing anything (`rdeploy check`).
    pub fn plan(&mut self, inventory: &Inventory) -> Result<Plan, Refusal> {
        let Some(state) = self.state.value.as_ref() else {
            return Err(self.state_refusal());
        };
        let mut source = SnapshotSource {
            profiles: &self.profiles,
            prematch: None,
        };
        find_match(state, inventory, &mut source).map_err(|e| Refusal::Match(Box::new(e)))
    }

    fn state_refusal(&self) -> Refusal {
        let path = self.file_path("state");
        Refusal::ConfigBroken {
            file: "state".into(),
            error: self.state.error_line(&path).unwrap_or_else(|| {
                format!(
                    "{}: missing: the state file lists the profiles to try, e.g. [('hp', 4), ('vm', '*')]",
                    path.display()
                )
            }),
        }
    }

    /// The profile's `.configure` text (last good version), if there is one.
    pub fn script(&self, profile: &str) -> Option<&str> {
        self.profiles
            .get(profile)
            .and_then(|p| p.configure.value.as_deref())
    }

    /// The profile's script, or a comment saying it is missing.
    fn script_or_note(&self, profile: &str) -> String {
        self.script(profile).map_or_else(
            || format!("// {profile}.configure not found in the config dir\n"),
            str::to_owned,
        )
    }

    /// The files to write for what the batch changed.
    fn writes(&mut self, touched: &Touched) -> (Vec<Write>, Option<LedgerChange>) {
        let mut writes = Vec::new();
        let mut ledger_change = None;
        if touched.ledger {
            if let (Some(owner), Some(change)) =
                (&self.owner, self.ledger.as_ref().and_then(Ledger::change))
            {
                let name = crate::ledger::file_name(owner);
                writes.push(match &change {
                    LedgerChange::Rewrite(text) => Write::Replace(name, text.clone()),
                    LedgerChange::Append(text) => Write::Append(name, text.clone()),
                });
                ledger_change = Some(change);
            }
        }
        if touched.state {
            if let Some(s) = &self.state.value {
                writes.push(Write::Replace("state".to_owned(), s.to_python()));
            }
        }
        for (name, dirty) in &touched.cmdbs {
            let Some(c) = self
                .profiles
                .get_mut(name)
                .and_then(|p| p.cmdb.value.as_mut())
            else {
                continue;
            };
            let CmdbFile::Present(cmdb) = &c.file else {
                continue;
            };
            if cmdb.generated {
                // eDeploy keeps the generate() model as <profile>.cmdb.orig.
                writes.push(Write::Replace(format!("{name}.cmdb.orig"), c.text.clone()));
            }
            if c.lines.len() == cmdb.entries.len() {
                for &i in dirty {
                    if let (Some(line), Some(entry)) = (c.lines.get_mut(i), cmdb.entries.get(i)) {
                        *line = rdeploy_specs::syntax::to_python(entry);
                    }
                }
            } else {
                c.lines = cmdb
                    .entries
                    .iter()
                    .map(rdeploy_specs::syntax::to_python)
                    .collect();
            }
            // `Cmdb::to_python`'s text (one entry per line), re-rendering only the entries
            // that changed (a unit test holds the two equal).
            let mut text =
                String::with_capacity(c.lines.iter().map(|l| l.len() + 3).sum::<usize>() + 2);
            text.push('[');
            text.push_str(&c.lines.join(",\n "));
            text.push_str("]\n");
            writes.push(Write::Replace(format!("{name}.cmdb"), text));
        }
        (writes, ledger_change)
    }

    /// After a commit: the cache now holds what is on disk.
    fn committed(&mut self, touched: &Touched, ledger_change: Option<LedgerChange>) {
        let dir = self.dir.clone();
        self.committed_as(touched, ledger_change, |name| fingerprint(&dir.file(name)));
    }

    /// [`Snapshot::committed`], `seen` giving each written file's new fingerprint.
    fn committed_as(
        &mut self,
        touched: &Touched,
        ledger_change: Option<LedgerChange>,
        seen: impl Fn(&str) -> Option<Fingerprint>,
    ) {
        if let (Some(ledger), Some(change)) = (self.ledger.as_mut(), &ledger_change) {
            ledger.written(change);
        }
        if touched.state {
            self.state.seen = Some(seen("state"));
            self.state.ours = true;
        }
        for name in touched.cmdbs.keys() {
            let print = seen(&format!("{name}.cmdb"));
            if let Some(p) = self.profiles.get_mut(name) {
                p.cmdb.seen = Some(print);
                p.cmdb.ours = true;
                if let Some(c) = p.cmdb.value.as_mut() {
                    if let CmdbFile::Present(cmdb) = &mut c.file {
                        // Written in the expanded form: no longer a generate() model.
                        cmdb.generated = false;
                        c.text.clear();
                    }
                }
            }
        }
    }

    /// Everything wrong with the files, in `state` order (what `rdeploy check` prints
    /// before it matches inventories, and `/healthz` shows).
    pub fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        if self.dir.has_pending_commit() {
            out.push(Finding::new(
                Level::Warning,
                ".rdeploy-journal",
                None,
                "an interrupted commit is pending; the next `rdeploy match` or the server finishes it",
            ));
        }
        let last_good = self.state.value.is_some();
        if self.state.missing() {
            out.push(Finding::new(
                Level::Error,
                "state",
                None,
                "missing: the state file lists the profiles to try, e.g. [('hp', 4), ('vm', '*')]",
            ));
        }
        push_problems(&mut out, "state", &self.state.error, last_good);
        let Some(state) = &self.state.value else {
            return out;
        };
        if state.entries.is_empty() {
            out.push(Finding::new(
                Level::Warning,
                "state",
                None,
                "no profile listed: every upload will fail",
            ));
        }
        let mut seen = BTreeSet::new();
        for entry in &state.entries {
            if !seen.insert(entry.profile.as_str()) {
                continue;
            }
            if let Err(why) = check_profile_name(&entry.profile) {
                out.push(Finding::new(
                    Level::Error,
                    "state",
                    Some(entry.pos),
                    format!("profile name '{}' {why}", entry.profile),
                ));
                continue;
            }
            if let Some(p) = self.profiles.get(&entry.profile) {
                profile_findings(&mut out, &entry.profile, entry.pos, p);
            }
        }
        // Profiles present on disk but never tried.
        if let Ok(read) = fs::read_dir(self.dir.path()) {
            let mut orphans: Vec<String> = read
                .flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".specs"))
                        .map(str::to_owned)
                })
                .filter(|p| !seen.contains(p.as_str()))
                .collect();
            orphans.sort();
            for p in orphans {
                out.push(Finding::new(
                    Level::Warning,
                    &format!("{p}.specs"),
                    None,
                    format!("profile '{p}' is not listed in state, so it is never tried"),
                ));
            }
        }
        out
    }

    /// Every entry with an `ip` in the CMDBs in use (profile order, then file order); the
    /// addresses a lab must not hand out again.
    pub fn cmdb_hosts(&self) -> Vec<CmdbHost> {
        let mut names: Vec<&String> = self.profiles.keys().collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let Some(CachedCmdb {
                file: CmdbFile::Present(c),
                ..
            }) = self.profiles.get(name).and_then(|p| p.cmdb.value.as_ref())
            else {
                continue;
            };
            let text = |e: &rdeploy_specs::value::Value, k: &str| {
                e.dict_get(k).and_then(|v| v.as_str()).map(str::to_owned)
            };
            for e in &c.entries {
                let Some(ip) = text(e, "ip") else { continue };
                out.push(CmdbHost {
                    profile: name.clone(),
                    ip,
                    mac: text(e, "mac"),
                    hostname: text(e, "hostname"),
                    used: e.dict_get("used").is_some(),
                });
            }
        }
        out
    }

    /// The config's health: quotas, CMDB use, findings, commit counters.
    pub fn health(&self) -> ConfigHealth {
        let dir = self.dir.path();
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        for f in self.findings() {
            let p = FileProblem {
                error: f.located(dir),
                file: f.file,
                using_last_good: f.using_last_good,
            };
            match f.level {
                Level::Error => problems.push(p),
                Level::Warning => warnings.push(p),
            }
        }
        let profiles = self
            .state
            .value
            .as_ref()
            .map(|s| {
                s.entries
                    .iter()
                    .map(|e| (e.profile.clone(), e.quota.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let mut cmdbs: Vec<CmdbUsage> = self
            .profiles
            .iter()
            .filter_map(|(name, p)| match &p.cmdb.value.as_ref()?.file {
                CmdbFile::Present(c) => Some(CmdbUsage {
                    profile: name.clone(),
                    used: c.used(),
                    total: c.entries.len(),
                }),
                _ => None,
            })
            .collect();
        cmdbs.sort_by(|a, b| a.profile.cmp(&b.profile));
        ConfigHealth {
            config_dir: dir.display().to_string(),
            profiles,
            cmdbs,
            problems,
            warnings,
            last_error: self.last_error.clone(),
            commits: self.commits,
            uploads: self.uploads,
        }
    }
}

fn push_problems(out: &mut Vec<Finding>, file: &str, problems: &Option<Problems>, last_good: bool) {
    for (pos, message) in problems.iter().flatten() {
        let mut f = Finding::new(Level::Error, file, *pos, message.clone());
        f.using_last_good = last_good;
        out.push(f);
    }
}

fn profile_findings(out: &mut Vec<Finding>, name: &str, state_pos: Pos, p: &Profile) {
    let specs_file = format!("{name}.specs");
    let cmdb_file = format!("{name}.cmdb");
    let configure_file = format!("{name}.configure");
    if p.specs.missing() {
        out.push(Finding::new(
            Level::Error,
            "state",
            Some(state_pos),
            format!("profile '{name}' has no {specs_file}: it never matches"),
        ));
    }
    push_problems(out, &specs_file, &p.specs.error, p.specs.value.is_some());
    if p.specs.error.is_some() && p.specs.value.is_none() {
        out.push(Finding::new(
            Level::Warning,
            &specs_file,
            None,
            "eDeploy never matches a specs file it cannot read",
        ));
    }
    let mut binds = true;
    if let Some(specs) = &p.specs.value {
        for d in specs.diagnostics() {
            out.push(Finding::new(
                d.severity.into(),
                &specs_file,
                Some(d.pos),
                d.message.clone(),
            ));
        }
        binds = specs.binds_variables();
        if specs.is_empty() {
            out.push(Finding::new(
                Level::Warning,
                &specs_file,
                None,
                "no spec: every inventory matches this profile",
            ));
        }
    }
    push_problems(out, &cmdb_file, &p.cmdb.error, p.cmdb.value.is_some());
    let mut has_entries = false;
    match p.cmdb.value.as_ref().map(|c| &c.file) {
        Some(CmdbFile::Present(c)) => {
            has_entries = true;
            if c.used() == c.entries.len() {
                out.push(Finding::new(
                    Level::Warning,
                    &cmdb_file,
                    None,
                    format!(
                        "all {} entries are used: the next match of '{name}' fails",
                        c.entries.len()
                    ),
                ));
            }
        }
        Some(CmdbFile::Absent { ignored: None }) => out.push(Finding::new(
            Level::Warning,
            &cmdb_file,
            None,
            "empty: eDeploy treats it as no CMDB",
        )),
        Some(CmdbFile::Absent {
            ignored: Some(CmdbError::Syntax(e)),
        }) => out.push(Finding::new(
            Level::Error,
            &cmdb_file,
            Some(e.pos),
            format!(
                "{} (eDeploy would ignore the whole CMDB: matched machines get no entry)",
                e.message
            ),
        )),
        Some(CmdbFile::Absent { ignored: Some(e) }) | Some(CmdbFile::Broken(e)) => {
            out.push(cmdb_error_finding(&cmdb_file, e));
        }
        None => {}
    }
    if !binds && has_entries {
        out.push(Finding::new(
            Level::Warning,
            &specs_file,
            None,
            format!("binds no variable: eDeploy hands every node matching '{name}' the first CMDB entry (kept for compatibility); bind e.g. ('system', 'product', 'serial', '$serial')"),
        ));
    }
    if p.configure.missing() {
        out.push(Finding::new(
            Level::Error,
            &configure_file,
            None,
            format!("missing: a node matching '{name}' would get no configure script"),
        ));
    }
    for (pos, message) in &p.script_errors {
        out.push(Finding::new(
            Level::Error,
            &configure_file,
            *pos,
            message.clone(),
        ));
    }
}

fn cmdb_error_finding(file: &str, e: &CmdbError) -> Finding {
    match e {
        CmdbError::Generate { pos, source } => Finding::new(
            Level::Error,
            file,
            Some(*pos),
            format!(
                "generate(): {} (a match of this profile is refused)",
                error_chain(source)
            ),
        ),
        CmdbError::Syntax(s) => Finding::new(Level::Error, file, Some(s.pos), s.message.clone()),
        CmdbError::Shape { pos, found } => Finding::new(
            Level::Error,
            file,
            Some(*pos),
            format!("a CMDB must be a list of dicts or generate({{...}}), found {found} (a match of this profile is refused)"),
        ),
        other => Finding::new(
            Level::Error,
            file,
            None,
            format!("{other} (a match of this profile is refused)"),
        ),
    }
}

/// An error and its causes, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

impl Batch<'_> {
    /// Matches and allocates one upload. `node` names the machine (the server's node id):
    /// with a ledger, a machine that holds an install under way gets it back first,
    /// uncounted, if its profile still matches; if it no longer does, the install is given
    /// back (quota and CMDB entry) and the upload counts as a new install, once.
    pub fn upload(
        &mut self,
        inventory: &Inventory,
        node: Option<&str>,
    ) -> Result<Allocation, Refusal> {
        self.upload_prematched(inventory, node, None)
    }

    /// [`Batch::upload`] reusing the matches of `prematch` made with the specs the snapshot
    /// still has (the rest is matched here, within what is left of the upload's budget).
    pub fn upload_prematched(
        &mut self,
        inventory: &Inventory,
        node: Option<&str>,
        prematch: Option<&Prematch>,
    ) -> Result<Allocation, Refusal> {
        self.snap.uploads += 1;
        if let Some(node) = node {
            if let Some(hold) = self.snap.hold(node).cloned() {
                if let Some(alloc) = self.held_again(inventory, &hold, prematch)? {
                    return Ok(alloc);
                }
                tracing::info!(%node, profile = %hold.profile, "the machine no longer matches the profile it holds: its install is given back");
                self.release(node, &hold, true)?;
            }
        }
        let snap = &mut *self.snap;
        let Some(state) = snap.state.value.as_ref() else {
            return Err(snap.state_refusal());
        };
        let mut source = SnapshotSource {
            profiles: &snap.profiles,
            prematch,
        };
        let plan =
            find_match(state, inventory, &mut source).map_err(|e| Refusal::Match(Box::new(e)))?;
        let counted = matches!(
            state.entries.get(plan.state_index).map(|e| e.quota),
            Some(Quota::Left(_))
        );
        if counted && snap.state.error.is_some() {
            return Err(snap.state_refusal());
        }
        let mut original = None;
        let path = snap.file_path(&format!("{}.cmdb", plan.profile));
        if let (Some(alloc), Some(p)) = (&plan.cmdb, snap.profiles.get_mut(&plan.profile)) {
            if let Some(error) = p.cmdb.error_line(&path) {
                return Err(Refusal::ConfigBroken {
                    file: format!("{}.cmdb", plan.profile),
                    error,
                });
            }
            if let Some(CmdbFile::Present(cmdb)) = p.cmdb.value.as_mut().map(|c| &mut c.file) {
                original = cmdb.entries.get(alloc.index).cloned();
                if !alloc.reused || cmdb.entries.get(alloc.index) != Some(&alloc.vars.to_value()) {
                    cmdb.apply(alloc);
                    self.touched
                        .cmdbs
                        .entry(plan.profile.clone())
                        .or_default()
                        .insert(alloc.index);
                }
            }
        }
        if counted {
            if let Some(state) = snap.state.value.as_mut() {
                state.decrement(plan.state_index);
                self.touched.state = true;
            }
        }
        if let (Some(node), Some(ledger)) = (node, snap.ledger.as_mut()) {
            ledger.insert(
                node,
                Hold {
                    profile: plan.profile.clone(),
                    state_index: plan.state_index,
                    counted,
                    entry: plan.cmdb.as_ref().zip(original).map(|(a, o)| (a.index, o)),
                },
            );
            self.touched.ledger = true;
        }
        let script = snap.script_or_note(&plan.profile);
        Ok(Allocation {
            plan,
            script,
            counted,
        })
    }

    /// The allocation a machine holds, answered again if its profile still matches
    /// (`None` if it no longer does). The match made before the batch is used if it was
    /// made with these specs; else it is made here, within what is left of the upload's
    /// budget, and an upload that spends it is refused (its hold stays as it is).
    fn held_again(
        &mut self,
        inventory: &Inventory,
        hold: &Hold,
        prematch: Option<&Prematch>,
    ) -> Result<Option<Allocation>, Refusal> {
        let snap = &*self.snap;
        let Ok(specs) = (SnapshotSource {
            profiles: &snap.profiles,
            prematch: None,
        })
        .specs(&hold.profile) else {
            return Ok(None);
        };
        let result = match prematch.and_then(|p| p.get(&hold.profile, &specs)) {
            Some(done) => done.clone(),
            None => {
                let spent = prematch.map_or(0, |p| p.steps);
                match_all_with_budget(inventory, &specs, DEFAULT_STEP_BUDGET.saturating_sub(spent))
            }
        };
        if let Err(NoMatch::GaveUp { spec, .. }) = result.outcome {
            return Err(Refusal::Match(Box::new(too_costly(
                &hold.profile,
                &specs,
                spec,
                DEFAULT_STEP_BUDGET,
                Vec::new(),
            ))));
        }
        Ok(self.held_allocation(hold, result))
    }

    /// The allocation of `hold` from a match of its profile's specs, if it matched.
    fn held_allocation(&self, hold: &Hold, result: MatchResult) -> Option<Allocation> {
        let snap = &*self.snap;
        let matched = result.outcome.ok()?;
        let (vars, cmdb) = match &hold.entry {
            None => (matched, None),
            Some((index, _)) => {
                let entry = match snap
                    .profiles
                    .get(&hold.profile)
                    .and_then(|p| p.cmdb.value.as_ref())
                    .map(|c| &c.file)
                {
                    Some(CmdbFile::Present(c)) => c.entries.get(*index)?,
                    _ => return None,
                };
                let vars = vars_of(entry)?;
                let alloc = Allocated {
                    index: *index,
                    vars: vars.clone(),
                    reused: true,
                };
                (vars, Some(alloc))
            }
        };
        Some(Allocation {
            plan: Plan {
                profile: hold.profile.clone(),
                state_index: hold.state_index,
                vars,
                forced: result.forced,
                cmdb,
            },
            script: snap.script_or_note(&hold.profile),
            counted: false,
        })
    }

    /// Ends a machine's hold: with `give_back`, its install is returned (the quota it
    /// counted, its CMDB entry as it was); without, the entry stays used (an install that
    /// finished).
    fn release(&mut self, node: &str, hold: &Hold, give_back: bool) -> Result<(), Refusal> {
        let snap = &mut *self.snap;
        if give_back {
            if hold.counted {
                if snap.state.error.is_some() {
                    return Err(snap.state_refusal());
                }
                if let Some(state) = snap.state.value.as_mut() {
                    if state.give_back(hold.state_index, &hold.profile) {
                        self.touched.state = true;
                    }
                }
            }
            if let Some((index, original)) = &hold.entry {
                let path = snap.file_path(&format!("{}.cmdb", hold.profile));
                if let Some(p) = snap.profiles.get_mut(&hold.profile) {
                    if let Some(error) = p.cmdb.error_line(&path) {
                        return Err(Refusal::ConfigBroken {
                            file: format!("{}.cmdb", hold.profile),
                            error,
                        });
                    }
                    if let Some(CmdbFile::Present(cmdb)) =
                        p.cmdb.value.as_mut().map(|c| &mut c.file)
                    {
                        if let Some(slot) = cmdb.entries.get_mut(*index) {
                            *slot = original.clone();
                            self.touched
                                .cmdbs
                                .entry(hold.profile.clone())
                                .or_default()
                                .insert(*index);
                        }
                    }
                }
            }
        }
        if let Some(ledger) = snap.ledger.as_mut() {
            ledger.remove(node);
            self.touched.ledger = true;
        }
        Ok(())
    }

    /// A machine's install finished: it no longer holds an install under way (its entry
    /// stays used, as eDeploy's did). Returns whether it held one.
    pub fn finish(&mut self, node: &str) -> bool {
        match self.snap.hold(node).cloned() {
            Some(hold) => self.release(node, &hold, false).is_ok(),
            None => false,
        }
    }

    /// A failure report (`failure=<profile>`): gives one install back. For a known
    /// machine (`node`) with a ledger, the install it holds is given back, once: its quota
    /// if it counted (its CMDB entry stays with it, as eDeploy kept it); a machine that
    /// holds nothing changes nothing (its report was already counted, or it never
    /// installed). An anonymous report gives one install back to `profile`, as eDeploy did.
    pub fn failure(
        &mut self,
        profile: &str,
        node: Option<&str>,
    ) -> Result<FailureOutcome, Refusal> {
        if let (Some(node), Some(_)) = (node, &self.snap.ledger) {
            let Some(hold) = self.snap.hold(node).cloned() else {
                return Ok(FailureOutcome::Unchanged);
            };
            if hold.profile != profile {
                tracing::warn!(%node, reported = %profile, holds = %hold.profile, "failure report names another profile than the one the machine holds: giving back the one it holds");
            }
            let counted = hold.counted;
            let without_entry = Hold {
                entry: None,
                ..hold
            };
            self.release(node, &without_entry, true)?;
            return Ok(if counted {
                FailureOutcome::QuotaReturned
            } else {
                FailureOutcome::Unchanged
            });
        }
        let snap = &mut *self.snap;
        let Some(state) = snap.state.value.as_ref() else {
            return Err(snap.state_refusal());
        };
        let mut probe = state.clone();
        if !probe.failed_profile(profile) {
            return Ok(FailureOutcome::Unchanged);
        }
        if snap.state.error.is_some() {
            return Err(snap.state_refusal());
        }
        snap.state.value = Some(probe);
        self.touched.state = true;
        Ok(FailureOutcome::QuotaReturned)
    }
}

/// A CMDB entry as variables (its keys in order; a non-string key as its Python text).
fn vars_of(entry: &rdeploy_specs::Value) -> Option<rdeploy_specs::Vars> {
    let rdeploy_specs::Value::Dict(items) = entry else {
        return None;
    };
    let mut vars = rdeploy_specs::Vars::default();
    for (k, v) in items {
        let key = match k {
            rdeploy_specs::Value::Str(s) => s.clone(),
            other => other.to_string(),
        };
        vars.set(&key, v.clone());
    }
    Some(vars)
}

/// A [`ProfileSource`] over the snapshot (the last good version of each file), and the
/// matches made before the batch.
struct SnapshotSource<'a> {
    profiles: &'a HashMap<String, Profile>,
    prematch: Option<&'a Prematch>,
}

impl ProfileSource for SnapshotSource<'_> {
    fn specs(&mut self, profile: &str) -> Result<Arc<Specs>, String> {
        check_profile_name(profile).map_err(|why| format!("profile name '{profile}' {why}"))?;
        let p = self
            .profiles
            .get(profile)
            .ok_or_else(|| format!("{profile}.specs not found"))?;
        match (&p.specs.value, &p.specs.error) {
            (Some(s), _) => Ok(Arc::clone(s)),
            (None, Some(e)) => Err(render(Path::new(&format!("{profile}.specs")), e)),
            (None, None) => Err(format!("{profile}.specs not found")),
        }
    }

    fn cmdb(&mut self, profile: &str) -> Result<Option<&Cmdb>, CmdbError> {
        match self
            .profiles
            .get(profile)
            .and_then(|p| p.cmdb.value.as_ref())
            .map(|c| &c.file)
        {
            Some(CmdbFile::Present(c)) => Ok(Some(c)),
            Some(CmdbFile::Broken(e)) => Err(e.clone()),
            Some(CmdbFile::Absent { .. }) | None => Ok(None),
        }
    }

    fn match_specs(
        &mut self,
        profile: &str,
        specs: &Arc<Specs>,
        inventory: &Inventory,
        budget: u64,
    ) -> MatchResult {
        match self.prematch.and_then(|p| p.get(profile, specs)) {
            Some(done) => done.clone(),
            None => match_all_with_budget(inventory, specs, budget),
        }
    }
}

/// The specs of the profiles `state` lets an upload try, in the order it tries them, as the
/// snapshot last read them: what an upload is matched against before its batch (the server
/// does it on other threads, so a costly upload never holds the writer; see
/// [`Batch::upload_prematched`]).
#[derive(Debug, Clone, Default)]
pub struct SpecsView {
    profiles: Vec<(String, Arc<Specs>)>,
    /// Every profile's specs, for the one a machine may hold an install of (its quota may
    /// be spent since).
    all: HashMap<String, Arc<Specs>>,
}

impl SpecsView {
    /// Matches `inventory` against each profile in turn, until one matches or the budget
    /// is spent. `held`, the profile the machine was last given (a hint: the batch's ledger
    /// decides), is matched first, whatever its quota, as the batch will try it first.
    /// Pure: the batch decides (quotas, CMDB) and redoes what changed since.
    pub fn prematch(&self, inventory: &Inventory, budget: u64, held: Option<&str>) -> Prematch {
        let mut done = Prematch {
            budget,
            ..Prematch::default()
        };
        if let Some((profile, specs)) = held.and_then(|h| self.all.get_key_value(h)) {
            let result = match_all_with_budget(inventory, specs, budget);
            done.steps += result.steps;
            let gave_up = matches!(result.outcome, Err(NoMatch::GaveUp { .. }));
            done.results
                .push((profile.clone(), Arc::clone(specs), result));
            if gave_up {
                return done;
            }
        }
        for (profile, specs) in &self.profiles {
            let result = match done.get(profile, specs) {
                Some(r) => r.clone(),
                None => {
                    let r =
                        match_all_with_budget(inventory, specs, budget.saturating_sub(done.steps));
                    done.steps += r.steps;
                    r
                }
            };
            let failed = matches!(result.outcome, Err(NoMatch::Spec { .. }));
            done.results
                .push((profile.clone(), Arc::clone(specs), result));
            if !failed {
                break;
            }
        }
        done
    }
}

/// The matches of one upload made before its batch, each with the specs it used.
#[derive(Debug, Clone, Default)]
pub struct Prematch {
    results: Vec<(String, Arc<Specs>, MatchResult)>,
    /// Matching steps spent.
    pub steps: u64,
    budget: u64,
}

impl Prematch {
    /// The result for `profile` if it was matched with these very specs.
    fn get(&self, profile: &str, specs: &Arc<Specs>) -> Option<&MatchResult> {
        self.results
            .iter()
            .find(|(p, s, _)| p == profile && Arc::ptr_eq(s, specs))
            .map(|(_, _, r)| r)
    }

    /// Whether matching spent the whole budget.
    pub fn gave_up(&self) -> bool {
        self.results
            .last()
            .is_some_and(|(_, _, r)| matches!(r.outcome, Err(NoMatch::GaveUp { .. })))
    }

    /// The refusal of an upload whose matching spent the budget: the profile and spec it
    /// was matching, and why the profiles before it did not match.
    pub fn too_costly(&self, inventory: &Inventory) -> Option<Refusal> {
        let (profile, specs, result) = self.results.last()?;
        let Err(NoMatch::GaveUp { spec, .. }) = result.outcome else {
            return None;
        };
        let tried = self
            .results
            .iter()
            .filter_map(|(p, s, r)| match r.outcome {
                Err(NoMatch::Spec { index }) => Some((p.clone(), spec_skip(inventory, s, index))),
                _ => None,
            })
            .collect();
        Some(Refusal::Match(Box::new(too_costly(
            profile,
            specs,
            spec,
            self.budget,
            tried,
        ))))
    }
}

/// Why an upload got nothing: the files could not be written, or it was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// One upload, the eDeploy CGI way: a batch of one through a fresh [`Snapshot`] (lock the
/// dir, match, allocate, save `state` and the CMDB as one atomic change). On any error
/// nothing is written.
pub fn match_and_save(
    dir: &ConfigDir,
    inventory: &rdeploy_specs::Inventory,
) -> Result<crate::pipeline::Plan, UploadError> {
    let mut snap = Snapshot::new(dir.clone());
    let alloc = snap.batch(|b| b.upload(inventory, None))??;
    Ok(alloc.plan)
}

/// A failure report (`failure=<profile>`): gives one install back, through a fresh
/// [`Snapshot`]. Returns whether `state` changed.
pub fn report_failure(dir: &ConfigDir, profile: &str) -> Result<bool, UploadError> {
    let mut snap = Snapshot::new(dir.clone());
    let outcome = snap.batch(|b| b.failure(profile, None))??;
    Ok(outcome == FailureOutcome::QuotaReturned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kvm(i: usize) -> Result<Inventory, Box<dyn std::error::Error>> {
        Ok(Inventory::parse(&format!(
            "[('system', 'product', 'name', 'KVM'), ('disk', 'vda', 'size', '20'), ('network', 'eth0', 'serial', '52:54:00:00:00:{i:02x}')]"
        ))
        .map_err(|e| e.to_string())?)
    }

    fn upload(
        snap: &mut Snapshot,
        i: usize,
    ) -> Result<Result<Allocation, Refusal>, Box<dyn std::error::Error>> {
        let inv = kvm(i)?;
        Ok(snap.batch(|b| b.upload(&inv, None))?)
    }

    #[test]
    fn a_cmdb_over_the_limit_is_expanded_once_until_the_file_changes(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("vm.cmdb");
        // 1,000,001 entries: over generate()'s limit.
        fs::write(&path, "generate({'h': 'n1-1000001'})\n")?;
        let mut t: Tracked<String> = Tracked::default();
        let expanded = std::cell::Cell::new(0);
        let parse = |text: &str| {
            expanded.set(expanded.get() + 1);
            match Cmdb::parse(text) {
                Ok(_) => Ok(text.to_owned()),
                Err(e) => Err(vec![(None, e.to_string())]),
            }
        };
        // Read at once (within the racy window, where the text is read again) and later.
        for _ in 0..5 {
            refresh_file(&mut t, &path, parse);
        }
        t.read_at = Some(SystemTime::now() + RACY);
        refresh_file(&mut t, &path, parse);
        let error = t.error.as_ref().map(|p| p[0].1.clone()).unwrap_or_default();
        assert!(
            error.contains("cannot expand this generate() call"),
            "{error}"
        );
        assert_eq!(
            expanded.get(),
            1,
            "the failure is kept while the file is the same"
        );
        fs::write(&path, "generate({'h': 'n1-100000'})\n")?;
        refresh_file(&mut t, &path, parse);
        assert_eq!(expanded.get(), 2, "a changed file is read again");
        assert!(t.error.is_none() && t.value.is_some());
        Ok(())
    }

    #[test]
    fn an_edit_that_keeps_size_and_timestamp_is_still_seen(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("x.specs");
        fs::write(&path, "aaaa")?;
        let mtime = fs::metadata(&path)?.modified()?;
        let mut t: Tracked<String> = Tracked::default();
        refresh_file(&mut t, &path, |s| Ok(s.to_owned()));
        assert_eq!(t.value.as_deref(), Some("aaaa"));
        // Same size, same inode, and the timestamp put back: only the change time moved.
        fs::write(&path, "bbbb")?;
        fs::File::options()
            .write(true)
            .open(&path)?
            .set_modified(mtime)?;
        refresh_file(&mut t, &path, |s| Ok(s.to_owned()));
        assert_eq!(t.value.as_deref(), Some("bbbb"));
        Ok(())
    }

    #[test]
    fn an_old_edit_with_its_timestamp_put_back_is_seen_by_its_change_time(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("state");
        fs::write(&path, "[('vm', 49)]\n")?;
        let old = SystemTime::now() - Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(&path)?
            .set_modified(old)?;
        let mut t: Tracked<String> = Tracked::default();
        refresh_file(&mut t, &path, |s| Ok(s.to_owned()));
        // Long after the read (no racy window), `cp -p` style: same size, mtime put back.
        t.read_at = Some(SystemTime::now() + RACY);
        std::thread::sleep(Duration::from_millis(20));
        fs::write(&path, "[('vm', 10)]\n")?;
        fs::File::options()
            .write(true)
            .open(&path)?
            .set_modified(old)?;
        refresh_file(&mut t, &path, |s| Ok(s.to_owned()));
        assert_eq!(t.value.as_deref(), Some("[('vm', 10)]\n"));
        Ok(())
    }

    #[test]
    fn commits_write_what_the_cmdb_crate_would_write() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let p = tmp.path();
        fs::write(p.join("state"), "[('vm', 3)]\n")?;
        fs::write(
            p.join("vm.specs"),
            "[('disk', '$disk', 'size', '$size'), ('network', '$eth', 'serial', '$mac')]\n",
        )?;
        fs::write(
            p.join("vm.cmdb"),
            "generate({'ip': '10.0.0.1-5', 'hostname': 'vm1-5'})\n",
        )?;
        let mut snap = Snapshot::new(ConfigDir::new(p));
        for i in 0..3 {
            let a = upload(&mut snap, i)?.map_err(|e| e.to_string())?;
            assert_eq!(
                a.plan.vars.get("ip").and_then(|v| v.as_str()),
                Some(format!("10.0.0.{}", i + 1).as_str())
            );
            let text = fs::read_to_string(p.join("vm.cmdb"))?;
            let reparsed = Cmdb::parse(&text)?.ok_or("empty")?;
            assert_eq!(
                text,
                reparsed.to_python(),
                "cached rendering differs from Cmdb::to_python"
            );
            assert_eq!(reparsed.used(), i + 1);
        }
        assert!(fs::read_to_string(p.join("vm.cmdb.orig"))?.starts_with("generate("));
        assert_eq!(fs::read_to_string(p.join("state"))?, "[('vm', 0)]\n");
        assert!(matches!(upload(&mut snap, 9)?, Err(Refusal::Match(_))));
        Ok(())
    }

    #[test]
    fn unusable_cmdbs_are_refused_or_ignored_by_one_policy(
    ) -> Result<(), Box<dyn std::error::Error>> {
        // (CMDB text, refused?): a dict, a list of non-dicts and a generate() that cannot
        // expand are refused; a syntax error and [] are eDeploy's "no CMDB".
        let cases = [
            ("{'ip': '10.0.0.1'}\n", true),
            ("['a', 1]\n", true),
            ("generate({'n': 5})\n", true),
            ("[{'ip': '10.0.0.1'}\n", false),
            ("[]\n", false),
        ];
        for (text, refused) in cases {
            let tmp = tempfile::tempdir()?;
            let p = tmp.path();
            fs::write(p.join("state"), "[('vm', 3)]\n")?;
            fs::write(p.join("vm.specs"), "[('disk', '$disk', 'size', '$size')]\n")?;
            fs::write(p.join("vm.cmdb"), text)?;
            let mut snap = Snapshot::new(ConfigDir::new(p));
            let r = upload(&mut snap, 1)?;
            assert_eq!(
                r.as_ref().is_err_and(Refusal::is_config_error),
                refused,
                "{text}: {r:?}"
            );
            let state = fs::read_to_string(p.join("state"))?;
            assert_eq!(state == "[('vm', 3)]\n", refused, "{text}: {state}");
            assert_eq!(fs::read_to_string(p.join("vm.cmdb"))?, text);
            let h = snap.health();
            assert!(
                h.problems.iter().any(|f| f.file == "vm.cmdb") || text == "[]\n",
                "{text}: {h:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn a_match_made_before_the_batch_is_used_only_with_the_same_specs(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let p = tmp.path();
        fs::write(p.join("state"), "[('hp', 0), ('vm', 3)]\n")?;
        fs::write(p.join("hp.specs"), "[('disk', '$disk', 'size', '$size')]\n")?;
        fs::write(p.join("vm.specs"), "[('disk', '$disk', 'size', '$size')]\n")?;
        let mut snap = Snapshot::new(ConfigDir::new(p));
        snap.refresh();
        let view = snap.specs_view();
        assert_eq!(
            view.profiles.len(),
            1,
            "hp has no installs left: not matched ahead"
        );
        let pre = view.prematch(&kvm(1)?, 1_000_000, None);
        assert!(!pre.gave_up());
        assert!(pre.steps > 0);
        let inv = kvm(1)?;
        let a = snap.batch(|b| b.upload_prematched(&inv, None, Some(&pre)))??;
        assert_eq!(a.plan.profile, "vm");
        // The specs change before the next batch: the earlier match is not reused.
        std::thread::sleep(Duration::from_millis(10));
        fs::write(
            p.join("vm.specs"),
            "[('disk', '$disk', 'size', 'gt(100)')]\n",
        )?;
        let pre = view.prematch(&inv, 1_000_000, None);
        let r = snap.batch(|b| b.upload_prematched(&inv, None, Some(&pre)))?;
        assert!(
            matches!(&r, Err(Refusal::Match(m)) if matches!(**m, MatchError::UnableToMatch { .. })),
            "{r:?}"
        );
        Ok(())
    }

    #[test]
    fn a_broken_state_refuses_counted_uploads() -> Result<(), Box<dyn std::error::Error>> {
        for text in [Some("[('vm', 'x')]\n"), Some("[('vm', 3)\n"), None] {
            let tmp = tempfile::tempdir()?;
            let p = tmp.path();
            if let Some(t) = text {
                fs::write(p.join("state"), t)?;
            }
            fs::write(p.join("vm.specs"), "[('disk', '$disk', 'size', '$size')]\n")?;
            let mut snap = Snapshot::new(ConfigDir::new(p));
            let r = upload(&mut snap, 1)?;
            assert!(
                matches!(&r, Err(Refusal::ConfigBroken { file, .. }) if file == "state"),
                "{text:?}: {r:?}"
            );
            assert!(snap.health().problems.iter().any(|f| f.file == "state"));
        }
        Ok(())
    }

    fn vm_dir(quota: &str) -> Result<tempfile::TempDir, Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let p = tmp.path();
        fs::write(
            p.join("state"),
            format!("[('vm', {quota}), ('other', 5)]\n"),
        )?;
        fs::write(
            p.join("vm.specs"),
            "[('system', 'product', 'name', 'KVM'), ('disk', '$disk', 'size', 'ge(10)'), ('network', '$eth', 'serial', '$mac')]\n",
        )?;
        fs::write(p.join("vm.cmdb"), "generate({'ip': '10.0.0.1-9'})\n")?;
        fs::write(
            p.join("other.specs"),
            "[('disk', '$disk', 'size', '$size')]\n",
        )?;
        fs::write(p.join("other.cmdb"), "generate({'ip': '10.9.0.1-9'})\n")?;
        Ok(tmp)
    }

    fn inv(disk: &str, size: u32, mac: u8) -> Result<Inventory, Box<dyn std::error::Error>> {
        Ok(Inventory::parse(&format!(
            "[('system', 'product', 'name', 'KVM'), ('disk', '{disk}', 'size', '{size}'), ('network', 'eth0', 'serial', '52:54:00:00:00:{mac:02x}')]"
        ))
        .map_err(|e| e.to_string())?)
    }

    fn up(
        snap: &mut Snapshot,
        inventory: &Inventory,
        node: &str,
    ) -> Result<Allocation, Box<dyn std::error::Error>> {
        Ok(snap
            .batch(|b| b.upload(inventory, Some(node)))?
            .map_err(|e| e.to_string())?)
    }

    fn owned(dir: &Path) -> Result<Snapshot, Box<dyn std::error::Error>> {
        Ok(Snapshot::new(ConfigDir::new(dir)).with_owner("data1")?)
    }

    fn ip(a: &Allocation) -> String {
        a.plan
            .vars
            .get("ip")
            .and_then(|v| v.as_str())
            .unwrap_or("-")
            .to_owned()
    }

    #[test]
    fn a_retry_after_a_crash_gets_its_entry_back_uncounted(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let tmp = vm_dir("3")?;
        let p = tmp.path();
        let first = up(&mut owned(p)?, &inv("vda", 20, 1)?, "n1")?;
        assert!(first.counted);
        // The server dies: a new snapshot knows only the files.
        let again = up(&mut owned(p)?, &inv("vda", 20, 1)?, "n1")?;
        assert!(!again.counted);
        assert_eq!(ip(&again), ip(&first));
        assert_eq!(again.plan.profile, "vm");
        assert!(fs::read_to_string(p.join("state"))?.contains("('vm', 2)"));
        // Another data dir (another server, a new rollout) sees a new machine, as eDeploy.
        let other = Snapshot::new(ConfigDir::new(p)).with_owner("data2")?;
        let fresh = up(&mut { other }, &inv("vda", 20, 1)?, "n1")?;
        assert!(fresh.counted);
        Ok(())
    }

    #[test]
    fn a_machine_holds_one_allocation_whatever_it_binds() -> Result<(), Box<dyn std::error::Error>>
    {
        // Its own allocation used the profile's last install: the retry is not sent to the
        // next profile; another disk name does not give a second entry.
        let tmp = vm_dir("1")?;
        let p = tmp.path();
        let mut snap = owned(p)?;
        let first = up(&mut snap, &inv("vda", 20, 1)?, "n1")?;
        let retry = up(&mut snap, &inv("vda", 20, 1)?, "n1")?;
        assert_eq!(
            (retry.plan.profile.as_str(), ip(&retry)),
            ("vm", ip(&first))
        );
        let renamed = up(&mut snap, &inv("sda", 20, 1)?, "n1")?;
        assert_eq!(ip(&renamed), ip(&first));
        assert!(!renamed.counted);
        let cmdb = fs::read_to_string(p.join("vm.cmdb"))?;
        assert_eq!(cmdb.matches("'used': 1").count(), 1, "{cmdb}");
        assert!(fs::read_to_string(p.join("state"))?.contains("('vm', 0)"));
        Ok(())
    }

    #[test]
    fn a_machine_that_no_longer_matches_gives_its_install_back_once(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let tmp = vm_dir("3")?;
        let p = tmp.path();
        let mut snap = owned(p)?;
        up(&mut snap, &inv("vda", 20, 1)?, "n1")?;
        // A 5 GB disk no longer matches vm (ge(10)): vm's entry and install come back, and
        // the machine counts once against `other`.
        let moved = up(&mut snap, &inv("vda", 5, 1)?, "n1")?;
        assert_eq!(moved.plan.profile, "other");
        assert!(moved.counted);
        let state = fs::read_to_string(p.join("state"))?;
        assert!(
            state.contains("('vm', 3)") && state.contains("('other', 4)"),
            "{state}"
        );
        let cmdb = fs::read_to_string(p.join("vm.cmdb"))?;
        assert_eq!(cmdb.matches("'used'").count(), 0, "{cmdb}");
        Ok(())
    }

    #[test]
    fn a_failure_report_gives_a_held_install_back_once() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = vm_dir("3")?;
        let p = tmp.path();
        let mut snap = owned(p)?;
        let first = up(&mut snap, &inv("vda", 20, 1)?, "n1")?;
        for expected in [FailureOutcome::QuotaReturned, FailureOutcome::Unchanged] {
            let o = snap.batch(|b| b.failure("vm", Some("n1")))?;
            assert_eq!(o.map_err(|e| e.to_string())?, expected);
        }
        assert!(fs::read_to_string(p.join("state"))?.contains("('vm', 3)"));
        // Its entry stayed with it (eDeploy kept it): the next attempt gets it and counts.
        let again = up(&mut snap, &inv("vda", 20, 1)?, "n1")?;
        assert_eq!(ip(&again), ip(&first));
        assert!(again.counted);
        // A finished install is no longer held: a reinstall counts again.
        assert!(snap.batch(|b| b.finish("n1"))?);
        assert!(up(&mut snap, &inv("vda", 20, 1)?, "n1")?.counted);
        Ok(())
    }
}
