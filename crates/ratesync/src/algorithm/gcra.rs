//! Token bucket as GCRA (generic cell rate algorithm).
//!
//! The whole state of a key is one number, the theoretical arrival time (TAT): the
//! instant at which the bucket would be full again. Refill is implicit in the passing
//! of time, so there is no background task and no floating point at decision time.

use super::{Receipt, RuleError};
use crate::decision::{Decision, DeniedBy};

/// Largest rate accepted: one unit per nanosecond.
pub const MAX_RATE_PER_SECOND: f64 = 1e9;

/// A validated token-bucket rule: `burst` units of capacity refilled at one unit per
/// `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenBucket {
    /// Nanoseconds per unit (the emission interval), rounded up so that rounding can
    /// only make the limit stricter, never looser.
    interval: u64,
    burst: u32,
    /// `interval * burst`: how far the TAT may run ahead of now. Checked to fit at
    /// construction so decisions never overflow.
    capacity_span: u64,
}

impl TokenBucket {
    /// A bucket admitting `rate_per_second` units per second on average and up to
    /// `burst` at once. `rate_per_second` may be fractional (0.2 = one unit per 5 s).
    pub fn new(rate_per_second: f64, burst: u32) -> Result<Self, RuleError> {
        if !rate_per_second.is_finite() || rate_per_second <= 0.0 {
            return Err(RuleError::NotPositive {
                field: "rate_per_second",
                value: rate_per_second,
            });
        }
        if rate_per_second > MAX_RATE_PER_SECOND {
            return Err(RuleError::TooLarge {
                field: "rate_per_second",
                max: MAX_RATE_PER_SECOND,
            });
        }
        let interval = (1e9 / rate_per_second).ceil();
        if interval >= u64::MAX as f64 {
            return Err(RuleError::TooSmall {
                field: "rate_per_second",
            });
        }
        Self::with_interval_nanos((interval as u64).max(1), burst)
    }

    /// A bucket given directly by its emission interval (nanoseconds per unit), for
    /// stores whose clock ticks coarser than a nanosecond: Redis decides in
    /// microseconds, with the interval rounded up to whole microseconds.
    pub fn with_interval_nanos(interval: u64, burst: u32) -> Result<Self, RuleError> {
        if interval == 0 {
            return Err(RuleError::TooSmall { field: "interval" });
        }
        if burst == 0 {
            return Err(RuleError::NotPositive {
                field: "burst",
                value: 0.0,
            });
        }
        let capacity_span = interval
            .checked_mul(u64::from(burst))
            .filter(|span| *span <= u64::MAX / 4)
            .ok_or(RuleError::SpanOverflow)?;
        Ok(TokenBucket {
            interval,
            burst,
            capacity_span,
        })
    }

    /// Nanoseconds between two units at the steady rate.
    pub fn interval_nanos(&self) -> u64 {
        self.interval
    }

    /// Capacity of the bucket.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Units per second actually enforced (the configured rate, up to interval rounding).
    pub fn rate_per_second(&self) -> f64 {
        1e9 / self.interval as f64
    }

    /// The rate as configured: the shortest decimal that builds this bucket. The
    /// bucket keeps whole nanoseconds per unit, rounded up, so the rate it enforces
    /// reads back a little off (90/s as 89.99999280000057); users wrote 90.
    pub fn configured_rate(&self) -> f64 {
        let enforced = self.rate_per_second();
        (0..17)
            .filter_map(|precision| format!("{enforced:.precision$e}").parse::<f64>().ok())
            .find(|candidate| {
                TokenBucket::new(*candidate, self.burst)
                    .is_ok_and(|bucket| bucket.interval == self.interval)
            })
            .unwrap_or(enforced)
    }

    /// The bucket as a quota, `(units, window seconds)`: its configured rate as whole
    /// units over the first round window where it is whole and holds the burst (10/s
    /// is 10 per 1 s; 100 per minute is 100 per 60 s; 1/s with a burst of 10 is 10 per
    /// 10 s); failing that, the shortest whole-second window holding the burst
    /// (`docs/design.md#quotas`). Never below the burst, so `remaining` fits in it.
    pub fn quota(&self) -> (u64, u64) {
        const ROUND_WINDOWS: [u64; 18] = [
            1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600,
        ];
        let (rate, burst) = (self.configured_rate(), u64::from(self.burst));
        let whole_units = ROUND_WINDOWS.into_iter().find_map(|window| {
            let units = rate * window as f64;
            let whole = units.round();
            (whole >= burst as f64 && (units - whole).abs() <= 1e-6 * units)
                .then_some((whole as u64, window))
        });
        whole_units.unwrap_or_else(|| {
            // `as` saturates: a bucket slower than one unit in u64::MAX s is not one.
            let window = ((burst as f64 / rate).ceil() as u64).max(1);
            (burst.max((rate * window as f64).floor() as u64), window)
        })
    }

    /// Decides an attempt of `cost` units at `now` against the stored `tat`
    /// (0 for a key never seen). Returns the decision and, when admitted, the new TAT
    /// to store. The caller has checked `1 <= cost <= burst`.
    #[inline(always)]
    pub fn decide(&self, tat: u64, now: u64, cost: u32) -> (Decision, Option<u64>) {
        let new_tat = self.admit(tat, now, cost);
        (self.describe(tat, now, cost, new_tat), new_tat)
    }

    /// The arithmetic of [`TokenBucket::decide`] alone: the TAT to store when the
    /// attempt is admitted. Apart so that a lock-free caller retries its
    /// compare-and-swap on two integers and builds the decision once, after
    /// (`docs/design.md#calls`).
    #[inline(always)]
    pub fn admit(&self, tat: u64, now: u64, cost: u32) -> Option<u64> {
        let new_tat = tat.max(now).saturating_add(u64::from(cost) * self.interval);
        (new_tat <= now.saturating_add(self.capacity_span)).then_some(new_tat)
    }

    /// The decision for an attempt of `cost` on `tat` at `now` that
    /// [`TokenBucket::admit`] answered with `admitted`.
    #[inline(always)]
    pub fn describe(&self, tat: u64, now: u64, cost: u32, admitted: Option<u64>) -> Decision {
        let limit = u64::from(self.burst);
        let horizon = now.saturating_add(self.capacity_span);
        match admitted {
            Some(new_tat) => {
                Decision::admitted(limit, (horizon - new_tat) / self.interval, new_tat - now)
            }
            None => {
                // The attempt fits once `now` has moved so that `new_tat <= now + span`.
                let tat = tat.max(now);
                let new_tat = tat.saturating_add(u64::from(cost) * self.interval);
                Decision::denied(
                    DeniedBy::Rate,
                    limit,
                    horizon.saturating_sub(tat) / self.interval,
                    new_tat - horizon,
                    tat - now,
                )
            }
        }
    }

    /// The decision an attempt of `cost` would get at `now`, consuming nothing: as
    /// `decide`, except that `remaining` and `reset_after` describe the bucket as it
    /// is (the sliding window's `peek` does the same).
    #[inline]
    pub fn peek(&self, tat: u64, now: u64, cost: u32) -> Decision {
        let (mut decision, new_tat) = self.decide(tat, now, cost);
        if new_tat.is_some() {
            let tat = tat.max(now);
            decision.remaining = (now.saturating_add(self.capacity_span) - tat) / self.interval;
            decision.reset_after_nanos = tat - now;
        }
        decision
    }

    /// The TAT after giving back the `cost` units of the admission that issued
    /// `receipt` (`docs/design.md#refunds`). Exact when nothing was admitted since
    /// (the TAT is still the one it stored): the TAT it found comes back. Otherwise
    /// only what is certainly still owed: the cost less the time since the admission,
    /// since a bucket that would have been full meanwhile refilled that much anyway.
    /// Never more than the admission took.
    #[inline]
    pub fn refund(&self, tat: u64, now: u64, cost: u32, receipt: Receipt) -> u64 {
        let taken = u64::from(cost) * self.interval;
        if tat == receipt.recorded {
            return tat.saturating_sub(taken);
        }
        let owed = taken.saturating_sub(now.saturating_sub(receipt.now));
        tat.saturating_sub(owed)
    }

    /// When a key whose TAT is `tat` becomes indistinguishable from a fresh key (its
    /// bucket is full again): the TAT itself.
    #[inline]
    pub fn idle_at(&self, tat: u64) -> u64 {
        tat
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn the_configured_rate_reads_back_as_written() {
        for rate in [90.0, 7.0, 0.2, 1.5e-3, 3e5, 1e9] {
            assert_eq!(TokenBucket::new(rate, 1).unwrap().configured_rate(), rate);
        }
    }

    #[test]
    fn a_bucket_is_its_rate_over_a_round_window() {
        for (rate, burst, quota) in [
            (10.0, 1, (10, 1)),
            (10.0, 20, (20, 2)),
            (1.0, 10, (10, 10)),
            (100.0 / 60.0, 1, (5, 3)),
            (100.0 / 60.0, 10, (10, 6)),
            (0.5, 1, (1, 2)),
            (1.0 / 7.0, 1, (1, 7)),
            (90.0, 1, (90, 1)),
            (3e5, 1, (300_000, 1)),
            // No round window makes 1/7000 s whole: the shortest holding the burst.
            (1.0 / 7000.0, 1, (1, 7000)),
        ] {
            let tb = TokenBucket::new(rate, burst).unwrap();
            assert_eq!(tb.quota(), quota, "{rate}/s, burst {burst}");
        }
    }

    #[test]
    fn burst_one_spaces_calls_exactly() {
        let tb = TokenBucket::new(2.0, 1).unwrap();
        let (d, tat) = tb.decide(0, 10 * SEC, 1);
        assert!(d.allowed());
        let tat = tat.unwrap();
        let (d, none) = tb.decide(tat, 10 * SEC, 1);
        assert!(!d.allowed() && none.is_none());
        assert_eq!(d.retry_after(), Duration::from_millis(500));
        assert!(!tb.decide(tat, 10 * SEC + SEC / 2 - 1, 1).0.allowed());
        assert!(tb.decide(tat, 10 * SEC + SEC / 2, 1).0.allowed());
    }

    #[test]
    fn burst_is_available_at_once_then_refills() {
        let tb = TokenBucket::new(10.0, 5).unwrap();
        let mut tat = 0;
        for expected_remaining in (0..5).rev() {
            let (d, new) = tb.decide(tat, SEC, 1);
            assert!(d.allowed());
            assert_eq!(d.remaining, expected_remaining);
            tat = new.unwrap();
        }
        let (d, _) = tb.decide(tat, SEC, 1);
        assert!(!d.allowed());
        assert_eq!(d.retry_after(), Duration::from_millis(100));
        assert_eq!(d.reset_after(), Duration::from_millis(500));
    }

    #[test]
    fn cost_takes_several_units() {
        let tb = TokenBucket::new(1.0, 10).unwrap();
        let (d, tat) = tb.decide(0, SEC, 7);
        assert!(d.allowed() && d.remaining == 3);
        let (d, _) = tb.decide(tat.unwrap(), SEC, 4);
        assert!(!d.allowed());
        assert_eq!(d.retry_after(), Duration::from_secs(1));
    }

    #[test]
    fn fractional_rates_are_exact_to_the_nanosecond() {
        let tb = TokenBucket::new(0.2, 1).unwrap();
        assert_eq!(tb.interval_nanos(), 5 * SEC);
        let tb = TokenBucket::new(3.0, 1).unwrap();
        assert_eq!(tb.interval_nanos(), 333_333_334);
    }

    #[test]
    fn a_refund_is_exact_when_last_and_never_more_than_owed() {
        let tb = TokenBucket::new(10.0, 2).unwrap(); // 100 ms per unit
        let (_, a) = tb.decide(0, SEC, 1);
        let a = a.unwrap();
        let receipt = Receipt {
            now: SEC,
            recorded: a,
        };
        assert_eq!(tb.refund(a, SEC, 1, receipt), SEC, "the TAT it found");
        // Another admission followed 50 ms later: half of the unit may have refilled
        // into a bucket that was full, so only the other half is certainly owed.
        let (_, b) = tb.decide(a, SEC + 50_000_000, 1);
        let b = b.unwrap();
        assert_eq!(tb.refund(b, SEC + 50_000_000, 1, receipt), b - 50_000_000);
        assert_eq!(
            tb.refund(b, SEC + 200_000_000, 1, receipt),
            b,
            "all refilled"
        );
    }

    #[test]
    fn invalid_rules_are_refused() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, 2e9] {
            assert!(TokenBucket::new(rate, 1).is_err(), "{rate}");
        }
        assert!(TokenBucket::new(1.0, 0).is_err());
        assert!(TokenBucket::new(1e-12, u32::MAX).is_err());
    }
}
