//! Errors a user of the library sees. Each carries what is needed to fix its cause.

use std::sync::Arc;
use std::time::Duration;

use crate::algorithm::CostError;
use crate::clock::saturating_nanos;
use crate::config::ConfigError;
use crate::decision::Decision;
use crate::store::StoreError;

/// Errors of building a registry or finding a limiter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid: every issue found, with file and line.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The registry has no limiter of that name.
    #[error("no limiter named `{0}` is configured")]
    UnknownLimiter(String),
    /// A store could not be built (its engine is not compiled in, its URL is
    /// unusable) or refused a limiter's rule.
    #[error("store `{store}`: {source}")]
    Store {
        /// The store's id.
        store: String,
        /// What the engine said.
        #[source]
        source: StoreError,
    },
}

/// Why an attempt was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    /// `try_acquire` (or a zero timeout) found no room.
    #[error("limiter `{limiter}` refused: retry after {:.3}s", .decision.retry_after().as_secs_f64())]
    Denied {
        /// The limiter's name.
        limiter: Arc<str>,
        /// The refusal: [`Decision::retry_after`] says when to try again.
        decision: Decision,
    },
    /// `acquire` could not be admitted within its timeout.
    #[error("limiter `{limiter}` timed out after {:.3}s: retry after {:.3}s", Duration::from_nanos(*.waited_nanos).as_secs_f64(), .decision.retry_after().as_secs_f64())]
    TimedOut {
        /// The limiter's name.
        limiter: Arc<str>,
        /// How long `acquire` waited, in nanoseconds ([`AcquireError::waited`] as a
        /// `Duration`). A whole word, like the fields of [`Decision`], so that a
        /// result that may hold this error moves as cheaply as a permit
        /// (`docs/design.md#calls`).
        waited_nanos: u64,
        /// The last refusal.
        decision: Decision,
    },
    /// The store failed and the limiter is `fail_closed`.
    #[error("limiter `{limiter}`: store `{store}` unavailable: {source}")]
    StoreUnavailable {
        /// The limiter's name.
        limiter: Arc<str>,
        /// The store's id.
        store: Arc<str>,
        /// How the store failed (`docs/design.md#failure-policy`).
        #[source]
        source: StoreError,
    },
    /// The cost can never be admitted by this limiter.
    #[error("limiter `{limiter}`: {source}")]
    InvalidCost {
        /// The limiter's name.
        limiter: Arc<str>,
        /// Why the cost is refused.
        #[source]
        source: CostError,
    },
    /// A group names the same key of a limiter with `max_concurrent` twice.
    #[error("limiter `{limiter}` appears twice with the same key in one group; a group takes at most one concurrency slot per limiter and key")]
    SlotTwice {
        /// The limiter's name.
        limiter: Arc<str>,
    },
    /// A reload of the configuration removed the limiter: a handle taken before it
    /// refuses new calls (permits it gave stay valid until released).
    #[error("limiter `{limiter}` is not configured: a reload of the configuration removed it")]
    NotConfigured {
        /// The limiter's name.
        limiter: Arc<str>,
    },
}

/// Why [`crate::Permit::settle`] could not settle.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// A settle can only give back: `used` is above what the call took.
    #[error("limiter `{limiter}`: cannot settle at {used} units, above the cost of {cost} the call took")]
    AboveCost {
        /// The limiter's name.
        limiter: Arc<str>,
        /// The units the caller said it used.
        used: u32,
        /// The units the call took.
        cost: u32,
    },
    /// The permit's call was not made with [`crate::Call::settleable`].
    #[error("this permit cannot settle: its call was not made with `.settleable()`")]
    NotSettleable,
    /// The store could not take the units back; they return when they refill or
    /// leave the window.
    #[error(transparent)]
    Store(AcquireError),
}

impl AcquireError {
    /// This error at the end of a wait of `waited`: a refusal becomes a timeout.
    pub(crate) fn after_waiting(self, waited: Duration) -> Self {
        match self {
            AcquireError::Denied { limiter, decision } => AcquireError::TimedOut {
                limiter,
                waited_nanos: saturating_nanos(waited),
                decision,
            },
            other => other,
        }
    }

    /// How long `acquire` waited, for a timeout.
    pub fn waited(&self) -> Option<Duration> {
        match self {
            AcquireError::TimedOut { waited_nanos, .. } => {
                Some(Duration::from_nanos(*waited_nanos))
            }
            _ => None,
        }
    }

    /// How long to wait before trying again, when the store said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AcquireError::Denied { decision, .. } | AcquireError::TimedOut { decision, .. } => {
                Some(decision.retry_after())
            }
            _ => None,
        }
    }

    /// The store's decision, for refusals and timeouts.
    pub fn decision(&self) -> Option<&Decision> {
        match self {
            AcquireError::Denied { decision, .. } | AcquireError::TimedOut { decision, .. } => {
                Some(decision)
            }
            _ => None,
        }
    }

    /// Whether this is a refusal or timeout (HTTP 429) rather than an outage (503) or
    /// a caller bug.
    pub fn is_rate_limited(&self) -> bool {
        matches!(
            self,
            AcquireError::Denied { .. } | AcquireError::TimedOut { .. }
        )
    }
}

/// Why [`crate::try_acquire_all`] or [`crate::acquire_all`] admitted nothing: the
/// first call (in order) that refused or failed, and what is known of every call.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct AcquireAllError {
    /// Position of that call in the slice given.
    pub index: usize,
    /// Its error: `Denied` for a refusal, `TimedOut` when `acquire_all` waited in
    /// vain, `StoreUnavailable` (a `fail_closed` limiter's store is down),
    /// `InvalidCost` or `SlotTwice`.
    #[source]
    pub error: AcquireError,
    /// One entry per call: the refusal for the refusing call, a peek for the others
    /// (`None` where the store could not say, or was not asked).
    pub decisions: Vec<Option<Decision>>,
}
