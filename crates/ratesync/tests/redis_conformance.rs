//! The conformance suite (`docs/design.md#conformance-suite`) on real Redis servers
//! that the tests start themselves: the whole suite on a standalone server, and every
//! case that does not take the store down on a 3-master Redis Cluster.
//!
//! Each test process starts one server (or one cluster) on first use and shares it
//! between its tests, which use randomly named limiters; the outage case kills and
//! restarts a server, so it gets one of its own. Without `redis-server` installed
//! the tests skip loudly (and fail under `CI=true`).

#![cfg(feature = "redis")]

mod conformance;
mod support;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use conformance::{Backend, Outage};
use futures::future::BoxFuture;
use futures::FutureExt;
use ratesync::engine::redis::RedisEngine;
use ratesync::store::Engine;
use ratesync::StoreBuilder;
use support::{RedisCluster, RedisServer};

/// How far a time-dependent number may be off against a real server. A loopback
/// round trip takes well under a millisecond on an idle machine; the bound covers
/// the scheduling delays of a 2-core CI machine running other test processes
/// (including the multi-process load tests) at the same time: one round trip
/// stalled by tens of milliseconds must not fail a case, while a real error (a
/// retry-after off by a rate interval, a missed wake-up) is still 100 ms or more.
const TOLERANCE: Duration = Duration::from_millis(100);

fn engine(store: StoreBuilder) -> Arc<dyn Engine> {
    let config = support::redis_config(store);
    Arc::new(RedisEngine::new(&config).expect("the Redis engine builds without I/O"))
}

/// A standalone server: the one this process shares, or its own once a test asks
/// to take it down.
struct Standalone {
    own: OnceLock<RedisServer>,
}

impl Standalone {
    fn new() -> Self {
        Standalone {
            own: OnceLock::new(),
        }
    }

    fn server(&self) -> &RedisServer {
        static SHARED: OnceLock<RedisServer> = OnceLock::new();
        self.own
            .get()
            .unwrap_or_else(|| SHARED.get_or_init(RedisServer::start))
    }
}

impl Backend for Standalone {
    fn engine(&self) -> Arc<dyn Engine> {
        engine(StoreBuilder::redis(&self.server().url()))
    }

    fn tolerance(&self) -> Duration {
        TOLERANCE
    }

    /// Killing the shared server would fail the other tests of this process (under
    /// `cargo test` they run at once), so the outage gets a server of its own.
    /// The case asks for the outage before it builds its engines.
    fn outage(&self) -> Option<&dyn Outage> {
        self.own.get_or_init(RedisServer::start);
        Some(self)
    }
}

impl Outage for Standalone {
    fn begin(&self) -> BoxFuture<'_, ()> {
        async { self.server().kill() }.boxed()
    }

    /// The server comes back on the same port, empty (no state, no scripts).
    fn end(&self) -> BoxFuture<'_, ()> {
        async { self.server().restart() }.boxed()
    }
}

/// A 3-master Redis Cluster, shared by the tests of this process.
struct Cluster(&'static RedisCluster);

impl Cluster {
    fn new() -> Self {
        static SHARED: OnceLock<RedisCluster> = OnceLock::new();
        Cluster(SHARED.get_or_init(|| RedisCluster::start(3)))
    }
}

impl Backend for Cluster {
    fn engine(&self) -> Arc<dyn Engine> {
        engine(StoreBuilder::redis(&self.0.url()).option("cluster", true))
    }

    fn tolerance(&self) -> Duration {
        TOLERANCE
    }
}

mod standalone {
    crate::conformance::suite!(|| async { super::Standalone::new() }, paused: false);
}

mod cluster {
    crate::conformance::suite!(
        || async { super::Cluster::new() },
        paused: false,
        cases: without_outage
    );
}
