//! A CMDB file: a list of dicts, `generate({...})` models, `+` of those. What the writer
//! writes (the expanded list) reads back as the same entries, no longer a model; the
//! eDeploy allocation over the entries never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rdeploy_cmdb::cmdb::{allocate, Cmdb};
use rdeploy_specs::{Value, Vars};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(Some(cmdb)) = Cmdb::parse(text) else {
        return;
    };
    if cmdb.entries.len() > 10_000 {
        return;
    }
    if cmdb.entries.iter().all(rdeploy_fuzz::finite) {
        let written = cmdb.to_python();
        let back = Cmdb::parse(&written)
            .unwrap_or_else(|e| panic!("{written:?} does not read back: {e}"))
            .expect("a written CMDB is not empty");
        assert!(!back.generated);
        assert!(back.entries == cmdb.entries, "{written}");
    }
    // A machine bound to the first entry's first keys, then one that binds nothing.
    let mut vars = Vars::default();
    if let Some(Value::Dict(items)) = cmdb.entries.first() {
        for (k, v) in items.iter().take(2) {
            if let Some(k) = k.as_str() {
                vars.set(k, v.clone());
            }
        }
    }
    let mut cmdb = cmdb;
    for vars in [vars, Vars::default()] {
        if let Ok(a) = allocate(&cmdb.entries, &vars, &Vars::default()) {
            cmdb.apply(&a);
            assert!(cmdb.entries[a.index].dict_get("used").is_some());
        }
    }
    if cmdb.entries.iter().all(rdeploy_fuzz::finite) {
        let written = cmdb.to_python();
        let back = Cmdb::parse(&written).expect("an allocated CMDB reads back");
        assert!(back.is_some_and(|b| b.entries == cmdb.entries), "{written}");
    }
});
