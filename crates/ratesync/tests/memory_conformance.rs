//! The conformance suite on the memory engine, on tokio's paused clock: every wait
//! is instant and every number exact.

mod conformance;

use std::sync::Arc;
use std::time::Duration;

use ratesync::config::MemoryConfig;
use ratesync::engine::memory::MemoryEngine;
use ratesync::engine::Engine;
use ratesync::TokioClock;

struct Memory;

impl conformance::Backend for Memory {
    fn engine(&self) -> Arc<dyn Engine> {
        Arc::new(MemoryEngine::with_clock(
            &MemoryConfig::default(),
            Arc::new(TokioClock::default()),
        ))
    }

    fn tolerance(&self) -> Duration {
        Duration::ZERO
    }
}

conformance::suite!(|| async { Memory }, paused: true);
