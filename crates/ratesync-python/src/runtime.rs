//! The tokio runtime of the extension: created on first use, replaced after `fork()`.
//!
//! A current-thread runtime, driven by one thread of its own (`ratesync-python`):
//! the store clients, the calls' tasks and the core's background work all run
//! there, so a task woken by another (a store's answer waking the calls it
//! decides) runs on the same thread, without the futex wake-ups and context
//! switches of a multi-thread runtime's two workers handing work to each other
//! (`docs/design.md#python`). The event loop's thread does the Python side.
//!
//! A forked child inherits the runtime's memory but not its thread, so the child
//! leaks the inherited runtime (dropping it would wait for a thread that does not
//! exist) and starts its own on next use. The package registers [`after_fork_in_child`] with
//! `os.register_at_fork`. Every call into the core enters this runtime, so the core's
//! background work (lease renewal, releases, probes) runs here too and never on a
//! runtime of its own that a fork would leave dead.
//!
//! At interpreter exit the package calls [`shutdown`]: from then on no task hands a
//! result back to Python. A thread that takes the GIL during finalization is stopped
//! by the interpreter (`pthread_exit`) inside Rust frames, whose unwinding then drops
//! Python objects without the GIL: a crash at exit. So every hand-back runs through
//! [`attach_unless_shut_down`], under a read lock that `shutdown` takes for writing
//! (with the GIL released) before it raises the flag: once `shutdown` returns, no
//! thread is inside or will enter the interpreter.

use parking_lot::{Mutex, RwLock};
use pyo3::prelude::*;
use tokio::runtime::{Builder, Handle};

/// The running runtime's handle; the runtime itself belongs to its thread.
static RUNTIME: Mutex<Option<Handle>> = Mutex::new(None);
static SHUT_DOWN: RwLock<bool> = RwLock::new(false);

/// The runtime's handle, starting it if needed.
pub(crate) fn handle() -> Handle {
    RUNTIME.lock().get_or_insert_with(start).clone()
}

/// Starts the runtime's thread, which drives it for the life of the process.
fn start() -> Handle {
    let runtime = Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("ratesync cannot start its tokio runtime");
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("ratesync-python".to_owned())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))
        .expect("ratesync cannot start its runtime's thread");
    handle
}

/// Runs `f` with the GIL from a runtime thread, unless the interpreter is exiting.
pub(crate) fn attach_unless_shut_down(f: impl FnOnce(Python<'_>)) {
    let shut_down = SHUT_DOWN.read();
    if !*shut_down {
        Python::attach(f);
    }
}

/// Called in a child process right after `fork()`.
#[pyfunction]
pub(crate) fn after_fork_in_child() {
    if let Some(inherited) = RUNTIME.lock().take() {
        // Its thread stayed in the parent, with the runtime: leave both alone.
        std::mem::forget(inherited);
    }
    // The child goes on with its parent's random sequence on this thread, as do its
    // siblings: lease ids (and store client ids) drawn here would repeat theirs, and
    // one worker's release could free another's slot. Mix the child's pid into it.
    let pid = u64::from(std::process::id());
    fastrand::seed(fastrand::u64(..) ^ pid.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    crate::bridge::after_fork_in_child();
    crate::registry::after_fork_in_child();
    crate::metrics::after_fork_in_child();
    crate::log::after_fork_in_child();
}

/// Called at interpreter exit (`atexit`). Waits, with the GIL released, for the
/// hand-backs in progress (they need the GIL to finish), then stops new ones.
#[pyfunction]
pub(crate) fn shutdown(py: Python<'_>) {
    py.detach(|| *SHUT_DOWN.write() = true);
}
