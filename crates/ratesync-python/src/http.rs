//! The HTTP helpers of `ratesync.contrib.fastapi`, from the core's `ratesync::http`,
//! so that the FastAPI integration and the tower layer share one implementation:
//!
//! - [`TrustedProxies`] and [`client_ip`]: the client address of a request behind
//!   trusted proxies, from the ASGI scope's raw header bytes; [`validate_ip`].
//! - [`rate_limit_headers`] and [`rate_limit_times`]: the `RateLimit` headers of one
//!   or more limits and the numbers (`Retry-After`, ...) they show.
//!
//! Python's `ipaddress` keeps an IPv6 zone in an address's text (`fe80::1%eth0`,
//! how a link-local peer is reported); an `IpAddr` has no room for it, so the zone
//! is handled here, as `ipaddress` does, and given back on the peer's address.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use ratesync::http::{self as core, LimitState, Quota};
use ratesync::{Decision, DeniedBy};

/// Trusted proxy networks (CIDR strings), parsed by the core.
#[pyclass(frozen, module = "ratesync._native")]
pub(crate) struct TrustedProxies {
    inner: core::TrustedProxies,
    /// With `strict=False`: the entries that are not networks, left out.
    #[pyo3(get)]
    skipped: Vec<String>,
}

#[pymethods]
impl TrustedProxies {
    /// `TrustedProxies(networks, strict=True)`: a `ValueError` names the first entry
    /// that is not a network; with `strict=False` such entries are left out (and
    /// listed in `skipped`).
    #[new]
    #[pyo3(signature = (networks, strict = true))]
    fn new(networks: Vec<String>, strict: bool) -> PyResult<Self> {
        let (good, skipped): (Vec<String>, Vec<String>) = if strict {
            (networks, Vec::new())
        } else {
            networks
                .into_iter()
                .partition(|network| core::TrustedProxies::new([network]).is_ok())
        };
        let inner = core::TrustedProxies::new(&good).map_err(|error| {
            PyValueError::new_err(format!("invalid trusted proxy network: {error}"))
        })?;
        Ok(TrustedProxies { inner, skipped })
    }

    /// Whether nobody is trusted.
    fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Whether the address `ip` is in a trusted network (False for a non-address).
    fn __contains__(&self, ip: &str) -> bool {
        python_ip(ip).is_some_and(|(ip, _)| self.inner.contains(ip))
    }
}

/// The trusted networks of a call: a `TrustedProxies`, or a list of network strings
/// (parsed strictly).
#[derive(FromPyObject)]
enum Trusted<'py> {
    Parsed(Bound<'py, TrustedProxies>),
    Networks(Vec<String>),
}

/// The client address of a request from `peer` (its direct peer's address text) with
/// header lines `headers` (`(name, value)` pairs of bytes, as in an ASGI scope, or of
/// str taken as Latin-1), believing forwarding headers only from `trusted` proxies.
/// `None` when `peer` is not an address.
#[pyfunction]
fn client_ip(
    peer: &str,
    headers: &Bound<'_, PyAny>,
    trusted: Trusted<'_>,
) -> PyResult<Option<String>> {
    let Some((peer_ip, _)) = python_ip(peer) else {
        return Ok(None);
    };
    let owned;
    let trusted = match &trusted {
        Trusted::Parsed(parsed) => &parsed.get().inner,
        Trusted::Networks(networks) => {
            owned = TrustedProxies::new(networks.clone(), true)?.inner;
            &owned
        }
    };
    // The lines are copied out of Python only when the core would read them.
    let client = if trusted.contains(peer_ip) {
        let mut lines = Vec::new();
        for line in headers.try_iter()? {
            let line = line?;
            lines.push((
                header_bytes(&line.get_item(0)?)?,
                header_bytes(&line.get_item(1)?)?,
            ));
        }
        let lines = lines
            .iter()
            .map(|(name, value)| (name.as_slice(), value.as_slice()));
        core::client_ip_from_lines(peer_ip, lines, trusted)
    } else {
        peer_ip
    };
    // The peer itself keeps its text (and so its zone), as Python's `ipaddress` gives it.
    Ok(Some(if client == peer_ip {
        validate_ip(peer).unwrap_or_else(|| client.to_string())
    } else {
        client.to_string()
    }))
}

/// A header name or value as bytes: bytes as they are, a str as Latin-1 (a character
/// beyond Latin-1 cannot come from a header; it is kept as UTF-8, which leaves its
/// node unusable, as the character itself would).
fn header_bytes(part: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(bytes) = part.cast::<PyBytes>() {
        return Ok(bytes.as_bytes().to_vec());
    }
    let text = part.cast::<PyString>()?.to_cow()?;
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match u8::try_from(c) {
            Ok(byte) => out.push(byte),
            Err(_) => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    Ok(out)
}

/// The normalized address `text` holds (`ipaddress.ip_address(text.strip())` as a
/// string, an IPv4-mapped address as its IPv4 address), or `None`.
#[pyfunction]
fn validate_ip(text: &str) -> Option<String> {
    let (ip, zone) = python_ip(text)?;
    Some(match zone {
        Some(zone) => format!("{ip}%{zone}"),
        None => ip.to_string(),
    })
}

/// The address of `text` and, for an IPv6 address with a zone (`fe80::1%eth0`), the
/// zone, by the rules of Python's `ipaddress`: the zone is anything non-empty without
/// another `%`, and an IPv4-mapped address drops it with the rest of its IPv6 form.
fn python_ip(text: &str) -> Option<(IpAddr, Option<&str>)> {
    let Some(percent) = text.find('%') else {
        return core::parse_ip(text).map(|ip| (ip, None));
    };
    // `parse_ip` on the text with the zone swapped out, so that whitespace is
    // stripped at the ends of the whole text only, as `text.strip()` does.
    let (head, zone_and_tail) = (&text[..percent], &text[percent + 1..]);
    let tail_len = zone_and_tail.len() - zone_and_tail.trim_end_matches(is_py_space).len();
    let zone = &zone_and_tail[..zone_and_tail.len() - tail_len];
    if zone.is_empty() || zone.contains('%') || head.ends_with(is_py_space) {
        return None;
    }
    let address: Ipv6Addr = head.trim_start_matches(is_py_space).parse().ok()?;
    match IpAddr::V6(address).to_canonical() {
        ip @ IpAddr::V4(_) => Some((ip, None)),
        ip => Some((ip, Some(zone))),
    }
}

/// What Python's `str.strip()` removes (as the core reads header text).
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// One limit as Python passes it: `(policy, allowed, limit, remaining, retry_after,
/// reset_after, quota_unit, window)`, seconds as floats; `quota_unit` is
/// `"requests"` (a rate, with its `window` if known), `"concurrent-requests"` (a
/// cap) or `None` (no quota known).
#[derive(FromPyObject)]
struct PyLimit(
    String,
    bool,
    i64,
    i64,
    f64,
    f64,
    Option<String>,
    Option<f64>,
);

impl PyLimit {
    fn state(&self) -> PyResult<LimitState<'_>> {
        let PyLimit(policy, allowed, limit, remaining, retry_after, reset_after, unit, window) =
            self;
        let quota = match unit.as_deref() {
            Some("requests") => Quota::Rate {
                units: u64::try_from(*limit).unwrap_or(0),
                window: window.unwrap_or(0.0),
            },
            Some("concurrent-requests") => Quota::Concurrency,
            None => Quota::Unknown,
            Some(other) => return Err(unknown_unit(other)),
        };
        let (limit, remaining) = (
            u64::try_from(*limit).unwrap_or(0),
            u64::try_from(*remaining).unwrap_or(0),
        );
        let decision = match (*allowed, quota) {
            (true, _) => Decision::admitting(limit, remaining, seconds(*reset_after)),
            (false, Quota::Concurrency) => Decision::refusing(
                DeniedBy::Concurrency,
                limit,
                remaining,
                seconds(*retry_after),
                seconds(*reset_after),
            ),
            (false, _) => Decision::refusing(
                DeniedBy::Rate,
                limit,
                remaining,
                seconds(*retry_after),
                seconds(*reset_after),
            ),
        };
        Ok(LimitState {
            policy,
            allowed: *allowed,
            decision,
            quota,
        })
    }
}

fn unknown_unit(unit: &str) -> PyErr {
    let expected = "\"requests\", \"concurrent-requests\" or None";
    PyValueError::new_err(format!("quota_unit must be {expected}, not {unit:?}"))
}

/// Seconds as a duration: nothing for NaN and negatives, the longest for the huge.
fn seconds(value: f64) -> Duration {
    if value.is_nan() || value <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(value).unwrap_or(Duration::MAX)
}

/// The headers' names as the Python integration has always spelled them, in order.
const NAMES: [(&str, &str); 6] = [
    ("ratelimit-policy", "RateLimit-Policy"),
    ("ratelimit", "RateLimit"),
    ("x-ratelimit-limit", "X-RateLimit-Limit"),
    ("x-ratelimit-remaining", "X-RateLimit-Remaining"),
    ("x-ratelimit-reset", "X-RateLimit-Reset"),
    ("retry-after", "Retry-After"),
];

/// The rate-limit headers of `limits` (the first is the main one: the refusing or
/// tightest limit), as `{name: value}`; `legacy` adds `X-RateLimit-*`.
#[pyfunction]
#[pyo3(signature = (limits, legacy = true))]
fn rate_limit_headers<'py>(
    py: Python<'py>,
    limits: Vec<PyLimit>,
    legacy: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let states = limits
        .iter()
        .map(PyLimit::state)
        .collect::<PyResult<Vec<_>>>()?;
    let out = PyDict::new(py);
    let Some((main, others)) = states.split_first() else {
        return Ok(out);
    };
    let headers = core::rate_limit_headers(main, others, legacy);
    for (lower, name) in NAMES {
        if let Some(value) = headers.get(lower) {
            out.set_item(name, String::from_utf8_lossy(value.as_bytes()))?;
        }
    }
    // A header the table does not know yet is not lost.
    for (name, value) in &headers {
        if !NAMES.iter().any(|(lower, _)| *lower == name.as_str()) {
            out.set_item(name.as_str(), String::from_utf8_lossy(value.as_bytes()))?;
        }
    }
    Ok(out)
}

/// `(retry_after, reset_seconds, reset_at)` of one limit: `Retry-After`, the `t` of
/// `RateLimit` and `X-RateLimit-Reset`, as the headers show them.
#[pyfunction]
fn rate_limit_times(limit: PyLimit) -> PyResult<(u64, u64, u64)> {
    let state = limit.state()?;
    Ok((state.retry_after(), state.reset_seconds(), state.reset_at()))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TrustedProxies>()?;
    m.add_function(wrap_pyfunction!(client_ip, m)?)?;
    m.add_function(wrap_pyfunction!(validate_ip, m)?)?;
    m.add_function(wrap_pyfunction!(rate_limit_headers, m)?)?;
    m.add_function(wrap_pyfunction!(rate_limit_times, m)?)?;
    Ok(())
}
