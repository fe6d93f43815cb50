//! The calls of the package, one native entry per operation: acquire, attempt,
//! state, reset and acquire_all. Each runs through [`crate::bridge::run`]: decided
//! at once when the store answers at once (the memory engine decides on the calling
//! thread, no hop), else on the extension's runtime, as a future (`Pending`) of the
//! caller's running loop (`on_loop`) or blocking the calling thread with the GIL
//! released (the sync API).

use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::PyList;
use ratesync::{AcquireAllError, AcquireError, Limiter, Rule};

use crate::bridge::FirstPoll;
use crate::counters::{Count, Counters};
use crate::errors;
use crate::registry;
use crate::types::{Decision, Permit};

/// One limiter of a private registry: what an engine class (`MemoryRateLimiter`,
/// `RedisRateLimiter`) constructed directly by code written for rate-sync decides
/// with. Every call below accepts it in place of a limiter name.
#[pyclass(frozen, module = "ratesync._native")]
pub(crate) struct LimiterHandle {
    limiter: Limiter,
}

/// The limiter named by `target` (a `str`, looked up in the shared registry) or held
/// by it (a `LimiterHandle`).
fn resolve(target: &Bound<'_, PyAny>) -> PyResult<Limiter> {
    if let Ok(handle) = target.cast::<LimiterHandle>() {
        return Ok(handle.get().limiter.clone());
    }
    let name: pyo3::pybacked::PyBackedStr = target.extract()?;
    registry::limiter(&name)
}

/// A limiter `name` on a store of its own (`engine` with `store_options`), in a
/// registry of its own: nothing is added to the shared configuration.
#[pyfunction]
fn private_limiter(
    name: &str,
    engine: &str,
    store_options: &Bound<'_, pyo3::types::PyDict>,
    limiter_options: &Bound<'_, pyo3::types::PyDict>,
) -> PyResult<LimiterHandle> {
    let limiter = registry::private_limiter(name, engine, store_options, limiter_options)?;
    Ok(LimiterHandle { limiter })
}

fn wait_bound(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    timeout
        .map(|t| {
            Duration::try_from_secs_f64(t).map_err(|_| {
                errors::config_error(&format!(
                    "timeout must be a number of seconds >= 0, got {t}"
                ))
            })
        })
        .transpose()
}

/// The permit of a call of `cost` on a limiter whose rule is `rule`, or its
/// failure as an exception; counted in `count` when given (`waited`: with the time
/// the call took as its wait).
fn permit(
    py: Python<'_>,
    result: Result<ratesync::Permit, AcquireError>,
    rule: Option<Rule>,
    cost: u32,
    count: Option<&Count>,
    waited: bool,
) -> PyResult<Py<PyAny>> {
    match result {
        Ok(permit) => {
            if let Some(count) = count {
                count.admitted(py, &permit, waited);
            }
            Ok(Py::new(py, Permit::new(permit, rule.as_ref(), Some(cost)))?.into_any())
        }
        Err(error) => {
            if let Some(count) = count {
                count.failed(py, &error);
            }
            Err(errors::from_acquire(&error))
        }
    }
}

/// The same for an attempt (its admission counts no wait), with a refusal as `None`.
fn permit_or_refusal(
    py: Python<'_>,
    result: Result<ratesync::Permit, AcquireError>,
    rule: Option<Rule>,
    cost: u32,
    count: Option<&Count>,
) -> PyResult<Py<PyAny>> {
    match result {
        Err(error @ AcquireError::Denied { .. }) => {
            if let Some(count) = count {
                count.failed(py, &error);
            }
            Ok(py.None())
        }
        other => permit(py, other, rule, cost, count, false),
    }
}

/// What `metrics` (a limiter's `Counters`, or none) counts of a call starting now.
fn count_in(metrics: Option<Py<Counters>>, slot: bool) -> Option<Count> {
    metrics.map(|counters| Count {
        counters,
        slot,
        started: Instant::now(),
    })
}

/// Waits for a permit (timeout `None` = the limiter's own): a `Permit`, or an asyncio
/// future of one. Every call is settleable: a Python caller that estimated its cost
/// settles it on the permit, and the cost of that (the permit keeps its limiter and
/// key) is nothing beside a Python call (`docs/design.md#settle`). A wait that the
/// store says cannot succeed in time is waited out, re-trying, as rate-sync's
/// `try_acquire(timeout)` does (`Call::wait_out_timeout`); a zero timeout is one
/// attempt. Counted in `metrics` (a limiter's `Counters`), when given, as rate-sync
/// counts; `slot`: count the concurrency slot taken (where its release is counted).
#[pyfunction]
#[pyo3(signature = (on_loop, limiter_id, key, cost, timeout, metrics=None, slot=true))]
#[allow(clippy::too_many_arguments)]
fn acquire(
    py: Python<'_>,
    on_loop: bool,
    limiter_id: &Bound<'_, PyAny>,
    key: String,
    cost: u32,
    timeout: Option<f64>,
    metrics: Option<Py<Counters>>,
    slot: bool,
) -> PyResult<Py<PyAny>> {
    let count = count_in(metrics, slot);
    let limiter = resolve(limiter_id)?;
    let rule = limiter.policy().rule;
    let bound = wait_bound(timeout)?;
    let first_poll = FirstPoll::of(&limiter);
    let work = async move {
        let call = limiter.key(&key).cost(cost).settleable().wait_out_timeout();
        match timeout {
            Some(_) => call.timeout(bound).acquire().await,
            None => call.acquire().await,
        }
    };
    crate::bridge::run(py, on_loop, first_poll, work, move |py, result| {
        permit(py, result, rule, cost, count.as_ref(), true)
    })
}

/// One attempt: a `Permit` (settleable, as for `acquire`), `None` when refused, or
/// a future (`Pending`) of either. Counted in `metrics` as `acquire` counts (a refusal
/// as a timeout, as rate-sync's `try_acquire` counts it).
#[pyfunction]
#[pyo3(signature = (on_loop, limiter_id, key, cost, metrics=None, slot=true))]
fn attempt(
    py: Python<'_>,
    on_loop: bool,
    limiter_id: &Bound<'_, PyAny>,
    key: String,
    cost: u32,
    metrics: Option<Py<Counters>>,
    slot: bool,
) -> PyResult<Py<PyAny>> {
    let count = count_in(metrics, slot);
    let limiter = resolve(limiter_id)?;
    let rule = limiter.policy().rule;
    let first_poll = FirstPoll::of(&limiter);
    let work = async move {
        let call = limiter.key(&key).cost(cost).settleable();
        call.try_acquire().await
    };
    crate::bridge::run(py, on_loop, first_poll, work, move |py, result| {
        permit_or_refusal(py, result, rule, cost, count.as_ref())
    })
}

/// The decision an attempt would get now, consuming nothing: a `Decision`, or a
/// future (`Pending`) of one.
#[pyfunction]
#[pyo3(signature = (on_loop, limiter_id, key, cost))]
fn state(
    py: Python<'_>,
    on_loop: bool,
    limiter_id: &Bound<'_, PyAny>,
    key: String,
    cost: u32,
) -> PyResult<Py<PyAny>> {
    let limiter = resolve(limiter_id)?;
    let rule = limiter.policy().rule;
    let first_poll = FirstPoll::of(&limiter);
    let work = async move { limiter.key(&key).cost(cost).state().await };
    crate::bridge::run(
        py,
        on_loop,
        first_poll,
        work,
        move |py, result| match result {
            Ok(d) => Ok(Py::new(py, Decision::new(&d, rule.as_ref()))?.into_any()),
            Err(error) => Err(errors::from_acquire(&error)),
        },
    )
}

/// Forgets the state of one key (`key`) or of every key (`None`).
#[pyfunction]
#[pyo3(signature = (on_loop, limiter_id, key))]
fn reset(
    py: Python<'_>,
    on_loop: bool,
    limiter_id: &Bound<'_, PyAny>,
    key: Option<String>,
) -> PyResult<Py<PyAny>> {
    let limiter = resolve(limiter_id)?;
    let first_poll = FirstPoll::of(&limiter);
    let work = async move {
        match key {
            Some(key) => limiter.key(&key).reset().await,
            None => limiter.reset().await,
        }
    };
    crate::bridge::run(py, on_loop, first_poll, work, |py, result| match result {
        Ok(()) => Ok(py.None()),
        Err(error) => Err(errors::from_acquire(&error)),
    })
}

/// What a group of calls got: every permit, or the refusal.
#[pyclass(frozen, module = "ratesync._native")]
pub(crate) struct GroupOutcome {
    /// Whether every call was admitted.
    #[pyo3(get)]
    admitted: bool,
    /// One `Permit` per call when admitted (empty otherwise).
    #[pyo3(get)]
    permits: Py<PyList>,
    /// One `Decision` (or `None`) per call: the permits' when admitted; the refusal
    /// for the refusing call and peeks for the others when refused.
    #[pyo3(get)]
    decisions: Py<PyList>,
    /// The refusing call, when refused.
    #[pyo3(get)]
    index: Option<usize>,
}

/// What a group got; `rules`: the rule of each call's limiter. Its permits cannot
/// settle (the core settles single calls).
fn group_outcome(
    py: Python<'_>,
    result: Result<Vec<ratesync::Permit>, AcquireAllError>,
    rules: &[Option<Rule>],
) -> PyResult<Py<PyAny>> {
    let outcome = match result {
        Ok(permits) => {
            let decisions: Vec<Decision> = permits
                .iter()
                .zip(rules)
                .map(|(p, rule)| Decision::new(p.decision(), rule.as_ref()))
                .collect();
            let permits = permits
                .into_iter()
                .zip(rules)
                .map(|(p, rule)| Py::new(py, Permit::new(p, rule.as_ref(), None)))
                .collect::<PyResult<Vec<_>>>()?;
            GroupOutcome {
                admitted: true,
                permits: PyList::new(py, permits)?.unbind(),
                decisions: PyList::new(py, decisions)?.unbind(),
                index: None,
            }
        }
        Err(refusal) if refusal.error.is_rate_limited() => {
            let decisions: Vec<Option<Decision>> = refusal
                .decisions
                .iter()
                .zip(rules)
                .map(|(d, rule)| d.as_ref().map(|d| Decision::new(d, rule.as_ref())))
                .collect();
            GroupOutcome {
                admitted: false,
                permits: PyList::empty(py).unbind(),
                decisions: PyList::new(py, decisions)?.unbind(),
                index: Some(refusal.index),
            }
        }
        Err(failure) => return Err(errors::from_acquire(&failure.error)),
    };
    Ok(Py::new(py, outcome)?.into_any())
}

/// Several calls (`(limiter, key, cost)` each) admitted all together or not at all
/// (`docs/design.md#groups`): one attempt when `wait` is false, else waiting up to
/// `timeout` (`None`: as long as it takes). A `GroupOutcome`, or a future (`Pending`)
/// of one; store failures of `fail_closed` limiters raise.
#[pyfunction]
#[pyo3(signature = (on_loop, calls, wait, timeout))]
fn acquire_all(
    py: Python<'_>,
    on_loop: bool,
    calls: Vec<(Bound<'_, PyAny>, String, u32)>,
    wait: bool,
    timeout: Option<f64>,
) -> PyResult<Py<PyAny>> {
    let calls: Vec<(Limiter, String, u32)> = calls
        .into_iter()
        .map(|(target, key, cost)| Ok((resolve(&target)?, key, cost)))
        .collect::<PyResult<_>>()?;
    let rules: Vec<Option<Rule>> = calls.iter().map(|(l, _, _)| l.policy().rule).collect();
    // A group that asks a store over the network starts on the runtime.
    let first_poll = match calls
        .iter()
        .all(|(limiter, _, _)| FirstPoll::of(limiter) == FirstPoll::Here)
    {
        true => FirstPoll::Here,
        false => FirstPoll::OnRuntime,
    };
    let bound = wait_bound(timeout)?;
    let work = async move {
        let calls: Vec<ratesync::Call<'_>> = calls
            .iter()
            .map(|(limiter, key, cost)| limiter.key(key).cost(*cost))
            .collect();
        match wait {
            false => ratesync::try_acquire_all(&calls).await,
            true => ratesync::acquire_all(&calls, bound).await,
        }
    };
    crate::bridge::run(py, on_loop, first_poll, work, move |py, result| {
        group_outcome(py, result, &rules)
    })
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(acquire, m)?)?;
    m.add_function(wrap_pyfunction!(attempt, m)?)?;
    m.add_function(wrap_pyfunction!(state, m)?)?;
    m.add_function(wrap_pyfunction!(reset, m)?)?;
    m.add_function(wrap_pyfunction!(acquire_all, m)?)?;
    m.add_function(wrap_pyfunction!(private_limiter, m)?)?;
    m.add_class::<LimiterHandle>()?;
    m.add_class::<GroupOutcome>()?;
    m.add_class::<crate::types::Ready>()?;
    Ok(())
}
