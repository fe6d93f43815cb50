//! The limits of one route, and the one check that both the layer and the axum
//! extractor run: keys from the request, then [`crate::try_acquire_all`].

use std::fmt;
use std::sync::Arc;

use http::request::Parts;
use http::HeaderMap;

use super::headers::{rate_limit_headers, LimitState, Quota};
use super::key::KeyExtractor;
use super::layer::RateLimitLayer;
use super::rejection::Rejection;
use crate::{try_acquire_all, AcquireAllError, AcquireError, Call, Decision, Limiter, Permit};

/// One limit of a route: a limiter, the key a request counts against, and the cost
/// of a request (default 1).
pub struct Limit {
    limiter: Limiter,
    key: Box<dyn KeyExtractor>,
    cost: u32,
    quota: Quota,
}

impl Limit {
    /// `limiter`, keyed by `key`.
    pub fn new(limiter: Limiter, key: impl KeyExtractor) -> Self {
        Limit {
            quota: Quota::of(&limiter),
            limiter,
            key: Box::new(key),
            cost: 1,
        }
    }

    /// Units each request takes. A cost above the limiter's burst (or window limit)
    /// can never be admitted: requests then get HTTP 500, as for any server-side
    /// misconfiguration.
    pub fn cost(mut self, cost: u32) -> Self {
        self.cost = cost;
        self
    }

    fn state(&self, allowed: bool, decision: Decision) -> LimitState<'_> {
        LimitState {
            policy: self.limiter.name(),
            allowed,
            decision,
            quota: self.quota,
        }
    }
}

/// What to do with a request whose key cannot be extracted (a missing header, ...).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MissingKey {
    /// Refuse it: HTTP 400 when the request is at fault, 500 when the server's setup
    /// is (no peer address, an unknown path parameter). The default: a request is
    /// never let through unlimited, and clients without a key do not share one.
    #[default]
    Reject,
    /// Count it against the limiter-wide key, which all such requests share.
    LimiterWide,
}

/// The limits of a route, checked all or nothing: a request is admitted only when
/// every limit admits it, and a refused request consumes nothing (up to the race
/// described at [`crate::try_acquire_all`]). Cheap to clone: clones share one state.
#[derive(Clone)]
pub struct RouteLimits {
    shared: Arc<Shared>,
}

struct Shared {
    limits: Vec<Limit>,
    headers: bool,
    legacy_headers: bool,
    missing_key: MissingKey,
}

/// Builds [`RouteLimits`].
pub struct RouteLimitsBuilder {
    shared: Shared,
}

impl RouteLimits {
    /// Starts a set of limits: add them with [`RouteLimitsBuilder::limit`].
    pub fn builder() -> RouteLimitsBuilder {
        RouteLimitsBuilder {
            shared: Shared {
                limits: Vec::new(),
                headers: true,
                legacy_headers: false,
                missing_key: MissingKey::Reject,
            },
        }
    }

    /// The tower layer that enforces these limits.
    pub fn layer(&self) -> RateLimitLayer {
        RateLimitLayer::new(self.clone())
    }

    /// The key of each limit for this request, in order.
    pub(crate) fn keys(&self, parts: &mut Parts) -> Result<Vec<String>, Rejection> {
        let missing_key = self.shared.missing_key;
        self.shared
            .limits
            .iter()
            .map(|limit| match limit.key.extract(parts) {
                Ok(key) => Ok(key),
                Err(error) if missing_key == MissingKey::LimiterWide => {
                    tracing::debug!(limiter = limit.limiter.name(), %error, "no key; using the limiter-wide key");
                    Ok(String::new())
                }
                Err(error) => Err(Rejection::Key(error)),
            })
            .collect()
    }

    /// Takes every limit for `keys` (from [`RouteLimits::keys`]), all or nothing.
    /// Never waits: an HTTP request that would have to wait is answered 429 now.
    pub(crate) async fn check(&self, keys: &[String]) -> Result<Admitted, Rejection> {
        let limits = &self.shared.limits;
        let calls: Vec<Call<'_>> = limits
            .iter()
            .zip(keys)
            .map(|(limit, key)| limit.limiter.key(key).cost(limit.cost))
            .collect();
        match try_acquire_all(&calls).await {
            Ok(permits) => {
                let decisions: Vec<_> = permits.iter().map(|p| Some(*p.decision())).collect();
                let headers = if self.shared.headers {
                    self.headers(&decisions, None)
                } else {
                    HeaderMap::new()
                };
                Ok(Admitted { permits, headers })
            }
            Err(refusal) => Err(self.rejection(refusal)),
        }
    }

    fn rejection(&self, refusal: AcquireAllError) -> Rejection {
        match refusal.error {
            AcquireError::Denied { .. } | AcquireError::TimedOut { .. } => {
                let headers = self.headers(&refusal.decisions, Some(refusal.index));
                let refused = refusal.decisions.get(refusal.index).copied().flatten();
                let retry_after = self
                    .shared
                    .limits
                    .get(refusal.index)
                    .zip(refused)
                    .map_or(1, |(limit, decision)| {
                        limit.state(false, decision).retry_after()
                    });
                Rejection::RateLimited {
                    retry_after,
                    headers,
                }
            }
            error @ AcquireError::StoreUnavailable { .. } => Rejection::StoreUnavailable(error),
            error @ (AcquireError::InvalidCost { .. } | AcquireError::SlotTwice { .. }) => {
                Rejection::InvalidCost(error)
            }
        }
    }

    /// The headers for these decisions: the refusing limit first, else the one with
    /// the least remaining (as the Python composite dependency orders them).
    fn headers(&self, decisions: &[Option<Decision>], refused: Option<usize>) -> HeaderMap {
        let states: Vec<(usize, LimitState<'_>)> = self
            .shared
            .limits
            .iter()
            .zip(decisions)
            .enumerate()
            .filter_map(|(index, (limit, decision))| {
                let decision = (*decision)?;
                let allowed = decision.allowed() && refused != Some(index);
                Some((index, limit.state(allowed, decision)))
            })
            .collect();
        let main = match refused {
            Some(index) => states.iter().position(|(i, _)| *i == index),
            None => (0..states.len()).min_by_key(|&i| states[i].1.decision.remaining),
        };
        let Some(main) = main else {
            return HeaderMap::new();
        };
        let others: Vec<LimitState<'_>> = states
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != main)
            .map(|(_, (_, state))| state.clone())
            .collect();
        rate_limit_headers(&states[main].1, &others, self.shared.legacy_headers)
    }
}

impl RouteLimitsBuilder {
    /// Adds a limit. Limits are taken in the order added.
    pub fn limit(mut self, limit: Limit) -> Self {
        self.shared.limits.push(limit);
        self
    }

    /// Whether admitted responses carry the `RateLimit` headers (default true; a
    /// header the inner service set itself is kept). Refusals always carry them.
    pub fn headers(mut self, on: bool) -> Self {
        self.shared.headers = on;
        self
    }

    /// Whether responses also carry the legacy `X-RateLimit-Limit`,
    /// `X-RateLimit-Remaining` and `X-RateLimit-Reset` (default false).
    pub fn legacy_headers(mut self, on: bool) -> Self {
        self.shared.legacy_headers = on;
        self
    }

    /// What to do when a key cannot be extracted (default [`MissingKey::Reject`]).
    pub fn on_missing_key(mut self, policy: MissingKey) -> Self {
        self.shared.missing_key = policy;
        self
    }

    pub fn build(self) -> RouteLimits {
        RouteLimits {
            shared: Arc::new(self.shared),
        }
    }
}

/// An admitted request: the permits that hold its concurrency slots, and the
/// headers for its response.
pub(crate) struct Admitted {
    pub permits: Vec<Permit>,
    pub headers: HeaderMap,
}

impl fmt::Debug for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limit")
            .field("limiter", &self.limiter.name())
            .field("cost", &self.cost)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for RouteLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteLimits")
            .field("limits", &self.shared.limits)
            .field("headers", &self.shared.headers)
            .field("legacy_headers", &self.shared.legacy_headers)
            .field("missing_key", &self.shared.missing_key)
            .finish()
    }
}
