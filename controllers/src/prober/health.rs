//! Consecutive probe outcomes turned into a verdict, HAProxy style.

/// The first pass decides "up" at once (so a fresh install does not wait `rise` probes to
/// unblock its dependents), and `fall` failures in a row decide "down" from no verdict;
/// after that it takes `fall` failures to go down and `rise` passes to come back.
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub verdict: Option<bool>,
    passes: u32,
    fails: u32,
}

/// Only the verdict is visible: counting passes of a healthy service is no change.
impl PartialEq for Health {
    fn eq(&self, other: &Self) -> bool {
        self.verdict == other.verdict
    }
}

impl Health {
    /// Record one probe; returns whether the verdict changed.
    pub fn record(&mut self, pass: bool, rise: u32, fall: u32) -> bool {
        if pass {
            self.passes = self.passes.saturating_add(1);
            self.fails = 0;
        } else {
            self.fails = self.fails.saturating_add(1);
            self.passes = 0;
        }
        let next = match self.verdict {
            None if pass => Some(true),
            None if self.fails >= fall.max(1) => Some(false),
            Some(true) if !pass && self.fails >= fall.max(1) => Some(false),
            Some(false) if pass && self.passes >= rise.max(1) => Some(true),
            other => other,
        };
        let changed = next != self.verdict;
        self.verdict = next;
        changed
    }

    /// A failure that does not count towards `fall` still breaks a run of passes.
    pub fn interrupt(&mut self) {
        self.passes = 0;
    }

    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_first_then_rise_and_fall() {
        let mut h = Health::default();
        assert!(!h.record(false, 2, 3));
        assert!(!h.record(false, 2, 3));
        assert!(h.record(false, 2, 3), "third failure decides down");
        assert_eq!(h.verdict, Some(false));
        assert!(!h.record(true, 2, 3), "one pass is not enough to come back");
        assert!(h.record(true, 2, 3));
        assert_eq!(h.verdict, Some(true));
        assert!(!h.record(false, 2, 3));
        assert!(!h.record(true, 2, 3), "a pass resets the failure count");
        assert!(!h.record(false, 2, 3));
        assert!(!h.record(false, 2, 3));
        assert!(h.record(false, 2, 3), "three in a row");
        h.reset();
        assert!(h.record(true, 2, 3), "first pass after a reset decides up");
    }

    #[test]
    fn rise_and_fall_of_one_flip_at_once() {
        let mut h = Health::default();
        assert!(h.record(false, 1, 1));
        assert!(h.record(true, 1, 1));
        assert!(h.record(false, 1, 1));
    }
}
