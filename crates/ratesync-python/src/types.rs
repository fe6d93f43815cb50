//! `Permit` and `Decision` as Python objects.

use parking_lot::Mutex;
use pyo3::prelude::*;

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
    /// `"rate"`, `"concurrency"` or `None`.
    #[pyo3(get)]
    denied_by: Option<&'static str>,
}

impl From<&ratesync::Decision> for Decision {
    fn from(d: &ratesync::Decision) -> Self {
        Decision {
            allowed: d.allowed(),
            limit: d.limit(),
            remaining: d.remaining(),
            retry_after: d.retry_after().as_secs_f64(),
            reset_after: d.reset_after().as_secs_f64(),
            denied_by: d.denied_by().map(|by| match by {
                ratesync::DeniedBy::Rate => "rate",
                ratesync::DeniedBy::Concurrency => "concurrency",
            }),
        }
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
/// `release()` or until it is garbage collected.
#[pyclass(frozen, module = "ratesync._native")]
pub(crate) struct Permit {
    decision: Decision,
    inner: Mutex<Option<ratesync::Permit>>,
}

impl Permit {
    pub(crate) fn new(permit: ratesync::Permit) -> Self {
        Permit {
            decision: permit.decision().into(),
            inner: Mutex::new(Some(permit)),
        }
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

#[pymethods]
impl Permit {
    #[getter]
    fn decision(&self) -> Decision {
        self.decision
    }

    /// Whether this permit still holds a concurrency slot.
    #[getter]
    fn holds_slot(&self) -> bool {
        self.inner.lock().as_ref().is_some_and(|p| p.holds_slot())
    }

    /// Releases the slot (if any); idempotent, never blocks. A remote store gets
    /// the release in the background.
    fn release(&self) {
        let permit = self.inner.lock().take();
        release(permit);
    }

    /// Releases the slot and waits until its store has it back (so a caller that
    /// leaves `async with` and tries again at once finds the slot free): `None` when
    /// that is done at once (no slot, a store that answers at once), else an asyncio
    /// future of `bridge`'s loop (or, without a bridge, after blocking).
    fn release_wait(
        &self,
        py: Python<'_>,
        bridge: Option<&Bound<'_, crate::bridge::LoopBridge>>,
    ) -> PyResult<Py<PyAny>> {
        let Some(permit) = self.inner.lock().take() else {
            return Ok(py.None());
        };
        crate::bridge::run(py, bridge, permit.release(), |py, ()| Ok(py.None()))
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
    fn drop(&mut self) {
        release(self.inner.get_mut().take());
    }
}
