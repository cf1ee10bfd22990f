//! rsync-style patterns, as eDeploy's `exclude` and `add_only` files hold them (one per line,
//! read like `rsync --exclude-from`).
//!
//! - blank lines and lines starting with `#` or `;` are ignored; trailing spaces are dropped;
//! - `- PATTERN` excludes, `+ PATTERN` includes, a bare `PATTERN` excludes; `!` clears the
//!   rules read so far; the first rule that matches a path decides;
//! - a leading `/` anchors the pattern at the tree's root; otherwise a pattern without `/` is
//!   matched against the last component of a path (at any depth), and one with a `/` against
//!   the end of the path, on a component boundary;
//! - a trailing `/` matches directories only; `dir/***` matches `dir` and everything in it;
//! - `*` matches within one component, `**` across components, `?` one character other than
//!   `/`, `[a-z]` / `[!a-z]` a class, `\` escapes; `**/` also matches no directory;
//! - a path is excluded when it, or any directory above it, is excluded: like rsync, an
//!   excluded directory's contents are never looked at.

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    include: bool,
    anchored: bool,
    dir_only: bool,
    /// Matched against the whole (or end of the) path rather than the last component.
    full_path: bool,
    pattern: String,
}

/// An ordered list of rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    rules: Vec<Rule>,
}

impl Filter {
    /// Reads a rules file's text. Never fails: every line is a pattern or ignored.
    pub fn parse(text: &str) -> Filter {
        let mut f = Filter::default();
        for line in text.lines() {
            f.add_line(line);
        }
        f
    }

    /// Whether the filter has no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Adds the rules of another filter after this one's.
    pub fn extend(&mut self, other: &Filter) {
        self.rules.extend(other.rules.iter().cloned());
    }

    /// Adds one line (see the module documentation).
    pub fn add_line(&mut self, line: &str) {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            return;
        }
        if line == "!" {
            self.rules.clear();
            return;
        }
        let (include, pat) = if let Some(p) = line.strip_prefix("+ ") {
            (true, p)
        } else if let Some(p) = line.strip_prefix("- ") {
            (false, p)
        } else {
            (false, line)
        };
        let anchored = pat.starts_with('/');
        let mut pat = pat.trim_start_matches('/');
        let mut dir_only = false;
        if let Some(base) = pat.strip_suffix("/***") {
            // The directory itself, and everything inside it.
            self.push(include, anchored, false, base);
            self.push(include, anchored, false, &format!("{base}/**"));
            return;
        }
        if let Some(p) = pat.strip_suffix('/') {
            dir_only = true;
            pat = p;
        }
        if pat.is_empty() {
            return;
        }
        self.push(include, anchored, dir_only, pat);
    }

    fn push(&mut self, include: bool, anchored: bool, dir_only: bool, pattern: &str) {
        if pattern.is_empty() {
            return;
        }
        self.rules.push(Rule {
            include,
            anchored,
            dir_only,
            full_path: pattern.contains('/') || pattern.contains("**"),
            pattern: pattern.to_owned(),
        });
    }

    /// The first rule matching `path` (relative, `/`-separated): `Some(true)` include,
    /// `Some(false)` exclude, `None` no rule matched.
    fn decide(&self, path: &str, is_dir: bool) -> Option<bool> {
        for r in &self.rules {
            if r.dir_only && !is_dir {
                continue;
            }
            let hit = if r.anchored {
                glob(r.pattern.as_bytes(), path.as_bytes())
            } else if r.full_path {
                suffixes(path).any(|s| glob(r.pattern.as_bytes(), s.as_bytes()))
            } else {
                let last = path.rsplit('/').next().unwrap_or(path);
                glob(r.pattern.as_bytes(), last.as_bytes())
            };
            if hit {
                return Some(r.include);
            }
        }
        None
    }

    /// Whether `path` is excluded: it or a directory above it matches an exclude rule first.
    pub fn excluded(&self, path: &str, is_dir: bool) -> bool {
        if self.rules.is_empty() {
            return false;
        }
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            let dir = &path[..end + i];
            if self.decide(dir, true) == Some(false) {
                return true;
            }
            end += i + 1;
        }
        self.decide(path, is_dir) == Some(false)
    }
}

/// `a/b/c`, `b/c`, `c`.
/// eDeploy's `add_only` file in the form the rest of rdeploy reads (a path the rules
/// exclude is a path they name).
///
/// eDeploy read `add_only` like `rsync --include-from` (its second rsync pass used it so): a
/// bare pattern and `+ PATTERN` name add-only paths, `- PATTERN` names paths that are not;
/// its own generated default is `+ /var/`, `+ /var/**`, `- *`. Here a bare pattern names,
/// so `+ X` becomes `X` and `- X` becomes `+ X`; bare lines, comments and `!` stay.
pub fn add_only_rules(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(p) = line.strip_prefix("+ ") {
            out.push_str(p);
        } else if let Some(p) = line.strip_prefix("- ") {
            out.push_str("+ ");
            out.push_str(p);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

fn suffixes(path: &str) -> impl Iterator<Item = &str> {
    std::iter::once(path).chain(path.match_indices('/').map(move |(i, _)| &path[i + 1..]))
}

/// Matches a whole string against a glob (`*`, `**`, `?`, `[...]`, `\`).
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => {
            if p.get(1) == Some(&b'*') {
                let rest = &p[2..];
                // `**/` also matches no directory at all (`a/**/z` matches `a/z`).
                (rest.first() == Some(&b'/') && glob(&rest[1..], s))
                    || (0..=s.len()).any(|i| glob(rest, &s[i..]))
            } else {
                let rest = &p[1..];
                let mut i = 0;
                loop {
                    if glob(rest, &s[i..]) {
                        return true;
                    }
                    if i == s.len() || s[i] == b'/' {
                        return false;
                    }
                    i += 1;
                }
            }
        }
        Some(b'?') => s.first().is_some_and(|&c| c != b'/') && glob(&p[1..], &s[1..]),
        Some(b'[') => match (class(&p[1..]), s.first()) {
            (Some((hit, len)), Some(&c)) => c != b'/' && hit(c) && glob(&p[1 + len..], &s[1..]),
            (None, Some(&c)) => c == b'[' && glob(&p[1..], &s[1..]),
            (_, None) => false,
        },
        Some(b'\\') if p.len() > 1 => s.first() == Some(&p[1]) && glob(&p[2..], &s[1..]),
        Some(&c) => s.first() == Some(&c) && glob(&p[1..], &s[1..]),
    }
}

type ClassFn = Box<dyn Fn(u8) -> bool>;

/// A `[...]` class after its `[`: the test and the length up to and including `]`.
fn class(p: &[u8]) -> Option<(ClassFn, usize)> {
    let mut i = 0;
    let negate = matches!(p.first(), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut ranges: Vec<(u8, u8)> = Vec::new();
    let start = i;
    loop {
        let c = *p.get(i)?;
        if c == b']' && i > start {
            break;
        }
        if p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|&e| e != b']') {
            ranges.push((c, p[i + 2]));
            i += 3;
        } else {
            ranges.push((c, c));
            i += 1;
        }
    }
    let f = move |c: u8| ranges.iter().any(|&(a, b)| a <= c && c <= b) != negate;
    Some((Box::new(f), i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsync_pattern_forms() {
        let f = Filter::parse(
            "# comment\n\n/etc/hostname\nresolv.conf\n/var/log/\n*.pid\n+ /srv/keep\n/srv/*\n/opt/***\nhome/*/cache\n/a/**/z\n",
        );
        // Anchored file.
        assert!(f.excluded("etc/hostname", false));
        assert!(!f.excluded("x/etc/hostname", false));
        // Last component at any depth.
        assert!(f.excluded("etc/resolv.conf", false));
        assert!(f.excluded("run/x/resolv.conf", false));
        assert!(!f.excluded("etc/resolv.conf.d", false));
        // Directory only, and everything inside.
        assert!(f.excluded("var/log", true));
        assert!(!f.excluded("var/log", false));
        assert!(f.excluded("var/log/syslog", false));
        assert!(f.excluded("var/log/apt/history", false));
        // Wildcards.
        assert!(f.excluded("run/sshd.pid", false));
        assert!(f.excluded("home/bob/cache", true));
        assert!(!f.excluded("home/bob/x/cache", true));
        assert!(f.excluded("a/z", false));
        assert!(f.excluded("a/b/c/z", false));
        // First match wins: an include before an exclude.
        assert!(!f.excluded("srv/keep", false));
        assert!(!f.excluded("srv", true));
        assert!(f.excluded("srv/other", false));
        // `dir/***`: the directory and everything in it.
        assert!(f.excluded("opt", true));
        assert!(f.excluded("opt/x/y", false));
        // Nothing else.
        assert!(!f.excluded("etc/passwd", false));
        assert!(!f.excluded("usr/bin/ls", false));
    }

    #[test]
    fn globs() {
        assert!(glob(b"a*c", b"abbc"));
        assert!(!glob(b"a*c", b"ab/c"));
        assert!(glob(b"a**c", b"ab/c"));
        assert!(glob(b"f?o", b"foo"));
        assert!(!glob(b"f?o", b"f/o"));
        assert!(glob(b"[a-c]x", b"bx"));
        assert!(!glob(b"[!a-c]x", b"bx"));
        assert!(glob(b"\\*", b"*"));
        assert!(!glob(b"\\*", b"a"));
    }

    #[test]
    fn bang_clears_and_empty_files_have_no_rules() {
        let f = Filter::parse("a\n!\nb\n");
        assert!(!f.excluded("a", false));
        assert!(f.excluded("b", false));
        assert!(Filter::parse("# only a comment\n\n").is_empty());
    }

    #[test]
    fn add_only_reads_like_include_from() {
        // eDeploy's generated default: /var is add-only, nothing else.
        let f = Filter::parse(&add_only_rules("+ /var/\n+ /var/**\n- *\n"));
        assert!(f.excluded("var", true));
        assert!(f.excluded("var/lib/app/state", false));
        assert!(!f.excluded("etc/motd", false));
        assert!(!f.excluded("usr", true));
        // Bare patterns name add-only paths either way.
        let f = Filter::parse(&add_only_rules("/etc/seed.conf\n# comment\n"));
        assert!(f.excluded("etc/seed.conf", false));
        assert!(!f.excluded("etc/motd", false));
    }
}
