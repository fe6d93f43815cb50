//! A store that fails on demand: the memory engine behind a switch that makes it
//! refuse connections or hang, like a remote store that is down or slow. Used to run
//! the conformance suite through the remote-engine code path, and by the
//! failure-policy tests.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ratesync::algorithm::LeaseId;
use ratesync::engine::memory::MemoryEngine;
use ratesync::engine::{Engine, EngineFuture, EngineLimiter, LimiterSpec, StoreError};
use ratesync::Decision;

#[derive(Default)]
pub struct Faults {
    pub down: AtomicBool,
    pub hang: AtomicBool,
    pub calls: AtomicU32,
}

/// The memory engine behind a switch that makes it fail or hang like a remote store.
pub struct FlakyEngine {
    pub inner: MemoryEngine,
    pub faults: Arc<Faults>,
}

struct FlakyLimiter {
    inner: Arc<dyn EngineLimiter>,
    faults: Arc<Faults>,
}

impl Faults {
    async fn gate(&self) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.hang.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Connection("connection refused".into()));
        }
        Ok(())
    }
}

impl Engine for FlakyEngine {
    fn name(&self) -> &'static str {
        "flaky"
    }
    fn is_remote(&self) -> bool {
        true
    }
    fn limiter(&self, spec: LimiterSpec) -> Result<Arc<dyn EngineLimiter>, StoreError> {
        Ok(Arc::new(FlakyLimiter {
            inner: self.inner.limiter(spec)?,
            faults: self.faults.clone(),
        }))
    }
    fn ping(&self) -> EngineFuture<'_, ()> {
        Box::pin(self.faults.gate())
    }
}

impl EngineLimiter for FlakyLimiter {
    fn acquire<'a>(
        &'a self,
        key: &'a str,
        cost: u32,
        lease: Option<LeaseId>,
    ) -> EngineFuture<'a, Decision> {
        Box::pin(async move {
            self.faults.gate().await?;
            self.inner.acquire(key, cost, lease).await
        })
    }
    fn peek<'a>(&'a self, key: &'a str, cost: u32) -> EngineFuture<'a, Decision> {
        Box::pin(async move {
            self.faults.gate().await?;
            self.inner.peek(key, cost).await
        })
    }
    fn release<'a>(&'a self, key: &'a str, lease: LeaseId) -> EngineFuture<'a, ()> {
        Box::pin(async move {
            self.faults.gate().await?;
            self.inner.release(key, lease).await
        })
    }
    fn renew<'a>(&'a self, key: &'a str, lease: LeaseId) -> EngineFuture<'a, bool> {
        Box::pin(async move {
            self.faults.gate().await?;
            self.inner.renew(key, lease).await
        })
    }
    fn reset<'a>(&'a self, key: Option<&'a str>) -> EngineFuture<'a, ()> {
        Box::pin(async move {
            self.faults.gate().await?;
            self.inner.reset(key).await
        })
    }
}
