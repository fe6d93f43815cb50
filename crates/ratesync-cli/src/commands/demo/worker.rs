//! A demo worker (acquire, hold, release, repeat) and the counters it keeps.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ratesync::Limiter;
use tokio::time::Instant;

use super::builtin::Drive;

/// What the workers of one limiter have seen. Times are nanoseconds since `base`.
pub struct Stats {
    base: Instant,
    /// `base` as nanoseconds since the Unix epoch, where fixed windows fall.
    unix_base_ns: u64,
    pub admitted: AtomicU64,
    pub refused: AtomicU64,
    pub errors: AtomicU64,
    /// Workers inside `acquire` right now.
    pub waiting: AtomicU64,
    /// Permits held right now, and the most held at once.
    pub in_flight: AtomicU64,
    pub peak_in_flight: AtomicU64,
    first_ns: AtomicU64,
    last_ns: AtomicU64,
    /// Admission times, kept for sliding and fixed windows only: their rate is
    /// measured over whole windows, which needs to know when each admission happened.
    log: Option<Mutex<Vec<u64>>>,
}

impl Stats {
    pub fn new(base: Instant, keep_log: bool) -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .saturating_sub(base.elapsed());
        Stats {
            base,
            unix_base_ns: u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX),
            admitted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            peak_in_flight: AtomicU64::new(0),
            first_ns: AtomicU64::new(u64::MAX),
            last_ns: AtomicU64::new(0),
            log: keep_log.then(Mutex::default),
        }
    }

    /// Nanoseconds since the Unix epoch at the origin of the times of these stats.
    pub fn unix_base_ns(&self) -> u64 {
        self.unix_base_ns
    }

    pub fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn record_admission(&self) {
        let now = self.now_ns();
        self.first_ns.fetch_min(now, Relaxed);
        self.last_ns.fetch_max(now, Relaxed);
        if let Some(log) = &self.log {
            log.lock().unwrap_or_else(|e| e.into_inner()).push(now);
        }
        self.admitted.fetch_add(1, Relaxed);
    }

    /// First and last admission times, once there has been one.
    pub fn span(&self) -> Option<(u64, u64)> {
        let first = self.first_ns.load(Relaxed);
        (first != u64::MAX).then(|| (first, self.last_ns.load(Relaxed)))
    }

    /// Admissions before `ns` (sliding and fixed windows only).
    pub fn admitted_before(&self, ns: u64) -> Option<u64> {
        self.admitted_between(0, ns)
    }

    /// Admissions at or after `from` and before `to` (sliding and fixed windows only).
    pub fn admitted_between(&self, from: u64, to: u64) -> Option<u64> {
        let log = self.log.as_ref()?.lock().unwrap_or_else(|e| e.into_inner());
        Some(log.iter().filter(|&&t| from <= t && t < to).count() as u64)
    }
}

/// Calls `acquire` until aborted, like a well-behaved client: after a refusal it
/// comes back when the limiter says, not sooner.
pub async fn work(limiter: Limiter, drive: Drive, stats: std::sync::Arc<Stats>) {
    loop {
        stats.waiting.fetch_add(1, Relaxed);
        let outcome = limiter.acquire().await;
        stats.waiting.fetch_sub(1, Relaxed);
        match outcome {
            Ok(permit) => {
                stats.record_admission();
                if !drive.hold.is_zero() {
                    let held = stats.in_flight.fetch_add(1, Relaxed) + 1;
                    stats.peak_in_flight.fetch_max(held, Relaxed);
                    tokio::time::sleep(drive.hold).await;
                    stats.in_flight.fetch_sub(1, Relaxed);
                }
                permit.release().await;
            }
            Err(err) if err.is_rate_limited() => {
                stats.refused.fetch_add(1, Relaxed);
                let pause = err.retry_after().unwrap_or(Duration::from_millis(10));
                tokio::time::sleep(pause.max(Duration::from_millis(1))).await;
            }
            Err(_) => {
                stats.errors.fetch_add(1, Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
