//! Install slots: admission control for `--max-installs`. A node takes a slot when its upload
//! is admitted and gives it back when it is `installed` or `failed` (or its upload got
//! nothing); a slot whose node gave no sign of life (upload, event) for `--install-timeout`
//! is reclaimed when the slots are full, so an agent that died without a report does not
//! hold one forever.
//!
//! Slots live in memory only: at start, every node whose install is under way takes one
//! again ([`Slots::hold`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An upload that may not start an install now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotsError {
    /// Every slot is taken by a node that gave a sign of life within `--install-timeout`.
    #[error("{taken} installs are under way (--max-installs); retry later")]
    Full { taken: usize },
}

/// The install slots: node id → last sign of life.
#[derive(Debug)]
pub struct Slots {
    /// `--max-installs` (`None`: unlimited).
    max: Option<usize>,
    /// `--install-timeout`.
    stale_after: Duration,
    held: Mutex<HashMap<String, Instant>>,
}

impl Slots {
    /// At most `max` installs under way (`None`: no limit); a slot silent for `stale_after`
    /// may be reclaimed.
    pub fn new(max: Option<usize>, stale_after: Duration) -> Slots {
        Slots {
            max,
            stale_after,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// Gives a slot to each of `ids` (installs under way when the server started), as of now.
    pub fn hold<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let now = Instant::now();
        if let Ok(mut held) = self.held.lock() {
            for id in ids {
                held.insert(id.to_owned(), now);
            }
        }
    }

    /// Takes a slot for `id` unless all are taken (a node that already holds one keeps it).
    /// Returns the number of slots taken.
    pub fn admit(&self, id: &str) -> Result<usize, SlotsError> {
        self.admit_at(id, Instant::now())
    }

    /// [`Slots::admit`] at the instant `now`.
    fn admit_at(&self, id: &str, now: Instant) -> Result<usize, SlotsError> {
        let Ok(mut held) = self.held.lock() else {
            return Ok(0);
        };
        if let Some(seen) = held.get_mut(id) {
            *seen = now;
            return Ok(held.len());
        }
        let Some(max) = self.max else {
            held.insert(id.to_owned(), now);
            return Ok(held.len());
        };
        if held.len() >= max {
            let stale_after = self.stale_after;
            held.retain(|node, seen| {
                let silent = now.saturating_duration_since(*seen);
                let keep = silent < stale_after;
                if !keep {
                    tracing::warn!(
                        node = %node,
                        silent_s = silent.as_secs(),
                        "install slot reclaimed: no upload or event within --install-timeout"
                    );
                }
                keep
            });
        }
        if held.len() >= max {
            return Err(SlotsError::Full { taken: held.len() });
        }
        held.insert(id.to_owned(), now);
        Ok(held.len())
    }

    /// Gives `id`'s slot back (its install ended, or its upload got nothing).
    pub fn release(&self, id: &str) {
        if let Ok(mut held) = self.held.lock() {
            held.remove(id);
        }
    }

    /// Notes a sign of life from `id`, if it holds a slot.
    pub fn touch(&self, id: &str) {
        if let Ok(mut held) = self.held.lock() {
            if let Some(seen) = held.get_mut(id) {
                *seen = Instant::now();
            }
        }
    }

    /// Installs under way (slots taken).
    pub fn in_flight(&self) -> usize {
        self.held.lock().map(|s| s.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_install_slots_are_reclaimed_when_full() {
        let hour = Duration::from_secs(3600);
        let slots = Slots::new(Some(2), hour);
        let t0 = Instant::now();
        assert_eq!(slots.admit_at("a", t0), Ok(1));
        assert_eq!(slots.admit_at("b", t0), Ok(2));
        // Full, and nobody has been silent for an hour: refused, nothing reclaimed.
        assert_eq!(
            slots.admit_at("c", t0 + hour / 2),
            Err(SlotsError::Full { taken: 2 })
        );
        // A node that holds a slot is always admitted again (and its slot is fresh).
        assert_eq!(slots.admit_at("a", t0 + hour / 2), Ok(2));
        // An hour after their last sign of life "b" is reclaimed, "a" (seen later) is not.
        assert_eq!(slots.admit_at("c", t0 + hour), Ok(2));
        assert_eq!(
            slots.admit_at("d", t0 + hour),
            Err(SlotsError::Full { taken: 2 })
        );
        slots.release("a");
        assert_eq!(slots.in_flight(), 1);
        assert_eq!(slots.admit_at("d", t0 + hour), Ok(2));
    }

    #[test]
    fn without_a_cap_nothing_is_reclaimed() {
        let slots = Slots::new(None, Duration::ZERO);
        slots.hold(["a", "b"]);
        let later = Instant::now() + Duration::from_secs(10);
        assert_eq!(slots.admit_at("c", later), Ok(3));
        assert_eq!(slots.in_flight(), 3);
    }
}
