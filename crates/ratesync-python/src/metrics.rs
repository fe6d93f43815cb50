//! The core's metrics (`docs/design.md#metrics`) as Prometheus text, for
//! `ratesync.contrib.prometheus`.
//!
//! The core reports through the `metrics` facade and leaves the recorder to the
//! application. Here the application is the Python process, so the extension
//! installs a Prometheus recorder when it is imported: the core resolves its metric
//! handles once per limiter, when the limiter is built, so a recorder installed
//! later would miss every limiter built before it. If the process already has a
//! recorder (another extension installed one), ratesync leaves it alone and
//! `prometheus_text` says so.
//!
//! Histogram samples are kept until upkeep folds them into buckets; a small thread
//! does that every few seconds (and again in a forked child, which has no threads).

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use pyo3::prelude::*;

/// Bucket bounds (seconds) for wait times and store-call latencies: from a loopback
/// round trip to the longest waits worth telling apart.
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The installed recorder's handle; `None` when another recorder was there first.
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder (once per process) and starts its upkeep.
pub(crate) fn install() {
    let handle = HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets(SECONDS_BUCKETS)
            .and_then(PrometheusBuilder::install_recorder)
            .ok()
    });
    if let Some(handle) = handle {
        start_upkeep(handle.clone());
    }
}

/// A forked child inherits the recorder's memory but not the upkeep thread.
pub(crate) fn after_fork_in_child() {
    if let Some(Some(handle)) = HANDLE.get() {
        start_upkeep(handle.clone());
    }
}

fn start_upkeep(handle: PrometheusHandle) {
    // Without a thread, samples would still be folded in at each render; the
    // thread only bounds their memory between scrapes.
    let _ = std::thread::Builder::new()
        .name("ratesync-metrics".to_owned())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            handle.run_upkeep();
        });
}

/// Every ratesync metric of this process in the Prometheus text exposition format.
#[pyfunction]
fn prometheus_text(py: Python<'_>) -> PyResult<String> {
    match HANDLE.get() {
        Some(Some(handle)) => Ok(py.detach(|| {
            handle.run_upkeep();
            handle.render()
        })),
        _ => Err(pyo3::exceptions::PyRuntimeError::new_err(
            "ratesync's Prometheus recorder is not installed: another `metrics` recorder \
             was installed in this process first",
        )),
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    install();
    m.add_function(wrap_pyfunction!(prometheus_text, m)?)
}
