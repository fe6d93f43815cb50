//! Metrics through the `metrics` facade (`docs/design.md#metrics`). The library never installs a
//! recorder: the application does (Prometheus exporter, statsd, ...), before it builds
//! its registry, since handles are resolved once per limiter to keep the hot path to a
//! pointer check. Keys are never labels, so cardinality stays bounded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
    Gauge, Histogram, Unit,
};

/// Tells the recorder what each metric means (Prometheus `# HELP`), once, when the
/// first limiter is built.
fn describe() {
    static DESCRIBED: Once = Once::new();
    DESCRIBED.call_once(|| {
        describe_counter!("ratesync_admitted_total", "Attempts admitted (units are not counted, calls are)");
        describe_counter!("ratesync_denied_total", "Decisions that refused an attempt (rate or concurrency); a waiting acquire counts each re-check");
        describe_counter!("ratesync_timed_out_total", "Waits that ended at their timeout without a permit");
        describe_counter!("ratesync_store_errors_total", "Calls whose store gave no answer (timeouts, connection errors, open circuit)");
        describe_counter!("ratesync_shadow_denied_total", "Attempts a limiter in shadow mode admitted although its limit would refuse them (also counted as admitted)");
        describe_counter!("ratesync_fail_open_total", "Attempts admitted without a decision because the store failed and the limiter fails open");
        describe_histogram!("ratesync_wait_seconds", Unit::Seconds, "Time acquire waited before its permit");
        describe_gauge!("ratesync_permits_in_use", "Concurrency permits held in this process");
        describe_histogram!("ratesync_store_call_seconds", Unit::Seconds, "Latency of each call to the store");
        describe_gauge!("ratesync_circuit_open", "1 while the store's circuit breaker is open");
        describe_counter!("ratesync_config_reloads_total", "Edits of a followed configuration file, by result: applied, or rejected (invalid; the running limits stay)");
    });
}

/// Handles for one limiter.
#[derive(Clone)]
pub(crate) struct LimiterMetrics {
    pub admitted: Counter,
    pub denied: Counter,
    pub timed_out: Counter,
    pub store_errors: Counter,
    pub fail_open: Counter,
    pub shadow_denied: Counter,
    pub wait_seconds: Histogram,
    pub permits_in_use: Gauge,
}

impl LimiterMetrics {
    pub fn new(limiter: &str, store: &str) -> Self {
        describe();
        let limiter = limiter.to_owned();
        let labels = [("limiter", limiter.clone()), ("store", store.to_owned())];
        LimiterMetrics {
            admitted: counter!("ratesync_admitted_total", &labels),
            denied: counter!("ratesync_denied_total", &labels),
            timed_out: counter!("ratesync_timed_out_total", &labels),
            store_errors: counter!("ratesync_store_errors_total", &labels),
            fail_open: counter!("ratesync_fail_open_total", &labels),
            shadow_denied: counter!("ratesync_shadow_denied_total", &labels),
            wait_seconds: histogram!("ratesync_wait_seconds", &labels),
            permits_in_use: gauge!("ratesync_permits_in_use", &labels),
        }
    }
}

/// Handles for one store.
#[derive(Clone)]
pub(crate) struct StoreMetrics {
    pub call_seconds: Histogram,
    pub circuit_open: Gauge,
}

impl StoreMetrics {
    pub fn new(store: &str, engine: &str) -> Self {
        describe();
        let labels = [("store", store.to_owned()), ("engine", engine.to_owned())];
        StoreMetrics {
            call_seconds: histogram!("ratesync_store_call_seconds", &labels),
            circuit_open: gauge!("ratesync_circuit_open", &labels),
        }
    }
}

/// Lets a repeated warning through at most once per [`LogThrottle::INTERVAL`]
/// (a store outage would otherwise log once per call).
#[derive(Default)]
pub(crate) struct LogThrottle {
    /// Milliseconds since [`process_start`] when the next message may go out.
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl LogThrottle {
    pub const INTERVAL: Duration = Duration::from_secs(10);

    /// `Some(n)` when a message may be logged now (`n` were suppressed since the
    /// last one); `None` when this one is suppressed.
    pub fn allow(&self) -> Option<u64> {
        let now = process_start().elapsed().as_millis() as u64;
        let next = self.next_ms.load(Ordering::Relaxed);
        let due = now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now + Self::INTERVAL.as_millis() as u64,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok();
        if due {
            Some(self.suppressed.swap(0, Ordering::AcqRel))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

fn process_start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_lets_one_message_through_per_interval() {
        let throttle = LogThrottle::default();
        assert_eq!(throttle.allow(), Some(0));
        assert_eq!(throttle.allow(), None);
        assert_eq!(throttle.allow(), None);
        // Pretend the interval has passed.
        throttle.next_ms.store(0, Ordering::Relaxed);
        assert_eq!(throttle.allow(), Some(2), "two were suppressed");
    }
}
