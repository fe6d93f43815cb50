//! `Pending`: what a call that the store answers later returns, an asyncio-compatible
//! future of the caller's loop (`docs/design.md#python`).
//!
//! It speaks asyncio's future protocol (`_asyncio_future_blocking`, `get_loop`,
//! `add_done_callback`, `result`, `cancel`, ...), so a task awaits it as it awaits an
//! `asyncio.Future`, and `asyncio.wait`, `gather`, `wait_for` and `shield` take it.
//! The difference is how its result reaches the waiting task: the bridge's drain,
//! which is a callback of the loop and so runs outside every task, runs the done
//! callbacks (a task's wake-up) at once, in their context, where an
//! `asyncio.Future` would schedule each with `call_soon` (a `Handle` and one more
//! trip through the loop per result). A callback added after it is done, and those of
//! a cancellation (which may come from inside a task), are scheduled with
//! `call_soon`, as asyncio does. Cancelling it aborts the call on the runtime, which
//! consumes nothing (`docs/design.md#waiting`).
//!
//! Every method runs on the loop's thread, with the GIL: the lock is never contended.

use futures::future::AbortHandle;
use parking_lot::Mutex;
use pyo3::exceptions::{PyRuntimeError, PyStopIteration};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Where a call stands.
enum Outcome {
    Waiting,
    Value(Py<PyAny>),
    Error(PyErr),
    /// Cancelled, with the message given to `cancel`.
    Cancelled(Option<Py<PyAny>>),
}

struct State {
    outcome: Outcome,
    /// Done callbacks, with the context each runs in.
    callbacks: Vec<(Py<PyAny>, Option<Py<PyAny>>)>,
    /// asyncio's flag: set while a task waits on this future.
    blocking: bool,
    /// Aborts the call on the runtime.
    abort: Option<AbortHandle>,
}

#[pyclass(frozen, module = "ratesync._native")]
pub(crate) struct Pending {
    event_loop: Py<PyAny>,
    state: Mutex<State>,
}

impl Pending {
    pub(crate) fn new(event_loop: Py<PyAny>, abort: AbortHandle) -> Self {
        Pending {
            event_loop,
            state: Mutex::new(State {
                outcome: Outcome::Waiting,
                callbacks: Vec::new(),
                blocking: false,
                abort: Some(abort),
            }),
        }
    }

    /// Gives the call's `result` and runs the done callbacks at once; `false` (and
    /// nothing done) when the future was cancelled meanwhile. Only for callers that
    /// run outside every task: the bridge's drain.
    pub(crate) fn complete(
        slf: &Bound<'_, Self>,
        result: impl FnOnce(Python<'_>) -> PyResult<Py<PyAny>>,
    ) -> bool {
        let py = slf.py();
        if !matches!(slf.get().state.lock().outcome, Outcome::Waiting) {
            return false;
        }
        let outcome = match result(py) {
            Ok(value) => Outcome::Value(value),
            Err(error) => Outcome::Error(error),
        };
        let callbacks = {
            let mut state = slf.get().state.lock();
            state.outcome = outcome;
            state.abort = None;
            std::mem::take(&mut state.callbacks)
        };
        for (callback, context) in callbacks {
            let ran = match &context {
                Some(context) => context
                    .bind(py)
                    .call_method1(intern!(py, "run"), (&callback, slf)),
                None => callback.bind(py).call1((slf,)),
            };
            if let Err(error) = ran {
                slf.get().report(py, slf, error);
            }
        }
        true
    }

    /// A callback that raised, to the loop's exception handler (as a `Handle` does).
    fn report(&self, py: Python<'_>, slf: &Bound<'_, Self>, error: PyErr) {
        let context = PyDict::new(py);
        let _ = context.set_item("message", "Exception in a done callback of a ratesync call");
        let _ = context.set_item("exception", error.into_value(py));
        let _ = context.set_item("future", slf);
        let _ = self
            .event_loop
            .call_method1(py, intern!(py, "call_exception_handler"), (context,));
    }

    /// Schedules `callback(slf)` with the loop's `call_soon`, in `context`.
    fn schedule(
        &self,
        slf: &Bound<'_, Self>,
        callback: &Py<PyAny>,
        context: Option<&Py<PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let kwargs = PyDict::new(py);
        kwargs.set_item("context", context)?;
        self.event_loop.bind(py).call_method(
            intern!(py, "call_soon"),
            (callback, slf),
            Some(&kwargs),
        )?;
        Ok(())
    }
}

fn invalid_state(py: Python<'_>, message: &str) -> PyErr {
    match py
        .import("asyncio")
        .and_then(|asyncio| asyncio.getattr("InvalidStateError"))
        .and_then(|class| class.call1((message,)))
    {
        Ok(error) => PyErr::from_value(error),
        Err(error) => error,
    }
}

fn cancelled_error(py: Python<'_>, message: Option<&Py<PyAny>>) -> PyErr {
    let made = py.import("asyncio").and_then(|asyncio| {
        let class = asyncio.getattr("CancelledError")?;
        match message {
            Some(message) => class.call1((message,)),
            None => class.call0(),
        }
    });
    match made {
        Ok(error) => PyErr::from_value(error),
        Err(error) => error,
    }
}

#[pymethods]
impl Pending {
    #[getter(_asyncio_future_blocking)]
    fn blocking(&self) -> bool {
        self.state.lock().blocking
    }

    #[setter(_asyncio_future_blocking)]
    fn set_blocking(&self, value: bool) {
        self.state.lock().blocking = value;
    }

    fn get_loop(&self, py: Python<'_>) -> Py<PyAny> {
        self.event_loop.clone_ref(py)
    }

    fn done(&self) -> bool {
        !matches!(self.state.lock().outcome, Outcome::Waiting)
    }

    fn cancelled(&self) -> bool {
        matches!(self.state.lock().outcome, Outcome::Cancelled(_))
    }

    fn result(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match &self.state.lock().outcome {
            Outcome::Waiting => Err(invalid_state(py, "Result is not ready.")),
            Outcome::Value(value) => Ok(value.clone_ref(py)),
            Outcome::Error(error) => Err(error.clone_ref(py)),
            Outcome::Cancelled(message) => Err(cancelled_error(py, message.as_ref())),
        }
    }

    fn exception(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match &self.state.lock().outcome {
            Outcome::Waiting => Err(invalid_state(py, "Exception is not set.")),
            Outcome::Value(_) => Ok(None),
            Outcome::Error(error) => Ok(Some(error.clone_ref(py).into_value(py).into_any())),
            Outcome::Cancelled(message) => Err(cancelled_error(py, message.as_ref())),
        }
    }

    #[pyo3(signature = (callback, *, context=None))]
    fn add_done_callback(
        slf: &Bound<'_, Self>,
        callback: Py<PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        {
            let mut state = slf.get().state.lock();
            if matches!(state.outcome, Outcome::Waiting) {
                state.callbacks.push((callback, context));
                return Ok(());
            }
        }
        slf.get().schedule(slf, &callback, context.as_ref())
    }

    fn remove_done_callback(&self, py: Python<'_>, callback: &Bound<'_, PyAny>) -> usize {
        let mut state = self.state.lock();
        let before = state.callbacks.len();
        state
            .callbacks
            .retain(|(kept, _)| !kept.bind(py).eq(callback).unwrap_or(false));
        before - state.callbacks.len()
    }

    /// Cancels the call (it consumes nothing); its callbacks are scheduled.
    #[pyo3(signature = (msg=None))]
    fn cancel(slf: &Bound<'_, Self>, msg: Option<Py<PyAny>>) -> PyResult<bool> {
        let (abort, callbacks) = {
            let mut state = slf.get().state.lock();
            if !matches!(state.outcome, Outcome::Waiting) {
                return Ok(false);
            }
            state.outcome = Outcome::Cancelled(msg);
            (state.abort.take(), std::mem::take(&mut state.callbacks))
        };
        if let Some(abort) = abort {
            abort.abort();
        }
        for (callback, context) in callbacks {
            slf.get().schedule(slf, &callback, context.as_ref())?;
        }
        Ok(true)
    }

    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// asyncio's protocol: yields itself to the task while waiting; once done, stops
    /// with the result (or raises its error).
    fn __next__(slf: &Bound<'_, Self>) -> PyResult<Py<Self>> {
        let py = slf.py();
        {
            let mut state = slf.get().state.lock();
            if matches!(state.outcome, Outcome::Waiting) {
                if state.blocking {
                    return Err(PyRuntimeError::new_err("await wasn't used with future"));
                }
                state.blocking = true;
                return Ok(slf.clone().unbind());
            }
        }
        let value = slf.get().result(py)?;
        Err(PyStopIteration::new_err((value,)))
    }

    fn __repr__(&self) -> &'static str {
        match self.state.lock().outcome {
            Outcome::Waiting => "<Pending ratesync call>",
            Outcome::Value(_) => "<Pending ratesync call: done>",
            Outcome::Error(_) => "<Pending ratesync call: failed>",
            Outcome::Cancelled(_) => "<Pending ratesync call: cancelled>",
        }
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Pending>()
}
