//! Waiting until admitted (`docs/design.md#calls`), for one call and for groups.
//!
//! A rate refusal knows when the next unit comes: sleep exactly that long. A
//! concurrency refusal does not: join the key's queue and sleep until a release
//! wakes us (or a bounded poll, in case a release signal from another process was
//! lost). Only an admission writes state, so dropping a waiting call consumes
//! nothing.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::waiters::WaitTicket;
use super::{Call, LimiterInner, Permit};
use crate::decision::{Decision, DeniedBy};
use crate::error::AcquireError;

/// Longest a waiter for a concurrency slot sleeps without re-checking, in case a
/// release signal from another process was lost.
const FALLBACK_POLL: Duration = Duration::from_millis(500);

/// Longest a call that waits out its timeout ([`Call::wait_out_timeout`]) sleeps
/// between re-tries while its retry-after lies past the deadline: only a reset or
/// a settle can admit it earlier, and a re-try is one store call.
const WAIT_OUT_RECHECK: Duration = Duration::from_millis(100);

/// What a refused attempt says: which of the waited-on calls refused, and how.
pub(super) struct Refused {
    pub index: usize,
    pub decision: Decision,
}

/// Attempts until admitted or until `timeout` has passed.
///
/// `members` are the (limiter, key) pairs the attempts decide on; `refused` tells a
/// refusal (to wait on) from any other error (returned at once), and `timed_out`
/// turns the last refusal into the caller's timeout error. With `wait_out`, a
/// refusal whose retry-after lies past the deadline is re-tried until the deadline
/// instead of ending the wait at once ([`Call::wait_out_timeout`]).
pub(super) async fn until_admitted<T, E, F, Fut>(
    members: &[(&Arc<LimiterInner>, &str)],
    timeout: Option<Duration>,
    wait_out: bool,
    mut attempt: F,
    refused: impl Fn(&E) -> Option<Refused>,
    timed_out: impl FnOnce(E, Duration) -> E,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let deadline = timeout.map(|t| started + t);
    // The member whose queue woke us, when it did.
    let mut woken_by: Option<usize> = None;
    loop {
        // Join the queues before trying, so that a release between a refusal and the
        // wait below still wakes us.
        let tickets: Vec<(usize, WaitTicket)> = members
            .iter()
            .enumerate()
            .filter(|(_, (limiter, _))| limiter.policy.concurrency.is_some())
            .map(|(index, (limiter, key))| (index, limiter.waiters.join(key)))
            .collect();
        let mut notified: Vec<_> = tickets
            .iter()
            .map(|(index, ticket)| (*index, Box::pin(ticket.notify.notified())))
            .collect();
        let error = match attempt().await {
            Ok(admitted) => {
                for (limiter, _) in members {
                    limiter.metrics.wait_seconds.record(started.elapsed());
                }
                return Ok(admitted);
            }
            Err(error) => error,
        };
        let Some(Refused { index, decision }) = refused(&error) else {
            return Err(error);
        };
        let by_concurrency = decision.denied_by() == Some(DeniedBy::Concurrency);
        if let Some(woken) = woken_by.take() {
            if !(by_concurrency && woken == index) {
                // We were handed a free slot but cannot use it now: pass it on.
                let (limiter, key) = members[woken];
                limiter.waiters.released(key);
            }
        }
        let now = Instant::now();
        if let Some(deadline) = deadline {
            // `retry_after` is the earliest the refusing limiter can admit (for a
            // full cap, what its rate says): past the deadline, waiting is pointless,
            // unless the caller waits out its timeout anyway.
            if now >= deadline || (!wait_out && now + decision.retry_after() > deadline) {
                members[index].0.metrics.timed_out.increment(1);
                return Err(timed_out(error, now - started));
            }
        }
        let wait = if by_concurrency {
            decision.retry_after().max(FALLBACK_POLL)
        } else {
            decision.retry_after()
        };
        // Waiting out a timeout that the retry-after overshoots: re-try now and then
        // (a reset or a settle may free room), and once more at the deadline.
        let wait = match deadline {
            Some(deadline) if wait_out && !by_concurrency && now + wait > deadline => {
                wait.min(WAIT_OUT_RECHECK)
            }
            _ => wait,
        };
        let wake_at = deadline.map_or(now + wait, |d| d.min(now + wait));
        let release = notified
            .iter_mut()
            .find(|(i, _)| by_concurrency && *i == index)
            .map(|(_, notified)| notified);
        match release {
            Some(notified) => {
                tokio::select! {
                    _ = notified => woken_by = Some(index),
                    _ = tokio::time::sleep_until(wake_at) => {}
                }
            }
            None => tokio::time::sleep_until(wake_at).await,
        }
    }
}

/// [`Call::acquire`]: attempts until admitted or timed out.
pub(super) async fn acquire(call: Call<'_>) -> Result<Permit, AcquireError> {
    until_admitted(
        &[(call.inner, call.key)],
        call.timeout,
        call.wait_out,
        || call.try_acquire(),
        |error| match error {
            AcquireError::Denied { decision, .. } => Some(Refused {
                index: 0,
                decision: *decision,
            }),
            _ => None,
        },
        |error, waited| error.after_waiting(waited),
    )
    .await
}
