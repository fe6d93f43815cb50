//! A tokio future as an asyncio future of the caller's event loop.
//!
//! The work runs on the extension's runtime; its result is handed to the loop with
//! `call_soon_threadsafe`, so the event loop never blocks. When the asyncio future
//! is cancelled (a cancelled task, `asyncio.wait_for`), the tokio task is aborted:
//! a waiting acquire that is dropped consumes nothing (SPEC §4.5).

use std::future::Future;

use pyo3::prelude::*;
use tokio::task::AbortHandle;

/// Done-callback of the asyncio future: aborts the task (a no-op once it finished).
#[pyclass(frozen)]
struct AbortOnDone(AbortHandle);

#[pymethods]
impl AbortOnDone {
    fn __call__(&self, _future: &Bound<'_, PyAny>) {
        self.0.abort();
    }
}

/// Runs `work` on the runtime; returns an asyncio future of `event_loop` that gets
/// its result (`convert`ed with the GIL held) or its exception.
pub(crate) fn spawn<'py, T, F, C>(
    event_loop: &Bound<'py, PyAny>,
    work: F,
    convert: C,
) -> PyResult<Bound<'py, PyAny>>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
    C: FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
{
    let future = event_loop.call_method0("create_future")?;
    let (loop_ref, future_ref) = (event_loop.clone().unbind(), future.clone().unbind());
    let task = crate::runtime::handle().spawn(async move {
        let output = work.await;
        crate::runtime::attach_unless_shut_down(|py| {
            let (ok, value) = match convert(py, output) {
                Ok(value) => (true, value),
                Err(error) => (false, error.into_value(py).into_any()),
            };
            // The loop may be closed already (its `asyncio.run` ended): nobody waits.
            let _ = py
                .import("ratesync._bridge")
                .and_then(|m| m.getattr("settle"))
                .and_then(|settle| {
                    loop_ref.call_method1(
                        py,
                        "call_soon_threadsafe",
                        (settle, future_ref, ok, value),
                    )
                });
        });
    });
    future.call_method1("add_done_callback", (AbortOnDone(task.abort_handle()),))?;
    Ok(future)
}
