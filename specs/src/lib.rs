//! rdeploy-specs: the inventory model, eDeploy's file syntax and eDeploy's matcher.
//!
//! Pure: no files, no network, no clock. Callers hand in text and get values back.
//!
//! - [`syntax`]: the Python-literal subset (and JSON) eDeploy files are written in, read
//!   with positions.
//! - [`value`]: Python values with Python's equality, written back as Python literals (one
//!   entry per line for whole files).
//! - [`model`]: inventories and specs files (lists of 4-tuples).
//! - [`funcs`]: the test functions (`gt`, `network`, `regexp`, ...).
//! - [`matcher`]: `match_all`, eDeploy's matching with backtracking.

pub mod funcs;
pub mod matcher;
pub mod model;
pub mod syntax;
pub mod value;

pub use matcher::{match_all, MatchResult, NoMatch, Specs, Vars};
pub use model::{Inventory, Line, Problem, Problems, SpecLine};
pub use syntax::{Pos, SyntaxError};
pub use value::Value;
