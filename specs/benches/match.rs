//! try-match speed: a real 262-line Dell R630 inventory against a 30-line spec with
//! 8 disks and 4 NICs (`specs/benches/dell-r630.specs`). Numbers: docs/benchmarks.md.
//!
//! `cargo bench -p rdeploy-specs --bench match`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use rdeploy_specs::{match_all, model, Inventory, Specs};

fn fixture(path: &str) -> String {
    let full = concat!(env!("CARGO_MANIFEST_DIR"), "/../");
    std::fs::read_to_string(format!("{full}{path}")).expect(path)
}

fn bench(c: &mut Criterion) {
    let hw_text = fixture("tests/fixtures/hw/dell-r630.json");
    let specs_text = fixture("specs/benches/dell-r630.specs");
    let inventory = Inventory::parse(&hw_text).unwrap();
    let specs = Specs::compile(model::parse_specs(&specs_text).unwrap());
    assert!(match_all(&inventory, &specs).matched());

    c.bench_function("match_all dell-r630 (262 lines x 30 specs)", |b| {
        b.iter(|| match_all(black_box(&inventory), black_box(&specs)))
    });
    c.bench_function("parse inventory + specs, compile, match_all", |b| {
        b.iter(|| {
            let inv = Inventory::parse(black_box(&hw_text)).unwrap();
            let s = Specs::compile(model::parse_specs(black_box(&specs_text)).unwrap());
            match_all(&inv, &s)
        })
    });
    // A failing profile: the last spec matches nothing, so every retry point is tried.
    let failing = specs_text.replace(
        "('firmware', 'bios', 'version', '$bios')",
        "('firmware', 'bios', 'version', '9.9.9')",
    );
    let failing = Specs::compile(model::parse_specs(&failing).unwrap());
    assert!(!match_all(&inventory, &failing).matched());
    c.bench_function("match_all dell-r630, last spec fails", |b| {
        b.iter(|| match_all(black_box(&inventory), black_box(&failing)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
