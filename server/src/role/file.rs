//! The role file: what `rdeploy role build` reads (TOML, `docs/roles.md#building-roles`).
//!
//! Pure: text in, a checked [`RoleFile`] or every problem found out. Templates are expanded
//! here too ([`RoleFile::render`]), so a build only moves bytes.

use std::collections::BTreeMap;
use std::fmt;

use rdeploy_configure::tree_wire::check_name;
use serde::Deserialize;

/// A role file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleFile {
    /// The role's name (`DATA_DIR/install/<version>/<role>/`).
    pub role: String,
    /// The version built.
    pub version: String,
    /// What the tree starts from.
    pub base: Base,
    /// Debian packages installed on top of the base.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Paths dpkg never installs (`path-exclude` globs in `/etc/dpkg/dpkg.cfg.d/rdeploy`,
    /// written before the packages and kept in the tree, so roles on top skip them too).
    #[serde(default)]
    pub dpkg_exclude: Vec<String>,
    /// Exceptions to `dpkg_exclude` (`path-include`).
    #[serde(default)]
    pub dpkg_include: Vec<String>,
    /// Install the packages' recommendations too (default: no, like `--no-install-recommends`).
    #[serde(default)]
    pub recommends: bool,
    /// Files placed after the packages are installed.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// Shell commands run inside the tree (chroot) after the files are placed, in order.
    #[serde(default)]
    pub commands: Vec<String>,
    /// Paths removed at the end (shell globs, absolute, expanded inside the tree).
    #[serde(default)]
    pub strip: Vec<String>,
    /// SOURCE_DATE_EPOCH: every entry newer than it gets this time (seconds since 1970).
    pub epoch: Option<i64>,
    /// Variables of the templates (`{{ name }}`), beside `role`, `version`, `suite`.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
}

/// The base: a Debian suite bootstrapped by mmdebstrap (cached), or another built role.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Base {
    /// Debian suite (`bookworm`): bootstrap it.
    pub debian: Option<String>,
    /// The Debian mirror (default `http://deb.debian.org/debian`).
    pub mirror: Option<String>,
    /// mmdebstrap's variant (default `minbase`).
    pub variant: Option<String>,
    /// Archive components (default `["main"]`).
    pub components: Option<Vec<String>>,
    /// Whole one-line sources (`deb URL SUITE COMPONENTS`) instead of `mirror`.
    pub sources: Option<Vec<String>>,
    /// Start from `DATA_DIR/install/<version>/<role>/` instead.
    pub role: Option<String>,
    /// The version of `role`.
    pub version: Option<String>,
}

/// One file to place.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Absolute path in the tree.
    pub path: String,
    /// The content, inline.
    pub content: Option<String>,
    /// Or a file to copy, relative to the role file's directory.
    pub source: Option<String>,
    /// Octal permission bits as a string (`"0644"`, the default; `"0755"`).
    pub mode: Option<String>,
    /// `user:group` (names of the tree's `/etc/passwd` and `/etc/group`, or numbers);
    /// default `root:root`.
    pub owner: Option<String>,
    /// Expand `{{ name }}` in the content.
    #[serde(default)]
    pub template: bool,
}

/// Every problem of a role file, each on its own line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<String>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.join("\n"))
    }
}

impl std::error::Error for Problems {}

/// The default Debian mirror.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// What the base is, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseKind {
    /// Bootstrap Debian.
    Debian {
        suite: String,
        variant: String,
        components: Vec<String>,
        sources: Vec<String>,
    },
    /// Copy a built role.
    Role { role: String, version: String },
}

impl RoleFile {
    /// Reads and checks a role file's text; every problem is reported.
    pub fn parse(text: &str) -> Result<RoleFile, Problems> {
        let file: RoleFile = toml::from_str(text).map_err(|e| Problems(vec![e.to_string()]))?;
        let mut p = Vec::new();
        if !check_name(&file.role) {
            p.push(format!(
                "role {:?} is not a name (letters, digits, '.', '_', '-', '+', ':', '~')",
                file.role
            ));
        }
        if !check_name(&file.version) {
            p.push(format!("version {:?} is not a name", file.version));
        }
        if let Err(why) = file.base.kind() {
            p.push(why);
        }
        for pkg in &file.packages {
            if pkg.is_empty()
                || pkg.starts_with('-')
                || !pkg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.:=~_/".contains(c))
            {
                p.push(format!("packages: {pkg:?} is not a package name"));
            }
        }
        for g in file.dpkg_exclude.iter().chain(&file.dpkg_include) {
            if let Err(why) = check_tree_path(g) {
                p.push(format!("dpkg_exclude/dpkg_include: {g:?} {why}"));
            } else if g.contains(char::is_whitespace) {
                p.push(format!("dpkg_exclude/dpkg_include: {g:?} has a space"));
            }
        }
        for (i, f) in file.files.iter().enumerate() {
            let at = format!("files[{i}] ({})", f.path);
            if let Err(why) = check_tree_path(&f.path) {
                p.push(format!("{at}: path {why}"));
            }
            match (&f.content, &f.source) {
                (Some(_), Some(_)) => p.push(format!("{at}: give content or source, not both")),
                (None, None) => p.push(format!("{at}: needs content or source")),
                _ => {}
            }
            if let Some(m) = &f.mode {
                if parse_mode(m).is_none() {
                    p.push(format!(
                        "{at}: mode {m:?} is not octal permission bits like \"0644\""
                    ));
                }
            }
            if let Some(o) = &f.owner {
                let ok = o.split(':').count() <= 2
                    && o.split(':').all(|x| {
                        !x.is_empty()
                            && x.chars()
                                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
                    });
                if !ok {
                    p.push(format!("{at}: owner {o:?} is not user or user:group"));
                }
            }
            if f.template {
                if let Some(c) = &f.content {
                    if let Err(why) = render(c, &file.template_vars()) {
                        p.push(format!("{at}: {why}"));
                    }
                }
            }
        }
        for (i, c) in file.commands.iter().enumerate() {
            if c.trim().is_empty() {
                p.push(format!("commands[{i}] is empty"));
            }
        }
        for s in &file.strip {
            if let Err(why) = check_strip(s) {
                p.push(format!("strip: {s:?} {why}"));
            }
        }
        if file.epoch.is_some_and(|e| e < 0) {
            p.push("epoch must be seconds since 1970 (not negative)".to_owned());
        }
        if p.is_empty() {
            Ok(file)
        } else {
            Err(Problems(p))
        }
    }

    /// Names a template may use.
    pub fn template_vars(&self) -> BTreeMap<String, String> {
        let mut v = self.vars.clone();
        v.insert("role".into(), self.role.clone());
        v.insert("version".into(), self.version.clone());
        if let Some(s) = &self.base.debian {
            v.insert("suite".into(), s.clone());
        }
        v
    }
}

impl RoleFile {
    /// The text of `/etc/dpkg/dpkg.cfg.d/rdeploy` (`None` without `dpkg_exclude`).
    pub fn dpkg_cfg(&self) -> Option<String> {
        if self.dpkg_exclude.is_empty() {
            return None;
        }
        let mut s = format!(
            "# Written by `rdeploy role build` ({} {}): what dpkg does not install here.\n",
            self.role, self.version
        );
        for g in &self.dpkg_exclude {
            s.push_str(&format!("path-exclude={g}\n"));
        }
        for g in &self.dpkg_include {
            s.push_str(&format!("path-include={g}\n"));
        }
        Some(s)
    }
}

impl Base {
    /// The base, checked: exactly one of `debian` and `role` (with `version`).
    pub fn kind(&self) -> Result<BaseKind, String> {
        match (&self.debian, &self.role, &self.version) {
            (Some(suite), None, None) => {
                if !check_name(suite) {
                    return Err(format!("base.debian {suite:?} is not a suite name"));
                }
                let variant = self.variant.clone().unwrap_or_else(|| "minbase".into());
                if !["extract", "custom", "essential", "apt", "minbase", "buildd", "required", "important", "standard"]
                    .contains(&variant.as_str())
                {
                    return Err(format!("base.variant {variant:?} is not an mmdebstrap variant"));
                }
                let components = self.components.clone().unwrap_or_else(|| vec!["main".into()]);
                let sources = match (&self.sources, &self.mirror) {
                    (Some(_), Some(_)) => {
                        return Err("base: give mirror or sources, not both".into())
                    }
                    (Some(s), None) => s.clone(),
                    (None, m) => vec![format!(
                        "deb {} {suite} {}",
                        m.as_deref().unwrap_or(DEFAULT_MIRROR),
                        components.join(" ")
                    )],
                };
                for s in &sources {
                    if !s.starts_with("deb ") || s.contains('\n') {
                        return Err(format!("base.sources: {s:?} is not a one-line `deb URL SUITE COMPONENTS`"));
                    }
                }
                Ok(BaseKind::Debian {
                    suite: suite.clone(),
                    variant,
                    components,
                    sources,
                })
            }
            (None, Some(role), Some(version)) => {
                if self.mirror.is_some() || self.sources.is_some() || self.variant.is_some() || self.components.is_some() {
                    return Err("base: mirror, sources, variant and components go with debian, not role".into());
                }
                if !check_name(role) || !check_name(version) {
                    return Err(format!("base: role {role:?} version {version:?} are not names"));
                }
                Ok(BaseKind::Role {
                    role: role.clone(),
                    version: version.clone(),
                })
            }
            (None, Some(_), None) => Err("base.role needs base.version".into()),
            _ => Err("base needs either debian = \"SUITE\" or role = \"ROLE\" with version = \"VERSION\"".into()),
        }
    }
}

/// Permission bits from an octal string (`"0644"`, `"755"`).
pub fn parse_mode(s: &str) -> Option<u32> {
    let m = u32::from_str_radix(s, 8).ok()?;
    (m <= 0o7777 && !s.is_empty()).then_some(m)
}

/// An absolute path of the tree: `/` then components, none empty, `.` or `..`.
pub fn check_tree_path(path: &str) -> Result<(), &'static str> {
    let Some(rel) = path.strip_prefix('/') else {
        return Err("must be absolute");
    };
    if rel.is_empty() {
        return Err("is the root");
    }
    if path.contains('\0') {
        return Err("contains NUL");
    }
    if rel
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err("has an empty, '.' or '..' component");
    }
    Ok(())
}

/// A strip pattern: an absolute glob, at least two components deep or a named file at the
/// top (never `/` or `/*`), no `..`, no characters the shell would treat as more than a glob.
pub fn check_strip(pattern: &str) -> Result<(), &'static str> {
    check_tree_path(pattern)?;
    if pattern
        .chars()
        .any(|c| !(c.is_ascii_alphanumeric() || "/*?[]!._-+:@~,".contains(c)))
    {
        return Err("may hold letters, digits, '/', '.', '_', '-', '+', ':', '@', '~', ',' and the globs * ? [ ]");
    }
    let first = pattern[1..].split('/').next().unwrap_or("");
    if first.contains(['*', '?', '[']) {
        return Err("must not have a glob in its first component");
    }
    Ok(())
}

/// `{{ name }}` replaced by the value of `name` (spaces inside the braces optional); an
/// unknown name or an unclosed `{{` is an error.
pub fn render(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else {
            return Err("template: a `{{` is not closed by `}}`".into());
        };
        let name = after[..j].trim();
        match vars.get(name) {
            Some(v) => out.push_str(v),
            None => {
                return Err(format!(
                    "template: unknown variable {name:?} (known: {})",
                    vars.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            }
        }
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_debian_role_file_reads_with_defaults() -> Result<(), Problems> {
        let f = RoleFile::parse(
            r#"
role = "base"
version = "1"
epoch = 1700000000
[base]
debian = "bookworm"
[[files]]
path = "/etc/motd"
content = "{{ role }} {{version}} on {{ suite }}\n"
template = true
"#,
        )?;
        assert_eq!(
            f.base.kind(),
            Ok(BaseKind::Debian {
                suite: "bookworm".into(),
                variant: "minbase".into(),
                components: vec!["main".into()],
                sources: vec!["deb http://deb.debian.org/debian bookworm main".into()],
            })
        );
        let text = render(
            f.files[0].content.as_deref().unwrap_or(""),
            &f.template_vars(),
        );
        assert_eq!(text.as_deref(), Ok("base 1 on bookworm\n"));
        Ok(())
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = RoleFile::parse(
            r#"
role = "../x"
version = "1"
packages = ["ok", "-o=evil"]
commands = [" "]
strip = ["/", "/*/doc", "/usr/share/doc/*", "/x/$(reboot)"]
[base]
debian = "bookworm"
role = "base"
[[files]]
path = "etc/motd"
mode = "999"
content = "{{ nope }}"
template = true
"#,
        )
        .err()
        .map(|p| p.0)
        .unwrap_or_default();
        let text = err.join("\n");
        for want in [
            "role \"../x\" is not a name",
            "packages: \"-o=evil\"",
            "base needs either debian",
            "files[0] (etc/motd): path must be absolute",
            "mode \"999\"",
            "unknown variable \"nope\"",
            "commands[0] is empty",
            "strip: \"/\" is the root",
            "strip: \"/*/doc\" must not have a glob",
            "strip: \"/x/$(reboot)\" may hold",
        ] {
            assert!(text.contains(want), "no {want:?} in:\n{text}");
        }
        assert!(!text.contains("/usr/share/doc/*"), "{text}");
    }

    #[test]
    fn unknown_keys_and_bad_toml_say_where() {
        let err = RoleFile::parse(
            "role = \"a\"\nversion = \"1\"\npackage = []\n[base]\ndebian = \"bookworm\"\n",
        )
        .err()
        .map(|p| p.to_string())
        .unwrap_or_default();
        assert!(
            err.contains("unknown field `package`") && err.contains("line 3"),
            "{err}"
        );
    }

    #[test]
    fn a_role_base_takes_a_version() {
        let b = Base {
            debian: None,
            mirror: None,
            variant: None,
            components: None,
            sources: None,
            role: Some("base".into()),
            version: Some("1".into()),
        };
        assert_eq!(
            b.kind(),
            Ok(BaseKind::Role {
                role: "base".into(),
                version: "1".into()
            })
        );
    }
}
