//! Where background work runs: lease renewal, releases to remote stores, circuit
//! probes. On the caller's tokio runtime when there is one; otherwise on a small
//! runtime of ratesync's own, started on first use, so that permits taken from plain
//! threads (a sync API, a test, a CLI) are renewed and released all the same.

use std::sync::OnceLock;

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
