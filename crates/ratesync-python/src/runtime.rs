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

use std::sync::Arc;

use futures::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use pyo3::prelude::*;
use tokio::runtime::{Builder, Handle, Runtime};
use tokio::sync::Notify;

static RUNTIME: Mutex<Option<Started>> = Mutex::new(None);
static SHUT_DOWN: RwLock<bool> = RwLock::new(false);

/// The runtime and the queue of calls waiting to be spawned on it.
struct Started {
    runtime: Arc<Runtime>,
    submissions: Arc<Submissions>,
}

/// Calls from Python threads, spawned on the runtime in batches.
///
/// Spawning from a thread outside the runtime wakes an idle worker with a
/// syscall, once per call. An event loop hands over the calls of one iteration
/// together (`bridge.rs`); queued here, they cost one wake-up: the first batch
/// queued wakes the task that spawns them all from inside the runtime.
struct Submissions {
    queue: Mutex<Vec<BoxFuture<'static, ()>>>,
    ready: Notify,
}

fn started() -> parking_lot::MappedMutexGuard<'static, Started> {
    parking_lot::MutexGuard::map(RUNTIME.lock(), |started| {
        started.get_or_insert_with(|| {
            let runtime = Arc::new(
                Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("ratesync-python")
                    .enable_all()
                    .build()
                    .expect("ratesync cannot start its tokio runtime"),
            );
            let submissions = Arc::new(Submissions {
                queue: Mutex::new(Vec::new()),
                ready: Notify::new(),
            });
            let queued = submissions.clone();
            runtime.spawn(async move {
                loop {
                    queued.ready.notified().await;
                    let batch = std::mem::take(&mut *queued.queue.lock());
                    for call in batch {
                        tokio::spawn(call);
                    }
                }
            });
            Started {
                runtime,
                submissions,
            }
        })
    })
}

/// The runtime's handle, starting it if needed.
pub(crate) fn handle() -> Handle {
    started().runtime.handle().clone()
}

/// Runs `calls` on the runtime, spawned together with those queued beside them.
pub(crate) fn spawn_all(calls: Vec<BoxFuture<'static, ()>>) {
    if calls.is_empty() {
        return;
    }
    let submissions = started().submissions.clone();
    let first = {
        let mut queue = submissions.queue.lock();
        let was_empty = queue.is_empty();
        queue.extend(calls);
        was_empty
    };
    // Calls queued meanwhile are taken by the wake-up already sent. A `Notify` keeps
    // a wake-up that arrives while the spawner is busy, so none is lost.
    if first {
        submissions.ready.notify_one();
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
        // Its worker threads stayed in the parent: never drop it here (nor the calls
        // queued for them).
        std::mem::forget(inherited);
    }
    // The child goes on with its parent's random sequence on this thread, as do its
    // siblings: lease ids (and store client ids) drawn here would repeat theirs, and
    // one worker's release could free another's slot. Mix the child's pid into it.
    let pid = u64::from(std::process::id());
    fastrand::seed(fastrand::u64(..) ^ pid.wrapping_mul(0x9E37_79B9_7F4A_7C15));
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
