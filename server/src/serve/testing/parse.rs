//! The uploaded output of a test, read the PXE Manager way: a line that begins with
//! `I: ` (information), `W: ` (warning), `E: ` (error), `S: ` or `T: ` is kept with its kind,
//! and `V: ` gives the version of the system under test (the last one wins). Every other
//! line is only in the raw file. Pure: text in, values out.

use serde::{Deserialize, Serialize};

/// Parsed lines kept per run at most (the counts include every line).
pub const MAX_LINES: usize = 10_000;

/// Longest line text kept (longer ones are cut, with `…`).
const MAX_TEXT: usize = 2_000;

/// One parsed line: its kind (`I`, `W`, `E`, `S`, `T`), its text after `K: ` and its line
/// number in the output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub kind: String,
    pub text: String,
    pub line: usize,
}

/// How many lines of each kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub errors: usize,
    pub warnings: usize,
    pub infos: usize,
    /// `S: ` lines.
    #[serde(default)]
    pub s: usize,
    /// `T: ` lines.
    #[serde(default)]
    pub t: usize,
}

/// What an output says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub lines: Vec<Line>,
    pub counts: Counts,
    pub version: Option<String>,
    /// Lines beyond [`MAX_LINES`], counted but not kept.
    pub dropped: usize,
}

/// The kind and text of a line that starts with `K: ` (`K` one of `IEWSVT`).
fn tagged(line: &str) -> Option<(char, &str)> {
    let mut chars = line.chars();
    let kind = chars.next()?;
    if !matches!(kind, 'I' | 'E' | 'W' | 'S' | 'V' | 'T') {
        return None;
    }
    line.get(1..)?.strip_prefix(": ").map(|rest| (kind, rest))
}

/// Reads an output (a `\r` before a line's end is dropped).
pub fn parse(text: &str) -> Parsed {
    let mut p = Parsed::default();
    for (n, raw) in text.lines().enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let Some((kind, rest)) = tagged(raw) else {
            continue;
        };
        match kind {
            'V' => {
                p.version = Some(cut(rest));
                continue;
            }
            'I' => p.counts.infos += 1,
            'W' => p.counts.warnings += 1,
            'E' => p.counts.errors += 1,
            'S' => p.counts.s += 1,
            _ => p.counts.t += 1,
        }
        if p.lines.len() < MAX_LINES {
            p.lines.push(Line {
                kind: kind.to_string(),
                text: cut(rest),
                line: n + 1,
            });
        } else {
            p.dropped += 1;
        }
    }
    p
}

fn cut(s: &str) -> String {
    if s.len() <= MAX_TEXT {
        return s.to_owned();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Whether a text has the look of a test output rather than an inventory: some line is
/// `I: `, `W: `, `E: `, `S: `, `T: ` or `V: `.
pub fn looks_like_output(text: &str) -> bool {
    text.lines().any(|l| tagged(l).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_lines_are_kept_with_their_kind_and_counted() {
        let out = "starting\nI: kernel 6.1\r\nW: disk sdb slow\nE: memtest: 2 errors\nV: 2.0-rc1\n\
                   E:no space is not a tag\n  E: indented is not a tag\nS: step 1\nT: 12.5s\nV: 2.0\n";
        let p = parse(out);
        assert_eq!(
            p.counts,
            Counts {
                errors: 1,
                warnings: 1,
                infos: 1,
                s: 1,
                t: 1
            }
        );
        assert_eq!(p.version.as_deref(), Some("2.0"));
        let kinds: Vec<(&str, &str, usize)> = p
            .lines
            .iter()
            .map(|l| (l.kind.as_str(), l.text.as_str(), l.line))
            .collect();
        assert_eq!(
            kinds,
            [
                ("I", "kernel 6.1", 2),
                ("W", "disk sdb slow", 3),
                ("E", "memtest: 2 errors", 4),
                ("S", "step 1", 8),
                ("T", "12.5s", 9)
            ]
        );
        assert!(looks_like_output(out));
        assert!(!looks_like_output("[('system', 'product', 'name', 'x')]"));
    }

    #[test]
    fn huge_outputs_keep_the_counts_and_a_bounded_number_of_lines() {
        let out = format!(
            "{}I: {}\n",
            "E: x\n".repeat(MAX_LINES + 5),
            "é".repeat(MAX_TEXT)
        );
        let p = parse(&out);
        assert_eq!(p.counts.errors, MAX_LINES + 5);
        assert_eq!(p.counts.infos, 1);
        assert_eq!(p.lines.len(), MAX_LINES);
        assert_eq!(p.dropped, 6);
    }

    #[test]
    fn a_long_line_is_cut_on_a_character_boundary() {
        let p = parse(&format!("I: {}\n", "é".repeat(MAX_TEXT)));
        assert!(p.lines[0].text.ends_with('…'));
        assert!(p.lines[0].text.len() <= MAX_TEXT + '…'.len_utf8());
    }
}
