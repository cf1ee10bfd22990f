//! The linear-time engine gives the backtracking engine's answer: patterns of the kinds
//! specs files use (anchors, `$`, classes, alternations, repetitions, flags, word
//! boundaries) against arbitrary texts, newlines included.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use rdeploy_specs::funcs::{compile_python_regex, Meter};

const PATTERNS: &[&str] = &[
    "^zzz",
    ".",
    "",
    "^$",
    "5$",
    "ne$",
    ".*",
    "a|b",
    "^[0-9]+$",
    "^3\\.1",
    "^\\\\En",
    "a=b",
    "^(\\w+\\s?)*$",
    "\\bab\\b",
    "\\Bb",
    "(?i)^AB",
    "(?m)^b$",
    "(?s)a.b",
    "a.b",
    "[$]a",
    "[^]a]+$",
    "a{2,3}$",
    "a+?b",
    "(ab|a)(c|bcd)$",
    "\\d\\s\\w",
    "\\Aa|b\\Z",
    "$a",
    "a$\\n",
    "^a$|^b",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_linear_engine_agrees_with_backtracking(
        pattern in prop::sample::select(PATTERNS),
        text in "[ab5zne\\n. 3\\\\=_éB$]{0,12}",
    ) {
        let re = compile_python_regex(pattern).unwrap();
        let fast = re.search(&text, &mut Meter::unlimited());
        let slow = re.search_backtracking(&text);
        prop_assert_eq!(fast, slow, "{:?} on {:?}", pattern, text);
    }
}

#[test]
fn most_patterns_of_specs_files_are_linear() {
    let linear = PATTERNS
        .iter()
        .filter(|p| compile_python_regex(p).unwrap().is_linear())
        .count();
    assert_eq!(
        linear,
        PATTERNS.len(),
        "every pattern above needs no backtracking"
    );
}
