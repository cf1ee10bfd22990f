//! The one writer: a thread that owns the parsed config dir and turns uploads into
//! allocations, many at a time under one lock and one atomic commit (group commit).
//!
//! Requests arrive over a channel. The writer takes the first, drains whatever else is
//! waiting (up to [`MAX_BATCH`]), and then, inside one [`ConfigDir::transaction`]:
//!
//! 1. refreshes its cache: every file whose fingerprint (mtime, size, inode) changed is
//!    read again; a file that no longer parses keeps its last good version, and the error
//!    (with file:line:col) is logged and shown by `/healthz`;
//! 2. runs `find_match` for each request against the cached state and CMDBs, applying
//!    each plan in memory so the next request of the batch sees it;
//! 3. writes every touched file (`state`, `<profile>.cmdb`, `.cmdb.orig`) with one
//!    journaled commit, then answers every request of the batch.
//!
//! A file that is broken on disk is never overwritten: an upload that would have to write
//! it is refused ([`Refusal::ConfigBroken`]) until the operator fixes it. If the commit
//! fails, every request of the batch gets an error and the cache is dropped, so the next
//! batch starts again from the files.

use rdeploy_cmdb::cmdb::{Cmdb, CmdbError, Loaded};
use rdeploy_cmdb::pipeline::{find_match, ProfileSource};
use rdeploy_cmdb::state::{check_profile_name, Quota};
use rdeploy_cmdb::store::StoreError;
use rdeploy_cmdb::{ConfigDir, MatchError, Plan, State};
use rdeploy_specs::{Inventory, Specs};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::oneshot::{self, Sender};

/// Most requests handled under one lock.
pub const MAX_BATCH: usize = 512;

/// How often the writer looks at the files when no request comes.
const IDLE_REFRESH: Duration = Duration::from_secs(2);

/// One upload to match and allocate.
#[derive(Debug)]
pub struct UploadJob {
    pub inventory: Inventory,
    /// The profile this node already holds an install of (an agent retrying): its quota is
    /// not counted again when it matches the same profile.
    pub holds: Option<String>,
}

/// What an upload got.
#[derive(Debug, Clone)]
pub struct Allocation {
    pub plan: Plan,
    /// The profile's `.configure` script (last good version).
    pub script: String,
    /// Whether this upload counted against the profile's quota.
    pub counted: bool,
}

/// Why an upload got nothing.
#[derive(Debug)]
pub enum Refusal {
    /// No profile, or the matched profile's CMDB, could serve it.
    Match(Box<MatchError>),
    /// The upload would have to rewrite a file that is broken on disk.
    ConfigBroken { file: String, error: String },
    /// The config dir could not be read or written.
    Store(String),
    /// The writer is gone (the server is stopping).
    Stopped,
}

/// The outcome of a failure report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureOutcome {
    /// One install was given back to the profile.
    QuotaReturned,
    /// Unlimited quota or a profile not in `state`: nothing changed.
    Unchanged,
}

/// A problem with one file of the config dir.
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

/// What `/healthz` shows of the config.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ConfigHealth {
    pub config_dir: String,
    /// Profiles in `state` order with their quota (`"*"` or installs left).
    pub profiles: Vec<(String, String)>,
    /// Each profile's CMDB: entries used and total (profiles without a CMDB are absent).
    pub cmdbs: Vec<CmdbUsage>,
    pub problems: Vec<FileProblem>,
    /// The last commit error, if the last commit failed.
    pub last_error: Option<String>,
    pub commits: u64,
    pub uploads: u64,
}

enum Request {
    Upload(UploadJob, Sender<Result<Allocation, Refusal>>),
    Failure(String, Sender<Result<FailureOutcome, Refusal>>),
    Refresh(Sender<ConfigHealth>),
}

/// The handle the HTTP side uses: cheap to clone.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: mpsc::Sender<RequestBox>,
    health: Arc<Mutex<ConfigHealth>>,
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
    pub fn start(dir: ConfigDir, baseline: bool) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::channel();
        let health = Arc::new(Mutex::new(ConfigHealth {
            config_dir: dir.path().display().to_string(),
            ..ConfigHealth::default()
        }));
        let mut cache = Cache::new(dir);
        cache.baseline = baseline;
        let shared = Arc::clone(&health);
        std::thread::Builder::new()
            .name("rdeploy-writer".into())
            .spawn(move || run(cache, rx, shared))?;
        Ok(Writer { tx, health })
    }

    /// Matches and allocates one upload (waits for its batch to commit).
    pub async fn upload(&self, job: UploadJob) -> Result<Allocation, Refusal> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Upload(job, tx))?;
        rx.await.unwrap_or(Err(Refusal::Stopped))
    }

    /// Gives one install back to `profile`.
    pub async fn failure(&self, profile: String) -> Result<FailureOutcome, Refusal> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Failure(profile, tx))?;
        rx.await.unwrap_or(Err(Refusal::Stopped))
    }

    /// Makes the writer look at the files now and returns the config's health.
    pub async fn refresh(&self) -> ConfigHealth {
        let (tx, rx) = oneshot::channel();
        if self.send(Request::Refresh(tx)).is_err() {
            return self.health();
        }
        rx.await.unwrap_or_else(|_| self.health())
    }

    /// The health as of the last batch.
    pub fn health(&self) -> ConfigHealth {
        self.health.lock().map(|h| h.clone()).unwrap_or_default()
    }

    fn send(&self, r: Request) -> Result<(), Refusal> {
        self.tx.send(RequestBox(r)).map_err(|_| Refusal::Stopped)
    }
}

fn run(mut cache: Cache, rx: Receiver<RequestBox>, health: Arc<Mutex<ConfigHealth>>) {
    loop {
        let first = match rx.recv_timeout(IDLE_REFRESH) {
            Ok(RequestBox(r)) => r,
            Err(RecvTimeoutError::Timeout) => {
                let _ = cache.batch(Vec::new());
                publish(&cache, &health);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut batch = vec![first];
        let max = if cache.baseline { 1 } else { MAX_BATCH };
        while batch.len() < max {
            match rx.try_recv() {
                Ok(RequestBox(r)) => batch.push(r),
                Err(_) => break,
            }
        }
        let span = tracing::debug_span!("batch", size = batch.len());
        let _enter = span.enter();
        let replies = cache.batch(batch);
        publish(&cache, &health);
        for reply in replies {
            reply.send(&cache);
        }
    }
}

fn publish(cache: &Cache, health: &Mutex<ConfigHealth>) {
    if let Ok(mut h) = health.lock() {
        *h = cache.health();
    }
}

/// A reply waiting for its batch to commit.
enum Reply {
    Upload(
        Sender<Result<Allocation, Refusal>>,
        Result<Allocation, Refusal>,
    ),
    Failure(
        Sender<Result<FailureOutcome, Refusal>>,
        Result<FailureOutcome, Refusal>,
    ),
    Refresh(Sender<ConfigHealth>),
}

impl Reply {
    fn send(self, cache: &Cache) {
        // A requester that went away (client disconnected) is not an error.
        match self {
            Reply::Upload(tx, r) => {
                let _ = tx.send(r);
            }
            Reply::Failure(tx, r) => {
                let _ = tx.send(r);
            }
            Reply::Refresh(tx) => {
                let _ = tx.send(cache.health());
            }
        }
    }

    fn fail(&mut self, why: &str) {
        match self {
            Reply::Upload(_, r) => *r = Err(Refusal::Store(why.to_owned())),
            Reply::Failure(_, r) => *r = Err(Refusal::Store(why.to_owned())),
            Reply::Refresh(_) => {}
        }
    }
}

/// What identifies a version of a file: changes when it is rewritten or edited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    mtime: SystemTime,
    len: u64,
    ino: u64,
}

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let meta = fs::metadata(path).ok()?;
    Some(Fingerprint {
        mtime: meta.modified().ok()?,
        len: meta.len(),
        ino: meta.ino(),
    })
}

/// One cached file: the last good parsed value, and the problem with the current text.
#[derive(Debug)]
struct Tracked<T> {
    /// `None` until the file has been looked at.
    seen: Option<Option<Fingerprint>>,
    /// Last good value (`None`: missing, or never parsed).
    value: Option<T>,
    /// The current text does not parse (the value, if any, is the last good one).
    error: Option<String>,
    /// Hash of the text last read, and when it was read: an edit that keeps the size and
    /// lands in the same timestamp tick as an earlier read leaves the fingerprint as it
    /// was, so a file modified shortly before it was read is read again until it is older.
    hash: u64,
    read_at: Option<SystemTime>,
    /// The last version is the writer's own commit (not re-read for the check above).
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

/// How long after its modification a file's fingerprint is not trusted alone.
const RACY: Duration = Duration::from_secs(2);

fn text_hash(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

#[derive(Debug, Default)]
struct Profile {
    specs: Tracked<Arc<Specs>>,
    /// `value: None` means no CMDB (missing, or `[]`).
    cmdb: Tracked<CachedCmdb>,
    configure: Tracked<String>,
}

#[derive(Debug)]
struct CachedCmdb {
    /// `None`: the file is `[]`, or unparsable with no earlier good version (eDeploy: no CMDB).
    cmdb: Option<Cmdb>,
    /// The text read, kept to save it as `.cmdb.orig` when it was a `generate()` model.
    text: String,
    /// A `generate()` that cannot expand (eDeploy crashed: this profile cannot allocate).
    generate_error: Option<String>,
    /// Each entry in its file form, kept so a commit re-renders only the entries that
    /// changed (empty until the first write).
    lines: Vec<String>,
}

struct Cache {
    dir: ConfigDir,
    state: Tracked<State>,
    profiles: HashMap<String, Profile>,
    last_error: Option<String>,
    commits: u64,
    uploads: u64,
    /// eDeploy CGI mode (see [`Writer::start`]).
    baseline: bool,
}

/// A [`ProfileSource`] over the cache (the last good version of each file).
struct CacheSource<'a> {
    profiles: &'a HashMap<String, Profile>,
}

impl ProfileSource for CacheSource<'_> {
    fn specs(&mut self, profile: &str) -> Result<Arc<Specs>, String> {
        let p = self
            .profiles
            .get(profile)
            .ok_or_else(|| format!("{profile}.specs not found"))?;
        match (&p.specs.value, &p.specs.error) {
            (Some(s), _) => Ok(Arc::clone(s)),
            (None, Some(e)) => Err(e.clone()),
            (None, None) => Err(format!("{profile}.specs not found")),
        }
    }

    fn cmdb(&mut self, profile: &str) -> Result<Option<&Cmdb>, CmdbError> {
        let Some(c) = self
            .profiles
            .get(profile)
            .and_then(|p| p.cmdb.value.as_ref())
        else {
            return Ok(None);
        };
        if c.generate_error.is_some() {
            // Re-read the text to hand back the typed error.
            if let Loaded::Unusable(e) = Cmdb::load(Some(&c.text)) {
                return Err(e);
            }
        }
        Ok(c.cmdb.as_ref())
    }
}

impl Cache {
    fn new(dir: ConfigDir) -> Cache {
        Cache {
            dir,
            state: Tracked::default(),
            profiles: HashMap::new(),
            last_error: None,
            commits: 0,
            uploads: 0,
            baseline: false,
        }
    }

    /// Handles a batch under one lock; returns the replies to send once committed.
    fn batch(&mut self, requests: Vec<Request>) -> Vec<Reply> {
        let dir = self.dir.clone();
        let mut replies = Vec::with_capacity(requests.len());
        let result = dir.transaction(|tx| {
            self.refresh();
            let mut touched = Touched::default();
            for r in requests {
                replies.push(match r {
                    Request::Upload(job, reply) => {
                        self.uploads += 1;
                        let r = self.upload(&job, &mut touched);
                        Reply::Upload(reply, r)
                    }
                    Request::Failure(profile, reply) => {
                        let r = self.failure(&profile, &mut touched);
                        Reply::Failure(reply, r)
                    }
                    Request::Refresh(reply) => Reply::Refresh(reply),
                });
            }
            let writes = self.writes(&touched);
            if !writes.is_empty() {
                tx.commit(&writes)?;
                self.commits += 1;
                self.committed(&touched);
            }
            Ok::<_, StoreError>(())
        });
        if self.baseline {
            self.state = Tracked::default();
            self.profiles.clear();
        }
        match result {
            Ok(()) => self.last_error = None,
            Err(e) => {
                let why = e.to_string();
                tracing::error!(error = %why, "commit failed; answering the batch with errors and reloading the config dir");
                for r in &mut replies {
                    r.fail(&why);
                }
                self.last_error = Some(why);
                // The in-memory state may be ahead of the files: read everything again.
                self.state = Tracked::default();
                self.profiles.clear();
            }
        }
        replies
    }

    /// Reads every file that changed since last time.
    fn refresh(&mut self) {
        let dir = self.dir.clone();
        refresh_file(&mut self.state, &dir.file("state"), |text| {
            State::parse(text).map_err(|p| render_problems(&dir.file("state"), &p))
        });
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
            let specs_path = dir.file(&format!("{name}.specs"));
            refresh_file(&mut p.specs, &specs_path, |text| {
                rdeploy_specs::model::parse_specs(text)
                    .map(|lines| Arc::new(Specs::compile(lines)))
                    .map_err(|e| render_problems(&specs_path, &e))
            });
            let cmdb_path = dir.file(&format!("{name}.cmdb"));
            let had_good = p.cmdb.value.as_ref().is_some_and(|c| c.cmdb.is_some());
            refresh_file(&mut p.cmdb, &cmdb_path, |text| {
                match Cmdb::load(Some(text)) {
                    Loaded::Present(c) => Ok(CachedCmdb {
                        cmdb: Some(c),
                        text: text.to_owned(),
                        generate_error: None,
                        lines: Vec::new(),
                    }),
                    Loaded::Absent => Ok(CachedCmdb {
                        cmdb: None,
                        text: text.to_owned(),
                        generate_error: None,
                        lines: Vec::new(),
                    }),
                    Loaded::Unusable(e) if !had_good => {
                        // eDeploy's tolerance when there is nothing better: an
                        // unparsable CMDB is no CMDB, a bad generate() cannot allocate.
                        let msg = format!("{}:{e}", cmdb_path.display());
                        tracing::warn!(error = %msg, "CMDB unusable");
                        Ok(CachedCmdb {
                            cmdb: None,
                            text: text.to_owned(),
                            generate_error: matches!(e, CmdbError::Generate { .. }).then_some(msg),
                            lines: Vec::new(),
                        })
                    }
                    Loaded::Unusable(e) => Err(format!("{}:{e}", cmdb_path.display())),
                }
            });
            refresh_file(
                &mut p.configure,
                &dir.file(&format!("{name}.configure")),
                |text| Ok(text.to_owned()),
            );
        }
    }

    fn upload(&mut self, job: &UploadJob, touched: &mut Touched) -> Result<Allocation, Refusal> {
        let Some(state) = self.state.value.as_ref() else {
            return Err(Refusal::ConfigBroken {
                file: "state".into(),
                error: self
                    .state
                    .error
                    .clone()
                    .unwrap_or_else(|| format!("{}: missing", self.dir.file("state").display())),
            });
        };
        let mut source = CacheSource {
            profiles: &self.profiles,
        };
        let plan = find_match(state, &job.inventory, &mut source)
            .map_err(|e| Refusal::Match(Box::new(e)))?;
        let counted = job.holds.as_deref() != Some(plan.profile.as_str())
            && matches!(
                state.entries.get(plan.state_index).map(|e| e.quota),
                Some(Quota::Left(_))
            );
        if counted {
            if let Some(error) = &self.state.error {
                return Err(Refusal::ConfigBroken {
                    file: "state".into(),
                    error: error.clone(),
                });
            }
        }
        let profile = self.profiles.get_mut(&plan.profile);
        if let (Some(alloc), Some(p)) = (&plan.cmdb, profile) {
            if let Some(error) = &p.cmdb.error {
                return Err(Refusal::ConfigBroken {
                    file: format!("{}.cmdb", plan.profile),
                    error: error.clone(),
                });
            }
            if let Some(cmdb) = p.cmdb.value.as_mut().and_then(|c| c.cmdb.as_mut()) {
                if !alloc.reused || cmdb.entries.get(alloc.index) != Some(&alloc.vars.to_value()) {
                    cmdb.apply(alloc);
                    touched
                        .cmdbs
                        .entry(plan.profile.clone())
                        .or_default()
                        .insert(alloc.index);
                }
            }
        }
        if counted {
            if let Some(state) = self.state.value.as_mut() {
                state.decrement(plan.state_index);
                touched.state = true;
            }
        }
        let script = self
            .profiles
            .get(&plan.profile)
            .and_then(|p| p.configure.value.clone())
            .unwrap_or_else(|| {
                format!(
                    "// {}.configure not found in the config dir\n",
                    plan.profile
                )
            });
        Ok(Allocation {
            plan,
            script,
            counted,
        })
    }

    fn failure(&mut self, profile: &str, touched: &mut Touched) -> Result<FailureOutcome, Refusal> {
        let Some(state) = self.state.value.as_mut() else {
            return Err(Refusal::ConfigBroken {
                file: "state".into(),
                error: self.state.error.clone().unwrap_or_else(|| "missing".into()),
            });
        };
        let mut probe = state.clone();
        if !probe.failed_profile(profile) {
            return Ok(FailureOutcome::Unchanged);
        }
        if let Some(error) = &self.state.error {
            return Err(Refusal::ConfigBroken {
                file: "state".into(),
                error: error.clone(),
            });
        }
        *state = probe;
        touched.state = true;
        Ok(FailureOutcome::QuotaReturned)
    }

    /// The files to write for what the batch changed.
    fn writes(&mut self, touched: &Touched) -> Vec<(String, String)> {
        let mut writes = Vec::new();
        if touched.state {
            if let Some(s) = &self.state.value {
                writes.push(("state".to_owned(), s.to_python()));
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
            let Some(cmdb) = &c.cmdb else { continue };
            if cmdb.generated {
                // eDeploy keeps the generate() model as <profile>.cmdb.orig.
                writes.push((format!("{name}.cmdb.orig"), c.text.clone()));
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
            // The same text as `Cmdb::to_python` (one entry per line), without re-rendering
            // the entries that did not change.
            let mut text =
                String::with_capacity(c.lines.iter().map(|l| l.len() + 3).sum::<usize>() + 2);
            text.push('[');
            text.push_str(&c.lines.join(",\n "));
            text.push_str("]\n");
            writes.push((format!("{name}.cmdb"), text));
        }
        writes
    }

    /// After a commit: the cache now holds what is on disk.
    fn committed(&mut self, touched: &Touched) {
        if touched.state {
            self.state.seen = Some(fingerprint(&self.dir.file("state")));
            self.state.ours = true;
        }
        for name in touched.cmdbs.keys() {
            let path = self.dir.file(&format!("{name}.cmdb"));
            if let Some(p) = self.profiles.get_mut(name) {
                p.cmdb.seen = Some(fingerprint(&path));
                p.cmdb.ours = true;
                if let Some(c) = p.cmdb.value.as_mut() {
                    if let Some(cmdb) = c.cmdb.as_mut() {
                        // Written in the expanded form: no longer a generate() model.
                        cmdb.generated = false;
                        c.text.clear();
                    }
                }
            }
        }
    }

    fn health(&self) -> ConfigHealth {
        let mut problems = Vec::new();
        fn push(
            problems: &mut Vec<FileProblem>,
            file: String,
            t_err: &Option<String>,
            last_good: bool,
        ) {
            if let Some(error) = t_err {
                problems.push(FileProblem {
                    file,
                    error: error.clone(),
                    using_last_good: last_good,
                });
            }
        }
        push(
            &mut problems,
            "state".into(),
            &self.state.error,
            self.state.value.is_some(),
        );
        if self.state.seen == Some(None) {
            problems.push(FileProblem {
                file: "state".into(),
                error: format!("{}: missing", self.dir.file("state").display()),
                using_last_good: false,
            });
        }
        let mut names: Vec<&String> = self.profiles.keys().collect();
        names.sort();
        for name in names {
            let p = &self.profiles[name];
            push(
                &mut problems,
                format!("{name}.specs"),
                &p.specs.error,
                p.specs.value.is_some(),
            );
            push(
                &mut problems,
                format!("{name}.cmdb"),
                &p.cmdb.error,
                p.cmdb.value.is_some(),
            );
            if let Some(c) = &p.cmdb.value {
                push(
                    &mut problems,
                    format!("{name}.cmdb"),
                    &c.generate_error,
                    false,
                );
            }
            if p.specs.seen == Some(None) {
                problems.push(FileProblem {
                    file: format!("{name}.specs"),
                    error: "missing: this profile never matches".into(),
                    using_last_good: false,
                });
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
            .filter_map(|(name, p)| {
                let c = p.cmdb.value.as_ref()?.cmdb.as_ref()?;
                Some(CmdbUsage {
                    profile: name.clone(),
                    used: c.used(),
                    total: c.entries.len(),
                })
            })
            .collect();
        cmdbs.sort_by(|a, b| a.profile.cmp(&b.profile));
        ConfigHealth {
            config_dir: self.dir.path().display().to_string(),
            profiles,
            cmdbs,
            problems,
            last_error: self.last_error.clone(),
            commits: self.commits,
            uploads: self.uploads,
        }
    }
}

#[derive(Debug, Default)]
struct Touched {
    state: bool,
    /// Each CMDB changed, with the indices of the entries that changed.
    cmdbs: BTreeMap<String, BTreeSet<usize>>,
}

/// Re-reads a file if its fingerprint changed; keeps the last good value on a parse error.
fn refresh_file<T>(t: &mut Tracked<T>, path: &Path, parse: impl FnOnce(&str) -> Result<T, String>) {
    let fp = fingerprint(path);
    let racy = match (fp, t.read_at) {
        (Some(f), Some(read)) => !t.ours && f.mtime + RACY > read,
        _ => false,
    };
    if t.seen == Some(fp) && !racy {
        return;
    }
    let unchanged = t.seen == Some(fp);
    t.seen = Some(fp);
    if fp.is_none() {
        t.value = None;
        t.error = None;
        return;
    }
    let read_at = SystemTime::now();
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            let msg = format!("{}: {e}", path.display());
            tracing::warn!(error = %msg, "cannot read config file; keeping the last good version");
            t.error = Some(msg);
            t.seen = None;
            return;
        }
    };
    let hash = text_hash(&text);
    t.read_at = Some(read_at);
    t.ours = false;
    if unchanged && hash == t.hash {
        return;
    }
    t.hash = hash;
    match parse(&text) {
        Ok(v) => {
            if t.error.take().is_some() || t.value.is_some() {
                tracing::info!(file = %path.display(), "config file reloaded");
            }
            t.value = Some(v);
        }
        Err(msg) => {
            if t.value.is_some() {
                tracing::error!(error = %msg, "config file does not parse; keeping the last good version");
            } else {
                tracing::error!(error = %msg, "config file does not parse");
            }
            t.error = Some(msg);
        }
    }
}

/// Every problem as `file:line:col: message`, joined with "; ".
fn render_problems(path: &Path, problems: &rdeploy_specs::Problems) -> String {
    problems
        .0
        .iter()
        .map(|p| format!("{}:{}: {}", path.display(), p.pos, p.message))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(cache: &mut Cache, i: usize) -> Result<Allocation, Refusal> {
        let inventory = Inventory::parse(&format!(
            "[('system', 'product', 'name', 'KVM'), ('disk', 'vda', 'size', '20'), ('network', 'eth0', 'serial', '52:54:00:00:00:{i:02x}')]"
        ))
        .map_err(|e| Refusal::Store(e.to_string()))?;
        let (tx, _rx) = oneshot::channel();
        let mut replies = cache.batch(vec![Request::Upload(
            UploadJob {
                inventory,
                holds: None,
            },
            tx,
        )]);
        match replies.pop() {
            Some(Reply::Upload(_, r)) => r,
            _ => Err(Refusal::Stopped),
        }
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
        // Same size, same inode, and the timestamp put back: the fingerprint is unchanged.
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
        let mut cache = Cache::new(ConfigDir::new(p));
        for i in 0..3 {
            let a = upload(&mut cache, i).map_err(|e| format!("{e:?}"))?;
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
        assert!(matches!(upload(&mut cache, 9), Err(Refusal::Match(_))));
        Ok(())
    }
}
