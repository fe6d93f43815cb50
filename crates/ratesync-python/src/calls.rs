//! Acquire, try and peek. Memory-engine limiters decide synchronously on the calling
//! thread (`Call::try_acquire_local`, no thread hop); network engines run on the
//! extension's runtime: as an asyncio future for coroutines, or blocking the calling
//! thread with the GIL released for the sync API.

use std::time::Duration;

use pyo3::prelude::*;
use ratesync::{AcquireError, Limiter};

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

/// Forgets the state of one key (`key`) or of every key (`None`): an asyncio future.
#[pyfunction]
#[pyo3(signature = (bridge, limiter_id, key))]
fn reset_async<'py>(
    bridge: &Bound<'py, crate::bridge::LoopBridge>,
    limiter_id: &Bound<'py, PyAny>,
    key: Option<String>,
) -> PyResult<Bound<'py, PyAny>> {
    let limiter = resolve(limiter_id)?;
    crate::bridge::spawn(
        bridge,
        async move {
            match key {
                Some(key) => limiter.key(&key).reset().await,
                None => limiter.reset().await,
            }
        },
        |py, result: Result<(), AcquireError>| match result {
            Ok(()) => Ok(py.None()),
            Err(error) => Err(errors::from_acquire(&error)),
        },
    )
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

fn permit(py: Python<'_>, result: Result<ratesync::Permit, AcquireError>) -> PyResult<Py<PyAny>> {
    match result {
        Ok(permit) => Ok(Py::new(py, Permit::new(permit))?.into_any()),
        Err(error) => Err(errors::from_acquire(&error)),
    }
}

/// A refusal as `None`, other failures as exceptions.
fn permit_or_none(
    py: Python<'_>,
    result: Result<ratesync::Permit, AcquireError>,
) -> PyResult<Py<PyAny>> {
    match result {
        Err(AcquireError::Denied { .. }) => Ok(py.None()),
        other => permit(py, other),
    }
}

/// One synchronous attempt on a local limiter: a `Permit`, or `None` when refused or
/// when the limiter's engine is remote (then use an async or blocking call).
#[pyfunction]
#[pyo3(signature = (limiter_id, key, cost))]
fn attempt_local(
    py: Python<'_>,
    limiter_id: &Bound<'_, PyAny>,
    key: &str,
    cost: u32,
) -> PyResult<Py<PyAny>> {
    let limiter = resolve(limiter_id)?;
    let _runtime = crate::runtime::handle().enter();
    match limiter.key(key).cost(cost).try_acquire_local() {
        Some(result) => permit_or_none(py, result),
        None => Ok(py.None()),
    }
}

/// Waits for a permit (timeout `None` = the limiter's own): an asyncio future.
#[pyfunction]
#[pyo3(signature = (bridge, limiter_id, key, cost, timeout))]
fn acquire_async<'py>(
    bridge: &Bound<'py, crate::bridge::LoopBridge>,
    limiter_id: &Bound<'py, PyAny>,
    key: String,
    cost: u32,
    timeout: Option<f64>,
) -> PyResult<Bound<'py, PyAny>> {
    let limiter = resolve(limiter_id)?;
    let bound = wait_bound(timeout)?;
    crate::bridge::spawn(
        bridge,
        async move { acquire(&limiter, &key, cost, timeout.map(|_| bound)).await },
        permit,
    )
}

/// One attempt: an asyncio future of a `Permit` or `None` when refused.
#[pyfunction]
#[pyo3(signature = (bridge, limiter_id, key, cost))]
fn attempt_async<'py>(
    bridge: &Bound<'py, crate::bridge::LoopBridge>,
    limiter_id: &Bound<'py, PyAny>,
    key: String,
    cost: u32,
) -> PyResult<Bound<'py, PyAny>> {
    let limiter = resolve(limiter_id)?;
    crate::bridge::spawn(
        bridge,
        async move { limiter.key(&key).cost(cost).try_acquire().await },
        permit_or_none,
    )
}

/// The decision an attempt would get now, consuming nothing: an asyncio future.
#[pyfunction]
#[pyo3(signature = (bridge, limiter_id, key, cost))]
fn state_async<'py>(
    bridge: &Bound<'py, crate::bridge::LoopBridge>,
    limiter_id: &Bound<'py, PyAny>,
    key: String,
    cost: u32,
) -> PyResult<Bound<'py, PyAny>> {
    let limiter = resolve(limiter_id)?;
    crate::bridge::spawn(
        bridge,
        async move { limiter.key(&key).cost(cost).state().await },
        decision,
    )
}

fn decision(
    py: Python<'_>,
    result: Result<ratesync::Decision, AcquireError>,
) -> PyResult<Py<PyAny>> {
    match result {
        Ok(d) => Ok(Py::new(py, Decision::from(&d))?.into_any()),
        Err(error) => Err(errors::from_acquire(&error)),
    }
}

async fn acquire(
    limiter: &Limiter,
    key: &str,
    cost: u32,
    timeout: Option<Option<Duration>>,
) -> Result<ratesync::Permit, AcquireError> {
    let call = limiter.key(key).cost(cost);
    match timeout {
        Some(bound) => call.timeout(bound).acquire().await,
        None => call.acquire().await,
    }
}

/// Waits for a permit on the calling thread, with the GIL released.
#[pyfunction]
#[pyo3(signature = (limiter_id, key, cost, timeout))]
fn acquire_blocking(
    py: Python<'_>,
    limiter_id: &Bound<'_, PyAny>,
    key: &str,
    cost: u32,
    timeout: Option<f64>,
) -> PyResult<Py<PyAny>> {
    let limiter = resolve(limiter_id)?;
    let bound = wait_bound(timeout)?;
    let handle = crate::runtime::handle();
    let local = {
        let _runtime = handle.enter();
        limiter.key(key).cost(cost).try_acquire_local()
    };
    if let Some(Ok(admitted)) = local {
        return permit(py, Ok(admitted));
    }
    let result =
        py.detach(|| handle.block_on(acquire(&limiter, key, cost, timeout.map(|_| bound))));
    permit(py, result)
}

/// One attempt on the calling thread: a `Permit` or `None` when refused.
#[pyfunction]
#[pyo3(signature = (limiter_id, key, cost))]
fn attempt_blocking(
    py: Python<'_>,
    limiter_id: &Bound<'_, PyAny>,
    key: &str,
    cost: u32,
) -> PyResult<Py<PyAny>> {
    let limiter = resolve(limiter_id)?;
    let handle = crate::runtime::handle();
    let call = limiter.key(key).cost(cost);
    let local = {
        let _runtime = handle.enter();
        call.try_acquire_local()
    };
    let result = match local {
        Some(result) => result,
        None => py.detach(|| handle.block_on(call.try_acquire())),
    };
    permit_or_none(py, result)
}

/// The current decision on the calling thread, consuming nothing.
#[pyfunction]
#[pyo3(signature = (limiter_id, key, cost))]
fn state_blocking(
    py: Python<'_>,
    limiter_id: &Bound<'_, PyAny>,
    key: &str,
    cost: u32,
) -> PyResult<Py<PyAny>> {
    let limiter = resolve(limiter_id)?;
    let handle = crate::runtime::handle();
    let call = limiter.key(key).cost(cost);
    let result = py.detach(|| handle.block_on(call.state()));
    decision(py, result)
}

/// Whether the limiter decides in this process (memory engine).
#[pyfunction]
fn is_local(limiter_id: &Bound<'_, PyAny>) -> PyResult<bool> {
    Ok(resolve(limiter_id)?.is_local())
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(attempt_local, m)?)?;
    m.add_function(wrap_pyfunction!(acquire_async, m)?)?;
    m.add_function(wrap_pyfunction!(attempt_async, m)?)?;
    m.add_function(wrap_pyfunction!(state_async, m)?)?;
    m.add_function(wrap_pyfunction!(acquire_blocking, m)?)?;
    m.add_function(wrap_pyfunction!(attempt_blocking, m)?)?;
    m.add_function(wrap_pyfunction!(state_blocking, m)?)?;
    m.add_function(wrap_pyfunction!(is_local, m)?)?;
    m.add_function(wrap_pyfunction!(private_limiter, m)?)?;
    m.add_function(wrap_pyfunction!(reset_async, m)?)?;
    m.add_class::<LimiterHandle>()?;
    Ok(())
}
