//! One limiter on a PostgreSQL store: binds each function call's parameters and turns
//! the answer into a [`Decision`]. One round trip per call.

use std::sync::Arc;
use std::time::Duration;

use super::Shared;
use crate::algorithm::{LeaseId, Rule};
use crate::decision::{Decision, DeniedBy};
use crate::engine::{EngineFuture, EngineLimiter, LimiterSpec, StoreError};

/// Largest microsecond span a rule may cover, as in the Redis engine: far inside
/// bigint with the epoch added, and the same limit for every engine.
const MAX_SPAN_US: u64 = 1 << 52;

/// The rule in the functions' unit, microseconds, rounded up (never looser).
#[derive(Debug, Clone, Copy)]
struct Ticks {
    sliding: bool,
    /// interval_us (token bucket) or window_us (sliding window).
    param: i64,
    /// burst or limit.
    capacity: i64,
}

/// The rows of one limiter in a PostgreSQL store.
pub struct PostgresLimiter {
    shared: Arc<Shared>,
    id: Arc<str>,
    ticks: Ticks,
    limit: u64,
    /// 0 when the limiter has no concurrency cap.
    max_concurrent: i64,
    lease_ttl_us: i64,
}

impl PostgresLimiter {
    pub(super) fn new(shared: Arc<Shared>, spec: &LimiterSpec) -> Result<Self, StoreError> {
        let (sliding, param_us, capacity) = match spec.policy.rule {
            Rule::TokenBucket(tb) => (false, tb.interval_nanos().div_ceil(1000), tb.burst()),
            Rule::SlidingWindow(sw) => (true, sw.window_nanos().div_ceil(1000), sw.limit()),
        };
        let span = if sliding {
            param_us
        } else {
            param_us.saturating_mul(u64::from(capacity))
        };
        let too_large = |what: &str| {
            StoreError::Backend(format!(
                "limiter `{}`: its {what} is larger than the PostgreSQL engine can count",
                spec.id
            ))
        };
        if span > MAX_SPAN_US {
            return Err(too_large(
                "rule spans more time (lower `burst` or the window) and",
            ));
        }
        let (max_concurrent, lease_ttl_us) = match spec.policy.concurrency {
            Some(cc) => (
                i64::from(cc.max),
                cc.lease_ttl.div_ceil(1000).min(MAX_SPAN_US) as i64,
            ),
            None => (0, 0),
        };
        Ok(PostgresLimiter {
            shared,
            id: spec.id.clone(),
            ticks: Ticks {
                sliding,
                param: param_us as i64,
                capacity: i64::from(capacity),
            },
            limit: u64::from(spec.policy.rule.capacity()),
            max_concurrent,
            lease_ttl_us,
        })
    }

    pub(super) fn id(&self) -> &str {
        &self.id
    }

    /// Which client carries the calls of `key` (see `Pool::query_one`).
    fn route(&self, key: &str) -> u64 {
        let hash = |seed: u64, bytes: &[u8]| {
            bytes.iter().fold(seed, |hash, &byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
            })
        };
        hash(
            hash(0xcbf2_9ce4_8422_2325, self.id.as_bytes()),
            key.as_bytes(),
        )
    }

    /// Calls the decide function; `consume` false is a peek.
    async fn decide(
        &self,
        key: &str,
        cost: u32,
        lease: Option<LeaseId>,
        consume: bool,
        now_us: Option<u64>,
    ) -> Result<Decision, StoreError> {
        let cost = i64::from(cost);
        // Lease ids are random u64; bigint holds the same 64 bits.
        let lease = lease.map(|id| id.0 as i64);
        let now = now_us.map(|now| now as i64);
        let row = self
            .shared
            .pool
            .query_one(
                Some(self.route(key)),
                |s| &s.decide,
                &[
                    &self.id.as_bytes(),
                    &key.as_bytes(),
                    &self.ticks.sliding,
                    &self.ticks.param,
                    &self.ticks.capacity,
                    &cost,
                    &self.max_concurrent,
                    &lease,
                    &self.lease_ttl_us,
                    &consume,
                    &now,
                ],
            )
            .await?;
        let values: Vec<i64> = row
            .try_get(0)
            .map_err(|e| StoreError::Backend(format!("unexpected decision: {e}")))?;
        into_decision(&values, self.limit)
    }

    /// [`EngineLimiter::acquire`], with the function's clock pinned to `now_us` when
    /// given. Only tests pin the clock; the engine always decides on the server's.
    #[doc(hidden)]
    pub async fn acquire_at(
        &self,
        key: &str,
        cost: u32,
        lease: Option<LeaseId>,
        now_us: Option<u64>,
    ) -> Result<Decision, StoreError> {
        self.decide(key, cost, lease, true, now_us).await
    }

    /// [`EngineLimiter::peek`], with the clock optionally pinned (tests only).
    #[doc(hidden)]
    pub async fn peek_at(
        &self,
        key: &str,
        cost: u32,
        now_us: Option<u64>,
    ) -> Result<Decision, StoreError> {
        self.decide(key, cost, None, false, now_us).await
    }

    /// [`EngineLimiter::renew`], with the clock optionally pinned (tests only).
    #[doc(hidden)]
    pub async fn renew_at(
        &self,
        key: &str,
        lease: LeaseId,
        now_us: Option<u64>,
    ) -> Result<bool, StoreError> {
        let lease = lease.0 as i64;
        let now = now_us.map(|now| now as i64);
        let row = self
            .shared
            .pool
            .query_one(
                Some(self.route(key)),
                |s| &s.renew,
                &[
                    &self.id.as_bytes(),
                    &key.as_bytes(),
                    &lease,
                    &self.lease_ttl_us,
                    &now,
                ],
            )
            .await?;
        Ok(row.try_get::<_, bool>(0).unwrap_or(false))
    }

    async fn release_lease(&self, key: &str, lease: LeaseId) -> Result<(), StoreError> {
        let lease = lease.0 as i64;
        let releases = &self.shared.releases;
        self.shared
            .pool
            .query_one(
                Some(self.route(key)),
                |s| &s.release,
                &[
                    &self.id.as_bytes(),
                    &key.as_bytes(),
                    &lease,
                    &releases.channel(),
                    &releases.origin(),
                ],
            )
            .await
            .map(drop)
    }

    async fn reset_keys(&self, key: Option<&str>) -> Result<(), StoreError> {
        let route = key.map(|key| self.route(key));
        let key = key.map(str::as_bytes);
        self.shared
            .pool
            .query_one(
                route,
                |s| &s.reset,
                &[&self.id.as_bytes(), &key, &self.shared.releases.channel()],
            )
            .await
            .map(drop)
    }
}

/// The function's bigint[5] as a decision, for a rule whose capacity is `limit`.
fn into_decision(values: &[i64], limit: u64) -> Result<Decision, StoreError> {
    let &[allowed, remaining, retry, reset, denied] = values else {
        return Err(StoreError::Backend(format!(
            "unexpected decision of {} values",
            values.len()
        )));
    };
    let micros = |us: i64| Duration::from_micros(u64::try_from(us).unwrap_or(0));
    Ok(Decision {
        allowed: allowed == 1,
        denied_by: match denied {
            1 => Some(DeniedBy::Rate),
            2 => Some(DeniedBy::Concurrency),
            _ => None,
        },
        limit,
        remaining: u64::try_from(remaining).unwrap_or(0),
        retry_after: micros(retry),
        reset_after: micros(reset),
    })
}

impl EngineLimiter for PostgresLimiter {
    fn acquire<'a>(
        &'a self,
        key: &'a str,
        cost: u32,
        lease: Option<LeaseId>,
    ) -> EngineFuture<'a, Decision> {
        Box::pin(self.acquire_at(key, cost, lease, None))
    }

    fn peek<'a>(&'a self, key: &'a str, cost: u32) -> EngineFuture<'a, Decision> {
        Box::pin(self.peek_at(key, cost, None))
    }

    fn release<'a>(&'a self, key: &'a str, lease: LeaseId) -> EngineFuture<'a, ()> {
        Box::pin(self.release_lease(key, lease))
    }

    fn renew<'a>(&'a self, key: &'a str, lease: LeaseId) -> EngineFuture<'a, bool> {
        Box::pin(self.renew_at(key, lease, None))
    }

    fn reset<'a>(&'a self, key: Option<&'a str>) -> EngineFuture<'a, ()> {
        Box::pin(self.reset_keys(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_convert_microseconds_and_clamp_garbage() {
        let d = into_decision(&[0, 3, 1_500, 2_000_000, 2], 10).unwrap();
        assert!(!d.allowed);
        assert_eq!(d.denied_by, Some(DeniedBy::Concurrency));
        assert_eq!(d.retry_after, Duration::from_micros(1_500));
        assert_eq!(d.reset_after, Duration::from_secs(2));
        let d = into_decision(&[1, -1, -5, -5, 0], 10).unwrap();
        assert!(d.allowed && d.remaining == 0 && d.retry_after.is_zero());
        assert!(into_decision(&[1, 2], 10).is_err());
    }
}
