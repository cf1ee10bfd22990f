//! PXE Manager's test system: test scripts queued per system, sent when the system asks
//! (`GET /nexttest/`), their output uploaded (`POST /upload/`), parsed and kept.
//!
//! - [`script`]: the templates `<tests-dir>/NAME.test` and their rendering (Jinja, with
//!   [`django`]'s translation of Django-only syntax);
//! - [`run`]: a test run as data and its pure moves (`queued → running → done | lost`,
//!   `queued → error`);
//! - [`parse`]: the output's `I:`/`W:`/`E:`/`S:`/`T:`/`V:` lines;
//! - [`store`]: runs, raw outputs and test names behind the [`store::RunStore`] trait (files
//!   in the data dir today), and the in-memory index;
//! - [`junit`]: the runs as JUnit XML.
//!
//! The decisions (which system calls, which run it gets, whose result an upload is) are the
//! core's (`core/testing.rs`); handlers are in `http/testing.rs`, pages in `http/pages/`.

pub mod django;
pub mod junit;
pub mod parse;
pub mod run;
pub mod script;
pub mod store;

use std::path::PathBuf;
use std::time::Duration;

/// Where the tests are and how long a sent test may stay silent.
#[derive(Debug, Clone)]
pub struct TestsConfig {
    /// `--tests-dir` (default `<data-dir>/tests`).
    pub dir: PathBuf,
    /// `--test-timeout`: a run sent this long ago with no upload is `lost`.
    pub timeout: Duration,
}

/// The default `--test-timeout`: long enough for a night of burn-in.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(12 * 3600);

impl TestsConfig {
    /// The defaults for a data dir.
    pub fn new(data_dir: &std::path::Path) -> TestsConfig {
        TestsConfig {
            dir: data_dir.join("tests"),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}
