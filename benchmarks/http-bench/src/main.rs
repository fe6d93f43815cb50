//! One trivial axum service, served with one of the limiters that
//! `benchmarks/http.sh` compares, on 127.0.0.1 at a free port (printed as the first
//! line of stdout, `listening <port>`).
//!
//! `http-bench <variant>`, one of:
//!
//! - `none`: no limiter.
//! - `governor`: tower_governor's `GovernorLayer`, keyed by peer IP
//!   (`PeerIpKeyExtractor`), no headers on admitted responses (its default).
//! - `governor-headers`: the same with `use_headers()` (`x-ratelimit-limit` and
//!   `x-ratelimit-remaining` on admitted responses).
//! - `ratesync`: `RouteLimits::layer()`, one token-bucket limit on the memory
//!   engine keyed by `ClientIp::peer()` (the peer address, as tower_governor's),
//!   `RateLimit` / `RateLimit-Policy` headers on (the default).
//! - `ratesync-noheaders`: the same with `headers(false)`.
//! - `governor-global`, `ratesync-global`: one key for every request
//!   (`GlobalKeyExtractor`, `LimiterWide`), headers as in `governor` and `ratesync`.
//!
//! Every variant admits everything (a rate of 1e9/s, a burst of 1e9), unless
//! `refuse` follows the variant: then 1 request per second, burst 1, so nearly every
//! request is refused with 429.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use ratesync::http::{ClientIp, KeyExtractor, Limit, LimiterWide, RateLimitLayer, RouteLimits};
use ratesync::{Config, LimiterBuilder, Registry, StoreBuilder};
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::GlobalKeyExtractor;
use tower_governor::GovernorLayer;

async fn hello() -> &'static str {
    "hello"
}

fn ratesync_layer(refuse: bool, headers: bool, key: impl KeyExtractor) -> RateLimitLayer {
    let limiter = match refuse {
        true => LimiterBuilder::token_bucket("local", 1.0).burst(1),
        false => LimiterBuilder::token_bucket("local", 1e9).burst(1_000_000_000),
    };
    let config = Config::builder()
        .store("local", StoreBuilder::memory())
        .limiter("api", limiter)
        .build()
        .expect("a valid configuration");
    let registry = Registry::from_config(config).expect("a memory registry");
    let limiter = registry.limiter("api").expect("the limiter `api`");
    RouteLimits::builder()
        .limit(Limit::new(limiter, key))
        .headers(headers)
        .build()
        .layer()
}

fn app(variant: &str, refuse: bool) -> Router {
    let router = Router::new().route("/", get(hello));
    // tower_governor's quota: one unit per `period`, up to `burst`.
    let (period, burst) = match refuse {
        true => (Duration::from_secs(1), 1),
        false => (Duration::from_nanos(1), 1_000_000_000),
    };
    match variant {
        "none" => router,
        "governor" => {
            let config = GovernorConfigBuilder::default()
                .period(period)
                .burst_size(burst)
                .finish()
                .expect("a valid quota");
            router.layer(GovernorLayer::new(Arc::new(config)))
        }
        "governor-headers" => {
            let config = GovernorConfigBuilder::default()
                .period(period)
                .burst_size(burst)
                .use_headers()
                .finish()
                .expect("a valid quota");
            router.layer(GovernorLayer::new(Arc::new(config)))
        }
        "governor-global" => {
            let config = GovernorConfigBuilder::default()
                .period(period)
                .burst_size(burst)
                .key_extractor(GlobalKeyExtractor)
                .finish()
                .expect("a valid quota");
            router.layer(GovernorLayer::new(Arc::new(config)))
        }
        "ratesync" => router.layer(ratesync_layer(refuse, true, ClientIp::peer())),
        "ratesync-noheaders" => router.layer(ratesync_layer(refuse, false, ClientIp::peer())),
        "ratesync-global" => router.layer(ratesync_layer(refuse, true, LimiterWide)),
        other => {
            eprintln!(
                "unknown variant {other:?}: none, governor, governor-headers, ratesync, \
                 ratesync-noheaders, governor-global, ratesync-global"
            );
            std::process::exit(2);
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let variant = args.first().map_or("none", String::as_str);
    let refuse = args.get(1).is_some_and(|arg| arg == "refuse");
    let app = app(variant, refuse);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port on 127.0.0.1");
    let port = listener.local_addr().expect("a bound address").port();
    println!("listening {port}");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
    .expect("the server runs");
}
