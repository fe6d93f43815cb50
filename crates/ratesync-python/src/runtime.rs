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
//! result back to Python. A thread that takes the GIL during finalization is stopped
//! by the interpreter (`pthread_exit`) inside Rust frames, whose unwinding then drops
//! Python objects without the GIL: a crash at exit. So every hand-back runs through
//! [`attach_unless_shut_down`], under a read lock that `shutdown` takes for writing
//! (with the GIL released) before it raises the flag: once `shutdown` returns, no
//! thread is inside or will enter the interpreter.

use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use pyo3::prelude::*;
use tokio::runtime::{Builder, Handle, Runtime};

static RUNTIME: Mutex<Option<Runtime>> = Mutex::new(None);
static SHUT_DOWN: RwLock<bool> = RwLock::new(false);

/// How often the runtime's timer keeper ([`keep_timers_armed`]) wakes.
const KEEPER_PERIOD: Duration = Duration::from_millis(250);

/// The runtime's handle, starting it if needed.
pub(crate) fn handle() -> Handle {
    let mut runtime = RUNTIME.lock();
    runtime
        .get_or_insert_with(|| {
            let runtime = Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("ratesync-python")
                .enable_all()
                .build()
                .expect("ratesync cannot start its tokio runtime");
            runtime.spawn(keep_timers_armed());
            runtime
        })
        .handle()
        .clone()
}

/// Keeps one timer pending on the runtime at all times, due sooner than any
/// store's deadline (`docs/design.md#python`). Every store call runs under a
/// deadline timer (`docs/design.md#the-store-runtime`). tokio's timer driver
/// wakes the runtime (an eventfd write) for a timer registered while no timer
/// was pending when it last parked, and goes on doing so for each registration
/// until it parks again: with the wheel emptied between batches, that was about
/// one system call per call. A pending timer due sooner than the new ones spares
/// those wake-ups; the keeper itself costs four wake-ups a second.
async fn keep_timers_armed() {
    loop {
        tokio::time::sleep(KEEPER_PERIOD).await;
    }
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
        // Its worker threads stayed in the parent: never drop it here.
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
