//! The NATS server's clock, as seen from this process.
//!
//! JetStream KV cannot run code on the server, so the decision itself runs here;
//! what must come from the server is "now". The server stamps every message it
//! stores with its own wall-clock time, and a read returns that stamp. So the
//! engine measures the offset between the server's clock and this process's
//! monotonic clock, NTP-style: it writes a probe entry at local time `t0`, gets the
//! acknowledgement at `t1`, and reads back the stamp `s` the server gave the probe.
//! `s` was taken between `t0` and `t1`, so `offset = s - (t0 + t1) / 2` is wrong by
//! at most `(t1 - t0) / 2`. Of a few probes the one with the shortest round trip is
//! kept, and the measurement is repeated every [`RECALIBRATE`] and after every
//! reconnection (another server of the list, another clock).
//!
//! Each decision then uses `max(local monotonic + offset, stamp of the entry read)`:
//! the stamp of the state being replaced is a time the server has certainly passed.
//!
//! **The bound.** A host's "now" is within `u = rtt/2 + drift` of the server's clock,
//! where `rtt` is its best probe's round trip (tens of µs on a LAN, well under a
//! millisecond in a data centre) and `drift` what its monotonic clock and the
//! server's wall clock move apart in [`RECALIBRATE`] (≤ 10 s × 200 ppm = 2 ms for
//! the worst crystal, µs for NTP-disciplined ones). Two hosts disagree by at most
//! `u1 + u2`. A host's wall clock does not enter at all: its skew, however large,
//! does not matter. In the worst case the disagreement can admit early by that
//! much: a token bucket admits at most `burst + rate·(t + u1 + u2)` in `t`, and a
//! sliding window holds `limit` in every window of `window − (u1 + u2)`. The uncertainty
//! of the last measurement is available from [`ServerClock::uncertainty`].

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::kv::Store;

use super::keys::clock_probe;
use crate::clock::{Clock, MonotonicClock};
use crate::store::listener::Origin;
use crate::store::StoreError;

/// How often the offset is measured again.
pub(crate) const RECALIBRATE: Duration = Duration::from_secs(10);
/// Probes per measurement; the fastest wins.
const PROBES: usize = 3;

pub(crate) struct ServerClock {
    local: MonotonicClock,
    /// Server time (ns since the epoch) minus local monotonic time.
    offset: AtomicI64,
    /// Half the round trip of the probe that set the offset (ns).
    uncertainty: AtomicU64,
    /// Local time of the last measurement (0 = never).
    measured_at: AtomicU64,
    /// Set on reconnection: measure again before long.
    stale: AtomicBool,
    /// One measurement at a time.
    measuring: AtomicBool,
    /// The largest "now" handed out: time never runs backwards for this process.
    latest: AtomicU64,
    probe_key: String,
    /// Tests of calendar windows: how far the server's clock is made to run ahead.
    #[cfg(feature = "testing")]
    shift: AtomicI64,
}

impl ServerClock {
    pub fn new(origin: Origin) -> Self {
        ServerClock {
            local: MonotonicClock::default(),
            offset: AtomicI64::new(0),
            uncertainty: AtomicU64::new(0),
            measured_at: AtomicU64::new(0),
            stale: AtomicBool::new(true),
            measuring: AtomicBool::new(false),
            latest: AtomicU64::new(0),
            probe_key: clock_probe(origin),
            #[cfg(feature = "testing")]
            shift: AtomicI64::new(0),
        }
    }

    /// From now on the server's clock reads `nanos` later than it does (tests of
    /// calendar windows, whose boundaries cannot be waited for).
    #[cfg(feature = "testing")]
    pub fn shift(&self, nanos: i64) {
        self.shift.store(nanos, Ordering::Release);
    }

    /// The server's time now (ns since the epoch), never earlier than `floor` (the
    /// stamp of an entry just read) nor than any time handed out before.
    pub fn now(&self, floor: u64) -> u64 {
        let local = self.local.now_nanos();
        #[cfg(feature = "testing")]
        let local = local.saturating_add_signed(self.shift.load(Ordering::Acquire));
        let estimate = local.saturating_add_signed(self.offset.load(Ordering::Acquire));
        let now = estimate.max(floor);
        self.latest.fetch_max(now, Ordering::AcqRel).max(now)
    }

    /// Whether the offset should be measured again.
    pub fn is_due(&self) -> bool {
        let measured_at = self.measured_at.load(Ordering::Relaxed);
        self.stale.load(Ordering::Relaxed)
            || self.local.now_nanos().saturating_sub(measured_at) >= RECALIBRATE.as_nanos() as u64
    }

    pub fn mark_stale(&self) {
        self.stale.store(true, Ordering::Relaxed);
    }

    /// Half the round trip of the probe behind the current offset.
    pub fn uncertainty(&self) -> Duration {
        Duration::from_nanos(self.uncertainty.load(Ordering::Relaxed))
    }

    /// Measures the offset (see the module docs). Concurrent calls leave it to the
    /// first; a failed measurement keeps the previous offset.
    pub async fn calibrate(&self, kv: &Store, timeout: Duration) -> Result<(), StoreError> {
        if self.measuring.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let measured = tokio::time::timeout(timeout, self.measure(kv)).await;
        self.measuring.store(false, Ordering::Release);
        match measured {
            Ok(Ok((offset, half_rtt))) => {
                self.offset.store(offset, Ordering::Release);
                self.uncertainty.store(half_rtt, Ordering::Relaxed);
                self.measured_at
                    .store(self.local.now_nanos().max(1), Ordering::Relaxed);
                self.stale.store(false, Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(error)) => Err(error),
            Err(_) => Err(StoreError::Timeout(timeout)),
        }
    }

    async fn measure(&self, kv: &Store) -> Result<(i64, u64), StoreError> {
        let mut best: Option<(i64, u64)> = None;
        for _ in 0..PROBES {
            let t0 = self.local.now_nanos();
            let revision = kv
                .put(&self.probe_key, bytes::Bytes::new())
                .await
                .map_err(|e| StoreError::Connection(format!("clock probe: {e}")))?;
            let t1 = self.local.now_nanos();
            let entry = kv
                .entry(&self.probe_key)
                .await
                .map_err(|e| StoreError::Connection(format!("clock probe: {e}")))?;
            let Some(entry) = entry.filter(|e| e.revision == revision) else {
                continue;
            };
            let stamp = super::stamp_nanos(&entry.created);
            let middle = t0 + (t1 - t0) / 2;
            let offset = (i128::from(stamp) - i128::from(middle))
                .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
            let half_rtt = (t1 - t0).div_ceil(2);
            if best.is_none_or(|(_, h)| half_rtt < h) {
                best = Some((offset, half_rtt));
            }
        }
        best.ok_or_else(|| StoreError::Backend("the clock probe was overwritten".to_owned()))
    }
}
