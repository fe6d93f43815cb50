//! The conformance suite (`docs/design.md#conformance-suite`) on a real PostgreSQL
//! server that the tests start themselves (`initdb` + `postgres` on a free port), the
//! outage case included.
//!
//! Each test process starts one server on first use and shares it between its tests,
//! which use randomly named limiters; the outage case kills and restarts a server,
//! so it gets one of its own. Without PostgreSQL installed the tests skip loudly (and
//! fail under `CI=true`).

#![cfg(feature = "postgres")]

mod conformance;
mod support;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use conformance::{Backend, Outage};
use futures::future::BoxFuture;
use futures::FutureExt;
use ratesync::engine::postgres::PostgresEngine;
use ratesync::store::Engine;
use ratesync::StoreBuilder;
use support::PostgresServer;

/// How far a time-dependent number may be off against a real server: as for Redis,
/// a bound that absorbs scheduling stalls on a loaded 2-core machine while a real
/// error (a retry-after off by a rate interval, a missed wake-up) is 100 ms or more.
const TOLERANCE: Duration = Duration::from_millis(100);

/// A server: the one this process shares, or its own once a test asks to take it
/// down.
struct Postgres {
    own: OnceLock<PostgresServer>,
}

impl Postgres {
    fn new() -> Self {
        Postgres {
            own: OnceLock::new(),
        }
    }

    fn server(&self) -> &PostgresServer {
        static SHARED: OnceLock<PostgresServer> = OnceLock::new();
        self.own
            .get()
            .unwrap_or_else(|| SHARED.get_or_init(PostgresServer::start))
    }
}

impl Backend for Postgres {
    fn engine(&self) -> Arc<dyn Engine> {
        let store = StoreBuilder::postgres(&self.server().url()).option("auto_create", true);
        let config = support::postgres_config(store);
        Arc::new(PostgresEngine::new(&config).expect("the PostgreSQL engine builds without I/O"))
    }

    fn tolerance(&self) -> Duration {
        TOLERANCE
    }

    /// The outage gets a server of its own (killing the shared one would fail the
    /// other tests of this process).
    fn outage(&self) -> Option<&dyn Outage> {
        self.own.get_or_init(PostgresServer::start);
        Some(self)
    }
}

impl Outage for Postgres {
    fn begin(&self) -> BoxFuture<'_, ()> {
        async { self.server().kill() }.boxed()
    }

    /// The server comes back on the same port, after crash recovery.
    fn end(&self) -> BoxFuture<'_, ()> {
        async { self.server().restart() }.boxed()
    }
}

crate::conformance::suite!(|| async { Postgres::new() }, paused: false);
