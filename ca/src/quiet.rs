//! Logs that an attacker cannot turn into a flood: a warning repeated
//! for each refused connection or request is said a few times a minute,
//! then summed.

use std::time::{Duration, Instant};

/// Most times a warning is said per window.
pub const QUIET_BURST: u32 = 5;
/// The window.
pub const QUIET_WINDOW: Duration = Duration::from_secs(60);

/// Says a repeated warning at most [`QUIET_BURST`] times per
/// [`QUIET_WINDOW`]; the first one said after a window tells how many went
/// unsaid in it.
pub struct Quiet {
    window_start: Instant,
    said: u32,
    unsaid: u64,
}

impl Quiet {
    /// A warning not said yet.
    pub fn new(now: Instant) -> Self {
        Self {
            window_start: now,
            said: 0,
            unsaid: 0,
        }
    }

    /// Whether to say the warning that happens at `now`; if so, how many
    /// were left unsaid before it.
    pub fn say(&mut self, now: Instant) -> Option<u64> {
        if now.saturating_duration_since(self.window_start) >= QUIET_WINDOW {
            let unsaid = std::mem::take(&mut self.unsaid);
            self.window_start = now;
            self.said = 1;
            return Some(unsaid);
        }
        if self.said < QUIET_BURST {
            self.said += 1;
            return Some(0);
        }
        self.unsaid += 1;
        None
    }
}

#[cfg(test)]
mod quiet_tests {
    use super::*;

    #[test]
    fn a_repeated_warning_is_said_a_few_times_a_window_then_counted() {
        let t0 = Instant::now();
        let mut quiet = Quiet::new(t0);
        let said: Vec<Option<u64>> = (0..8).map(|_| quiet.say(t0)).collect();
        assert_eq!(
            said,
            [
                Some(0),
                Some(0),
                Some(0),
                Some(0),
                Some(0),
                None,
                None,
                None
            ]
        );
        let almost = t0 + QUIET_WINDOW - Duration::from_millis(1);
        assert_eq!(quiet.say(almost), None);
        // The next window's first says how many went unsaid.
        assert_eq!(quiet.say(t0 + QUIET_WINDOW), Some(4));
        assert_eq!(quiet.say(t0 + QUIET_WINDOW), Some(0));
    }
}
