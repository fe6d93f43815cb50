//! Where background work runs: lease renewal, releases to remote stores, circuit
//! probes, release listeners. On the caller's tokio runtime when there is one;
//! otherwise on a small runtime of ratesync's own, started on first use, so that
//! permits taken from plain threads (a sync API, a test, a CLI) are renewed and
//! released all the same.

use std::future::Future;
use std::sync::OnceLock;
use std::task::{Context, Waker};

use tokio::runtime::{Builder, Handle, Runtime};

static OWN_RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// A handle to spawn background work on.
pub(crate) fn handle() -> Handle {
    Handle::try_current().unwrap_or_else(|_| {
        OWN_RUNTIME
            .get_or_init(|| {
                Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("ratesync-background")
                    .enable_all()
                    .build()
                    .expect("ratesync cannot start its background thread")
            })
            .handle()
            .clone()
    })
}

/// Runs `work` to completion: here and now when it completes on its first poll (a
/// store that answers without I/O), else on the background runtime. Used where
/// nobody waits for the result (a permit dropped without `release().await`).
pub(crate) fn finish(work: impl Future<Output = ()> + Send + 'static) {
    let handle = handle();
    let mut work = Box::pin(work);
    {
        let _runtime = handle.enter();
        let mut cx = Context::from_waker(Waker::noop());
        if work.as_mut().poll(&mut cx).is_ready() {
            return;
        }
    }
    // Started but not done: the runtime polls it again at once, with a real waker.
    handle.spawn(work);
}
