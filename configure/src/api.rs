//! The functions a `.configure` script can call, registered on a Rhai engine for one run.
//!
//! Every function validates its arguments, builds the exact command lines or files (see
//! [`crate::tools`] and [`crate::network`]), hands them to the run's [`Host`] in order and
//! records them in the run's [`Outcome`]. `docs/configure-api.md` documents each one.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use rhai::{Array, Dynamic, Engine, EvalAltResult, ImmutableString, Map, Position, INT};

use crate::convert::to_json;
use crate::error::{CommandFailure, ErrorKind};
use crate::host::{Command, CommandOutput, FileWrite, Host};
use crate::network::{render_interfaces, render_netplan, Network};
use crate::options::Options;
use crate::outcome::{CommandRecord, Filesystem, Mount, Outcome, RoleSelection};
use crate::tools::{self, ArgError, LvSpec, PartSpec};

type Res<T> = Result<T, Box<EvalAltResult>>;

/// The usage line of every API function, for "wrong argument types" errors.
const USAGE: &[(&str, &str)] = &[
    ("run", "run(cmd: string | array) or run(cmd, timeout_seconds: int)"),
    ("run_status", "run_status(cmd: string | array) or run_status(cmd, timeout_seconds: int)"),
    ("set_role", "set_role(role: string, version: string, disk: string)"),
    ("config", "config(path: string, content: string[, mode: int | string | #{mode, owner}]) or config(path: string[, mode: int])"),
    ("write", "file.write(text: string)"),
    ("line", "file.line(text: string)"),
    ("close", "file.close()"),
    ("grub_options", "grub_options(options: string)"),
    ("inject_facts", "inject_facts(facts: map)"),
    ("raid", "raid(level: int, devices: array) or raid(device: string, level: int, devices: array)"),
    ("partition", "partition(disk: string, layout: array of #{size, type, name})"),
    ("mkfs", "mkfs(device: string, fs: string[, label: string])"),
    ("mount", "mount(device: string, path: string)"),
    ("lvm", "lvm(vg: string, pvs: array, lvs: array of #{name, size})"),
    ("ipmi_network", "ipmi_network(channel: int, ip: string, netmask: string, gateway: string)"),
    ("ipmi_user", "ipmi_user(channel: int[, id: int], user: string, password: string)"),
    ("network_interfaces", "network_interfaces(network: map)"),
    ("netplan", "netplan(network: map)"),
];

/// The usage line of an API function, `None` for names the API does not define.
pub fn usage(name: &str) -> Option<&'static str> {
    USAGE.iter().find(|(n, _)| *n == name).map(|(_, u)| *u)
}

/// The error value API functions throw; the engine turns it into a located [`crate::ScriptError`].
#[derive(Debug, Clone)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    pub failure: Option<Box<CommandFailure>>,
}

fn throw(kind: ErrorKind, message: impl Into<String>) -> Box<EvalAltResult> {
    let e = ApiError {
        kind,
        message: message.into(),
        failure: None,
    };
    EvalAltResult::ErrorRuntime(Dynamic::from(e), Position::NONE).into()
}

fn invalid(e: ArgError) -> Box<EvalAltResult> {
    throw(ErrorKind::InvalidArgument, e.0)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// A file opened with `config(path)`, written by `close()` or at the end of the script.
#[derive(Debug)]
pub struct Writer {
    file: FileWrite,
    closed: bool,
    /// The longest content it may hold (the engine's string size limit).
    max_len: usize,
}

/// The script's handle on a [`Writer`].
#[derive(Debug, Clone)]
pub struct ConfigFile(Rc<RefCell<Writer>>);

/// The state of one run, shared by the registered functions.
pub struct Session {
    host: Rc<dyn Host>,
    timeout: Duration,
    target_root: String,
    outcome: Outcome,
    md_used: BTreeSet<String>,
    writers: Vec<ConfigFile>,
    /// Bytes the outcome holds so far (log, commands, files, facts, boot options)...
    recorded: usize,
    /// ...and the most it may hold: [`output_budget`].
    max_recorded: usize,
    /// The largest string (and so file) a script may make.
    max_string: usize,
    /// The log went over the budget: later lines are dropped.
    log_truncated: bool,
}

/// How many bytes the outcome of a run may hold (its log lines, commands, files, facts and
/// boot options together): 64 strings of the largest size, 64 MiB by default. The engine's
/// limits bound each value, not how many a loop hands to the host; a script that goes over
/// stops with a limit error (its log is cut instead: `print` cannot fail).
pub fn output_budget(limits: &crate::Limits) -> usize {
    limits.max_string_size.saturating_mul(64)
}

impl Session {
    pub fn new(host: Rc<dyn Host>, options: &Options) -> Self {
        Self {
            host,
            timeout: options.command_timeout,
            target_root: options.target_root.clone(),
            outcome: Outcome::default(),
            md_used: BTreeSet::new(),
            writers: Vec::new(),
            recorded: 0,
            max_recorded: output_budget(&options.limits),
            max_string: options.limits.max_string_size,
            log_truncated: false,
        }
    }

    /// Counts `bytes` more in the outcome; over the budget, a limit error naming `what`.
    fn charge(&mut self, bytes: usize, what: &str) -> Res<()> {
        self.recorded = self.recorded.saturating_add(bytes);
        if self.recorded > self.max_recorded {
            return Err(throw(
                ErrorKind::Limit,
                format!(
                    "the run's output (commands, files, log, facts) is over {} bytes: {what}",
                    self.max_recorded
                ),
            ));
        }
        Ok(())
    }

    /// Adds a line to the log, unless the log went over the budget.
    fn log(&mut self, line: String) {
        if self.log_truncated {
            return;
        }
        if self.charge(line.len(), "print").is_err() {
            self.log_truncated = true;
            self.outcome
                .log
                .push("[the log is cut here: the run's output is over its limit]".to_owned());
            return;
        }
        self.outcome.log.push(line);
    }

    pub fn take_outcome(&mut self) -> Outcome {
        std::mem::take(&mut self.outcome)
    }

    /// Writes the writers the script left open, in the order it opened them.
    pub fn finish(session: &Rc<RefCell<Session>>) -> Res<()> {
        let writers = std::mem::take(&mut session.borrow_mut().writers);
        for w in writers {
            close(session, &w)?;
        }
        Ok(())
    }
}

fn exec(
    s: &Rc<RefCell<Session>>,
    argv: Vec<String>,
    timeout: Option<Duration>,
) -> Res<CommandOutput> {
    let (host, default_timeout) = {
        let s = s.borrow();
        (Rc::clone(&s.host), s.timeout)
    };
    let command = Command {
        argv,
        timeout: timeout.unwrap_or(default_timeout),
    };
    let line = command.line();
    s.borrow_mut().charge(
        line.len()
            .saturating_add(command.argv.iter().map(String::len).sum()),
        "run",
    )?;
    let result = host.run(&command);
    s.borrow_mut().outcome.commands.push(CommandRecord {
        line,
        argv: command.argv.clone(),
        status: result.as_ref().ok().map(|o| o.status),
    });
    result.map_err(|e| throw(ErrorKind::Host, error_chain(&e)))
}

/// The last lines of a command's output, for an error message.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let start = lines.len().saturating_sub(20);
    lines[start..].join("\n")
}

fn exec_checked(
    s: &Rc<RefCell<Session>>,
    argv: Vec<String>,
    timeout: Option<Duration>,
) -> Res<CommandOutput> {
    let line = crate::host::command_line(&argv);
    let out = exec(s, argv, timeout)?;
    if out.success() {
        return Ok(out);
    }
    let shown = if out.stderr.trim().is_empty() {
        tail(&out.stdout)
    } else {
        tail(&out.stderr)
    };
    let mut message = format!("`{line}` exited with status {}", out.status);
    if !shown.is_empty() {
        message.push_str(": ");
        message.push_str(&shown);
    }
    let e = ApiError {
        kind: ErrorKind::CommandFailed,
        message,
        failure: Some(Box::new(CommandFailure {
            command: line,
            status: out.status,
            stdout: out.stdout,
            stderr: out.stderr,
        })),
    };
    Err(EvalAltResult::ErrorRuntime(Dynamic::from(e), Position::NONE).into())
}

fn exec_all(s: &Rc<RefCell<Session>>, cmds: Vec<Vec<String>>) -> Res<()> {
    for c in cmds {
        exec_checked(s, c, None)?;
    }
    Ok(())
}

fn write(s: &Rc<RefCell<Session>>, file: FileWrite) -> Res<()> {
    s.borrow_mut().charge(
        file.path.len().saturating_add(file.contents.len()),
        "config",
    )?;
    let host = Rc::clone(&s.borrow().host);
    host.write_file(&file)
        .map_err(|e| throw(ErrorKind::Host, error_chain(&e)))?;
    s.borrow_mut().outcome.files.push(file);
    Ok(())
}

fn close(s: &Rc<RefCell<Session>>, f: &ConfigFile) -> Res<()> {
    let file = {
        let mut w = f.0.borrow_mut();
        if w.closed {
            return Ok(());
        }
        w.closed = true;
        w.file.clone()
    };
    write(s, file)
}

fn timeout_secs(t: INT) -> Res<Option<Duration>> {
    u64::try_from(t)
        .ok()
        .filter(|t| *t > 0)
        .map(|t| Some(Duration::from_secs(t)))
        .ok_or_else(|| {
            throw(
                ErrorKind::InvalidArgument,
                format!("timeout {t} is not a positive number of seconds"),
            )
        })
}

fn shell(cmd: &str) -> Vec<String> {
    vec!["/bin/sh".to_owned(), "-c".to_owned(), cmd.to_owned()]
}

/// The strings of an array; `ints` also accepts integers (command arguments).
fn strings(what: &str, a: &Array, ints: bool) -> Res<Vec<String>> {
    a.iter()
        .map(|v| {
            if let Ok(s) = v.clone().into_string() {
                Ok(s)
            } else if let (true, Ok(i)) = (ints, v.as_int()) {
                Ok(i.to_string())
            } else {
                Err(throw(
                    ErrorKind::WrongType,
                    format!("{what} must hold strings, found {} ({v})", v.type_name()),
                ))
            }
        })
        .collect()
}

fn argv_of(a: &Array) -> Res<Vec<String>> {
    let v = strings("a command array", a, true)?;
    if v.is_empty() {
        return Err(throw(ErrorKind::InvalidArgument, "empty command array"));
    }
    Ok(v)
}

/// A map's keys must be among `allowed`.
fn check_keys(what: &str, m: &Map, allowed: &[&str]) -> Res<()> {
    for k in m.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(throw(
                ErrorKind::InvalidArgument,
                format!("{what}: unknown key {k:?} (expected one of {allowed:?})"),
            ));
        }
    }
    Ok(())
}

fn get_str(what: &str, m: &Map, key: &str) -> Res<Option<String>> {
    match m.get(key) {
        None => Ok(None),
        Some(v) if v.is_unit() => Ok(None),
        Some(v) => v.clone().into_string().map(Some).map_err(|t| {
            throw(
                ErrorKind::WrongType,
                format!("{what}: {key} must be a string, found {t}"),
            )
        }),
    }
}

fn map_of(what: &str, v: &Dynamic) -> Res<Map> {
    v.read_lock::<Map>().map(|m| m.clone()).ok_or_else(|| {
        throw(
            ErrorKind::WrongType,
            format!("{what} must be a map, found {}", v.type_name()),
        )
    })
}

/// A target path for `config`: absolute, no `..`, not a directory.
fn config_path(path: &str) -> Res<String> {
    let ok = path.starts_with('/')
        && !path.ends_with('/')
        && !path.split('/').any(|c| c == ".." || c == ".")
        && !path.chars().any(|c| c.is_control());
    if ok {
        Ok(path.to_owned())
    } else {
        Err(throw(
            ErrorKind::InvalidArgument,
            format!("{path:?} is not an absolute file path inside the target tree"),
        ))
    }
}

fn mode_int(m: INT) -> Res<u32> {
    match u32::try_from(m) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(throw(
            ErrorKind::InvalidArgument,
            format!("mode {m} is not a permission between 0o000 and 0o777 (write modes in octal: 0o644)"),
        )),
    }
}

fn mode_str(m: &str) -> Res<u32> {
    let digits = m.strip_prefix("0o").unwrap_or(m);
    match u32::from_str_radix(digits, 8) {
        Ok(v) if v <= 0o777 && !digits.is_empty() => Ok(v),
        _ => Err(throw(
            ErrorKind::InvalidArgument,
            format!("mode {m:?} is not an octal permission such as \"0644\""),
        )),
    }
}

fn mode_dyn(v: &Dynamic) -> Res<u32> {
    if let Ok(i) = v.as_int() {
        mode_int(i)
    } else if let Ok(s) = v.clone().into_string() {
        mode_str(&s)
    } else {
        Err(throw(
            ErrorKind::WrongType,
            format!("mode must be an int or a string, found {}", v.type_name()),
        ))
    }
}

fn owner_str(o: &str) -> Res<String> {
    let ok = !o.is_empty()
        && o.split(':').count() <= 2
        && o.split(':').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        });
    if ok {
        Ok(o.to_owned())
    } else {
        Err(throw(
            ErrorKind::InvalidArgument,
            format!("owner {o:?} is not USER or USER:GROUP"),
        ))
    }
}

fn options_map(m: &Map) -> Res<(u32, Option<String>)> {
    check_keys("config options", m, &["mode", "owner"])?;
    let mode = m.get("mode").map(mode_dyn).transpose()?.unwrap_or(0o644);
    let owner = get_str("config options", m, "owner")?
        .map(|o| owner_str(&o))
        .transpose()?;
    Ok((mode, owner))
}

fn name_word(what: &str, v: &str) -> Res<()> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && !v.starts_with('.')
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'));
    if ok {
        Ok(())
    } else {
        Err(throw(
            ErrorKind::InvalidArgument,
            format!("{what} {v:?} must be letters, digits, '.', '_', '-' or '+'"),
        ))
    }
}

fn parse_layout(layout: &Array) -> Res<Vec<PartSpec>> {
    layout
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let what = format!("partition {}", i + 1);
            let m = map_of(&what, entry)?;
            check_keys(&what, &m, &["size", "type", "name"])?;
            let size = match m.get("size") {
                None => None,
                Some(v) => match v.as_int() {
                    Ok(mib) if mib > 0 => Some(format!("+{mib}M")),
                    Ok(_) => None,
                    Err(_) => {
                        let s = get_str(&what, &m, "size")?.unwrap_or_default();
                        tools::part_size(&s).map_err(invalid)?
                    }
                },
            };
            let kind = get_str(&what, &m, "type")?.unwrap_or_else(|| "linux".to_owned());
            Ok(PartSpec {
                size,
                code: tools::gpt_type_code(&kind).map_err(invalid)?,
                name: get_str(&what, &m, "name")?,
            })
        })
        .collect()
}

fn parse_lvs(lvs: &Array) -> Res<Vec<LvSpec>> {
    lvs.iter()
        .enumerate()
        .map(|(i, entry)| {
            let what = format!("logical volume {}", i + 1);
            let m = map_of(&what, entry)?;
            check_keys(&what, &m, &["name", "size"])?;
            let name = get_str(&what, &m, "name")?
                .ok_or_else(|| throw(ErrorKind::InvalidArgument, format!("{what} has no name")))?;
            let size = match m.get("size") {
                Some(v) if v.is_int() => format!("{}M", v.as_int().unwrap_or(0)),
                _ => get_str(&what, &m, "size")?.unwrap_or_else(|| "rest".to_owned()),
            };
            Ok(LvSpec { name, size })
        })
        .collect()
}

fn raid_on(
    s: &Rc<RefCell<Session>>,
    device: Option<&str>,
    level: INT,
    disks: &Array,
) -> Res<String> {
    let disks = strings("raid devices", disks, false)?;
    let device = match device {
        Some(d) => tools::device_path(d).map_err(invalid)?,
        None => {
            let used = &s.borrow().md_used;
            (0..)
                .map(|n| format!("/dev/md{n}"))
                .find(|d| !used.contains(d))
                .unwrap_or_default()
        }
    };
    if !s.borrow_mut().md_used.insert(device.clone()) {
        return Err(throw(
            ErrorKind::InvalidArgument,
            format!("{device} was already created by this script"),
        ));
    }
    let argv = tools::raid(&device, level, &disks).map_err(invalid)?;
    exec_checked(s, argv, None)?;
    Ok(device)
}

fn mkfs_on(s: &Rc<RefCell<Session>>, dev: &str, fs: &str, label: Option<&str>) -> Res<()> {
    let argv = tools::mkfs(dev, fs, label).map_err(invalid)?;
    let device = tools::device_path(dev).map_err(invalid)?;
    exec_checked(s, argv, None)?;
    s.borrow_mut().outcome.filesystems.push(Filesystem {
        device,
        fs: fs.to_owned(),
        label: label.filter(|l| !l.is_empty()).map(str::to_owned),
    });
    Ok(())
}

fn ipmi_user_on(s: &Rc<RefCell<Session>>, ch: INT, id: INT, user: &str, password: &str) -> Res<()> {
    exec_all(
        s,
        tools::ipmi_user(ch, id, user, password).map_err(invalid)?,
    )
}

/// Deepest value the API converts (a value nested deeper would recurse that deep).
const MAX_API_DEPTH: usize = 64;

/// Refuses a value nested deeper than [`MAX_API_DEPTH`] ([`ErrorKind::Limit`]).
fn shallow<'a>(what: &str, items: impl Iterator<Item = &'a Dynamic>) -> Res<()> {
    if crate::convert::items_nesting(items, MAX_API_DEPTH) > MAX_API_DEPTH {
        return Err(throw(
            ErrorKind::Limit,
            format!("{what}: a value with more than {MAX_API_DEPTH} levels of arrays and maps inside each other"),
        ));
    }
    Ok(())
}

fn network_of(net: &Map) -> Res<Network> {
    shallow("network", net.values())?;
    let json = to_json(&Dynamic::from_map(net.clone()));
    serde_json::from_value(json)
        .map_err(|e| throw(ErrorKind::InvalidArgument, format!("network: {e}")))
}

/// Registers the configure API on `engine` for one run sharing `session`.
pub fn register(engine: &mut Engine, session: &Rc<RefCell<Session>>) {
    let s = Rc::clone(session);
    engine.on_print(move |text| s.borrow_mut().log(text.to_owned()));
    let s = Rc::clone(session);
    engine.on_debug(move |text, _, pos| {
        let line = match pos.line() {
            Some(l) => format!("[line {l}] {text}"),
            None => text.to_owned(),
        };
        s.borrow_mut().log(line);
    });

    engine.register_type_with_name::<ApiError>("ApiError");
    engine.register_fn("to_string", |e: &mut ApiError| e.message.clone());
    engine.register_fn("to_debug", |e: &mut ApiError| {
        format!("{}: {}", e.kind, e.message)
    });
    engine.register_get("message", |e: &mut ApiError| e.message.clone());
    engine.register_get("kind", |e: &mut ApiError| e.kind.to_string());

    // run / run_status
    let s = Rc::clone(session);
    engine.register_fn("run", move |cmd: &str| -> Res<String> {
        Ok(exec_checked(&s, shell(cmd), None)?.stdout)
    });
    let s = Rc::clone(session);
    engine.register_fn("run", move |cmd: Array| -> Res<String> {
        Ok(exec_checked(&s, argv_of(&cmd)?, None)?.stdout)
    });
    let s = Rc::clone(session);
    engine.register_fn("run", move |cmd: &str, t: INT| -> Res<String> {
        Ok(exec_checked(&s, shell(cmd), timeout_secs(t)?)?.stdout)
    });
    let s = Rc::clone(session);
    engine.register_fn("run", move |cmd: Array, t: INT| -> Res<String> {
        Ok(exec_checked(&s, argv_of(&cmd)?, timeout_secs(t)?)?.stdout)
    });
    let s = Rc::clone(session);
    engine.register_fn("run_status", move |cmd: &str| -> Res<INT> {
        Ok(INT::from(exec(&s, shell(cmd), None)?.status))
    });
    let s = Rc::clone(session);
    engine.register_fn("run_status", move |cmd: Array| -> Res<INT> {
        Ok(INT::from(exec(&s, argv_of(&cmd)?, None)?.status))
    });
    let s = Rc::clone(session);
    engine.register_fn("run_status", move |cmd: &str, t: INT| -> Res<INT> {
        Ok(INT::from(exec(&s, shell(cmd), timeout_secs(t)?)?.status))
    });
    let s = Rc::clone(session);
    engine.register_fn("run_status", move |cmd: Array, t: INT| -> Res<INT> {
        Ok(INT::from(
            exec(&s, argv_of(&cmd)?, timeout_secs(t)?)?.status,
        ))
    });

    // set_role, grub_options, inject_facts
    let s = Rc::clone(session);
    engine.register_fn(
        "set_role",
        move |role: &str, version: &str, disk: &str| -> Res<()> {
            name_word("role", role)?;
            name_word("version", version)?;
            let disk = tools::device_path(disk).map_err(invalid)?;
            s.borrow_mut().outcome.role = Some(RoleSelection {
                role: role.to_owned(),
                version: version.to_owned(),
                disk,
            });
            Ok(())
        },
    );
    let s = Rc::clone(session);
    engine.register_fn("grub_options", move |opts: &str| -> Res<()> {
        if opts.chars().any(|c| c.is_control()) {
            return Err(throw(
                ErrorKind::InvalidArgument,
                "grub options must be on one line",
            ));
        }
        let mut s = s.borrow_mut();
        let opts = opts.trim();
        s.charge(opts.len(), "grub_options")?;
        let g = &mut s.outcome.grub_options;
        if !opts.is_empty() {
            if !g.is_empty() {
                g.push(' ');
            }
            g.push_str(opts);
        }
        Ok(())
    });
    let s = Rc::clone(session);
    engine.register_fn("inject_facts", move |facts: Map| -> Res<()> {
        shallow("inject_facts", facts.values())?;
        let mut s = s.borrow_mut();
        for (k, v) in &facts {
            let v = to_json(v);
            s.charge(k.len().saturating_add(v.to_string().len()), "inject_facts")?;
            s.outcome.facts.insert(k.to_string(), v);
        }
        Ok(())
    });

    // config: whole files
    let s = Rc::clone(session);
    engine.register_fn("config", move |path: &str, content: &str| -> Res<()> {
        write(
            &s,
            FileWrite {
                path: config_path(path)?,
                contents: content.to_owned(),
                mode: 0o644,
                owner: None,
            },
        )
    });
    let s = Rc::clone(session);
    engine.register_fn(
        "config",
        move |path: &str, content: &str, mode: INT| -> Res<()> {
            write(
                &s,
                FileWrite {
                    path: config_path(path)?,
                    contents: content.to_owned(),
                    mode: mode_int(mode)?,
                    owner: None,
                },
            )
        },
    );
    let s = Rc::clone(session);
    engine.register_fn(
        "config",
        move |path: &str, content: &str, mode: &str| -> Res<()> {
            write(
                &s,
                FileWrite {
                    path: config_path(path)?,
                    contents: content.to_owned(),
                    mode: mode_str(mode)?,
                    owner: None,
                },
            )
        },
    );
    let s = Rc::clone(session);
    engine.register_fn(
        "config",
        move |path: &str, content: &str, opts: Map| -> Res<()> {
            let (mode, owner) = options_map(&opts)?;
            write(
                &s,
                FileWrite {
                    path: config_path(path)?,
                    contents: content.to_owned(),
                    mode,
                    owner,
                },
            )
        },
    );

    // config: writers
    engine.register_type_with_name::<ConfigFile>("ConfigFile");
    fn open(s: &Rc<RefCell<Session>>, path: &str, mode: u32) -> Res<ConfigFile> {
        let max_len = s.borrow().max_string;
        let f = ConfigFile(Rc::new(RefCell::new(Writer {
            file: FileWrite {
                path: config_path(path)?,
                contents: String::new(),
                mode,
                owner: None,
            },
            closed: false,
            max_len,
        })));
        s.borrow_mut().writers.push(f.clone());
        Ok(f)
    }
    let s = Rc::clone(session);
    engine.register_fn("config", move |path: &str| open(&s, path, 0o644));
    let s = Rc::clone(session);
    engine.register_fn("config", move |path: &str, mode: INT| {
        open(&s, path, mode_int(mode)?)
    });
    // No `config(path, mode: string)` writer: it would clash with `config(path, content)`.
    fn append(f: &mut ConfigFile, text: &str) -> Res<()> {
        let mut w = f.0.borrow_mut();
        if w.closed {
            return Err(throw(
                ErrorKind::Runtime,
                format!("{} is already closed", w.file.path),
            ));
        }
        if w.file.contents.len().saturating_add(text.len()) > w.max_len {
            return Err(throw(
                ErrorKind::Limit,
                format!(
                    "{} would be over {} bytes (the string size limit)",
                    w.file.path, w.max_len
                ),
            ));
        }
        w.file.contents.push_str(text);
        Ok(())
    }
    engine.register_fn("write", |f: &mut ConfigFile, text: &str| append(f, text));
    engine.register_fn("line", |f: &mut ConfigFile, text: &str| {
        append(f, text)?;
        append(f, "\n")
    });
    let s = Rc::clone(session);
    engine.register_fn("close", move |f: &mut ConfigFile| close(&s, f));
    engine.register_get("path", |f: &mut ConfigFile| f.0.borrow().file.path.clone());
    engine.register_get("content", |f: &mut ConfigFile| {
        f.0.borrow().file.contents.clone()
    });
    engine.register_get("mode", |f: &mut ConfigFile| {
        INT::from(f.0.borrow().file.mode)
    });
    engine.register_set("mode", |f: &mut ConfigFile, m: Dynamic| -> Res<()> {
        f.0.borrow_mut().file.mode = mode_dyn(&m)?;
        Ok(())
    });
    engine.register_get("owner", |f: &mut ConfigFile| -> Dynamic {
        f.0.borrow()
            .file
            .owner
            .clone()
            .map_or(Dynamic::UNIT, Dynamic::from)
    });
    engine.register_set("owner", |f: &mut ConfigFile, o: &str| -> Res<()> {
        f.0.borrow_mut().file.owner = Some(owner_str(o)?);
        Ok(())
    });
    engine.register_fn("to_string", |f: &mut ConfigFile| {
        format!("config({})", f.0.borrow().file.path)
    });

    // disks
    let s = Rc::clone(session);
    engine.register_fn("raid", move |level: INT, disks: Array| {
        raid_on(&s, None, level, &disks)
    });
    let s = Rc::clone(session);
    engine.register_fn("raid", move |device: &str, level: INT, disks: Array| {
        raid_on(&s, Some(device), level, &disks)
    });
    let s = Rc::clone(session);
    engine.register_fn(
        "partition",
        move |disk: &str, layout: Array| -> Res<Array> {
            let layout = parse_layout(&layout)?;
            let (argv, devices) = tools::partition(disk, &layout).map_err(invalid)?;
            exec_checked(&s, argv, None)?;
            Ok(devices.into_iter().map(Dynamic::from).collect())
        },
    );
    let s = Rc::clone(session);
    engine.register_fn("mkfs", move |dev: &str, fs: &str| {
        mkfs_on(&s, dev, fs, None)
    });
    let s = Rc::clone(session);
    engine.register_fn("mkfs", move |dev: &str, fs: &str, label: &str| {
        mkfs_on(&s, dev, fs, Some(label))
    });
    let s = Rc::clone(session);
    engine.register_fn("mount", move |dev: &str, path: &str| -> Res<String> {
        let root = s.borrow().target_root.clone();
        let (mkdir, mount, mountpoint) = tools::mount(dev, path, &root).map_err(invalid)?;
        let device = tools::device_path(dev).map_err(invalid)?;
        exec_checked(&s, mkdir, None)?;
        exec_checked(&s, mount, None)?;
        let mut s = s.borrow_mut();
        let fs = s
            .outcome
            .filesystems
            .iter()
            .rev()
            .find(|f| f.device == device)
            .map(|f| f.fs.clone());
        s.outcome.mounts.push(Mount {
            device,
            path: path.to_owned(),
            mountpoint: mountpoint.clone(),
            fs,
        });
        Ok(mountpoint)
    });
    let s = Rc::clone(session);
    engine.register_fn("lvm", move |vg: &str, pvs: Array, lvs: Array| -> Res<Map> {
        let pvs = strings("physical volumes", &pvs, false)?;
        let lvs = parse_lvs(&lvs)?;
        let (cmds, devices) = tools::lvm(vg, &pvs, &lvs).map_err(invalid)?;
        exec_all(&s, cmds)?;
        Ok(devices
            .into_iter()
            .map(|(n, d)| (n.into(), Dynamic::from(d)))
            .collect())
    });

    // IPMI
    let s = Rc::clone(session);
    engine.register_fn(
        "ipmi_network",
        move |ch: INT, ip: &str, mask: &str, gw: &str| -> Res<()> {
            exec_all(&s, tools::ipmi_network(ch, ip, mask, gw).map_err(invalid)?)
        },
    );
    let s = Rc::clone(session);
    engine.register_fn("ipmi_user", move |ch: INT, user: &str, pw: &str| {
        ipmi_user_on(&s, ch, 2, user, pw)
    });
    let s = Rc::clone(session);
    engine.register_fn(
        "ipmi_user",
        move |ch: INT, id: INT, user: &str, pw: &str| ipmi_user_on(&s, ch, id, user, pw),
    );

    // network
    let s = Rc::clone(session);
    engine.register_fn(
        "network_interfaces",
        move |net: Map| -> Res<ImmutableString> {
            let text = render_interfaces(&network_of(&net)?).map_err(invalid)?;
            write(
                &s,
                FileWrite {
                    path: "/etc/network/interfaces".into(),
                    contents: text.clone(),
                    mode: 0o644,
                    owner: None,
                },
            )?;
            Ok(text.into())
        },
    );
    let s = Rc::clone(session);
    engine.register_fn("netplan", move |net: Map| -> Res<ImmutableString> {
        let text = render_netplan(&network_of(&net)?).map_err(invalid)?;
        write(
            &s,
            FileWrite {
                path: "/etc/netplan/50-rdeploy.yaml".into(),
                contents: text.clone(),
                mode: 0o600,
                owner: None,
            },
        )?;
        Ok(text.into())
    });
}

#[cfg(test)]
mod tests {
    use crate::{compile_with, dry_run, ErrorKind, Limits, Options};

    /// Runs `source` with strings of at most 1000 bytes (an output budget of 64 000).
    fn run_small(source: &str) -> Result<crate::Outcome, crate::RunError> {
        let options = Options {
            limits: Limits {
                max_string_size: 1000,
                ..Limits::default()
            },
            ..Options::default()
        };
        let script = compile_with("t.configure", source, &options.limits).expect("compiles");
        dry_run(&script, &serde_json::Map::new(), &options)
    }

    fn limit_error(source: &str) -> crate::RunError {
        let err = run_small(source).expect_err("over the limit");
        assert_eq!(err.error.kind, ErrorKind::Limit, "{}", err.error.message);
        err
    }

    const BIG: &str = r#"let big = "x"; big.pad(1000, "y");"#;

    // Found probing the sandbox's limits for its fuzz target: each value was within the
    // engine's limits, but a loop handed the host as many as its operations allowed, all
    // kept in the outcome (100 000 commands of 1 MiB: over 11 GB).
    #[test]
    fn loops_cannot_fill_the_outcome() {
        let err = limit_error(&format!("{BIG} for i in 0..100000 {{ run(big); }}"));
        assert!(
            err.partial.commands.len() < 100,
            "{}",
            err.partial.commands.len()
        );
        let err = limit_error(&format!(
            "{BIG} for i in 0..100000 {{ config(`/etc/x${{i}}`, big); }}"
        ));
        assert!(err.partial.files.len() < 100);
        limit_error(&format!(
            "{BIG} for i in 0..100000 {{ grub_options(big); }}"
        ));
        limit_error(&format!(
            "{BIG} for i in 0..100000 {{ let m = #{{}}; m[`k${{i}}`] = big; inject_facts(m); }}"
        ));
    }

    #[test]
    fn a_writer_holds_one_string() {
        let err = limit_error(&format!(
            r#"{BIG} let w = config("/etc/x"); for i in 0..100 {{ w.write(big); }}"#
        ));
        assert!(
            err.error.message.contains("/etc/x"),
            "{}",
            err.error.message
        );
        let ok = run_small(&format!(r#"{BIG} let w = config("/etc/x"); w.write(big);"#));
        assert_eq!(ok.expect("fits").files[0].contents.len(), 1000);
    }

    #[test]
    fn the_log_is_cut_not_the_run() {
        let outcome = run_small(&format!(
            "{BIG} for i in 0..1000 {{ print(big); }} set_role(\"base\", \"1\", \"sda\");"
        ))
        .expect("print never fails");
        assert!(outcome.log.len() < 100, "{}", outcome.log.len());
        assert!(outcome.log.last().is_some_and(|l| l.contains("cut")));
        assert!(outcome.role.is_some());
    }
}
