//! The configure sandbox: random scripts (mutated text, token soup, or statements of the
//! configure API with good and bad arguments) compiled and dry-run with the default limits
//! on the recording host (fewer operations, see below). Any script ends, with an outcome or an error: never a panic, an
//! abort or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rdeploy_configure::{compile_with, dry_run, Options};

fuzz_target!(|data: &[u8]| {
    let source = rdeploy_fuzz::script::from_bytes(data);
    // The default limits, but fewer operations: Rhai instrumented for fuzzing runs some
    // hundred times slower than in a release build, and scripts that loop to the limit
    // would take seconds each. Every other limit (string, array and map sizes, depths,
    // the output budget derived from them) is the default.
    let mut options = Options::default();
    options.limits.max_operations = 50_000;
    let Ok(script) = compile_with("fuzz.configure", &source, &options.limits) else {
        return;
    };
    let vars = rdeploy_fuzz::script::vars();
    match dry_run(&script, &vars, &options) {
        Ok(outcome) => {
            let _ = serde_json::to_string(&outcome).expect("an outcome serializes");
        }
        Err(err) => {
            let _ = err.to_string();
        }
    }
});
