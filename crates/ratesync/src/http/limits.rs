//! The limits of one route, and the one check that both the layer and the axum
//! extractor run: keys from the request, then [`crate::try_acquire_all`]; for a
//! route of one limit on a store deciding in this process, the same decision made at
//! once ([`RouteLimits::check_now`], the layer's hot path).

use std::fmt;
use std::sync::{Arc, OnceLock};

use http::request::Parts;
use http::HeaderMap;

use super::headers::{
    rate_limit_headers, rate_limit_values, LimitState, OneLimit, Quota, RateLimitValues,
};
use super::key::{KeyError, KeyExtractor, Keyer, RequestKey};
use super::layer::RateLimitLayer;
use super::rejection::Rejection;
use crate::{try_acquire_all, AcquireAllError, AcquireError, Call, Decision, Limiter, Permit};

/// One limit of a route: a limiter, the key a request counts against, and the cost
/// of a request (default 1).
pub struct Limit {
    limiter: Limiter,
    key: Keyer,
    cost: u32,
    /// What its headers owe to its configuration, built on the first admission
    /// (`docs/design.md#http`). A key whose quota differs (an override's, or the
    /// limiter's after a reload) gets its own values built.
    headers: OnceLock<OneLimit>,
}

impl Limit {
    /// `limiter`, keyed by `key`.
    pub fn new(limiter: Limiter, key: impl KeyExtractor) -> Self {
        Limit {
            limiter,
            key: Keyer::new(key),
            cost: 1,
            headers: OnceLock::new(),
        }
    }

    /// Units each request takes. A cost above the limiter's burst (or window limit)
    /// can never be admitted: requests then get HTTP 500, as for any server-side
    /// misconfiguration.
    pub fn cost(mut self, cost: u32) -> Self {
        self.cost = cost;
        self
    }

    fn call<'a>(&'a self, key: &'a str) -> Call<'a> {
        self.limiter.key(key).cost(self.cost)
    }

    /// The limit as the headers show it for `key`: the quota of the rule deciding it
    /// now (an override's, or after a reload the new one; `docs/design.md#overrides`).
    fn state(&self, key: &str, allowed: bool, decision: Decision) -> LimitState<'_> {
        LimitState {
            policy: self.limiter.name(),
            allowed,
            decision,
            quota: Quota::from(self.limiter.quota_for(key)),
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

    /// The key of `limit` for this request.
    fn key<'p>(&self, limit: &Limit, parts: &'p mut Parts) -> Result<RequestKey<'p>, Rejection> {
        match limit.key.key(parts) {
            Ok(key) => Ok(key),
            Err(error) => self.missing_key(limit, error).map(RequestKey::Borrowed),
        }
    }

    fn missing_key(&self, limit: &Limit, error: KeyError) -> Result<&'static str, Rejection> {
        match self.shared.missing_key {
            MissingKey::LimiterWide => {
                tracing::debug!(limiter = limit.limiter.name(), %error, "no key; using the limiter-wide key");
                Ok("")
            }
            MissingKey::Reject => Err(Rejection::Key(error)),
        }
    }

    /// The key of each limit for this request, in order.
    pub(crate) fn keys(&self, parts: &mut Parts) -> Result<Vec<String>, Rejection> {
        self.shared
            .limits
            .iter()
            .map(|limit| self.key(limit, parts).map(RequestKey::into_owned))
            .collect()
    }

    /// Checks this request now when that takes no waiting: a route of one limit
    /// whose store decides in this process (the memory engine). That is the layer's
    /// hot path: the key is read without allocating, the limiter decides in place
    /// (`Call::try_acquire_now`), and nothing is boxed or cloned around it
    /// (`docs/design.md#http`). Otherwise the keys, for [`RouteLimits::check`].
    pub(crate) fn check_now(&self, parts: &mut Parts) -> Checked {
        let [limit] = self.shared.limits.as_slice() else {
            return match self.keys(parts) {
                Ok(keys) => Checked::Later(keys),
                Err(rejection) => Checked::Now(Err(rejection)),
            };
        };
        let request_key = match self.key(limit, parts) {
            Ok(key) => key,
            Err(rejection) => return Checked::Now(Err(rejection)),
        };
        // Read once: an address written on the stack is checked to be text here.
        let key = request_key.as_str();
        // What `try_acquire_all` does for a group of one, without its future.
        match limit.call(key).try_acquire_now() {
            Some(Ok(permit)) => {
                let headers = match self.shared.headers {
                    true => self.one_limit_values(limit, key, *permit.decision()),
                    false => RateLimitValues::default(),
                };
                Checked::Now(Ok(Admitted {
                    permits: Permits::One(permit),
                    headers,
                }))
            }
            Some(Err(error)) => Checked::Now(Err(self.rejection(
                &[key],
                AcquireAllError {
                    index: 0,
                    decisions: vec![error.decision().copied()],
                    error,
                },
            ))),
            None => Checked::Later(vec![key.to_owned()]),
        }
    }

    /// Takes every limit for `keys` (from [`RouteLimits::check_now`]), all or
    /// nothing. Never waits: an HTTP request that would have to wait is answered 429
    /// now.
    pub(crate) async fn check(&self, keys: &[String]) -> Result<Admitted, Rejection> {
        let limits = &self.shared.limits;
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let calls: Vec<Call<'_>> = limits
            .iter()
            .zip(&keys)
            .map(|(limit, key)| limit.call(key))
            .collect();
        match try_acquire_all(&calls).await {
            Ok(permits) => {
                let headers = match self.shared.headers {
                    true => {
                        let decisions: Vec<_> =
                            permits.iter().map(|p| Some(*p.decision())).collect();
                        self.admitted_values(&keys, &decisions)
                    }
                    false => RateLimitValues::default(),
                };
                Ok(Admitted {
                    permits: Permits::All(permits),
                    headers,
                })
            }
            Err(refusal) => Err(self.rejection(&keys, refusal)),
        }
    }

    fn rejection(&self, keys: &[&str], refusal: AcquireAllError) -> Rejection {
        match refusal.error {
            AcquireError::Denied { .. } | AcquireError::TimedOut { .. } => {
                let headers = self.headers(keys, &refusal.decisions, Some(refusal.index));
                let refused = refusal.decisions.get(refusal.index).copied().flatten();
                let retry_after = self.shared.limits.get(refusal.index).zip(refused).map_or(
                    1,
                    |(limit, decision)| {
                        limit
                            .state(keys[refusal.index], false, decision)
                            .retry_after()
                    },
                );
                Rejection::RateLimited {
                    retry_after,
                    headers,
                }
            }
            error @ AcquireError::StoreUnavailable { .. } => Rejection::StoreUnavailable(error),
            error @ (AcquireError::InvalidCost { .. }
            | AcquireError::SlotTwice { .. }
            | AcquireError::NotConfigured { .. }) => Rejection::InvalidCost(error),
        }
    }

    /// The headers of an admission by the one limit of the route, without the
    /// vectors of [`Self::states`], from the limit's [`OneLimit`].
    fn one_limit_values(&self, limit: &Limit, key: &str, decision: Decision) -> RateLimitValues {
        let state = limit.state(key, decision.allowed(), decision);
        let legacy = self.shared.legacy_headers;
        match limit.headers.get_or_init(|| OneLimit::new(&state)) {
            built if built.shows(&state) => built.values(&state, legacy),
            _ => rate_limit_values(&state, &[], legacy),
        }
    }

    /// The headers of an admission.
    fn admitted_values(&self, keys: &[&str], decisions: &[Option<Decision>]) -> RateLimitValues {
        match self.states(keys, decisions, None) {
            Some((main, others)) => rate_limit_values(&main, &others, self.shared.legacy_headers),
            None => RateLimitValues::default(),
        }
    }

    /// The headers of a refusal.
    fn headers(
        &self,
        keys: &[&str],
        decisions: &[Option<Decision>],
        refused: Option<usize>,
    ) -> HeaderMap {
        match self.states(keys, decisions, refused) {
            Some((main, others)) => rate_limit_headers(&main, &others, self.shared.legacy_headers),
            None => HeaderMap::new(),
        }
    }

    /// The limits as the headers show them: the refusing limit first, else the one
    /// with the least remaining (as the Python composite dependency orders them),
    /// then the others; `None` when no limit has a decision.
    fn states(
        &self,
        keys: &[&str],
        decisions: &[Option<Decision>],
        refused: Option<usize>,
    ) -> Option<(LimitState<'_>, Vec<LimitState<'_>>)> {
        let states: Vec<(usize, LimitState<'_>)> = self
            .shared
            .limits
            .iter()
            .zip(decisions)
            .enumerate()
            .filter_map(|(index, (limit, decision))| {
                let decision = (*decision)?;
                let allowed = decision.allowed() && refused != Some(index);
                Some((index, limit.state(keys[index], allowed, decision)))
            })
            .collect();
        let main = match refused {
            Some(index) => states.iter().position(|(i, _)| *i == index),
            None => (0..states.len()).min_by_key(|&i| states[i].1.decision.remaining),
        };
        let main = main?;
        let others: Vec<LimitState<'_>> = states
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != main)
            .map(|(_, (_, state))| state.clone())
            .collect();
        Some((states[main].1.clone(), others))
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

    /// The limits, ready for [`RouteLimits::layer`] or the axum extractor.
    pub fn build(self) -> RouteLimits {
        RouteLimits {
            shared: Arc::new(self.shared),
        }
    }
}

/// What [`RouteLimits::check_now`] found.
pub(crate) enum Checked {
    /// Decided.
    Now(Result<Admitted, Rejection>),
    /// To be decided by [`RouteLimits::check`], with these keys.
    Later(Vec<String>),
}

/// An admitted request: its permits, and the headers for its response.
pub(crate) struct Admitted {
    pub permits: Permits,
    pub headers: RateLimitValues,
}

/// The permits of an admitted request, one per limit, in order; a route of one
/// limit has its permit without a vector.
pub(crate) enum Permits {
    One(Permit),
    All(Vec<Permit>),
}

impl Permits {
    /// All of them (the axum extractor's).
    #[cfg(feature = "axum")]
    pub(crate) fn into_vec(self) -> Vec<Permit> {
        match self {
            Permits::One(permit) => vec![permit],
            Permits::All(permits) => permits,
        }
    }

    /// Those that hold a concurrency slot: the response body keeps them until it
    /// has been sent. The others hold nothing and are let go now (no vector, for a
    /// route without a concurrency cap).
    pub(crate) fn holding_slots(self) -> Vec<Permit> {
        match self {
            Permits::One(permit) if permit.holds_slot() => vec![permit],
            Permits::One(_) => Vec::new(),
            Permits::All(mut permits) => {
                permits.retain(Permit::holds_slot);
                permits
            }
        }
    }
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
