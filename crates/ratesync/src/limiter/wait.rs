//! `acquire`: waiting until admitted (SPEC §4.5).
//!
//! A rate refusal knows when the next unit comes: sleep exactly that long. A
//! concurrency refusal does not: join the key's queue and sleep until a release
//! wakes us (or a bounded poll, in case a release signal from another process was
//! lost). Only an admission writes state, so dropping a waiting `acquire` consumes
//! nothing.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{LimiterInner, Permit};
use crate::decision::DeniedBy;
use crate::error::AcquireError;

/// Longest a waiter for a concurrency slot sleeps without re-checking, in case a
/// release signal from another process was lost.
const FALLBACK_POLL: Duration = Duration::from_millis(500);

impl LimiterInner {
    pub(super) async fn acquire(
        self: &Arc<Self>,
        key: &str,
        cost: u32,
        timeout: Option<Duration>,
    ) -> Result<Permit, AcquireError> {
        let started = Instant::now();
        let deadline = timeout.map(|t| started + t);
        let mut woken_by_release = false;
        loop {
            // Join the queue before trying, so a release between a refusal and the
            // wait below still wakes us.
            let ticket = self
                .policy
                .concurrency
                .is_some()
                .then(|| self.waiters.join(key));
            let notified = ticket.as_ref().map(|t| t.notify.notified());
            let decision = match self.attempt(key, cost).await {
                Ok(permit) => {
                    self.metrics.wait_seconds.record(started.elapsed());
                    return Ok(permit);
                }
                Err(AcquireError::Denied { decision, .. }) => decision,
                Err(error) => return Err(error),
            };
            let by_concurrency = decision.denied_by == Some(DeniedBy::Concurrency);
            if woken_by_release && !by_concurrency {
                // We were handed a free slot but cannot use it now: pass it on.
                self.waiters.released(key);
            }
            let now = Instant::now();
            let wait = if by_concurrency {
                decision
                    .retry_after
                    .min(FALLBACK_POLL)
                    .max(Duration::from_millis(1))
            } else {
                decision.retry_after
            };
            if let Some(deadline) = deadline {
                // A rate refusal knows its earliest admission: if that is past the
                // deadline, waiting is pointless.
                if now >= deadline || (!by_concurrency && now + wait > deadline) {
                    self.metrics.timed_out.increment(1);
                    return Err(AcquireError::TimedOut {
                        limiter: self.name.clone(),
                        waited: now - started,
                        decision,
                    });
                }
            }
            let wake_at = deadline.map_or(now + wait, |d| d.min(now + wait));
            woken_by_release = false;
            match notified {
                Some(notified) if by_concurrency => {
                    tokio::select! {
                        _ = notified => woken_by_release = true,
                        _ = tokio::time::sleep_until(wake_at) => {}
                    }
                }
                _ => tokio::time::sleep_until(wake_at).await,
            }
        }
    }
}
