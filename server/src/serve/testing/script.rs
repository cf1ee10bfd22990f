//! Test scripts: the templates `<tests-dir>/NAME.test`, rendered with a Jinja engine
//! (`minijinja`: the `{{ var }}`, `{% if %}`, `{% for %}` of the Django templates PXE Manager
//! used) for one system and one queued test.
//!
//! An undefined variable that is printed or iterated is an error (testing it with `{% if %}`
//! is not): the error names the file, the line and the expression, and the system gets
//! `wait.test` instead of a broken script. Templates may `{% include %}` or `{% extends %}`
//! other files of the tests dir (never a path outside it).

use std::collections::BTreeMap;
use std::path::PathBuf;

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, Value};
use serde::Serialize;

use super::django;
use super::run::RunId;

/// The file name suffix of a test.
pub const SUFFIX: &str = ".test";

/// The test sent when a system has nothing queued.
pub const WAIT: &str = "wait";

/// The `wait.test` a new tests dir gets, and the script sent when it is missing or broken.
pub const DEFAULT_WAIT: &str = "\
#!/bin/sh
# wait.test: sent to a system that has no test queued. It waits, then exits so that the
# system asks again (GET {{ server }}/nexttest/).
sleep 60
";

/// What a template sees (documented in docs/tests.md).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScriptContext {
    /// The system's name (a registered system's name, else its node id).
    pub system: String,
    /// The names the system is known by (registered systems and nodes sharing its MACs).
    pub names: Vec<String>,
    pub macs: Vec<String>,
    /// Its addresses (its CMDB `ip`, and the address it called from).
    pub addresses: Vec<String>,
    /// Its profile, when it was installed by rdeploy.
    pub profile: Option<String>,
    /// Its CMDB entry (the variables its configure script got).
    pub var: serde_json::Map<String, serde_json::Value>,
    /// The server's URL as machines reach it.
    pub server: String,
    /// The test queued: its name and run id (none for `wait.test`).
    pub test: Option<(String, RunId)>,
}

#[derive(Debug, Serialize)]
struct TestValue<'a> {
    name: &'a str,
    id: Option<RunId>,
}

impl ScriptContext {
    /// The template's variables: the CMDB entry's keys, then (winning over them) `system`,
    /// `names`, `macs`, `addresses`, `profile`, `var`, `server`, `test` (`.name`, `.id`), and
    /// PXE Manager's `testname` and `log` (`log.id`).
    fn value(&self) -> Value {
        let mut top: BTreeMap<String, Value> = self
            .var
            .iter()
            .map(|(k, v)| (k.clone(), Value::from_serialize(v)))
            .collect();
        let (name, id) = match &self.test {
            Some((n, id)) => (n.as_str(), Some(*id)),
            None => (WAIT, None),
        };
        let mut put = |k: &str, v: Value| {
            top.insert(k.to_owned(), v);
        };
        put("system", Value::from(self.system.as_str()));
        put("names", Value::from_serialize(&self.names));
        put("macs", Value::from_serialize(&self.macs));
        put("addresses", Value::from_serialize(&self.addresses));
        put("profile", Value::from_serialize(&self.profile));
        put("var", Value::from_serialize(&self.var));
        put("server", Value::from(self.server.as_str()));
        put("test", Value::from_serialize(TestValue { name, id }));
        put("testname", Value::from(name));
        put(
            "log",
            match id {
                Some(id) => Value::from_serialize(BTreeMap::from([("id", id)])),
                None => Value::from(()),
            },
        );
        Value::from_serialize(&top)
    }
}

/// A test that could not be read or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    #[error("{}: no such test (no file {})", name, file.display())]
    Missing { name: String, file: PathBuf },
    /// The message starts with `FILE:LINE:`.
    #[error("{0}")]
    Template(String),
    #[error("cannot list the tests dir {}: {err}", dir.display())]
    ListDir { dir: PathBuf, err: String },
}

/// A test found in the tests dir, and whether its template compiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub name: String,
    /// A syntax error (`hello.test:4: syntax error: ...`).
    pub problem: Option<String>,
}

/// The tests dir.
#[derive(Debug, Clone)]
pub struct Scripts {
    pub dir: PathBuf,
}

/// Whether `name` can be a test's name (it names a file: letters, digits, `.`, `_`, `-`).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl Scripts {
    pub fn new(dir: PathBuf) -> Scripts {
        Scripts { dir }
    }

    /// Creates the tests dir with a `wait.test` when it does not exist yet.
    pub fn create(&self) -> std::io::Result<()> {
        if self.dir.is_dir() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)?;
        let wait = self.dir.join(format!("{WAIT}{SUFFIX}"));
        let tmp = self.dir.join(format!(".{WAIT}{SUFFIX}.rdeploy-tmp"));
        std::fs::write(&tmp, DEFAULT_WAIT)?;
        std::fs::rename(&tmp, wait)
    }

    fn env(&self) -> Environment<'static> {
        let mut env = Environment::new();
        let load = minijinja::path_loader(self.dir.clone());
        env.set_loader(move |name| Ok(load(name)?.map(|text| django::translate(&text))));
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.set_keep_trailing_newline(true);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_debug(true);
        env
    }

    /// The tests of the dir (`*.test`, sorted), each compiled to find syntax errors.
    pub fn scan(&self) -> Result<Vec<Found>, ScriptError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| ScriptError::ListDir {
            dir: self.dir.clone(),
            err: e.to_string(),
        })?;
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                let file = e.file_name().to_str()?.to_owned();
                let name = file.strip_suffix(SUFFIX)?;
                (valid_name(name) && e.path().is_file()).then(|| name.to_owned())
            })
            .collect();
        names.sort();
        let env = self.env();
        Ok(names
            .into_iter()
            .map(|name| {
                let problem = env
                    .get_template(&format!("{name}{SUFFIX}"))
                    .err()
                    .map(|e| describe(&e, &format!("{name}{SUFFIX}")));
                Found { name, problem }
            })
            .collect())
    }

    /// Renders test `name` for `ctx`.
    pub fn render(&self, name: &str, ctx: &ScriptContext) -> Result<String, ScriptError> {
        let file = format!("{name}{SUFFIX}");
        let path = self.dir.join(&file);
        if !valid_name(name) || !path.is_file() {
            return Err(ScriptError::Missing {
                name: name.to_owned(),
                file: path,
            });
        }
        let env = self.env();
        let template = env
            .get_template(&file)
            .map_err(|e| ScriptError::Template(describe(&e, &file)))?;
        template
            .render(ctx.value())
            .map_err(|e| ScriptError::Template(describe(&e, &file)))
    }

    /// `wait.test` rendered for `ctx`; the built-in one when it is missing or broken (the
    /// problem is logged).
    pub fn render_wait(&self, ctx: &ScriptContext) -> String {
        let mut ctx = ctx.clone();
        ctx.test = None;
        match self.render(WAIT, &ctx) {
            Ok(text) => text,
            Err(e) => {
                tracing::warn!(error = %e, dir = %self.dir.display(), "wait.test unusable: sending the built-in one");
                let env = Environment::new();
                env.render_str(DEFAULT_WAIT, ctx.value())
                    .unwrap_or_else(|_| DEFAULT_WAIT.to_owned())
            }
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}{SUFFIX}"))
    }
}

/// `FILE:LINE: what went wrong`, naming the expression for undefined values; an error in an
/// included template is told where it happened, then where it was included from.
fn describe(e: &minijinja::Error, file: &str) -> String {
    let inner = std::error::Error::source(e).and_then(|s| s.downcast_ref::<minijinja::Error>());
    if let Some(inner) = inner {
        let outer = e.name().unwrap_or(file);
        let line = e.line().map_or(String::new(), |l| format!(":{l}"));
        return format!("{} (included from {outer}{line})", describe(inner, file));
    }
    describe_one(e, file)
}

fn describe_one(e: &minijinja::Error, file: &str) -> String {
    let name = e.name().unwrap_or(file);
    let at = match e.line() {
        Some(line) => format!("{name}:{line}"),
        None => name.to_owned(),
    };
    let expr = e
        .range()
        .and_then(|r| e.template_source().and_then(|s| s.get(r)))
        .map(|s| s.trim().to_owned());
    let detail = e.detail().map(str::to_owned);
    match (e.kind(), expr) {
        (ErrorKind::UndefinedError, Some(expr)) => format!(
            "{at}: undefined variable in `{expr}` (known: system, names, macs, addresses, profile, var, server, test.name, test.id, testname, log.id, and the CMDB entry's keys)"
        ),
        (ErrorKind::SyntaxError, _) => {
            format!("{at}: syntax error: {}", detail.unwrap_or_default())
        }
        (ErrorKind::TemplateNotFound, _) => format!(
            "{at}: {} (templates are looked up in the tests dir)",
            detail.unwrap_or_else(|| "template not found".into())
        ),
        (kind, expr) => {
            let mut msg = format!("{at}: {kind}");
            if let Some(d) = detail {
                msg.push_str(": ");
                msg.push_str(&d);
            }
            if let Some(x) = expr {
                msg.push_str(&format!(" (in `{x}`)"));
            }
            msg
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ScriptContext {
        let var =
            serde_json::json!({"ip": "10.0.0.5", "hostname": "node5", "system": "cmdb loses"});
        ScriptContext {
            system: "rack1-u12".into(),
            names: vec!["rack1-u12".into()],
            macs: vec!["52:54:00:aa:00:01".into()],
            addresses: vec!["10.0.0.5".into()],
            profile: Some("hp".into()),
            var: var.as_object().cloned().unwrap_or_default(),
            server: "http://10.0.0.1:8080".into(),
            test: Some(("hello".into(), 42)),
        }
    }

    fn dir_with(files: &[(&str, &str)]) -> std::io::Result<(tempfile::TempDir, Scripts)> {
        let tmp = tempfile::tempdir()?;
        let scripts = Scripts::new(tmp.path().join("tests"));
        scripts.create()?;
        for (name, text) in files {
            std::fs::write(scripts.dir.join(name), text)?;
        }
        Ok((tmp, scripts))
    }

    #[test]
    fn a_template_sees_the_system_the_cmdb_and_the_run() -> Result<(), Box<dyn std::error::Error>> {
        let (_tmp, s) = dir_with(&[(
            "hello.test",
            "echo {{ system }} {{ hostname }} {{ var.ip }} {{ macs|join(',') }}\n\
             {% if profile == 'hp' %}echo hp{% endif %}\n\
             {% for a in addresses %}ping {{ a }}\n{% endfor %}\
             {% if var.missing %}never{% endif %}\
             curl -F file=@out {{ server }}/upload/{{ log.id }}/ # {{ testname }} {{ test.id }}\n",
        )])?;
        let text = s.render("hello", &ctx())?;
        assert_eq!(
            text,
            "echo rack1-u12 node5 10.0.0.5 52:54:00:aa:00:01\necho hp\nping 10.0.0.5\n\
             curl -F file=@out http://10.0.0.1:8080/upload/42/ # hello 42\n"
        );
        Ok(())
    }

    #[test]
    fn an_undefined_variable_names_the_file_the_line_and_the_expression(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (_tmp, s) = dir_with(&[
            ("bad.test", "#!/bin/sh\necho ok\necho {{ var.nosuch }}\n"),
            ("syntax.test", "#!/bin/sh\n{% if %}\n"),
            ("inc.test", "#!/bin/sh\n{% include 'lib.sh' %}\n"),
            ("lib.sh", "\n\necho {{ nosuch_thing }}\n"),
        ])?;
        let err = s.render("bad", &ctx()).err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(
            err.starts_with("bad.test:3: undefined variable in `var.nosuch`"),
            "{err}"
        );
        let err = s.render("syntax", &ctx()).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.starts_with("syntax.test:2: syntax error")));
        let err = s.render("inc", &ctx()).err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(
            err.starts_with("lib.sh:3: undefined variable in `nosuch_thing`"),
            "{err}"
        );
        let found = s.scan()?;
        let names: Vec<(&str, bool)> = found
            .iter()
            .map(|f| (f.name.as_str(), f.problem.is_some()))
            .collect();
        assert_eq!(
            names,
            [
                ("bad", false),
                ("inc", false),
                ("syntax", true),
                ("wait", false)
            ]
        );
        Ok(())
    }

    #[test]
    fn a_missing_or_broken_wait_test_falls_back_to_the_built_in_one(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (_tmp, s) = dir_with(&[])?;
        assert!(s.render_wait(&ctx()).contains("sleep 60"));
        std::fs::write(s.path(WAIT), "{{ nosuch }}")?;
        let text = s.render_wait(&ctx());
        assert!(text.contains("sleep 60") && text.contains("http://10.0.0.1:8080/nexttest/"));
        assert!(s.render("../etc/passwd", &ctx()).is_err());
        Ok(())
    }
}
