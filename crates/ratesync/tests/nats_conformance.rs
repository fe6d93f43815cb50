//! The conformance suite (`docs/design.md#conformance-suite`) on a real
//! `nats-server -js` that the tests start themselves, the outage case included (on a
//! server of its own, killed and restarted on the same port and store directory).
//! Without a nats-server ≥ 2.10 the tests skip loudly (and fail under `CI=true`);
//! `scripts/install-nats-server.sh` installs one.

#![cfg(feature = "nats")]

mod conformance;
mod support;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use conformance::{Backend, Outage};
use futures::future::BoxFuture;
use futures::FutureExt;
use ratesync::engine::nats::NatsEngine;
use ratesync::store::Engine;
use ratesync::StoreBuilder;
use support::NatsServer;

/// How far a time-dependent number may be off against a real server: as for Redis
/// (see redis_conformance.rs), a few stalled round trips on a loaded 2-core machine;
/// a decision here is a read and a write, and the clock is measured (µs off on
/// loopback).
const TOLERANCE: Duration = Duration::from_millis(100);

struct Standalone {
    own: OnceLock<NatsServer>,
}

impl Standalone {
    fn new() -> Self {
        Standalone {
            own: OnceLock::new(),
        }
    }

    fn server(&self) -> &NatsServer {
        static SHARED: OnceLock<NatsServer> = OnceLock::new();
        self.own
            .get()
            .unwrap_or_else(|| SHARED.get_or_init(NatsServer::start))
    }
}

impl Backend for Standalone {
    fn engine(&self) -> Arc<dyn Engine> {
        let config = support::nats_config(
            StoreBuilder::nats(&self.server().url()).option("auto_create", true),
        );
        Arc::new(NatsEngine::new(&config).expect("the NATS engine builds without I/O"))
    }

    fn tolerance(&self) -> Duration {
        TOLERANCE
    }

    /// The outage kills the server, so it gets one of its own.
    fn outage(&self) -> Option<&dyn Outage> {
        self.own.get_or_init(NatsServer::start);
        Some(self)
    }
}

impl Outage for Standalone {
    fn begin(&self) -> BoxFuture<'_, ()> {
        async { self.server().kill() }.boxed()
    }

    fn end(&self) -> BoxFuture<'_, ()> {
        async { self.server().restart() }.boxed()
    }
}

conformance::suite!(|| async { Standalone::new() }, paused: false);
