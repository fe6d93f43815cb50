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
//!
//! `http-bench micro [ROUNDS [VARIANT...]]` serves nothing: it calls the router of each admitting
//! variant in this process, one request after another (the response and its body
//! consumed and dropped, as hyper would), and prints nanoseconds per request,
//! the variants alternating for ROUNDS rounds (default 15). No socket, no hyper, no
//! second thread: the layers' own costs, far steadier than req/s over loopback.

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

/// One request through `router` as axum's server would make it (the peer address in
/// `ConnectInfo`), its response's body read to the end, then everything dropped.
fn one_request(router: &mut Router, peer: SocketAddr) -> usize {
    use axum::body::{Body, HttpBody};
    use axum::extract::ConnectInfo;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};
    use tower::Service;

    let mut request = axum::http::Request::new(Body::empty());
    request.extensions_mut().insert(ConnectInfo(peer));
    let mut cx = Context::from_waker(Waker::noop());
    let Poll::Ready(Ok(())) = Service::<axum::extract::Request>::poll_ready(router, &mut cx) else {
        panic!("the router is always ready");
    };
    let Poll::Ready(Ok(response)) = pin!(router.call(request)).poll(&mut cx) else {
        panic!("the handler answers at once");
    };
    let mut bytes = response.headers().len();
    let mut body = pin!(response.into_body());
    while let Poll::Ready(Some(frame)) = body.as_mut().poll_frame(&mut cx) {
        bytes += frame
            .ok()
            .and_then(|f| f.into_data().ok())
            .map_or(0, |d| d.len());
    }
    bytes
}

fn micro(rounds: usize, only: &[String]) {
    let verbose = std::env::var_os("VERBOSE").is_some();
    let threads: usize = std::env::var("MICRO_THREADS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    // `MICRO_N`: requests per round (fewer under valgrind).
    let n: u32 = std::env::var("MICRO_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    let all = [
        "none",
        "governor",
        "ratesync",
        "ratesync-noheaders",
        "governor-headers",
    ];
    let variants: Vec<&str> = match only {
        [] => all.to_vec(),
        only => only.iter().map(String::as_str).collect(),
    };
    let peer: SocketAddr = "127.0.0.1:40000".parse().expect("an address");
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        for (i, variant) in variants.iter().enumerate() {
            let router = app(variant, false);
            // `MICRO_THREADS` threads (default 1) at once, each on its own clone of
            // the router, as a server's workers are: what they share (reference
            // counts, the key's state) then moves between their cores.
            let barrier = std::sync::Barrier::new(threads);
            let ns = std::thread::scope(|scope| {
                let runs: Vec<_> = (0..threads)
                    .map(|_| {
                        let (mut router, barrier) = (router.clone(), &barrier);
                        scope.spawn(move || {
                            let mut sink = 0;
                            for _ in 0..n / 10 {
                                sink += one_request(&mut router, peer);
                            }
                            barrier.wait();
                            let start = std::time::Instant::now();
                            for _ in 0..n {
                                sink += one_request(&mut router, peer);
                            }
                            std::hint::black_box(sink);
                            start.elapsed().as_nanos() as f64 / f64::from(n)
                        })
                    })
                    .collect();
                let each: Vec<f64> = runs
                    .into_iter()
                    .map(|run| run.join().expect("a run"))
                    .collect();
                each.iter().sum::<f64>() / each.len() as f64
            });
            results[i].push(ns);
            if verbose {
                println!("round {round}: {variant:20} {ns:8.1} ns/request");
            }
        }
    }
    // The least disturbed round is the layer's cost; the median says how steady.
    println!("ns/request: least, median");
    for (variant, mut r) in variants.iter().zip(results) {
        r.sort_by(f64::total_cmp);
        println!("  {variant:20} {:8.1} {:8.1}", r[0], r[r.len() / 2]);
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let variant = args.first().map_or("none", String::as_str);
    if variant == "micro" {
        let rounds = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(15);
        micro(rounds, args.get(2..).unwrap_or_default());
        return;
    }
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
