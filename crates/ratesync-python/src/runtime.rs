//! The tokio runtime of the extension: created on first use, replaced after `fork()`.
//!
//! A forked child inherits the runtime's memory but not its threads, so the child
//! leaks the inherited runtime (dropping it would wait for threads that do not exist)
//! and starts its own on next use. The package registers [`after_fork_in_child`] with
//! `os.register_at_fork`. Every call into the core enters this runtime, so the core's
//! background work (lease renewal, releases, probes) runs here too and never on a
//! runtime of its own that a fork would leave dead.
//!
//! At interpreter exit the package calls [`shutdown`]: from then on no task hands a
//! result back to Python (a thread taking the GIL during finalization would be
//! stopped by the interpreter, inside Rust frames).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::prelude::*;
use tokio::runtime::{Builder, Handle, Runtime};

static RUNTIME: Mutex<Option<Arc<Runtime>>> = Mutex::new(None);
static SHUT_DOWN: AtomicBool = AtomicBool::new(false);

/// The runtime's handle, starting it if needed.
pub(crate) fn handle() -> Handle {
    RUNTIME
        .lock()
        .get_or_insert_with(|| {
            Arc::new(
                Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("ratesync-python")
                    .enable_all()
                    .build()
                    .expect("ratesync cannot start its tokio runtime"),
            )
        })
        .handle()
        .clone()
}

/// Whether results may still be handed back to Python.
pub(crate) fn is_shut_down() -> bool {
    SHUT_DOWN.load(Ordering::Acquire)
}

/// Called in a child process right after `fork()`.
#[pyfunction]
pub(crate) fn after_fork_in_child() {
    if let Some(inherited) = RUNTIME.lock().take() {
        // Its worker threads stayed in the parent: never drop it here.
        std::mem::forget(inherited);
    }
    crate::registry::after_fork_in_child();
}

/// Called at interpreter exit (`atexit`).
#[pyfunction]
pub(crate) fn shutdown() {
    SHUT_DOWN.store(true, Ordering::Release);
}
