//! The configuration the demo runs when there is no file: one limiter per behaviour
//! a newcomer should see.

use std::time::Duration;

use ratesync::{Config, ConfigError, LimiterBuilder, StoreBuilder};

/// How the demo drives one limiter.
#[derive(Debug, Clone, Copy)]
pub struct Drive {
    /// Tasks calling `acquire` in a loop.
    pub workers: usize,
    /// How long each admitted worker holds its permit (a concurrency slot).
    pub hold: Duration,
}

/// Limiter ids and how to drive each.
pub type Drives = Vec<(String, Drive)>;

/// The built-in limiters and how to drive each.
pub fn config() -> Result<(Config, Drives), ConfigError> {
    let config = Config::builder()
        .store("local", StoreBuilder::memory())
        // Paced traffic: 8 workers waiting their turn; the bucket holds 100/s.
        .limiter(
            "api",
            LimiterBuilder::token_bucket("local", 100.0).burst(10),
        )
        // Bursty callers refused outright (timeout 0), retrying after retry-after.
        .limiter(
            "login",
            LimiterBuilder::sliding_window("local", 5, 1.0).timeout(0.0),
        )
        // A rate too high to matter: only the 3 slots limit 6 workers holding 100 ms.
        .limiter(
            "uploads",
            LimiterBuilder::token_bucket("local", 1000.0)
                .burst(100)
                .max_concurrent(3),
        )
        .build()?;
    let drive = |workers, hold| Drive { workers, hold };
    let drives = [
        ("api", drive(8, Duration::ZERO)),
        ("login", drive(4, Duration::ZERO)),
        ("uploads", drive(6, Duration::from_millis(100))),
    ];
    let drives = drives.map(|(n, d)| (n.to_owned(), d)).into();
    Ok((config, drives))
}

/// How to drive a limiter from a user's file: enough workers to saturate it, and a
/// short hold when it caps concurrency so the cap shows.
pub fn drive_for(max_concurrent: Option<u32>) -> Drive {
    match max_concurrent {
        Some(max) => Drive {
            workers: (2 * max as usize).clamp(4, 64),
            hold: Duration::from_millis(50),
        },
        None => Drive {
            workers: 8,
            hold: Duration::ZERO,
        },
    }
}
