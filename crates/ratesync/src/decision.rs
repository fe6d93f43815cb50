//! The answer every engine gives for one attempt: allowed or not, and the numbers
//! a caller needs to tell its own client (`Retry-After`, `RateLimit` headers).

use std::time::Duration;

use crate::clock::saturating_nanos;

/// What refused an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeniedBy {
    /// The token bucket or the sliding window had no room for the cost.
    Rate,
    /// All `max_concurrent` slots are held.
    Concurrency,
}

/// The outcome of one decision (or of a peek) on one (limiter, key).
///
/// Every engine returns the same `Decision` for the same history: the numbers come
/// from the pure functions in [`crate::algorithm`].
///
/// Read through its methods. Inside, every field is one 64-bit word (durations in
/// nanoseconds, the verdict a `u64`-sized enum): a decision is built and moved on
/// every call, and a layout of whole words is one the compiler copies word by word,
/// with no partial-word stores that later full-word loads would wait on
/// (`docs/design.md#calls`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decision {
    pub(crate) verdict: Verdict,
    pub(crate) limit: u64,
    pub(crate) remaining: u64,
    pub(crate) retry_after_nanos: u64,
    pub(crate) reset_after_nanos: u64,
}

/// Admitted, or refused and by what; one word wide (see [`Decision`]). The admitting
/// verdicts come first, so that [`Decision::allowed`] is one comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u64)]
pub(crate) enum Verdict {
    Allowed = 0,
    /// Admitted by a limiter in shadow mode, which would have refused by rate
    /// (`docs/design.md#shadow-mode`).
    ShadowDeniedByRate = 1,
    /// Admitted in shadow mode; enforcing, every slot was held.
    ShadowDeniedByConcurrency = 2,
    DeniedByRate = 3,
    DeniedByConcurrency = 4,
}

impl Decision {
    /// An admission: `remaining` units left right after it, the key fresh again after
    /// `reset_after`.
    pub fn admitting(limit: u64, remaining: u64, reset_after: Duration) -> Self {
        Self::admitted(limit, remaining, saturating_nanos(reset_after))
    }

    /// A refusal by `denied_by`: an attempt of the same cost fits after
    /// `retry_after`, the key is fresh again after `reset_after`.
    pub fn refusing(
        denied_by: DeniedBy,
        limit: u64,
        remaining: u64,
        retry_after: Duration,
        reset_after: Duration,
    ) -> Self {
        Self::denied(
            denied_by,
            limit,
            remaining,
            saturating_nanos(retry_after),
            saturating_nanos(reset_after),
        )
    }

    /// [`Decision::admitting`] with the time in nanoseconds, as the algorithms count it.
    #[inline(always)]
    pub(crate) const fn admitted(limit: u64, remaining: u64, reset_after_nanos: u64) -> Self {
        Decision {
            verdict: Verdict::Allowed,
            limit,
            remaining,
            retry_after_nanos: 0,
            reset_after_nanos,
        }
    }

    /// [`Decision::refusing`] with times in nanoseconds, as the algorithms count them.
    #[inline(always)]
    pub(crate) const fn denied(
        denied_by: DeniedBy,
        limit: u64,
        remaining: u64,
        retry_after_nanos: u64,
        reset_after_nanos: u64,
    ) -> Self {
        Decision {
            verdict: match denied_by {
                DeniedBy::Rate => Verdict::DeniedByRate,
                DeniedBy::Concurrency => Verdict::DeniedByConcurrency,
            },
            limit,
            remaining,
            retry_after_nanos,
            reset_after_nanos,
        }
    }

    /// This refusal as a shadow-mode admission (`docs/design.md#shadow-mode`): allowed,
    /// with what refused it kept in [`Decision::shadow_denied_by`] and its numbers
    /// (`remaining`, the would-be `retry_after`) as the store gave them.
    #[must_use]
    pub(crate) const fn shadowed(self) -> Self {
        let verdict = match self.verdict {
            Verdict::DeniedByRate => Verdict::ShadowDeniedByRate,
            Verdict::DeniedByConcurrency => Verdict::ShadowDeniedByConcurrency,
            admitting => admitting,
        };
        Decision { verdict, ..self }
    }

    /// A decision that admits without consulting a store: used for fail-open admissions.
    pub(crate) fn fail_open(limit: u64) -> Self {
        Self::admitted(limit, 0, 0)
    }

    /// Whether the attempt was (or, for a peek, would be) admitted: a limiter in
    /// shadow mode admits what it would refuse ([`Decision::shadow_denied_by`]).
    #[inline]
    pub fn allowed(&self) -> bool {
        (self.verdict as u64) < (Verdict::DeniedByRate as u64)
    }

    /// Why the attempt was refused; `None` when allowed.
    #[inline]
    pub fn denied_by(&self) -> Option<DeniedBy> {
        match self.verdict {
            Verdict::DeniedByRate => Some(DeniedBy::Rate),
            Verdict::DeniedByConcurrency => Some(DeniedBy::Concurrency),
            _ => None,
        }
    }

    /// What would have refused an attempt that a limiter in shadow mode admitted
    /// without consuming anything (`docs/design.md#shadow-mode`); `None` for any
    /// other decision.
    #[inline]
    pub fn shadow_denied_by(&self) -> Option<DeniedBy> {
        match self.verdict {
            Verdict::ShadowDeniedByRate => Some(DeniedBy::Rate),
            Verdict::ShadowDeniedByConcurrency => Some(DeniedBy::Concurrency),
            _ => None,
        }
    }

    /// Capacity of the rule: the bucket's burst or the window's limit (for a limiter
    /// without a rate, its `max_concurrent`).
    #[inline]
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Units still available right after this decision (for a peek: available now).
    #[inline]
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// How long until an attempt of the same cost can be admitted; zero when allowed
    /// (but for a shadow-mode admission, which keeps the refusal's).
    /// For a concurrency refusal it is the rate's part alone (zero without a rate):
    /// a slot comes back when its holder releases it, which no clock can tell
    /// (`docs/design.md#concurrency`).
    #[inline]
    pub fn retry_after(&self) -> Duration {
        Duration::from_nanos(self.retry_after_nanos)
    }

    /// How long until the key is back to its fresh, fully available state.
    #[inline]
    pub fn reset_after(&self) -> Duration {
        Duration::from_nanos(self.reset_after_nanos)
    }
}

impl std::fmt::Debug for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decision")
            .field("allowed", &self.allowed())
            .field("denied_by", &self.denied_by())
            .field("shadow_denied_by", &self.shadow_denied_by())
            .field("limit", &self.limit)
            .field("remaining", &self.remaining)
            .field("retry_after", &self.retry_after())
            .field("reset_after", &self.reset_after())
            .finish()
    }
}
