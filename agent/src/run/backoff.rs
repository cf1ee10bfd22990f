//! When to try the server again: capped exponential backoff with per-node jitter, the
//! server's `Retry-After`, and a total after which the agent gives up.
//!
//! Pure: the caller measures time and sleeps. The jitter comes from a seed (the node's
//! inventory) rather than a clock, so a rack that booted together spreads its retries and a
//! test sees the same delays every run.

use std::time::Duration;

/// The retry policy of every call to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    /// The first pause.
    pub first: Duration,
    /// No pause is longer than this (a server's `Retry-After` included).
    pub max: Duration,
    /// Give up once this much time has passed since the first attempt.
    pub total: Duration,
    /// Spreads the pauses of different nodes (any number; the same seed gives the same pauses).
    pub seed: u64,
}

impl Backoff {
    /// 1 s, doubling up to 60 s, for `total`.
    pub fn new(total: Duration, seed: u64) -> Self {
        Self {
            first: Duration::from_secs(1),
            max: Duration::from_secs(60),
            total,
            seed,
        }
    }

    /// The pause after failed attempt `attempt` (0 for the first), or `None` to give up.
    ///
    /// `elapsed` is the time since the first attempt; `retry_after` is the server's
    /// `Retry-After`, taken as the base of the pause instead of the exponential one. The pause
    /// is the base plus up to a quarter of it (jitter), capped at `max` and at the time left
    /// of `total`, so the last attempt happens at `total` at the latest.
    pub fn pause(
        &self,
        attempt: u32,
        elapsed: Duration,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let left = self.total.checked_sub(elapsed).filter(|d| !d.is_zero())?;
        let base = retry_after.unwrap_or_else(|| {
            self.first
                .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
        });
        let jitter = base.mul_f64(0.25 * unit(self.seed, attempt));
        Some((base + jitter).min(self.max).min(left))
    }
}

/// A number in `[0, 1)` from a seed and an attempt (splitmix64).
fn unit(seed: u64, attempt: u32) -> f64 {
    let mut z = seed
        .wrapping_add(u64::from(attempt).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// A seed from bytes (FNV-1a), e.g. the inventory: the same machine always gets the same one.
pub fn seed_of(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn doubles_with_jitter_up_to_the_cap() {
        let b = Backoff::new(s(3600), 42);
        let mut elapsed = Duration::ZERO;
        for attempt in 0..12 {
            let base = s(1 << attempt.min(6)).min(s(60));
            let p = b.pause(attempt, elapsed, None).expect("time is left");
            assert!(p >= base.min(s(60)), "attempt {attempt}: {p:?} < {base:?}");
            assert!(
                p <= (base + base / 4).min(s(60)),
                "attempt {attempt}: {p:?}"
            );
            elapsed += p;
        }
        // Far along, the cap holds.
        assert_eq!(b.pause(30, s(10), None), Some(s(60)));
    }

    #[test]
    fn honours_retry_after_within_the_cap() {
        let b = Backoff::new(s(3600), 7);
        let p = b
            .pause(0, Duration::ZERO, Some(s(15)))
            .expect("time is left");
        assert!(p >= s(15) && p <= s(15) + s(15) / 4, "{p:?}");
        assert_eq!(b.pause(0, Duration::ZERO, Some(s(600))), Some(s(60)));
    }

    #[test]
    fn gives_up_at_the_total() {
        let b = Backoff::new(s(10), 1);
        // The last pause ends exactly at the total, then no more.
        assert_eq!(b.pause(5, s(8), None), Some(s(2)));
        assert_eq!(b.pause(6, s(10), None), None);
        assert_eq!(b.pause(6, s(11), None), None);
        assert_eq!(
            Backoff::new(Duration::ZERO, 1).pause(0, Duration::ZERO, None),
            None
        );
    }

    #[test]
    fn jitter_depends_on_the_seed_only() {
        let a = Backoff::new(s(3600), seed_of(b"node-a"));
        let b = Backoff::new(s(3600), seed_of(b"node-b"));
        let pauses = |x: &Backoff| -> Vec<Option<Duration>> {
            (0..5).map(|i| x.pause(i, Duration::ZERO, None)).collect()
        };
        assert_eq!(pauses(&a), pauses(&a.clone()));
        assert_ne!(pauses(&a), pauses(&b));
    }
}
