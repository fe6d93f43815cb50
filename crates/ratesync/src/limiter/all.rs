//! `try_acquire_all`: several calls admitted together or not at all (SPEC §6.1,
//! "several limits per route checked atomically"). The HTTP layer and the axum
//! extractor both go through here.

use futures::future::join_all;

use super::{Call, Permit};
use crate::decision::Decision;
use crate::error::{AcquireAllError, AcquireError};

/// One attempt at every call; admitted only if every call admits.
///
/// Each limiter is atomic on its own (SPEC §4.4), but no store can take units from
/// several limiters (possibly in several stores) in one step. So this peeks every
/// call first, consuming nothing, and refuses if any peek refuses; only then does it
/// take each call in order.
///
/// Residual race: another client may consume between the peeks and the takes. If a
/// take is then refused, the permits already taken are dropped (their concurrency
/// slots come back), but rate units already consumed from the earlier limiters cannot
/// be given back (engines have no refund), and the error names the call that
/// refused. The window is one round trip per limiter wide; a single call has no such
/// window and skips the peek.
///
/// A store that cannot answer a peek fails the whole attempt only for a
/// `fail_closed` limiter; a fail-open limiter's take then applies its policy (a peek
/// alone reports any store failure, whatever the policy).
pub async fn try_acquire_all(calls: &[Call<'_>]) -> Result<Vec<Permit>, AcquireAllError> {
    if let [call] = calls {
        // One limiter decides atomically by itself: the peek would only add a round trip.
        return match call.try_acquire().await {
            Ok(permit) => Ok(vec![permit]),
            Err(error) => Err(AcquireAllError {
                index: 0,
                decisions: vec![error.decision().copied()],
                error,
            }),
        };
    }
    let peeks = peek_all(calls).await?;
    let mut permits = Vec::with_capacity(calls.len());
    for (index, call) in calls.iter().enumerate() {
        match call.try_acquire().await {
            Ok(permit) => permits.push(permit),
            Err(error) => {
                // Lost the race: dropping `permits` gives their slots back.
                let decisions = permits
                    .iter()
                    .map(|permit| Some(*permit.decision()))
                    .chain([error.decision().copied()])
                    .chain(peeks[index + 1..].iter().copied())
                    .collect();
                return Err(AcquireAllError {
                    index,
                    error,
                    decisions,
                });
            }
        }
    }
    Ok(permits)
}

/// Every call's current decision (concurrently: remote stores answer in one round
/// trip), or the first refusal or hard failure in call order. `None` marks a
/// fail-open limiter whose store could not say.
async fn peek_all(calls: &[Call<'_>]) -> Result<Vec<Option<Decision>>, AcquireAllError> {
    let answers = join_all(calls.iter().map(|call| call.state())).await;
    let mut decisions = Vec::with_capacity(calls.len());
    let mut failure = None;
    for (index, (call, answer)) in calls.iter().zip(answers).enumerate() {
        let inner = &call.limiter.inner;
        match answer {
            Ok(decision) => {
                if !decision.allowed && failure.is_none() {
                    // Counted as the refusal it is, like one from `try_acquire`.
                    inner.metrics.denied.increment(1);
                    let error = AcquireError::Denied {
                        limiter: inner.name.clone(),
                        decision,
                    };
                    failure = Some((index, error));
                }
                decisions.push(Some(decision));
            }
            Err(AcquireError::StoreUnavailable { .. }) if !inner.config.fail_closed => {
                decisions.push(None);
            }
            Err(error) => {
                let decision = error.decision().copied();
                if failure.is_none() {
                    failure = Some((index, error));
                }
                decisions.push(decision);
            }
        }
    }
    match failure {
        None => Ok(decisions),
        Some((index, error)) => Err(AcquireAllError {
            index,
            error,
            decisions,
        }),
    }
}
