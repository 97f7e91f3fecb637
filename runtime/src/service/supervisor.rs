//! The restart policy as a plain state machine: no clock of its own, no IO.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How a faulting service is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Wait before the first restart; doubles with each fault in the window.
    pub initial_backoff: Duration,
    /// The longest wait between restarts.
    pub max_backoff: Duration,
    /// More faults than this within `window` and the service is marked failed.
    pub max_faults: u32,
    /// The window faults are counted in.
    pub window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            max_faults: 5,
            window: Duration::from_secs(60),
        }
    }
}

/// What to do after a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start a new instance after this wait.
    Restart(Duration),
    /// Too many faults: mark the service failed.
    GiveUp,
}

/// Remembers recent faults of one service.
#[derive(Debug, Clone)]
pub struct Supervisor {
    policy: RestartPolicy,
    faults: VecDeque<Instant>,
}

impl Supervisor {
    /// A supervisor with no faults yet.
    pub fn new(policy: RestartPolicy) -> Self {
        Self {
            policy,
            faults: VecDeque::new(),
        }
    }

    /// Records a fault at `now` and decides what comes next.
    pub fn on_fault(&mut self, now: Instant) -> Decision {
        while self
            .faults
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.policy.window)
        {
            self.faults.pop_front();
        }
        self.faults.push_back(now);
        let n = self.faults.len() as u32;
        if n > self.policy.max_faults {
            return Decision::GiveUp;
        }
        let backoff = self
            .policy
            .initial_backoff
            .saturating_mul(1 << (n - 1).min(20))
            .min(self.policy.max_backoff);
        Decision::Restart(backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RestartPolicy {
        RestartPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            max_faults: 3,
            window: Duration::from_secs(10),
        }
    }

    #[test]
    fn backoff_doubles_then_caps_then_gives_up() {
        let mut s = Supervisor::new(policy());
        let t = Instant::now();
        assert_eq!(s.on_fault(t), Decision::Restart(Duration::from_millis(100)));
        assert_eq!(s.on_fault(t), Decision::Restart(Duration::from_millis(200)));
        assert_eq!(s.on_fault(t), Decision::Restart(Duration::from_millis(350)));
        assert_eq!(s.on_fault(t), Decision::GiveUp);
    }

    #[test]
    fn faults_outside_the_window_are_forgotten() {
        let mut s = Supervisor::new(policy());
        let t = Instant::now();
        for _ in 0..3 {
            s.on_fault(t);
        }
        let later = t + Duration::from_secs(11);
        assert_eq!(
            s.on_fault(later),
            Decision::Restart(Duration::from_millis(100))
        );
    }
}
