//! Exponential backoff with jitter for reconnects and retried operations (PROTOCOL §13).
//!
//! The randomness is an argument (`rng_unit` in `0..=1`) so the policy is deterministic to test;
//! callers pass `rand::random::<f64>()`.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackoffPolicy {
    /// Delay before the first retry (before jitter).
    pub min: Duration,
    /// Upper bound of every delay, jitter included.
    pub max: Duration,
    /// Growth factor per attempt.
    pub multiplier: f64,
    /// Jitter as a fraction (0..1) of the delay, applied symmetrically.
    pub jitter: f64,
    /// Give up once this much time has passed since the first failure; `None` retries forever.
    pub max_elapsed: Option<Duration>,
}

impl Default for BackoffPolicy {
    /// 100 ms doubling to 10 s, ±20 % jitter, forever (close to the C# and Node SDK defaults).
    fn default() -> Self {
        BackoffPolicy {
            min: Duration::from_millis(100),
            max: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.2,
            max_elapsed: None,
        }
    }
}

/// The delay before retry number `attempt` (1-based; 0 is treated as 1):
/// `min(min * multiplier^(attempt-1), max) * (1 + jitter * (2 * rng_unit - 1))`, clamped to
/// `0..=max`. Out-of-range or NaN inputs are clamped rather than trusted.
pub fn delay_for(policy: &BackoffPolicy, attempt: u32, rng_unit: f64) -> Duration {
    let max = policy.max.as_secs_f64();
    let min = policy.min.as_secs_f64().min(max);
    let mult = if policy.multiplier.is_finite() && policy.multiplier >= 1.0 {
        policy.multiplier
    } else {
        1.0
    };
    let exp = attempt.max(1) - 1;
    // powi overflows to +inf for large attempts; min() then caps it.
    let base = (min * mult.powi(exp.min(i32::MAX as u32) as i32)).min(max);
    let jitter = if policy.jitter.is_finite() {
        policy.jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let unit = if rng_unit.is_finite() {
        rng_unit.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let secs = (base * (1.0 + jitter * (2.0 * unit - 1.0))).clamp(0.0, max);
    Duration::from_secs_f64(secs).min(policy.max)
}

/// Backoff state for one retry sequence.
#[derive(Clone, Debug)]
pub struct Backoff {
    policy: BackoffPolicy,
    attempt: u32,
    started: Option<Instant>,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Self {
        Backoff {
            policy,
            attempt: 0,
            started: None,
        }
    }

    pub fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }

    /// The delay before the next attempt, or `None` once `max_elapsed` has passed since the first
    /// call. The last delay is shortened so that it never runs past `max_elapsed`.
    pub fn next_delay(&mut self, rng_unit: f64, now: Instant) -> Option<Duration> {
        let started = *self.started.get_or_insert(now);
        let delay = delay_for(&self.policy, self.attempt.saturating_add(1), rng_unit);
        let delay = match self.policy.max_elapsed {
            Some(limit) => {
                let elapsed = now.saturating_duration_since(started);
                if elapsed >= limit {
                    return None;
                }
                delay.min(limit - elapsed)
            }
            None => delay,
        };
        self.attempt = self.attempt.saturating_add(1);
        Some(delay)
    }

    /// Number of delays handed out since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Starts a new sequence (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.started = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn no_jitter() -> BackoffPolicy {
        BackoffPolicy {
            jitter: 0.0,
            ..Default::default()
        }
    }

    #[test]
    fn default_policy() {
        let p = BackoffPolicy::default();
        assert_eq!(
            (p.min, p.max, p.multiplier, p.jitter, p.max_elapsed),
            (ms(100), ms(10_000), 2.0, 0.2, None)
        );
    }

    #[test]
    fn grows_exponentially_then_caps() {
        let p = no_jitter();
        let got: Vec<Duration> = (0..=10).map(|a| delay_for(&p, a, 0.9)).collect();
        assert_eq!(
            got,
            vec![
                ms(100),
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1600),
                ms(3200),
                ms(6400),
                ms(10_000),
                ms(10_000),
                ms(10_000)
            ]
        );
        assert_eq!(delay_for(&p, u32::MAX, 0.5), ms(10_000));
    }

    #[test]
    fn jitter_bounds_and_never_above_max() {
        let p = BackoffPolicy::default();
        assert_eq!(delay_for(&p, 1, 0.0), ms(80));
        assert_eq!(delay_for(&p, 1, 0.5), ms(100));
        assert_eq!(delay_for(&p, 1, 1.0), ms(120));
        assert_eq!(delay_for(&p, 4, 0.0), ms(640));
        // at the cap, upward jitter is cut at max, downward still applies
        assert_eq!(delay_for(&p, 30, 1.0), ms(10_000));
        assert_eq!(delay_for(&p, 30, 0.0), ms(8_000));
        for attempt in 1..40 {
            for i in 0..=20 {
                let u = i as f64 / 20.0;
                let d = delay_for(&p, attempt, u);
                let base = delay_for(&no_jitter(), attempt, u).as_secs_f64();
                assert!(d <= p.max, "{attempt} {u}");
                assert!(d.as_secs_f64() >= base * 0.8 - 1e-9, "{attempt} {u}");
                assert!(d.as_secs_f64() <= base * 1.2 + 1e-9, "{attempt} {u}");
            }
        }
    }

    #[test]
    fn hostile_inputs_are_clamped() {
        let mut p = BackoffPolicy {
            jitter: 5.0,
            ..Default::default()
        };
        assert_eq!(delay_for(&p, 1, 0.0), ms(0));
        assert_eq!(delay_for(&p, 1, 7.0), ms(200));
        assert_eq!(delay_for(&p, 1, f64::NAN), ms(100));
        assert_eq!(delay_for(&p, 1, -1.0), ms(0));
        p.jitter = f64::NAN;
        p.multiplier = f64::INFINITY;
        assert_eq!(delay_for(&p, 5, 0.3), ms(100));
        p.multiplier = 0.5;
        assert_eq!(delay_for(&p, 5, 0.3), ms(100));
        p.min = ms(50_000);
        assert_eq!(delay_for(&p, 1, 0.3), ms(10_000));
    }

    #[test]
    fn backoff_counts_and_resets() {
        let mut b = Backoff::new(no_jitter());
        let t0 = Instant::now();
        assert_eq!(b.attempt(), 0);
        assert_eq!(b.next_delay(0.5, t0), Some(ms(100)));
        assert_eq!(b.next_delay(0.5, t0), Some(ms(200)));
        assert_eq!(b.next_delay(0.5, t0), Some(ms(400)));
        assert_eq!(b.attempt(), 3);
        b.reset();
        assert_eq!(b.attempt(), 0);
        assert_eq!(b.next_delay(0.5, t0), Some(ms(100)));
        // forever without max_elapsed
        assert_eq!(
            b.next_delay(0.5, t0 + Duration::from_secs(1_000_000)),
            Some(ms(200))
        );
    }

    #[test]
    fn max_elapsed_gives_none_and_caps_last_delay() {
        let mut b = Backoff::new(BackoffPolicy {
            max_elapsed: Some(ms(1000)),
            ..no_jitter()
        });
        let t0 = Instant::now();
        assert_eq!(b.next_delay(0.5, t0), Some(ms(100)));
        assert_eq!(b.next_delay(0.5, t0 + ms(100)), Some(ms(200)));
        assert_eq!(b.next_delay(0.5, t0 + ms(700)), Some(ms(300)));
        assert_eq!(b.attempt(), 3);
        assert_eq!(b.next_delay(0.5, t0 + ms(1000)), None);
        assert_eq!(b.next_delay(0.5, t0 + ms(5000)), None);
        assert_eq!(b.attempt(), 3);
        b.reset();
        assert_eq!(b.next_delay(0.5, t0 + ms(5000)), Some(ms(100)));
    }

    #[test]
    fn policy_serde_round_trip() {
        let p = BackoffPolicy {
            max_elapsed: Some(ms(1500)),
            ..Default::default()
        };
        let back: BackoffPolicy =
            serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }
}
