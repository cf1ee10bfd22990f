//! What the fuzz targets share: the properties checked on parsed values, a poll loop for
//! the server's async form reader, and the generator of configure scripts.

pub mod script;

use rdeploy_specs::syntax::{parse_value, to_python};
use rdeploy_specs::Value;

/// Whether every float in `v` is finite: Python writes `inf` and `nan`, which
/// `ast.literal_eval` (and so eDeploy, and this reader) cannot read back.
pub fn finite(v: &Value) -> bool {
    match v {
        Value::Float(f) => f.is_finite(),
        Value::Tuple(items) | Value::List(items) => items.iter().all(finite),
        Value::Dict(items) => items.iter().all(|(k, v)| finite(k) && finite(v)),
        _ => true,
    }
}

/// What the writer writes reads back equal (Python's `==`), for values without `inf`/`nan`.
pub fn assert_reads_back(v: &Value) {
    if !finite(v) {
        return;
    }
    let text = to_python(v);
    let back = parse_value(&text)
        .unwrap_or_else(|e| panic!("the writer's {text:?} does not read back: {e}"));
    assert!(back == *v, "{text:?} reads back as {back:?}, not {v:?}");
    assert_eq!(to_python(&back), text, "writing is not stable");
}

/// Polls a future whose inputs are all in memory to completion (no runtime: nothing in it
/// waits on IO). A future still pending after many polls is a bug of its own.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    for _ in 0..1_000_000 {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("an in-memory future never completed");
}
