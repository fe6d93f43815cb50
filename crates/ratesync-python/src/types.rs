//! `Permit` and `Decision` as Python objects.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use ratesync::{Rule, SettleError};

use crate::bridge::FirstPoll;
use crate::errors;

/// The numbers of one decision (`docs/design.md#decisions`): what a caller tells its
/// own client.
#[pyclass(frozen, module = "ratesync._native")]
#[derive(Clone, Copy)]
pub(crate) struct Decision {
    #[pyo3(get)]
    allowed: bool,
    #[pyo3(get)]
    limit: u64,
    #[pyo3(get)]
    remaining: u64,
    /// Seconds until an attempt of the same cost can be admitted.
    #[pyo3(get)]
    retry_after: f64,
    /// Seconds until the key is fully available again.
    #[pyo3(get)]
    reset_after: f64,
    /// `retry_after` as a Unix time (seconds), fixed when the decision was made.
    #[pyo3(get)]
    retry_at: f64,
    /// `reset_after` as a Unix time (seconds), fixed when the decision was made;
    /// for a fixed window, the end of its window.
    #[pyo3(get)]
    reset_at: f64,
    /// `"rate"`, `"concurrency"` or `None`.
    #[pyo3(get)]
    denied_by: Option<&'static str>,
    /// What would have refused a call that a limiter in shadow mode admitted
    /// (`"rate"`, `"concurrency"`), else `None` (`docs/design.md#shadow-mode`).
    #[pyo3(get)]
    shadow_denied_by: Option<&'static str>,
}

impl Decision {
    /// The decision `d` of a limiter whose rule is `rule`.
    pub(crate) fn new(d: &ratesync::Decision, rule: Option<&Rule>) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Decision {
            allowed: d.allowed(),
            limit: d.limit(),
            remaining: d.remaining(),
            retry_after: d.retry_after().as_secs_f64(),
            reset_after: d.reset_after().as_secs_f64(),
            retry_at: unix_time(now, d.retry_after(), rule),
            reset_at: unix_time(now, d.reset_after(), rule),
            denied_by: d.denied_by().map(denied_by_name),
            shadow_denied_by: d.shadow_denied_by().map(denied_by_name),
        }
    }
}

fn denied_by_name(by: ratesync::DeniedBy) -> &'static str {
    match by {
        ratesync::DeniedBy::Rate => "rate",
        ratesync::DeniedBy::Concurrency => "concurrency",
    }
}

/// The Unix time (seconds) `after` from `now`. A fixed window resets at the end of
/// its window, on the calendar (`docs/design.md#fixed-windows`): the store measured
/// `after` on its own clock, so `now + after` lands within a few milliseconds of
/// that end, and the end itself is given, exactly (a daily quota resets at
/// 00:00:00, not at 23:59:59.998). Only an end within a second is taken, of windows
/// of two seconds or more: a clock further off keeps its own reading.
fn unix_time(now: Duration, after: Duration, rule: Option<&Rule>) -> f64 {
    const SECOND: u64 = 1_000_000_000;
    let at = now.saturating_add(after);
    let Some(Rule::FixedWindow(fw)) = rule else {
        return at.as_secs_f64();
    };
    if after.is_zero() || fw.window_nanos() < 2 * SECOND {
        return at.as_secs_f64();
    }
    let at_ns = u64::try_from(at.as_nanos()).unwrap_or(u64::MAX);
    let (start, end) = fw.bounds(at_ns);
    let nearest = if at_ns - start <= end - at_ns {
        start
    } else {
        end
    };
    match nearest.abs_diff(at_ns) < SECOND {
        true => Duration::from_nanos(nearest).as_secs_f64(),
        false => at.as_secs_f64(),
    }
}

#[pymethods]
impl Decision {
    fn __repr__(&self) -> String {
        format!(
            "Decision(allowed={}, limit={}, remaining={}, retry_after={:.6}, reset_after={:.6})",
            if self.allowed { "True" } else { "False" },
            self.limit,
            self.remaining,
            self.retry_after,
            self.reset_after
        )
    }
}

/// An admission. For limiters with `max_concurrent` it holds a slot until
/// `release()` or until it is garbage collected. Every permit of a single call can
/// settle its cost (`docs/design.md#settle`).
#[pyclass(frozen, module = "ratesync._native")]
pub(crate) struct Permit {
    decision: Decision,
    /// The cost of the call, which a settle may bring down; `None` for a permit
    /// that cannot settle (one of a group).
    cost: Option<u32>,
    held: Arc<Mutex<Held>>,
}

/// What a Python permit holds of the core's, shared with a settle in progress.
#[derive(Default)]
struct Held {
    /// The core permit: its slot, and what a settle gives back. `None` once
    /// released with its slot, or while a settle has it.
    permit: Option<ratesync::Permit>,
    /// A settle has the core permit (`settle` needs it whole, for as long as the
    /// store takes), and whether it holds a slot.
    lent: Option<bool>,
    /// `release()` came while a settle had the permit: the settle releases it when
    /// it is done.
    release_pending: bool,
    /// A settle was made: the first counts, later ones change nothing.
    settled: bool,
}

impl Held {
    /// The core permit, to release, when it holds a slot. A permit without one stays:
    /// releasing it frees nothing, and it can still settle (after `async with`).
    fn take_slot(&mut self) -> Option<ratesync::Permit> {
        if self.lent.is_some() {
            self.release_pending = true;
            return None;
        }
        match &self.permit {
            Some(permit) if permit.holds_slot() => self.permit.take(),
            _ => None,
        }
    }
}

impl Permit {
    /// A permit of a single call of `cost` (made settleable), or of a group
    /// (`cost` is `None`).
    pub(crate) fn new(permit: ratesync::Permit, rule: Option<&Rule>, cost: Option<u32>) -> Self {
        Permit {
            decision: Decision::new(permit.decision(), rule),
            cost,
            held: Arc::new(Mutex::new(Held {
                permit: Some(permit),
                ..Held::default()
            })),
        }
    }

    /// Whether a limiter in shadow mode admitted this call although its limit would
    /// refuse it.
    pub(crate) fn shadow_denied(&self) -> bool {
        self.decision.shadow_denied_by.is_some()
    }
}

/// Drops a core permit inside the extension's runtime: a remote release is sent from
/// there, and a local one happens at once.
fn release(permit: Option<ratesync::Permit>) {
    if let Some(permit) = permit {
        let _runtime = crate::runtime::handle().enter();
        drop(permit);
    }
}

/// Whether an event loop runs on this thread (else: the blocking API).
fn on_loop(py: Python<'_>) -> PyResult<bool> {
    match crate::bridge::current(py) {
        Ok(_) => Ok(true),
        Err(error) if error.is_instance_of::<PyRuntimeError>(py) => Ok(false),
        Err(error) => Err(error),
    }
}

#[pymethods]
impl Permit {
    #[getter]
    fn decision(&self) -> Decision {
        self.decision
    }

    /// Whether this permit still holds a concurrency slot.
    #[getter]
    fn holds_slot(&self) -> bool {
        let held = self.held.lock();
        match held.lent {
            Some(slot) => slot && !held.release_pending,
            None => held.permit.as_ref().is_some_and(|p| p.holds_slot()),
        }
    }

    /// Releases the slot (if any); idempotent, never blocks. A remote store gets
    /// the release in the background.
    fn release(&self) {
        let permit = self.held.lock().take_slot();
        release(permit);
    }

    /// Releases the slot and waits until its store has it back (so a caller that
    /// leaves `async with` and tries again at once finds the slot free): `None` when
    /// that is done at once (no slot, a store that answers at once), else an asyncio
    /// future of the running loop (`on_loop`; otherwise after blocking).
    fn release_wait(&self, py: Python<'_>, on_loop: bool) -> PyResult<Py<PyAny>> {
        let Some(permit) = self.held.lock().take_slot() else {
            return Ok(py.None());
        };
        crate::bridge::run(py, on_loop, FirstPoll::Here, permit.release(), |py, ()| {
            Ok(py.None())
        })
    }

    /// Settles the call's cost at `used` units once the work is done
    /// (`docs/design.md#settle`): the store gets back `cost - used`, atomically,
    /// and waiters on the key try again. An awaitable; in a thread without an event
    /// loop the settle is done when this returns (no need to await it). The first
    /// settle counts, later ones change nothing. `ValueError` when `used` is above
    /// the cost; `StoreUnavailableError` when the store could not take the units
    /// back (they return when they refill or leave the window). A permit that holds
    /// a concurrency slot settles before it is released; one without can settle
    /// after its `async with` block too.
    fn settle(&self, py: Python<'_>, used: u32) -> PyResult<Py<PyAny>> {
        let Some(cost) = self.cost else {
            return Err(PyRuntimeError::new_err(
                SettleError::NotSettleable.to_string(),
            ));
        };
        if used > cost {
            return Err(PyValueError::new_err(format!(
                "cannot settle at {used} units, above the cost of {cost} the call took"
            )));
        }
        let on_loop = on_loop(py)?;
        let permit = {
            let mut held = self.held.lock();
            if held.settled {
                return Ok(Py::new(py, Ready)?.into_any());
            }
            let Some(permit) = held.permit.take() else {
                return Err(PyRuntimeError::new_err(
                    "this permit was released with its concurrency slot, and what it would \
                     give back with it: settle before releasing it (inside `async with`)",
                ));
            };
            held.settled = true;
            held.lent = Some(permit.holds_slot());
            permit
        };
        let lent = Lent {
            permit: Some(permit),
            held: self.held.clone(),
        };
        let work = async move {
            // A local, dropped when the settle is done, before its answer goes back
            // to Python (which may release the permit at once); or with the future
            // of a cancelled `await`. Either way the permit goes back.
            let mut lent = lent;
            let Some(permit) = lent.permit.as_mut() else {
                return Ok(());
            };
            permit.settle(used).await
        };
        let answer = crate::bridge::run(py, on_loop, FirstPoll::Here, work, |py, settled| {
            settled
                .map(|()| py.None())
                .map_err(|error| errors::from_settle(&error))
        })?;
        // Settled at once (or after blocking): an awaitable that is already done.
        match answer.is_none(py) {
            true => Ok(Py::new(py, Ready)?.into_any()),
            false => Ok(answer),
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Leaving a `with` block releases the slot.
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.release();
        false
    }

    fn __repr__(&self) -> String {
        format!("Permit({})", self.decision.__repr__())
    }
}

impl Drop for Permit {
    /// Drops the core permit (a slot is released) in the runtime; a settle in
    /// progress does it when done.
    fn drop(&mut self) {
        let permit = {
            let mut held = self.held.lock();
            match held.lent {
                Some(_) => {
                    held.release_pending = true;
                    None
                }
                None => held.permit.take(),
            }
        };
        release(permit);
    }
}

/// The core permit while a settle has it: given back to its Python permit when the
/// settle is done or dropped (a cancelled `await`), or released when that was asked
/// meanwhile. Dropped in the runtime (where the settle runs): a remote release is
/// sent from there.
struct Lent {
    permit: Option<ratesync::Permit>,
    held: Arc<Mutex<Held>>,
}

impl Drop for Lent {
    fn drop(&mut self) {
        let released = {
            let mut held = self.held.lock();
            held.lent = None;
            match held.release_pending {
                true => self.permit.take(),
                false => {
                    held.permit = self.permit.take();
                    None
                }
            }
        };
        drop(released);
    }
}

/// An awaitable that is already done, with the value `None`: what `settle` gives
/// when the store answered at once, so that `await permit.settle(n)` reads the same
/// on every engine without an asyncio future per call.
#[pyclass(frozen, module = "ratesync._native")]
pub(crate) struct Ready;

#[pymethods]
impl Ready {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Done at once: the iteration stops with the value `None`.
    fn __next__(&self) -> Option<Py<PyAny>> {
        None
    }

    // What an asyncio future of a settle also answers, so that code holding the
    // awaitable reads the same whether the store answered at once or later.

    /// Too late to cancel: it is done.
    fn cancel(&self) -> bool {
        false
    }

    fn cancelled(&self) -> bool {
        false
    }

    fn done(&self) -> bool {
        true
    }

    fn result(&self) -> Option<Py<PyAny>> {
        None
    }

    fn __repr__(&self) -> &'static str {
        "Ready()"
    }
}
