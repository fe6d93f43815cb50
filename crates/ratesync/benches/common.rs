//! The setup both memory-vs-governor benches share: the same rule on both sides,
//! far above reach so every call is admitted, and the same 10 000 keys.

use std::num::NonZeroU32;

use governor::Quota;
use ratesync::{Config, Limiter, LimiterBuilder, Registry, StoreBuilder};

pub const KEYS: usize = 10_000;
const BURST: u32 = 1_000_000;

/// A memory-engine token bucket at 1e9/s with a burst of one million.
pub fn ratesync_limiter() -> Limiter {
    let config = Config::builder()
        .store("mem", StoreBuilder::memory())
        .limiter(
            "bench",
            LimiterBuilder::token_bucket("mem", 1e9).burst(BURST),
        )
        .build()
        .expect("valid bench configuration");
    Registry::from_config(config)
        .expect("memory registry")
        .limiter("bench")
        .expect("configured limiter")
}

/// governor's closest quota: as many cells per second as it allows, same burst.
pub fn governor_quota() -> Quota {
    Quota::per_second(NonZeroU32::MAX).allow_burst(NonZeroU32::new(BURST).unwrap())
}

/// `"user-0"` .. `"user-9999"`.
pub fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("user-{i}")).collect()
}
