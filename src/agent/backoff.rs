//! Jittered exponential backoff for reconnecting to the hub.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        assert!(min <= max && !min.is_zero(), "backoff needs 0 < min <= max");
        Backoff {
            min,
            max,
            attempt: 0,
        }
    }

    /// The next delay: min * 2^attempt capped at max, then "full jitter"
    /// between half of it and all of it, so a fleet of agents that lost the
    /// hub at once does not come back in lockstep.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.min.saturating_mul(1u32 << self.attempt.min(16));
        let capped = exp.min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = capped / 2;
        half + rand::rng().random_range(Duration::ZERO..=half)
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_jitters_and_resets() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(2));
        let mut b = Backoff::new(min, max);
        let first = b.next_delay();
        assert!(first >= min / 2 && first <= min);
        let later: Vec<Duration> = (0..20).map(|_| b.next_delay()).collect();
        assert!(later.iter().all(|d| *d <= max));
        assert!(
            later[5..].iter().all(|d| *d >= max / 2),
            "not capped: {later:?}"
        );
        assert!(
            later.windows(2).any(|w| w[0] != w[1]),
            "no jitter: {later:?}"
        );
        b.reset();
        assert!(b.next_delay() <= min);
    }
}
