//! The `state` file (profile quotas): what the writer writes reads back the same, also
//! after counting installs and giving them back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rdeploy_cmdb::State;

fn same(a: &State, b: &State) -> bool {
    a.entries.len() == b.entries.len()
        && a.entries
            .iter()
            .zip(&b.entries)
            .all(|(x, y)| x.profile == y.profile && x.quota == y.quota)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut state) = State::parse(text) else {
        return;
    };
    let written = state.to_python();
    let back = State::parse(&written).unwrap_or_else(|e| panic!("{written:?}: {e}"));
    assert!(same(&back, &state), "{written}");
    assert_eq!(back.to_python(), written, "writing is not stable");
    let n = state.entries.len();
    for i in 0..n {
        if state.entries[i].quota.available() {
            state.decrement(i);
        }
    }
    for i in 0..n {
        let profile = state.entries[i].profile.clone();
        let _ = state.give_back(i, &profile);
        let _ = state.failed_profile(&profile);
    }
    let written = state.to_python();
    let back = State::parse(&written).unwrap_or_else(|e| panic!("{written:?}: {e}"));
    assert!(same(&back, &state), "{written}");
});
