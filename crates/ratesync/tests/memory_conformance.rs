//! The conformance suite on the memory engine, on tokio's paused clock: every wait
//! is instant and every number exact. It runs twice: on the engine as it is (the
//! in-process fast path), and behind a switchable fault wrapper that makes it look
//! remote, so the remote-engine path of the limiter (deadlines, circuit breaker,
//! failure policy, background releases) passes the same suite.

mod conformance;

use std::sync::Arc;
use std::time::Duration;

use conformance::flaky::{Faults, FlakyEngine};
use conformance::{Backend, Outage};
use futures::future::BoxFuture;
use futures::FutureExt;
use ratesync::config::MemoryConfig;
use ratesync::engine::memory::MemoryEngine;
use ratesync::store::Engine;
use ratesync::TokioClock;

fn memory_engine() -> MemoryEngine {
    MemoryEngine::with_clock(&MemoryConfig::default(), Arc::new(TokioClock::default()))
}

struct Memory;

impl Backend for Memory {
    fn engine(&self) -> Arc<dyn Engine> {
        Arc::new(memory_engine())
    }

    fn tolerance(&self) -> Duration {
        Duration::ZERO
    }
}

/// The memory engine seen through the remote-engine path, with an outage switch.
#[derive(Default)]
struct MemoryAsRemote {
    faults: Arc<Faults>,
}

impl Backend for MemoryAsRemote {
    fn engine(&self) -> Arc<dyn Engine> {
        Arc::new(FlakyEngine {
            inner: memory_engine(),
            faults: self.faults.clone(),
        })
    }

    fn tolerance(&self) -> Duration {
        Duration::ZERO
    }

    fn outage(&self) -> Option<&dyn Outage> {
        Some(self)
    }
}

impl Outage for MemoryAsRemote {
    fn begin(&self) -> BoxFuture<'_, ()> {
        self.faults
            .down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        async {}.boxed()
    }

    fn end(&self) -> BoxFuture<'_, ()> {
        self.faults
            .down
            .store(false, std::sync::atomic::Ordering::SeqCst);
        async {}.boxed()
    }
}

mod local {
    crate::conformance::suite!(|| async { super::Memory }, paused: true);
}

mod as_remote {
    crate::conformance::suite!(|| async { super::MemoryAsRemote::default() }, paused: true);
}
