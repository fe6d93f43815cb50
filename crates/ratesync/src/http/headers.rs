//! The rate-limit headers of a response, from the limiters' real decisions.
//!
//! The one implementation of these headers: the tower layer calls
//! [`rate_limit_headers`], and so does the Python `ratesync.contrib.fastapi.headers`
//! (through the extension), so a client sees the same bytes from either surface:
//!
//! - `RateLimit-Policy: "<policy>";q=<quota>;w=<window s>` and
//!   `RateLimit: "<policy>";r=<remaining>;t=<s>`, the structured-field lists of
//!   draft-ietf-httpapi-ratelimit-headers (one item per limit, the tightest first).
//!   `q` and `w` are the quota users configured ([`crate::RateQuota`]): a window's
//!   limit and length, a token bucket's rate over a round window (10/s is `q=10;w=1`
//!   whatever the burst it admits at once). `t` is the time until the quota is
//!   available again (refused) or fully reset (admitted).
//! - A limiter that only caps concurrency is the draft's concurrent-requests quota:
//!   `"<policy>";q=<max_concurrent>;qu="concurrent-requests"` and
//!   `"<policy>";r=<free slots>`, without a window or a reset time (a slot comes
//!   back when its holder lets go, which no clock can tell).
//! - A limit whose quota is not known ([`Quota::Unknown`]: a Python result built by
//!   hand without one) appears in none of the quota headers; when it is the one that
//!   refused, it gives `Retry-After`.
//! - `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (a Unix time,
//!   rounded up; a fixed window's is the end of its window), of the first limit on a
//!   rate; optional.
//! - `Retry-After` on a refusal: whole seconds, at least 1. For a refusal because
//!   every slot is held it is a hint, 1 s unless the rate asks for longer
//!   (`docs/design.md#concurrency`).
//!
//! Seconds are rounded up as Python's `ceil(x - 1e-9)`: the same float arithmetic
//! on the same numbers gives the same digits.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderName, HeaderValue};

use bytes::Bytes;

use super::value::{ValueBuf, STACK};
use crate::Decision;

/// What a limit's quota counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Quota {
    /// `units` requests per `window`: the quota (`q`) and the IETF policy window in
    /// seconds (`w`; left out when not above zero, for a rate whose window is not
    /// known).
    Rate {
        /// Requests per window.
        units: u64,
        /// The window, in seconds.
        window: f64,
    },
    /// Requests in flight at once (`qu="concurrent-requests"`): as many as the
    /// decision's `limit`.
    Concurrency,
    /// Not known: the limit is left out of the quota headers (only its
    /// `Retry-After` shows, when it refuses). [`Quota::of`] never gives it.
    Unknown,
}

impl Quota {
    /// The quota of `limiter`: its rate as configured ([`crate::Limiter::quota`]), or
    /// for a limiter without one its cap.
    pub fn of(limiter: &crate::Limiter) -> Self {
        Quota::from(limiter.quota())
    }
}

impl From<Option<crate::RateQuota>> for Quota {
    /// A rule's quota as a rate; no rule is a concurrency cap.
    fn from(quota: Option<crate::RateQuota>) -> Self {
        match quota {
            Some(quota) => Quota::Rate {
                units: quota.units,
                window: quota.window.as_secs_f64(),
            },
            None => Quota::Concurrency,
        }
    }
}

/// One limit, as the headers show it.
#[derive(Debug, Clone)]
pub struct LimitState<'a> {
    /// The policy name: the limiter's.
    pub policy: &'a str,
    /// Whether this limit admitted the request.
    pub allowed: bool,
    /// Its decision: `remaining` is the `r` of an admitted request (a refused one
    /// shows 0), `reset_after` the `t` of an admitted one and `retry_after` that of a
    /// refused one; `limit` is the quota of a concurrency cap.
    pub decision: Decision,
    /// What the quota counts.
    pub quota: Quota,
}

impl LimitState<'_> {
    /// The quota, `q`: a rate's units per window, a cap's slots.
    fn quota_units(&self) -> u64 {
        match self.quota {
            Quota::Rate { units, .. } => units,
            Quota::Concurrency | Quota::Unknown => self.decision.limit,
        }
    }

    fn remaining(&self) -> u64 {
        if self.allowed {
            self.decision.remaining
        } else {
            0
        }
    }

    /// Seconds until the limit resets (admitted) or a retry can succeed (refused).
    fn reset_in(&self) -> f64 {
        if self.allowed {
            self.decision.reset_after().as_secs_f64()
        } else {
            self.decision.retry_after().as_secs_f64()
        }
    }

    /// `Retry-After`: rounded up, at least 1.
    pub fn retry_after(&self) -> u64 {
        ceil_seconds(self.reset_in()).max(1)
    }

    /// `X-RateLimit-Reset`: the Unix time, rounded up, of [`Self::reset_seconds`]'s
    /// moment (unrounded).
    pub fn reset_at(&self) -> u64 {
        reset_at(self.reset_in())
    }

    /// The `t` of `RateLimit`: whole seconds, rounded up (at least 1 when refused).
    pub fn reset_seconds(&self) -> u64 {
        if self.allowed {
            ceil_seconds(self.reset_in())
        } else {
            self.retry_after()
        }
    }

    // The items are written into the value being built, without `format!`: an
    // admitted request's headers are on the layer's hot path (`docs/design.md#http`).
    fn write_policy_item(&self, out: &mut ValueBuf) {
        out.push_sf_string(self.policy);
        out.push_str(";q=");
        out.push_u64(self.quota_units());
        match self.quota {
            Quota::Rate { window, .. } if window > 0.0 => {
                out.push_str(";w=");
                out.push_u64(ceil_seconds(window).max(1));
            }
            Quota::Rate { .. } | Quota::Unknown => {}
            Quota::Concurrency => out.push_str(";qu=\"concurrent-requests\""),
        }
    }

    fn write_state_item(&self, out: &mut ValueBuf) {
        self.write_state_head(out);
        self.write_state_tail(out);
    }

    /// The `RateLimit` item up to its remaining count: the policy's name alone.
    fn write_state_head<const N: usize>(&self, out: &mut ValueBuf<N>) {
        out.push_sf_string(self.policy);
        out.push_str(";r=");
    }

    /// The rest of the `RateLimit` item: what this decision says.
    #[inline]
    fn write_state_tail<const N: usize>(&self, out: &mut ValueBuf<N>) {
        let (remaining, reset) = self.state_numbers();
        out.push_u64(remaining);
        if let Some(reset) = reset {
            out.push_str(";t=");
            out.push_u64(reset);
        }
    }

    /// The numbers of the `RateLimit` item: `r`, and `t` for a rate.
    #[inline]
    fn state_numbers(&self) -> (u64, Option<u64>) {
        let reset = match self.quota {
            Quota::Rate { .. } => Some(self.reset_seconds()),
            Quota::Concurrency | Quota::Unknown => None,
        };
        (self.remaining(), reset)
    }
}

/// The quota headers of a route of one limit, as far as the limit's configuration
/// decides them, built on its first admission: its `RateLimit-Policy` value and the
/// head of its `RateLimit` item, so that an admission only writes the numbers of its
/// decision (`docs/design.md#http`).
#[derive(Debug)]
pub(crate) struct OneLimit {
    /// Which limit's these are, in each thread's [`RECENT`] values.
    id: u64,
    /// The quota and decided limit (a cap's size) the values show: a decision
    /// under another (an override's, or the limiter's after a reload) is not theirs.
    quota: Quota,
    limit: u64,
    /// `RateLimit-Policy` and the head of `RateLimit`; none for a quota not known.
    values: Option<(HeaderValue, Box<[u8]>)>,
}

/// Room for the numbers of a `RateLimit` item: `;r=` and `;t=` of two `u64`s.
const TAIL: usize = 48;

/// The ids of [`OneLimit`]s: never reused, so a thread's recent value is never
/// taken for another limit's.
static ONE_LIMIT_IDS: AtomicU64 = AtomicU64::new(0);

/// A thread's last values of one [`OneLimit`]: its own copy of the policy, and the
/// `RateLimit` value of the last numbers it showed.
struct Recent {
    id: u64,
    numbers: (u64, Option<u64>),
    policy: HeaderValue,
    state: HeaderValue,
}

/// Limits whose recent values a thread keeps, each in the slot of its id (modulo).
const RECENT_SLOTS: usize = 8;

thread_local! {
    /// Each thread's recent values (`docs/design.md#http`). A limit far from its
    /// quota shows the same numbers request after request (a bucket that refills
    /// between requests is back at its burst): its value is then a clone, with no
    /// allocation. Clones of a thread's own values count their references on that
    /// thread's cache lines; a value shared by every thread would move its count
    /// between cores on every request.
    static RECENT: RefCell<[Option<Recent>; RECENT_SLOTS]> =
        const { RefCell::new([const { None }; RECENT_SLOTS]) };
}

impl OneLimit {
    pub(crate) fn new(limit: &LimitState<'_>) -> Self {
        let values = policy_value(limit, &[]).map(|policy| {
            let mut head = ValueBuf::<STACK>::new();
            limit.write_state_head(&mut head);
            (policy, head.as_bytes().into())
        });
        OneLimit {
            id: ONE_LIMIT_IDS.fetch_add(1, Ordering::Relaxed),
            quota: limit.quota,
            limit: limit.decision.limit,
            values,
        }
    }

    /// Whether these are `limit`'s values.
    #[inline]
    pub(crate) fn shows(&self, limit: &LimitState<'_>) -> bool {
        self.quota == limit.quota && self.limit == limit.decision.limit
    }

    /// [`rate_limit_values`] of `limit` alone, which [`Self::shows`]: this thread's
    /// recent values when the numbers are the same, else the head built once and the
    /// numbers written after it.
    #[inline]
    pub(crate) fn values(&self, limit: &LimitState<'_>, legacy: bool) -> RateLimitValues {
        let quota = self.values.as_ref().and_then(|(policy, head)| {
            let recent = RECENT
                .try_with(|recent| self.recent(&mut recent.borrow_mut(), limit, policy, head));
            // Only while the thread ends, when its values are gone: built anew.
            recent.unwrap_or_else(|_| Some((policy.clone(), state_value(head, limit)?)))
        });
        RateLimitValues {
            quota,
            legacy: legacy.then(|| legacy_values(limit, &[])).flatten(),
        }
    }

    #[inline]
    fn recent(
        &self,
        recent: &mut [Option<Recent>; RECENT_SLOTS],
        limit: &LimitState<'_>,
        policy: &HeaderValue,
        head: &[u8],
    ) -> Option<(HeaderValue, HeaderValue)> {
        let numbers = limit.state_numbers();
        // `as`: the slot is the id modulo the slots.
        let slot = &mut recent[self.id as usize % RECENT_SLOTS];
        match slot {
            Some(mine) if mine.id == self.id => {
                if mine.numbers != numbers {
                    mine.state = state_value(head, limit)?;
                    mine.numbers = numbers;
                }
                Some((mine.policy.clone(), mine.state.clone()))
            }
            _ => {
                let mine = slot.insert(Recent {
                    id: self.id,
                    numbers,
                    // This thread's own copy (see `RECENT`).
                    policy: HeaderValue::from_bytes(policy.as_bytes()).ok()?,
                    state: state_value(head, limit)?,
                });
                Some((mine.policy.clone(), mine.state.clone()))
            }
        }
    }
}

/// The `RateLimit` value of `limit`, after its `head`: the numbers on the stack, the
/// value allocated once, exactly sized.
fn state_value(head: &[u8], limit: &LimitState<'_>) -> Option<HeaderValue> {
    let mut tail = ValueBuf::<TAIL>::new();
    limit.write_state_tail(&mut tail);
    let tail = tail.as_bytes();
    let mut state = Vec::with_capacity(head.len() + tail.len());
    state.extend_from_slice(head);
    state.extend_from_slice(tail);
    // Exactly sized: `Bytes` takes the vector as it is.
    HeaderValue::from_maybe_shared(Bytes::from(state)).ok()
}

/// The headers of `main` (the refusing or tightest limit) and `others`, in that
/// order in the lists; `legacy` adds `X-RateLimit-*`. `Retry-After` is `main`'s,
/// when it refused.
pub fn rate_limit_headers(
    main: &LimitState<'_>,
    others: &[LimitState<'_>],
    legacy: bool,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    rate_limit_values(main, others, legacy).add_to(&mut headers);
    if !main.allowed {
        headers.insert(RETRY_AFTER, HeaderValue::from(main.retry_after()));
    }
    headers
}

/// The headers of [`rate_limit_headers`] but `Retry-After`, as values: the layer adds
/// an admitted request's to its response without building a map.
#[derive(Debug, Default)]
pub(crate) struct RateLimitValues {
    /// `RateLimit-Policy` and `RateLimit`; none when no limit's quota is known.
    quota: Option<(HeaderValue, HeaderValue)>,
    /// `X-RateLimit-Limit`, `-Remaining`, `-Reset`. Boxed: rarely asked for, and the
    /// layer's future carries these values.
    legacy: Option<Box<[HeaderValue; 3]>>,
}

const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const LEGACY: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit"),
    HeaderName::from_static("x-ratelimit-remaining"),
    HeaderName::from_static("x-ratelimit-reset"),
];

/// [`rate_limit_headers`] without `Retry-After`: the one implementation of the
/// quota headers, which the layer also adds to an admitted response (a route of one
/// limit through [`OneLimit`], which builds the same values).
pub(crate) fn rate_limit_values(
    main: &LimitState<'_>,
    others: &[LimitState<'_>],
    legacy: bool,
) -> RateLimitValues {
    let policies = policy_value(main, others);
    let states = list(quoted(main, others), LimitState::write_state_item);
    let quota = policies.zip(states);
    let legacy = legacy.then(|| legacy_values(main, others)).flatten();
    RateLimitValues { quota, legacy }
}

/// `RateLimit-Policy` alone. It depends on the limits' configuration only (name,
/// quota, window), so the layer builds a route's once ([`OneLimit`]).
fn policy_value(main: &LimitState<'_>, others: &[LimitState<'_>]) -> Option<HeaderValue> {
    list(quoted(main, others), LimitState::write_policy_item)
}

/// `X-RateLimit-Limit`, `-Remaining` and `-Reset` of the first limit on a rate.
fn legacy_values(
    main: &LimitState<'_>,
    others: &[LimitState<'_>],
) -> Option<Box<[HeaderValue; 3]>> {
    let first = quoted(main, others).find(|limit| matches!(limit.quota, Quota::Rate { .. }))?;
    Some(Box::new([
        HeaderValue::from(first.quota_units()),
        HeaderValue::from(first.remaining()),
        HeaderValue::from(reset_at(first.reset_in())),
    ]))
}

/// The limits shown in the quota headers, in order: those whose quota is known.
fn quoted<'a, 'b>(
    main: &'a LimitState<'b>,
    others: &'a [LimitState<'b>],
) -> impl Iterator<Item = &'a LimitState<'b>> {
    std::iter::once(main)
        .chain(others)
        .filter(|limit| limit.quota != Quota::Unknown)
}

/// The items of `limits`, comma-separated, or `None` for no limit. Every value built
/// here is visible ASCII (`push_sf_string` drops anything else), so the conversion
/// cannot fail; if it ever did, the header is left out.
fn list<'a, 'b: 'a>(
    limits: impl Iterator<Item = &'a LimitState<'b>>,
    item: impl Fn(&LimitState<'b>, &mut ValueBuf),
) -> Option<HeaderValue> {
    let mut buf = ValueBuf::<STACK>::new();
    for limit in limits {
        if !buf.is_empty() {
            buf.push_str(", ");
        }
        item(limit, &mut buf);
    }
    (!buf.is_empty()).then(|| buf.value()).flatten()
}

impl RateLimitValues {
    /// Adds these headers to `headers`, keeping any it already has (a header the
    /// service set itself wins).
    pub(crate) fn add_to(self, headers: &mut HeaderMap) {
        if let Some((policy, state)) = self.quota {
            headers.entry(RATELIMIT_POLICY).or_insert(policy);
            headers.entry(RATELIMIT).or_insert(state);
        }
        if let Some(legacy) = self.legacy {
            for (name, value) in LEGACY.into_iter().zip(*legacy) {
                headers.entry(name).or_insert(value);
            }
        }
    }
}

/// Python's `math.ceil(seconds - 1e-9)`, never below zero: a float a hair over a
/// whole second is not another second.
fn ceil_seconds(seconds: f64) -> u64 {
    // `as` saturates: NaN and negatives give 0, huge values `u64::MAX`.
    (seconds - 1e-9).ceil() as u64
}

/// How far past a whole second a reset may be read and still name that second: the
/// time from the decision (which measured `seconds`) to its headers.
const RESET_SLACK_SECONDS: f64 = 0.01;

/// The Unix time, rounded up, `seconds` from now. `seconds` was measured when the
/// limit decided, a moment ago: a reset that lands less than [`RESET_SLACK_SECONDS`]
/// past a whole second is that second, so that a fixed window, which resets on one
/// (`docs/design.md#fixed-windows`), shows it (a daily quota resets at midnight,
/// not a second later).
fn reset_at(seconds: f64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    (now.as_secs_f64() + seconds.max(0.0) - RESET_SLACK_SECONDS).ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeniedBy;

    fn decision(allowed: bool, limit: u64, remaining: u64, retry: f64, reset: f64) -> Decision {
        let (retry, reset) = (
            Duration::from_secs_f64(retry),
            Duration::from_secs_f64(reset),
        );
        match allowed {
            true => Decision::admitting(limit, remaining, reset),
            false => Decision::refusing(DeniedBy::Rate, limit, remaining, retry, reset),
        }
    }

    /// A rate limit whose quota is `d`'s limit per `window` seconds.
    fn state(policy: &str, allowed: bool, d: Decision, window: f64) -> LimitState<'_> {
        LimitState {
            policy,
            allowed,
            quota: Quota::Rate {
                units: d.limit,
                window,
            },
            decision: d,
        }
    }

    #[test]
    fn admitted_and_refused_values_match_the_python_helper() {
        let admitted = state("api", true, decision(true, 10, 7, 0.0, 2.5), 10.0 / 3.0);
        let h = rate_limit_headers(&admitted, &[], false);
        assert_eq!(h["ratelimit-policy"], "\"api\";q=10;w=4");
        assert_eq!(h["ratelimit"], "\"api\";r=7;t=3");
        assert!(h.get("retry-after").is_none() && h.get("x-ratelimit-limit").is_none());

        let refused = state("login", false, decision(false, 5, 2, 0.2, 9.0), 60.0);
        let h = rate_limit_headers(&refused, &[admitted], true);
        assert_eq!(h["retry-after"], "1", "at least one second");
        assert_eq!(h["ratelimit"], "\"login\";r=0;t=1, \"api\";r=7;t=3");
        assert_eq!(
            h["ratelimit-policy"],
            "\"login\";q=5;w=60, \"api\";q=10;w=4"
        );
        assert_eq!(h["x-ratelimit-limit"], "5");
        assert_eq!(h["x-ratelimit-remaining"], "0");
    }

    #[test]
    fn a_concurrency_cap_is_a_concurrent_requests_quota() {
        let slots = LimitState {
            policy: "uploads",
            allowed: false,
            decision: decision(false, 3, 0, 0.0, 0.0),
            quota: Quota::Concurrency,
        };
        let h = rate_limit_headers(&slots, &[], true);
        assert_eq!(
            h["ratelimit-policy"],
            "\"uploads\";q=3;qu=\"concurrent-requests\""
        );
        assert_eq!(h["ratelimit"], "\"uploads\";r=0");
        assert_eq!(
            h["retry-after"], "1",
            "a short hint, not a lease's lifetime"
        );
        assert!(h.get("x-ratelimit-limit").is_none(), "no rate to describe");
    }

    #[test]
    fn a_limit_of_unknown_quota_shows_only_its_retry_after() {
        let unknown = LimitState {
            policy: "hand-made",
            allowed: false,
            decision: decision(false, 3, 0, 4.2, 0.0),
            quota: Quota::Unknown,
        };
        let h = rate_limit_headers(&unknown, &[], true);
        assert_eq!(h.len(), 1);
        assert_eq!(h["retry-after"], "5");
        let api = state("api", true, decision(true, 10, 7, 0.0, 2.5), 0.0);
        let h = rate_limit_headers(&unknown, std::slice::from_ref(&api), true);
        assert_eq!(
            h["ratelimit-policy"], "\"api\";q=10",
            "no window known: no w"
        );
        assert_eq!(h["ratelimit"], "\"api\";r=7;t=3");
        assert_eq!(h["x-ratelimit-remaining"], "7");
        assert_eq!(h["retry-after"], "5", "the refusing limit's");
    }

    #[test]
    fn seconds_round_up_and_reset_at_is_a_unix_time() {
        let refused = state(
            "w",
            false,
            decision(false, 5, 0, 2.000_000_000_5, 9.0),
            60.0,
        );
        assert_eq!((refused.retry_after(), refused.reset_seconds()), (2, 2));
        let admitted = state("w", true, decision(true, 5, 4, 0.0, 0.0), 60.0);
        assert_eq!((admitted.retry_after(), admitted.reset_seconds()), (1, 0));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!((now + 2..=now + 4).contains(&refused.reset_at()));
    }

    #[test]
    fn a_reset_on_a_whole_second_is_that_second() {
        // A fixed window decided a moment ago that it ends on a whole second: the
        // headers, made later, still name that second, not the next.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let end = now.ceil() + 5.0;
        let admitted = state("w", true, decision(true, 5, 4, 0.0, end - now), 86_400.0);
        assert_eq!(admitted.reset_at(), end as u64);
    }

    #[test]
    fn one_limit_values_are_the_general_ones() {
        let values = |v: RateLimitValues| {
            let mut headers = HeaderMap::new();
            v.add_to(&mut headers);
            headers
        };
        let first = state("a\"pi", true, decision(true, 10, 7, 0.0, 2.5), 10.0);
        let one = OneLimit::new(&first);
        let other = OneLimit::new(&state("b", true, decision(true, 5, 4, 0.0, 1.0), 1.0));
        // Numbers that change, come back, and interleave with another limit's, as
        // each thread's recent values see them.
        for (remaining, reset) in [(7, 2.5), (7, 2.5), (6, 2.5), (6, 0.0), (7, 2.5), (9, 0.5)] {
            let now = state(
                "a\"pi",
                true,
                decision(true, 10, remaining, 0.0, reset),
                10.0,
            );
            assert!(one.shows(&now));
            for legacy in [false, true] {
                let mut expected = values(rate_limit_values(&now, &[], legacy));
                let mut got = values(one.values(&now, legacy));
                for headers in [&mut expected, &mut got] {
                    // A Unix time, read at two moments.
                    headers.remove("x-ratelimit-reset");
                }
                assert_eq!(got, expected, "r={remaining} t={reset} legacy={legacy}");
            }
            let o = state("b", true, decision(true, 5, remaining % 5, 0.0, 1.0), 1.0);
            assert_eq!(
                values(other.values(&o, false)),
                values(rate_limit_values(&o, &[], false))
            );
        }
        let cap = LimitState {
            policy: "uploads",
            allowed: true,
            decision: decision(true, 3, 2, 0.0, 0.0),
            quota: Quota::Concurrency,
        };
        assert_eq!(
            values(OneLimit::new(&cap).values(&cap, false)),
            values(rate_limit_values(&cap, &[], false))
        );
        assert!(!one.shows(&state("a\"pi", true, decision(true, 20, 7, 0.0, 2.5), 10.0)));
    }

    #[test]
    fn policy_names_are_escaped() {
        let mut quoted = ValueBuf::<STACK>::new();
        quoted.push_sf_string("a\"b\\c\u{e9}\n");
        assert_eq!(quoted.as_bytes(), b"\"a\\\"b\\\\c\"");
    }
}
