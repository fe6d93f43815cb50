//! The counters behind rate-sync's `RateLimiterMetrics` (`python/ratesync/schemas.py`),
//! kept here so that a call is counted where its answer is made into Python objects,
//! without a line of Python per call (`docs/design.md#python`).
//!
//! The fields are rate-sync's, with its arithmetic: `record_acquisition` adds the wait
//! and sets the average, the maximum and the time of the last acquisition, as
//! rate-sync's dataclass does. Every update is made with the GIL held (on the loop's
//! thread, or on the calling thread of the blocking API), so a plain pyclass does.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use pyo3::prelude::*;
use ratesync::{AcquireError, DeniedBy};

use crate::types::Permit;

/// One limiter's counters: what `RateLimiterMetrics` reads and writes.
#[pyclass(module = "ratesync._native")]
#[derive(Default)]
pub(crate) struct Counters {
    #[pyo3(get, set)]
    total_acquisitions: i64,
    #[pyo3(get, set)]
    total_wait_time_ms: f64,
    #[pyo3(get, set)]
    avg_wait_time_ms: f64,
    #[pyo3(get, set)]
    max_wait_time_ms: f64,
    #[pyo3(get, set)]
    cas_failures: i64,
    #[pyo3(get, set)]
    timeouts: i64,
    #[pyo3(get, set)]
    last_acquisition_at: Option<f64>,
    #[pyo3(get, set)]
    current_concurrent: i64,
    #[pyo3(get, set)]
    max_concurrent_reached: i64,
    #[pyo3(get, set)]
    total_releases: i64,
    #[pyo3(get, set)]
    shadow_denied: i64,
}

#[pymethods]
impl Counters {
    #[new]
    fn new() -> Self {
        Counters::default()
    }

    fn record_acquisition(&mut self, wait_time_ms: f64) {
        self.total_acquisitions += 1;
        self.total_wait_time_ms += wait_time_ms;
        self.avg_wait_time_ms = self.total_wait_time_ms / self.total_acquisitions as f64;
        if wait_time_ms > self.max_wait_time_ms {
            self.max_wait_time_ms = wait_time_ms;
        }
        self.last_acquisition_at = Some(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
    }

    fn record_cas_failure(&mut self) {
        self.cas_failures += 1;
    }

    fn record_timeout(&mut self) {
        self.timeouts += 1;
    }

    fn record_concurrent_acquire(&mut self) {
        self.current_concurrent += 1;
    }

    fn record_concurrent_release(&mut self) {
        self.current_concurrent = (self.current_concurrent - 1).max(0);
        self.total_releases += 1;
    }

    fn record_max_concurrent_reached(&mut self) {
        self.max_concurrent_reached += 1;
    }

    /// Counts the admission of a group member (`permit`): no wait, and no slot (the
    /// group's caller releases it uncounted).
    fn count_group_admission(&mut self, permit: PyRef<'_, Permit>) {
        self.admitted(0.0, false, permit.shadow_denied());
    }

    /// Counts a refusal whose refusing limit is `denied_by` (`"rate"`,
    /// `"concurrency"` or `None`), as rate-sync counts a timeout.
    fn count_refusal(&mut self, denied_by: Option<&str>) {
        self.refused(denied_by == Some("concurrency"));
    }
}

impl Counters {
    /// The one way an admission is counted, as rate-sync counts it: the acquisition
    /// and its wait, the slot taken (when the caller counts its release too), and a
    /// shadow-mode admission of a call the limit would refuse.
    fn admitted(&mut self, wait_ms: f64, slot: bool, shadow_denied: bool) {
        self.record_acquisition(wait_ms);
        if slot {
            self.record_concurrent_acquire();
        }
        if shadow_denied {
            self.shadow_denied += 1;
        }
    }

    /// The one way a refusal or timeout is counted (and a full concurrency cap).
    fn refused(&mut self, by_concurrency: bool) {
        self.record_timeout();
        if by_concurrency {
            self.record_max_concurrent_reached();
        }
    }
}

/// Where one call is counted, as rate-sync counts a limiter's calls: an admission
/// with its wait (from `started`), the slot it took (when `slot`: the caller counts
/// its release too) and a shadow-mode admission the limit would refuse; a refusal
/// or timeout (and a full concurrency cap). A store failure is not counted.
pub(crate) struct Count {
    pub(crate) counters: Py<Counters>,
    pub(crate) slot: bool,
    pub(crate) started: Instant,
}

impl Count {
    /// Counts an admission of `permit` (`waited`: whether its wait is measured; an
    /// attempt counts none).
    pub(crate) fn admitted(&self, py: Python<'_>, permit: &ratesync::Permit, waited: bool) {
        let Ok(mut c) = self.counters.bind(py).try_borrow_mut() else {
            return;
        };
        let wait_ms = match waited {
            true => self.started.elapsed().as_secs_f64() * 1000.0,
            false => 0.0,
        };
        let shadow_denied = permit.decision().shadow_denied_by().is_some();
        c.admitted(wait_ms, self.slot && permit.holds_slot(), shadow_denied);
    }

    /// Counts a call that failed with `error`, when it was refused or timed out.
    pub(crate) fn failed(&self, py: Python<'_>, error: &AcquireError) {
        if !matches!(
            error,
            AcquireError::Denied { .. } | AcquireError::TimedOut { .. }
        ) {
            return;
        }
        let Ok(mut c) = self.counters.bind(py).try_borrow_mut() else {
            return;
        };
        c.refused(error.decision().and_then(|d| d.denied_by()) == Some(DeniedBy::Concurrency));
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Counters>()
}
