//! A store that fails on demand: the memory engine behind a switch that makes it
//! refuse connections or hang, like a remote store that is down or slow. Used to run
//! the conformance suite through the remote-engine code path, and by the
//! failure-policy tests.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ratesync::algorithm::{LeaseId, Receipt};
use ratesync::engine::memory::MemoryEngine;
use ratesync::store::{Engine, EngineLimiter, LimiterSpec, StoreCall, StoreError};
use ratesync::Decision;

#[derive(Default)]
pub struct Faults {
    pub down: AtomicBool,
    pub hang: AtomicBool,
    pub calls: AtomicU32,
}

/// The memory engine behind a switch that makes it fail or hang like a remote store.
/// Its answers all come later ([`StoreCall::Pending`]), as a network store's do, and
/// its groups are reserved member by member (the contract's default).
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

    /// The inner engine's `call`, made only once the switch lets it through (a
    /// memory call decides as soon as it is made), answered later.
    fn later<'a, T: Send + 'a>(
        &'a self,
        call: impl FnOnce() -> StoreCall<'a, T> + Send + 'a,
    ) -> StoreCall<'a, T> {
        StoreCall::pending(async move {
            self.gate().await?;
            call().await
        })
    }
}

impl Engine for FlakyEngine {
    fn name(&self) -> &'static str {
        "flaky"
    }
    fn limiter(&self, spec: LimiterSpec) -> Result<Arc<dyn EngineLimiter>, StoreError> {
        Ok(Arc::new(FlakyLimiter {
            inner: self.inner.limiter(spec)?,
            faults: self.faults.clone(),
        }))
    }
    fn ping(&self) -> StoreCall<'_, ()> {
        StoreCall::pending(self.faults.gate())
    }
}

impl EngineLimiter for FlakyLimiter {
    fn acquire<'a>(
        &'a self,
        key: &'a str,
        cost: u32,
        lease: Option<LeaseId>,
    ) -> StoreCall<'a, (Decision, Receipt)> {
        self.faults
            .later(move || self.inner.acquire(key, cost, lease))
    }
    fn peek<'a>(&'a self, key: &'a str, cost: u32) -> StoreCall<'a, Decision> {
        self.faults.later(move || self.inner.peek(key, cost))
    }
    fn refund<'a>(
        &'a self,
        key: &'a str,
        cost: u32,
        receipt: Receipt,
        lease: Option<LeaseId>,
    ) -> StoreCall<'a, ()> {
        self.faults
            .later(move || self.inner.refund(key, cost, receipt, lease))
    }
    fn release<'a>(&'a self, key: &'a str, lease: LeaseId) -> StoreCall<'a, ()> {
        self.faults.later(move || self.inner.release(key, lease))
    }
    fn renew<'a>(&'a self, key: &'a str, lease: LeaseId) -> StoreCall<'a, bool> {
        self.faults.later(move || self.inner.renew(key, lease))
    }
    fn reset<'a>(&'a self, key: Option<&'a str>) -> StoreCall<'a, ()> {
        self.faults.later(move || self.inner.reset(key))
    }
}
