//! Where "now" comes from.
//!
//! The memory engine decides with a [`Clock`]; distributed engines decide with their
//! store's clock (`docs/design.md#time`) and never consult this one. Tests replace the clock to
//! make every decision exact and instant.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `duration` in nanoseconds, saturating: 584 years is beyond any limiter's reach.
pub(crate) fn saturating_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// A monotonic source of time in nanoseconds since a fixed origin.
///
/// Only differences matter to every rule but the fixed window, whose windows fall
/// on the calendar: it reads the time as nanoseconds since the Unix epoch, which is
/// what the production clock counts (`docs/design.md#fixed-windows`).
pub trait Clock: Send + Sync + 'static {
    /// Nanoseconds since this clock's origin. Never decreases.
    fn now_nanos(&self) -> u64;
}

/// The production clock: a TSC-backed monotonic clock (via `quanta`), a few
/// nanoseconds per read, calibrated against the OS monotonic clock, counting from
/// the Unix epoch as the system clock read it when this clock was made. It never
/// follows the system clock afterwards: a step of the wall clock cannot move it.
#[derive(Debug, Clone)]
pub struct MonotonicClock {
    clock: quanta::Clock,
    /// The raw counter at the origin: a read is one counter read and one scaling of
    /// the delta, with no `Instant` or `Duration` in between.
    origin: u64,
    /// Nanoseconds since the Unix epoch at the origin.
    epoch_at_origin: u64,
}

impl Default for MonotonicClock {
    fn default() -> Self {
        let clock = quanta::Clock::new();
        let origin = clock.raw();
        let epoch_at_origin = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, saturating_nanos);
        MonotonicClock {
            clock,
            origin,
            epoch_at_origin,
        }
    }
}

impl Clock for MonotonicClock {
    #[inline(always)]
    fn now_nanos(&self) -> u64 {
        // Never an underflow, should the counter read below the origin.
        self.epoch_at_origin + self.clock.delta_as_nanos(self.origin, self.clock.raw())
    }
}

/// A clock that only moves when told to. Clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// A clock at `since_epoch` after the Unix epoch: fixed windows then fall where
    /// they would on that date.
    pub fn at(since_epoch: Duration) -> Self {
        let clock = Self::default();
        clock.advance(since_epoch);
        clock
    }

    /// Moves time forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.nanos.fetch_add(saturating_nanos(by), Ordering::SeqCst);
    }

    /// Moves time forward by `nanos` nanoseconds.
    pub fn advance_nanos(&self, nanos: u64) {
        self.nanos.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_nanos(&self) -> u64 {
        self.nanos.load(Ordering::SeqCst)
    }
}

/// A clock that reads tokio's time, so that under `tokio::time::pause()` the sleeps
/// of `acquire` advance the limiter's clock too: waiting tests run instantly and exactly.
#[derive(Debug, Clone)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now_nanos(&self) -> u64 {
        tokio::time::Instant::now()
            .saturating_duration_since(self.origin)
            .as_nanos() as u64
    }
}
