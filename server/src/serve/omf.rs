//! OMF's boot-image links and their lifetime: `setBootImage` links a node's hex-IP
//! PXELINUX name to an image for `linkLifetime` seconds (300 in OMF's own configuration),
//! after which the link goes and the node boots its disk again; `clearBootImage` removes
//! it at once. A later `setBootImage` of the same node restarts the clock (OMF counted the
//! requests and removed the link with the last one's timer: the same thing).
//!
//! This module only remembers who was linked and when that lapses, with the time handed
//! in; the core removes the files and changes the next boot.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The links under way: hex-IP name → (the machine's name, when the link lapses).
#[derive(Debug)]
pub struct OmfLinks {
    lifetime: Option<Duration>,
    links: Mutex<HashMap<String, (String, Instant)>>,
}

impl OmfLinks {
    /// Links that lapse after `lifetime`, or never.
    pub fn new(lifetime: Option<Duration>) -> OmfLinks {
        OmfLinks {
            lifetime,
            links: Mutex::new(HashMap::new()),
        }
    }

    /// `setBootImage` linked `hex` for the machine `name` at `now`.
    pub fn linked(&self, hex: &str, name: &str, now: Instant) {
        let Some(lifetime) = self.lifetime else {
            return;
        };
        if let Ok(mut links) = self.links.lock() {
            links.insert(hex.to_owned(), (name.to_owned(), now + lifetime));
        }
    }

    /// `clearBootImage` removed `hex`.
    pub fn cleared(&self, hex: &str) {
        if let Ok(mut links) = self.links.lock() {
            links.remove(hex);
        }
    }

    /// The machines whose link has lapsed at `now` (forgotten here: the caller clears them).
    pub fn lapsed(&self, now: Instant) -> Vec<String> {
        let Ok(mut links) = self.links.lock() else {
            return Vec::new();
        };
        let due: Vec<String> = links
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(hex, _)| hex.clone())
            .collect();
        let mut names: Vec<String> = due
            .iter()
            .filter_map(|hex| links.remove(hex).map(|(name, _)| name))
            .collect();
        names.sort();
        names
    }

    /// How often the core should look for lapsed links (`None`: never).
    pub fn tick(&self) -> Option<Duration> {
        self.lifetime
            .map(|l| l.clamp(Duration::from_millis(100), Duration::from_secs(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_lapses_after_its_lifetime_from_the_last_request() {
        let t0 = Instant::now();
        let links = OmfLinks::new(Some(Duration::from_secs(300)));
        links.linked("0A000005", "node5", t0);
        links.linked("0A000006", "node6", t0);
        assert!(links.lapsed(t0 + Duration::from_secs(299)).is_empty());
        // A second request for node6 restarts its clock.
        links.linked("0A000006", "node6", t0 + Duration::from_secs(200));
        assert_eq!(links.lapsed(t0 + Duration::from_secs(300)), ["node5"]);
        assert!(links.lapsed(t0 + Duration::from_secs(301)).is_empty());
        assert_eq!(links.lapsed(t0 + Duration::from_secs(500)), ["node6"]);
        // Cleared by hand: nothing lapses.
        links.linked("0A000005", "node5", t0);
        links.cleared("0A000005");
        assert!(links.lapsed(t0 + Duration::from_secs(1000)).is_empty());
    }

    #[test]
    fn without_a_lifetime_links_stay() {
        let t0 = Instant::now();
        let links = OmfLinks::new(None);
        links.linked("0A000005", "node5", t0);
        assert!(links.lapsed(t0 + Duration::from_secs(86_400)).is_empty());
        assert_eq!(links.tick(), None);
        assert_eq!(
            OmfLinks::new(Some(Duration::from_secs(300))).tick(),
            Some(Duration::from_secs(1))
        );
    }
}
