//! Real servers for the tests that need them: each test starts its own
//! `redis-server` (standalone, a Cluster, or a master with Sentinels), PostgreSQL or
//! `nats-server` on free loopback ports, so it can kill, slow down and restart it
//! without touching any other test or the machine's own services.
//!
//! ```ignore
//! mod support;
//! let server = support::RedisServer::start();
//! ```
//!
//! A test whose server binary is missing fails, naming it: it never passes without
//! running. `./scripts/test.sh` installs them, and reports the tests of a service it
//! could not install as skipped.
//!
//! Every server process dies with its owner: on drop (also while a test panics)
//! and, for servers held in a `static` that is never dropped, through a watchdog
//! that kills the server once the test process is gone.

#![allow(dead_code, unused_imports)]

pub mod batches;
mod certificates;
pub mod child;
pub mod groups;
mod nats_server;
mod postgres_server;
mod process;
mod redis_cluster;
mod redis_sentinel;
mod redis_server;
mod tally;

pub use certificates::TestCertificates;
pub use nats_server::{nats_config, NatsServer};
pub use postgres_server::{require_postgres, PostgresServer};
pub use process::{free_port, require_binaries, wait_until};
pub use redis_cluster::RedisCluster;
pub use redis_sentinel::{Failover, RedisSentinel};
pub use redis_server::RedisServer;
pub use tally::Tally;

/// The binaries every Redis test needs.
pub const REDIS_BINARIES: &[&str] = &["redis-server", "redis-cli"];

use ratesync::config::{EngineConfig, PostgresConfig, RedisConfig};
use ratesync::{Config, StoreBuilder};

/// The validated settings of a Redis store described in code, as `RedisEngine::new`
/// takes them (`StoreBuilder::redis(url).option("socket_timeout", 0.5)`).
pub fn redis_config(store: StoreBuilder) -> RedisConfig {
    let config = Config::builder()
        .store("s", store)
        .build()
        .expect("valid Redis store settings");
    match &config.stores["s"].engine {
        EngineConfig::Redis(redis) => redis.clone(),
        other => panic!("not a Redis store: {}", other.engine_name()),
    }
}

/// The validated settings of a PostgreSQL store described in code, as
/// `PostgresEngine::new` takes them.
pub fn postgres_config(store: StoreBuilder) -> PostgresConfig {
    let config = Config::builder()
        .store("s", store)
        .build()
        .expect("valid PostgreSQL store settings");
    match &config.stores["s"].engine {
        EngineConfig::Postgres(postgres) => postgres.clone(),
        other => panic!("not a PostgreSQL store: {}", other.engine_name()),
    }
}

/// A runtime of two workers, as the machine has two cores: for the tests that drive
/// a store from synchronous code (proptest histories, child processes).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
