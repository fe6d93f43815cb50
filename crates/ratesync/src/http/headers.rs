//! The rate-limit headers of a response, from the limiters' real decisions.
//!
//! Byte for byte the headers of the Python `ratesync.contrib.fastapi.headers`, so a
//! client sees the same answer from either surface:
//!
//! - `RateLimit-Policy: "<policy>";q=<quota>;w=<window s>` and
//!   `RateLimit: "<policy>";r=<remaining>;t=<s>`, the structured-field lists of
//!   draft-ietf-httpapi-ratelimit-headers (one item per limit, the tightest first).
//!   `w` is the window of a sliding window, or `burst / rate` (the time to refill an
//!   empty bucket) for a token bucket. `t` is the time until the quota is available
//!   again (refused) or fully reset (admitted).
//! - `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (a Unix time),
//!   of the first limit listed; optional.
//! - `Retry-After` on a refusal: whole seconds, at least 1.
//!
//! Seconds are rounded up as Python's `ceil(x - 1e-9)`: the same float arithmetic
//! on the same numbers gives the same digits. A limiter that only caps concurrency
//! has no quota over time and appears in none of the quota headers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::Decision;

/// One limit, as the headers show it.
#[derive(Debug, Clone)]
pub(crate) struct LimitState<'a> {
    /// The policy name: the limiter's.
    pub policy: &'a str,
    pub allowed: bool,
    pub decision: Decision,
    /// The IETF policy window in seconds; `None` for concurrency only.
    pub window: Option<f64>,
    /// Whether the limit is on a rate (not only concurrency).
    pub quota: bool,
}

impl LimitState<'_> {
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
            self.decision.reset_after.as_secs_f64()
        } else {
            self.decision.retry_after.as_secs_f64()
        }
    }

    /// `Retry-After`: rounded up, at least 1.
    pub fn retry_after(&self) -> u64 {
        ceil_seconds(self.reset_in()).max(1)
    }

    /// The `t` of `RateLimit`.
    fn reset_seconds(&self) -> u64 {
        if self.allowed {
            ceil_seconds(self.reset_in())
        } else {
            self.retry_after()
        }
    }

    fn policy_item(&self) -> String {
        let mut item = format!("{};q={}", sf_string(self.policy), self.decision.limit);
        if let Some(window) = self.window.filter(|window| *window > 0.0) {
            item.push_str(&format!(";w={}", ceil_seconds(window).max(1)));
        }
        item
    }

    fn state_item(&self) -> String {
        format!(
            "{};r={};t={}",
            sf_string(self.policy),
            self.remaining(),
            self.reset_seconds()
        )
    }
}

/// The headers of `main` (the refusing or tightest limit) and `others`.
pub(crate) fn rate_limit_headers(
    main: &LimitState<'_>,
    others: &[LimitState<'_>],
    legacy: bool,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let quotas: Vec<&LimitState<'_>> = std::iter::once(main)
        .chain(others)
        .filter(|limit| limit.quota)
        .collect();
    if let Some(first) = quotas.first() {
        let policies = quotas.iter().map(|l| l.policy_item()).collect::<Vec<_>>();
        let states = quotas.iter().map(|l| l.state_item()).collect::<Vec<_>>();
        insert(&mut headers, "ratelimit-policy", policies.join(", "));
        insert(&mut headers, "ratelimit", states.join(", "));
        if legacy {
            insert(
                &mut headers,
                "x-ratelimit-limit",
                first.decision.limit.to_string(),
            );
            insert(
                &mut headers,
                "x-ratelimit-remaining",
                first.remaining().to_string(),
            );
            insert(
                &mut headers,
                "x-ratelimit-reset",
                reset_at(first.reset_in()).to_string(),
            );
        }
    }
    if !main.allowed {
        insert(&mut headers, "retry-after", main.retry_after().to_string());
    }
    headers
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: String) {
    // Every value built here is visible ASCII (`sf_string` drops anything else), so
    // the conversion cannot fail; if it ever did, the header is left out.
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

/// Python's `math.ceil(seconds - 1e-9)`, never below zero: a float a hair over a
/// whole second is not another second.
fn ceil_seconds(seconds: f64) -> u64 {
    // `as` saturates: NaN and negatives give 0, huge values `u64::MAX`.
    (seconds - 1e-9).ceil() as u64
}

/// The Unix time, rounded up, `seconds` from now.
fn reset_at(seconds: f64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    (now.as_secs_f64() + seconds.max(0.0)).ceil() as u64
}

/// A structured-field string (RFC 8941): quoted, `\` and `"` escaped, characters
/// outside printable ASCII dropped.
fn sf_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars().filter(|c| (' '..='~').contains(c)) {
        if c == '\\' || c == '"' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(allowed: bool, limit: u64, remaining: u64, retry: f64, reset: f64) -> Decision {
        Decision {
            allowed,
            denied_by: None,
            limit,
            remaining,
            retry_after: Duration::from_secs_f64(retry),
            reset_after: Duration::from_secs_f64(reset),
        }
    }

    fn state(policy: &str, allowed: bool, d: Decision, window: Option<f64>) -> LimitState<'_> {
        LimitState {
            policy,
            allowed,
            decision: d,
            window,
            quota: true,
        }
    }

    #[test]
    fn admitted_and_refused_values_match_the_python_helper() {
        let admitted = state(
            "api",
            true,
            decision(true, 10, 7, 0.0, 2.5),
            Some(10.0 / 3.0),
        );
        let h = rate_limit_headers(&admitted, &[], false);
        assert_eq!(h["ratelimit-policy"], "\"api\";q=10;w=4");
        assert_eq!(h["ratelimit"], "\"api\";r=7;t=3");
        assert!(h.get("retry-after").is_none() && h.get("x-ratelimit-limit").is_none());

        let refused = state("login", false, decision(false, 5, 2, 0.2, 9.0), Some(60.0));
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
    fn concurrency_only_limits_show_only_retry_after() {
        let mut only = state("slots", false, decision(false, 3, 0, 4.2, 0.0), None);
        only.quota = false;
        let h = rate_limit_headers(&only, &[], true);
        assert_eq!(h.len(), 1);
        assert_eq!(h["retry-after"], "5");
    }

    #[test]
    fn policy_names_are_escaped() {
        assert_eq!(sf_string("a\"b\\c\u{e9}\n"), "\"a\\\"b\\\\c\"");
    }
}
