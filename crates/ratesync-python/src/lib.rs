//! `ratesync._native`: the extension module under the Python package `ratesync`
//! (`python/ratesync/`). A thin shell over the core: the Python API, its names and
//! exceptions live in the package; limits are decided by `ratesync`.
//!
//! - `runtime`: the tokio runtime this extension owns (fresh after `fork()`).
//! - `registry`: the process-wide registry that `configure_*` and `load_config` change.
//! - `calls`: acquire, try, peek: memory decisions synchronously, network engines
//!   on the runtime with the GIL released.
//! - `counters`: the counters behind rate-sync's `RateLimiterMetrics`, counted
//!   where a call's answer is converted.
//! - `bridge`: a tokio future as a future of the caller's event loop (`pending`:
//!   that future, asyncio-compatible).
//! - `metrics`: the core's metrics as Prometheus text; `log`: the core's
//!   warnings as records of Python's `logging` (logger `ratesync`).
//! - `http`: the client IP behind trusted proxies and the `RateLimit` headers of
//!   `ratesync.contrib.fastapi`, from the core's `ratesync::http`.
//! - `types`: `Permit` and `Decision` as Python objects; `errors`: core errors as
//!   the exceptions of `ratesync.exceptions`.

mod bridge;
mod calls;
mod counters;
mod errors;
mod http;
mod log;
mod metrics;
mod pending;
mod registry;
mod runtime;
mod types;

use pyo3::prelude::*;

/// The extension's Rust allocations (not Python's objects) come from mimalloc.
/// A call's future is allocated on the event loop's thread and freed on the
/// runtime's, its answer the other way round; glibc's malloc takes the owning
/// arena's lock for each such free, and the two threads contending for it made
/// futex system calls and context switches (`docs/design.md#python`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<types::Permit>()?;
    m.add_class::<types::Decision>()?;
    m.add_function(wrap_pyfunction!(runtime::after_fork_in_child, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::shutdown, m)?)?;
    registry::register(m)?;
    calls::register(m)?;
    counters::register(m)?;
    bridge::register(m)?;
    pending::register(m)?;
    metrics::register(m)?;
    log::install();
    http::register(m)?;
    Ok(())
}
