//! The units of the engines that decide inside their store, in Lua (Redis) or SQL
//! (PostgreSQL): whole microseconds, the resolution of Redis `TIME` and exact in Lua's
//! doubles (`docs/design.md#time`).
//!
//! A rule is converted once per limiter, rounding its interval or window *up* so that
//! rounding can only make a limit stricter. Both stores answer a decision with the
//! same integers, read back here.

use crate::algorithm::{GroupDecision, Policy, Receipt, Rule, Windows};
use crate::decision::{Decision, DeniedBy};
use crate::store::StoreError;

/// Largest span of time (µs) a rule may cover: exact in a Lua double with the epoch
/// added, and far inside PostgreSQL's bigint.
const MAX_SPAN_US: u64 = 1 << 52;

/// The algorithm of a limiter, as the scripts and functions name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    TokenBucket,
    SlidingWindow,
    /// Fixed windows evenly spaced from the epoch (and a phase).
    FixedWindow,
    /// Fixed windows on calendar months.
    FixedMonths,
    /// No rate rule: only the concurrency cap.
    Slots,
}

impl Kind {
    /// The name the Lua scripts and the SQL functions use.
    pub fn code(self) -> &'static str {
        match self {
            Kind::TokenBucket => "tb",
            Kind::SlidingWindow => "sw",
            Kind::FixedWindow => "fw",
            Kind::FixedMonths => "fm",
            Kind::Slots => "cc",
        }
    }
}

/// A limiter's policy in microseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MicrosPolicy {
    pub kind: Kind,
    /// interval_us (token bucket), window_us (sliding window), the windows' length_us
    /// (fixed window); 0 for calendar months and without a rate.
    pub param: u64,
    /// burst or limit; 0 without a rate.
    pub capacity: u32,
    /// Sliding window: the most runs a key keeps (its precision); else 0.
    pub runs: u32,
    /// Sliding window: the merge grid (µs). Fixed window: the phase of its windows
    /// (µs after the epoch). Calendar months: the UTC offset (µs east). Else 0.
    pub align_us: i64,
    /// 0 when the limiter has no concurrency cap.
    pub max_concurrent: u32,
    pub lease_ttl_us: u64,
    /// What decisions report as their limit.
    pub limit: u64,
}

impl MicrosPolicy {
    /// Converts `policy` for `engine`; refuses a rule whose span the store cannot count.
    pub fn new(id: &str, policy: &Policy, engine: &str) -> Result<Self, StoreError> {
        let (kind, param, capacity, runs, align_us) = match policy.rule {
            Some(Rule::TokenBucket(tb)) => (
                Kind::TokenBucket,
                tb.interval_nanos().div_ceil(1000),
                tb.burst(),
                0,
                0,
            ),
            Some(Rule::SlidingWindow(sw)) => (
                Kind::SlidingWindow,
                sw.window_nanos().div_ceil(1000),
                sw.limit(),
                sw.precision(),
                // A whole number of µs by construction (`SlidingWindow::grid_nanos`).
                (sw.grid_nanos() / 1000) as i64,
            ),
            Some(Rule::FixedWindow(fw)) => match fw.windows() {
                Windows::Every { length, phase } => (
                    Kind::FixedWindow,
                    length.div_ceil(1000),
                    fw.limit(),
                    0,
                    (phase / 1000) as i64,
                ),
                Windows::Months { utc_offset } => (
                    Kind::FixedMonths,
                    0,
                    fw.limit(),
                    0,
                    i64::from(utc_offset) * 1_000_000,
                ),
            },
            None => (Kind::Slots, 0, 0, 0, 0),
        };
        let span = match kind {
            Kind::TokenBucket => param.saturating_mul(u64::from(capacity)),
            _ => param,
        };
        if span > MAX_SPAN_US {
            return Err(StoreError::Backend(format!(
                "limiter `{id}`: its rule spans more time than the {engine} engine can count \
                 in microseconds; lower `burst` or the window"
            )));
        }
        let (max_concurrent, lease_ttl_us) = match policy.concurrency {
            Some(cc) => (cc.max, cc.lease_ttl.div_ceil(1000).min(MAX_SPAN_US)),
            None => (0, 0),
        };
        Ok(MicrosPolicy {
            kind,
            param,
            capacity,
            runs,
            align_us,
            max_concurrent,
            lease_ttl_us,
            limit: policy.limit(),
        })
    }
}

/// Integers per decision in a store's answer: allowed (0/1), remaining,
/// retry_after_us, reset_after_us, denied_by (0 none, 1 rate, 2 concurrency), and the
/// receipt's recorded µs.
pub(crate) const DECISION_LEN: usize = 6;

/// One decision of a store's answer, for a limiter whose limit is `limit`, with its
/// receipt at the store time `now_us`. Negative numbers (never sent) read as zero.
fn decision(values: &[i64], limit: u64, now_us: i64) -> Result<(Decision, Receipt), StoreError> {
    let &[allowed, remaining, retry, reset, denied, recorded] = values else {
        return Err(StoreError::Backend(format!(
            "unexpected decision of {} values",
            values.len()
        )));
    };
    let non_negative = |n: i64| u64::try_from(n).unwrap_or(0);
    let nanos = |micros: i64| non_negative(micros).saturating_mul(1_000);
    let denied_by = match (allowed, denied) {
        (1, _) => None,
        (_, 1) => Some(DeniedBy::Rate),
        (_, 2) => Some(DeniedBy::Concurrency),
        _ => {
            return Err(StoreError::Backend(format!(
                "unexpected decision: allowed {allowed}, denied by {denied}"
            )))
        }
    };
    let remaining = non_negative(remaining);
    let decision = match denied_by {
        None => Decision::admitted(limit, remaining, nanos(reset)),
        Some(by) => Decision::denied(by, limit, remaining, nanos(retry), nanos(reset)),
    };
    let receipt = Receipt {
        now: non_negative(now_us),
        recorded: non_negative(recorded),
    };
    Ok((decision, receipt))
}

/// A store's answer for one call of a batch (`docs/design.md#batches`).
pub(crate) struct CallAnswer {
    /// The store time of the decisions (µs).
    pub now: i64,
    /// 0 when admitted, else the 1-based index of the member that refused.
    pub refused: i64,
    /// [`DECISION_LEN`] integers per member.
    pub decisions: Vec<i64>,
}

/// Splits the answer to a batch, `{now, then per call: refused, DECISION_LEN
/// integers per member}`, for calls of `members` members each, in order.
pub(crate) fn call_answers(
    values: &[i64],
    members: impl IntoIterator<Item = usize>,
) -> Result<Vec<CallAnswer>, StoreError> {
    let unexpected = || {
        StoreError::Backend(format!(
            "unexpected answer of {} values to a batch",
            values.len()
        ))
    };
    let (&now, mut rest) = values.split_first().ok_or_else(unexpected)?;
    let mut answers = Vec::new();
    for members in members {
        let len = 1 + DECISION_LEN * members;
        if rest.len() < len {
            return Err(unexpected());
        }
        let (this, next) = rest.split_at(len);
        answers.push(CallAnswer {
            now,
            refused: this[0],
            decisions: this[1..].to_vec(),
        });
        rest = next;
    }
    match rest.is_empty() {
        true => Ok(answers),
        false => Err(unexpected()),
    }
}

/// The answer to one call of one member (a single acquire or a peek), from the
/// answers split from a store's reply to it.
pub(crate) fn single_answer(answers: Vec<CallAnswer>) -> Result<CallAnswer, StoreError> {
    let count = answers.len();
    let mut answers = answers.into_iter();
    match (answers.next(), count) {
        (Some(answer), 1) => Ok(answer),
        _ => Err(StoreError::Backend(format!("{count} answers to one call"))),
    }
}

impl CallAnswer {
    /// This answer as one decision (a call of one member), for a limiter whose limit
    /// is `limit`.
    pub fn single(&self, limit: u64) -> Result<(Decision, Receipt), StoreError> {
        decision(&self.decisions, limit, self.now)
    }

    /// This answer as a group's decision, for members whose limits are `limits`.
    pub fn group(&self, limits: &[u64]) -> Result<GroupDecision, StoreError> {
        let unexpected = || {
            StoreError::Backend(format!(
                "unexpected group answer: {} values for {} members, refused {}",
                self.decisions.len(),
                limits.len(),
                self.refused
            ))
        };
        if self.decisions.len() != DECISION_LEN * limits.len() {
            return Err(unexpected());
        }
        let decided = self
            .decisions
            .chunks(DECISION_LEN)
            .zip(limits)
            .map(|(values, &limit)| decision(values, limit, self.now));
        if self.refused == 0 {
            return decided
                .collect::<Result<_, _>>()
                .map(GroupDecision::Admitted);
        }
        let index = usize::try_from(self.refused - 1)
            .ok()
            .filter(|&index| index < limits.len())
            .ok_or_else(unexpected)?;
        let mut peeks = decided
            .map(|decision| decision.map(|(d, _)| Some(d)))
            .collect::<Result<Vec<_>, _>>()?;
        let refusal = peeks[index].take().ok_or_else(unexpected)?;
        Ok(GroupDecision::Refused {
            index,
            refusal,
            peeks,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::algorithm::{Concurrency, TokenBucket};

    #[test]
    fn rules_round_up_to_whole_microseconds() {
        let policy = Policy {
            rule: Some(Rule::TokenBucket(TokenBucket::new(3.0, 2).unwrap())),
            concurrency: Some(Concurrency {
                max: 4,
                lease_ttl: 1_500,
            }),
        };
        let micros = MicrosPolicy::new("api", &policy, "Redis").unwrap();
        assert_eq!(
            (micros.kind, micros.param, micros.capacity),
            (Kind::TokenBucket, 333_334, 2)
        );
        assert_eq!(
            (micros.max_concurrent, micros.lease_ttl_us, micros.limit),
            (4, 2, 2)
        );
        // 4.55e15 µs: valid in nanoseconds, more than a Lua double counts exactly.
        let huge = Policy {
            rule: Some(Rule::TokenBucket(TokenBucket::new(1e-6, 4_550).unwrap())),
            concurrency: None,
        };
        assert!(MicrosPolicy::new("api", &huge, "Redis").is_err());
    }

    #[test]
    fn answers_convert_microseconds_and_clamp_garbage() {
        let (d, receipt) = decision(&[0, 3, 1_500, 2_000_000, 2, 0], 10, 7).unwrap();
        assert!(!d.allowed());
        assert_eq!(d.denied_by(), Some(DeniedBy::Concurrency));
        assert_eq!(d.retry_after(), Duration::from_micros(1_500));
        assert_eq!(d.reset_after(), Duration::from_secs(2));
        assert_eq!(receipt.now, 7);
        let (d, _) = decision(&[1, -1, -5, -5, 0, 9], 10, 7).unwrap();
        assert!(d.allowed() && d.remaining == 0 && d.retry_after().is_zero());
        assert!(decision(&[1, 2], 10, 7).is_err());
    }
}
