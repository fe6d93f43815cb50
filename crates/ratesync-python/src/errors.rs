//! Core errors as the exceptions of `ratesync.exceptions` (built there, by
//! `_from_native`, so that their classes and attributes are those of rate-sync).

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use ratesync::{AcquireError, Error, SettleError};

/// The exception `_from_native` builds; `denied_by` (`"rate"`, `"concurrency"`) says
/// what refused a call that was refused or timed out.
fn build_refusal(
    kind: &str,
    message: &str,
    name: Option<&str>,
    retry_after: Option<f64>,
    denied_by: Option<&str>,
) -> PyErr {
    Python::attach(|py| {
        let made = py
            .import("ratesync.exceptions")
            .and_then(|m| m.getattr("_from_native"))
            .and_then(|f| f.call1((kind, message, name, retry_after, denied_by)));
        match made {
            Ok(exception) => PyErr::from_value(exception),
            Err(error) => error,
        }
    })
}

fn build(kind: &str, message: &str, name: Option<&str>, retry_after: Option<f64>) -> PyErr {
    build_refusal(kind, message, name, retry_after, None)
}

pub(crate) fn config_error(message: &str) -> PyErr {
    build("config", message, None, None)
}

pub(crate) fn limiter_not_found(name: &str) -> PyErr {
    build("limiter_not_found", "", Some(name), None)
}

pub(crate) fn store_not_found(id: &str) -> PyErr {
    build("store_not_found", "", Some(id), None)
}

pub(crate) fn from_error(error: &Error) -> PyErr {
    match error {
        Error::UnknownLimiter(name) => limiter_not_found(name),
        Error::Config(_) | Error::Store { .. } => config_error(&error.to_string()),
    }
}

pub(crate) fn from_acquire(error: &AcquireError) -> PyErr {
    let (kind, limiter) = match error {
        AcquireError::NotConfigured { limiter } => return limiter_not_found(limiter),
        AcquireError::Denied { limiter, .. } => ("denied", limiter),
        AcquireError::TimedOut { limiter, .. } => ("timed_out", limiter),
        AcquireError::StoreUnavailable { limiter, .. } => ("store_unavailable", limiter),
        AcquireError::InvalidCost { limiter, .. } | AcquireError::SlotTwice { limiter } => {
            ("invalid_cost", limiter)
        }
    };
    let retry_after = error.retry_after().map(|d| d.as_secs_f64());
    let denied_by = error
        .decision()
        .and_then(|d| d.denied_by())
        .map(|by| match by {
            ratesync::DeniedBy::Rate => "rate",
            ratesync::DeniedBy::Concurrency => "concurrency",
        });
    build_refusal(
        kind,
        &error.to_string(),
        Some(limiter),
        retry_after,
        denied_by,
    )
}

/// A settle that failed: the store's failure as for a call; a misuse as Python's
/// own errors (`ValueError` for units above the cost).
pub(crate) fn from_settle(error: &SettleError) -> PyErr {
    match error {
        SettleError::Store(error) => from_acquire(error),
        SettleError::AboveCost { .. } => PyValueError::new_err(error.to_string()),
        SettleError::NotSettleable => PyRuntimeError::new_err(error.to_string()),
    }
}
