//! File writes from async handlers: atomic (temp, fsync, rename, fsync dir), on the
//! blocking pool, a few at a time.
//!
//! The gate bounds the blocking threads a boot storm can tie up. It is wide on purpose:
//! fsyncs that overlap finish sooner than fsyncs in a row (measured with the storm tool: two
//! writers at a time halved the throughput).

use tokio::sync::Semaphore;

use super::error::ApiError;

/// Writers allowed at once.
const SLOTS: usize = 64;

/// The gate every record and inventory write goes through.
#[derive(Debug)]
pub struct Disk {
    slots: Semaphore,
}

impl Default for Disk {
    fn default() -> Disk {
        Disk {
            slots: Semaphore::new(SLOTS),
        }
    }
}

impl Disk {
    /// Replaces `dir/name` with `text` atomically.
    pub async fn write_atomic(
        &self,
        dir: std::path::PathBuf,
        name: String,
        text: String,
    ) -> Result<(), ApiError> {
        let _slot = self.slots.acquire().await.map_err(ApiError::internal)?;
        tokio::task::spawn_blocking(move || rdeploy_cmdb::store::write_atomic(&dir, &name, &text))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)
    }
}
