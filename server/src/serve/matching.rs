//! Matching an upload before its batch, on blocking threads, so the writer thread (which
//! every upload waits for) never spends time on a costly one.
//!
//! An upload's match (specs against inventory, regular expressions included) depends only
//! on the inventory and the specs, not on quotas or CMDBs: it is made here against the
//! specs the writer last published ([`SpecsView`]), and the batch reuses it where the
//! specs did not change since ([`Batch::upload_prematched`]).
//!
//! Two lanes, so a costly upload never delays an ordinary one:
//! - every upload is first matched with [`CHEAP_BUDGET`] steps (an ordinary upload needs a
//!   few thousand; this is ~15 ms of CPU at most), on tokio's blocking pool;
//! - one that spends it is matched again with the whole per-upload budget
//!   ([`DEFAULT_STEP_BUDGET`], a few hundred ms at most) in the costly lane, which runs at
//!   most [`costly_lanes`] at a time: costly uploads wait for each other, not the rest.
//!
//! An upload that spends the whole budget is refused without reaching the writer
//! (`422 too_costly`, naming the profile and spec line; see `error.rs`).
//!
//! [`Batch::upload_prematched`]: rdeploy_cmdb::snapshot::Batch::upload_prematched

use std::sync::Arc;

use rdeploy_cmdb::snapshot::{Prematch, SpecsView};
use rdeploy_specs::matcher::DEFAULT_STEP_BUDGET;
use rdeploy_specs::Inventory;
use tokio::sync::Semaphore;

/// Steps an upload may spend in the first lane.
pub const CHEAP_BUDGET: u64 = 1_000_000;

/// How many uploads are matched in the costly lane at once: half the cores (at least one),
/// so costly uploads leave CPU to the others.
pub fn costly_lanes() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() / 2)
        .unwrap_or(1)
        .max(1)
}

/// The two lanes (see the module doc).
#[derive(Debug)]
pub struct Matching {
    costly: Semaphore,
}

impl Default for Matching {
    fn default() -> Matching {
        Matching {
            costly: Semaphore::new(costly_lanes()),
        }
    }
}

impl Matching {
    /// Matches `inventory` against `specs`: cheaply, then (if that was not enough) in the
    /// costly lane with the whole budget.
    /// `held` is the profile the machine was last given, matched first (see
    /// [`SpecsView::prematch`]).
    pub async fn prematch(
        &self,
        specs: Arc<SpecsView>,
        inventory: Arc<Inventory>,
        held: Option<String>,
    ) -> Prematch {
        let cheap = match_on_pool(
            Arc::clone(&specs),
            Arc::clone(&inventory),
            CHEAP_BUDGET,
            held.clone(),
        )
        .await;
        if !cheap.gave_up() {
            return cheap;
        }
        // A closed semaphore cannot happen (it is never closed); matching then goes on
        // without the lane rather than failing the upload.
        let _lane = self.costly.acquire().await.ok();
        match_on_pool(specs, inventory, DEFAULT_STEP_BUDGET, held).await
    }
}

async fn match_on_pool(
    specs: Arc<SpecsView>,
    inventory: Arc<Inventory>,
    budget: u64,
    held: Option<String>,
) -> Prematch {
    let done =
        tokio::task::spawn_blocking(move || specs.prematch(&inventory, budget, held.as_deref()))
            .await;
    done.unwrap_or_else(|e| {
        // The writer matches the upload itself then (within the same budget).
        tracing::error!(error = %e, "matching task failed");
        Prematch::default()
    })
}
