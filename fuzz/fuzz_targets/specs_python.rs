//! A specs file in the Python-literal syntax: read as a specs file and as a plain value;
//! what the writer writes reads back equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rdeploy_specs::model::parse_specs;
use rdeploy_specs::syntax;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(lines) = parse_specs(text) {
        for line in &lines {
            assert!(line.pos.line >= 1 && line.pos.col >= 1);
        }
    }
    if let Ok(node) = syntax::parse(text) {
        let _ = node.describe();
        if let Ok(value) = node.to_value() {
            rdeploy_fuzz::assert_reads_back(&value);
        }
    }
});
