//! The tower layer (`docs/design.md#http`) over the memory engine at frozen time: statuses,
//! headers and their exact values, several limits per route, concurrency slots held
//! through the response, key extractors, and a fail-closed outage.

mod conformance;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use conformance::flaky::{Faults, FlakyEngine};
use http::request::Parts;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use ratesync::config::MemoryConfig;
use ratesync::engine::memory::MemoryEngine;
use ratesync::http::{
    ClientIp, Header, KeyExtractor, Limit, LimiterWide, MissingKey, RateLimitBody, RouteLimits,
};
use ratesync::{Config, Limiter, LimiterBuilder, ManualClock, Registry, StoreBuilder};
use tower::{service_fn, Layer, Service, ServiceExt};

struct Setup {
    registry: Registry,
    clock: ManualClock,
}

impl Setup {
    fn new(limiters: &[(&str, LimiterBuilder)]) -> Self {
        let clock = ManualClock::new();
        clock.advance(Duration::from_secs(1));
        let mut config = Config::builder()
            .store("m", StoreBuilder::memory())
            .trusted_proxy_networks(["10.0.0.0/8", "2001:db8::/32"]);
        for (name, limiter) in limiters {
            config = config.limiter(name, limiter.clone());
        }
        let registry = Registry::builder(config.build().unwrap())
            .clock(clock.clone())
            .build()
            .unwrap();
        Setup { registry, clock }
    }

    fn limiter(&self, name: &str) -> Limiter {
        self.registry.limiter(name).unwrap()
    }
}

/// A service of another body type than axum's: its bodies are wrapped, so that the
/// layer can hold its permits in them and answer refusals in that type.
fn ok_service(
) -> impl Service<Request<String>, Response = Response<RateLimitBody<String>>, Error = Infallible> + Clone
{
    service_fn(|_: Request<String>| async { Ok(Response::new(String::from("ok"))) })
        .map_response(|response| response.map(RateLimitBody::new))
}

fn request_from(peer: &str) -> Request<String> {
    let mut request = Request::new(String::new());
    request
        .extensions_mut()
        .insert(SocketAddr::new(peer.parse().unwrap(), 40000));
    request
}

async fn send(limits: &RouteLimits, request: Request<String>) -> Response<RateLimitBody<String>> {
    limits
        .layer()
        .layer(ok_service())
        .oneshot(request)
        .await
        .unwrap()
}

async fn status(limits: &RouteLimits, request: Request<String>) -> StatusCode {
    send(limits, request).await.status()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).map_or("", |v| v.to_str().unwrap())
}

#[tokio::test]
async fn admits_the_burst_then_refuses_with_exact_headers() {
    // 0.4/s = one unit per 2.5 s, burst 3: the quota users configured is 4 per 10 s
    // (the first round window where the rate is whole units, at least the burst).
    let setup = Setup::new(&[("api", LimiterBuilder::token_bucket("m", 0.4).burst(3))]);
    let limits = RouteLimits::builder()
        .limit(Limit::new(setup.limiter("api"), LimiterWide))
        .build();
    for (remaining, reset) in [(2, 3), (1, 5), (0, 8)] {
        let response = send(&limits, Request::new(String::new())).await;
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(header(headers, "ratelimit-policy"), "\"api\";q=4;w=10");
        assert_eq!(
            header(headers, "ratelimit"),
            format!("\"api\";r={remaining};t={reset}")
        );
        assert!(headers.get("retry-after").is_none());
        assert!(
            headers.get("x-ratelimit-limit").is_none(),
            "legacy is opt-in"
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "ok");
    }

    let refused = send(&limits, Request::new(String::new())).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let headers = refused.headers();
    assert_eq!(header(headers, "retry-after"), "3", "2.5 s, rounded up");
    assert_eq!(header(headers, "ratelimit"), "\"api\";r=0;t=3");
    assert_eq!(header(headers, "ratelimit-policy"), "\"api\";q=4;w=10");
    assert_eq!(header(headers, "content-type"), "text/plain; charset=utf-8");
    let body = refused.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "rate limit exceeded: retry after 3 s\n");

    setup.clock.advance(Duration::from_millis(2400));
    let refused = send(&limits, Request::new(String::new())).await;
    assert_eq!(
        header(refused.headers(), "retry-after"),
        "1",
        "0.1 s is 1 s"
    );
    setup.clock.advance(Duration::from_millis(100));
    assert_eq!(
        status(&limits, Request::new(String::new())).await,
        StatusCode::OK
    );
}

/// A token bucket shows the rate users configured, not the burst its decisions
/// count: 10/s with the default burst of 1 is 10 per 1 s, as the Python results say.
#[tokio::test]
async fn a_token_bucket_shows_its_rate_as_configured() {
    let setup = Setup::new(&[("api", LimiterBuilder::token_bucket("m", 10.0))]);
    let limits = RouteLimits::builder()
        .limit(Limit::new(setup.limiter("api"), LimiterWide))
        .legacy_headers(true)
        .build();
    let response = send(&limits, Request::new(String::new())).await;
    let headers = response.headers();
    assert_eq!(header(headers, "ratelimit-policy"), "\"api\";q=10;w=1");
    assert_eq!(header(headers, "x-ratelimit-limit"), "10");
    assert_eq!(
        header(headers, "x-ratelimit-remaining"),
        "0",
        "a burst of 1"
    );
    let refused = send(&limits, Request::new(String::new())).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(refused.headers(), "ratelimit"), "\"api\";r=0;t=1");
}

#[tokio::test]
async fn legacy_headers_and_switching_headers_off() {
    let setup = Setup::new(&[("api", LimiterBuilder::sliding_window("m", 2, 30.0))]);
    let limiter = setup.limiter("api");
    let legacy = RouteLimits::builder()
        .limit(Limit::new(limiter.clone(), LimiterWide))
        .legacy_headers(true)
        .build();
    let response = send(&legacy, Request::new(String::new())).await;
    let headers = response.headers();
    assert_eq!(header(headers, "ratelimit-policy"), "\"api\";q=2;w=30");
    assert_eq!(header(headers, "x-ratelimit-limit"), "2");
    assert_eq!(header(headers, "x-ratelimit-remaining"), "1");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let reset: u64 = header(headers, "x-ratelimit-reset").parse().unwrap();
    assert!((now + 29..=now + 31).contains(&reset), "{reset} vs {now}");

    let quiet = RouteLimits::builder()
        .limit(Limit::new(limiter, LimiterWide))
        .headers(false)
        .build();
    let response = send(&quiet, Request::new(String::new())).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("ratelimit").is_none());
    let refused = send(&quiet, Request::new(String::new())).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        refused.headers().get("ratelimit").is_some(),
        "a refusal always explains itself"
    );
}

#[tokio::test]
async fn a_header_the_service_set_itself_is_kept() {
    let setup = Setup::new(&[("api", LimiterBuilder::token_bucket("m", 1.0).burst(2))]);
    let limits = RouteLimits::builder()
        .limit(Limit::new(setup.limiter("api"), LimiterWide))
        .build();
    let service = limits.layer().layer(service_fn(|_: Request<String>| async {
        let mut response = Response::new(RateLimitBody::new(String::new()));
        response
            .headers_mut()
            .insert("ratelimit", "\"own\";r=9;t=0".parse().unwrap());
        Ok::<_, Infallible>(response)
    }));
    let response = service.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(header(response.headers(), "ratelimit"), "\"own\";r=9;t=0");
    assert_eq!(
        header(response.headers(), "ratelimit-policy"),
        "\"api\";q=2;w=2"
    );
}

#[tokio::test]
async fn a_refusing_limit_consumes_nothing_from_the_others() {
    let setup = Setup::new(&[
        ("wide", LimiterBuilder::token_bucket("m", 1.0).burst(5)),
        ("tight", LimiterBuilder::token_bucket("m", 1.0).burst(1)),
    ]);
    let (wide, tight) = (setup.limiter("wide"), setup.limiter("tight"));
    let limits = RouteLimits::builder()
        .limit(Limit::new(wide.clone(), LimiterWide))
        .limit(Limit::new(tight, LimiterWide))
        .build();
    let admitted = send(&limits, Request::new(String::new())).await;
    assert_eq!(admitted.status(), StatusCode::OK);
    // The tightest limit (least remaining) comes first, as in the Python headers.
    assert_eq!(
        header(admitted.headers(), "ratelimit"),
        "\"tight\";r=0;t=1, \"wide\";r=4;t=1"
    );

    for _ in 0..3 {
        let refused = send(&limits, Request::new(String::new())).await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(refused.headers(), "retry-after"), "1");
        assert_eq!(
            header(refused.headers(), "ratelimit"),
            "\"tight\";r=0;t=1, \"wide\";r=4;t=1"
        );
    }
    assert_eq!(
        wide.state().await.unwrap().remaining(),
        4,
        "three refusals took nothing from `wide`"
    );
}

#[tokio::test]
async fn a_concurrency_slot_is_held_until_the_response_body_is_done() {
    let setup = Setup::new(&[("slots", LimiterBuilder::new("m").max_concurrent(1))]);
    let slots = setup.limiter("slots");
    let limits = RouteLimits::builder()
        .limit(Limit::new(slots.clone(), LimiterWide))
        .build();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let (finish_tx, finish_rx) = tokio::sync::oneshot::channel::<()>();
    let gate = Arc::new(std::sync::Mutex::new(Some((started_tx, finish_rx))));
    let service = limits.layer().layer(service_fn(move |_: Request<String>| {
        let gate = gate.lock().unwrap().take();
        async move {
            if let Some((started, finish)) = gate {
                let _ = started.send(());
                let _ = finish.await;
            }
            Ok::<_, Infallible>(Response::new(RateLimitBody::new(String::from("done"))))
        }
    }));

    let running = tokio::spawn(service.clone().oneshot(Request::new(String::new())));
    started_rx.await.unwrap();
    assert!(
        !slots.state().await.unwrap().allowed(),
        "held while the service runs"
    );
    let refused = service
        .clone()
        .oneshot(Request::new(String::new()))
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    // The cap is the draft's concurrent-requests quota; a slot comes back when its
    // holder lets go, so Retry-After is a short hint, not a lease's lifetime.
    let headers = refused.headers();
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(
        headers["ratelimit-policy"],
        "\"slots\";q=1;qu=\"concurrent-requests\""
    );
    assert_eq!(headers["ratelimit"], "\"slots\";r=0");

    finish_tx.send(()).unwrap();
    let response = running.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        !slots.state().await.unwrap().allowed(),
        "held until the body is sent"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "done");
    assert!(
        slots.state().await.unwrap().allowed(),
        "released with the body"
    );

    let response = service
        .clone()
        .oneshot(Request::new(String::new()))
        .await
        .unwrap();
    drop(response);
    assert!(
        slots.state().await.unwrap().allowed(),
        "a dropped body releases too"
    );
}

#[tokio::test]
async fn nested_layers_hold_their_slots_in_one_body_even_a_refusal() {
    let setup = Setup::new(&[
        ("outer", LimiterBuilder::new("m").max_concurrent(1)),
        ("inner", LimiterBuilder::new("m").max_concurrent(1)),
        ("none_left", LimiterBuilder::token_bucket("m", 1.0).burst(1)),
    ]);
    let (outer, inner) = (setup.limiter("outer"), setup.limiter("inner"));
    let layer = |limiter: &Limiter| {
        RouteLimits::builder()
            .limit(Limit::new(limiter.clone(), LimiterWide))
            .build()
            .layer()
    };
    let service = layer(&outer).layer(layer(&inner).layer(ok_service()));
    let response = service.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!outer.state().await.unwrap().allowed(), "outer held");
    assert!(!inner.state().await.unwrap().allowed(), "inner held");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "ok");
    assert!(outer.state().await.unwrap().allowed(), "outer released");
    assert!(inner.state().await.unwrap().allowed(), "inner released");

    // The inner layer refuses: the outer one's slot is held by the refusal's text.
    let refusing = layer(&setup.limiter("none_left"));
    let service = layer(&outer).layer(refusing.layer(ok_service()));
    assert_eq!(
        status(
            &RouteLimits::builder()
                .limit(Limit::new(setup.limiter("none_left"), LimiterWide))
                .build(),
            Request::new(String::new())
        )
        .await,
        StatusCode::OK,
        "the only token taken"
    );
    let refused = service.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        !outer.state().await.unwrap().allowed(),
        "held by the refusal"
    );
    let body = refused.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "rate limit exceeded: retry after 1 s\n");
    assert!(outer.state().await.unwrap().allowed(), "released with it");
}

/// Behind axum, the layer answers in axum's own body type (which axum passes on as
/// it is); a response that holds a slot holds it until its streamed body ends.
#[cfg(feature = "axum")]
#[tokio::test]
async fn an_axum_body_holds_its_slot_until_it_is_streamed() {
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use bytes::Bytes;

    let setup = Setup::new(&[("slots", LimiterBuilder::new("m").max_concurrent(1))]);
    let slots = setup.limiter("slots");
    let limits = RouteLimits::builder()
        .limit(Limit::new(slots.clone(), LimiterWide))
        .build();
    let (chunks, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(1);
    let receiver = Arc::new(std::sync::Mutex::new(Some(receiver)));
    let handler = move || {
        let receiver = receiver
            .lock()
            .unwrap()
            .take()
            .expect("one streamed response");
        async move {
            Body::from_stream(futures::stream::unfold(receiver, |mut receiver| async {
                receiver.recv().await.map(|chunk| (chunk, receiver))
            }))
        }
    };
    let router = Router::new().route("/", get(handler));

    // The layer's response type is the inner service's: nothing for axum to box.
    fn answers_axum_bodies<S: Service<Request<Body>, Response = Response<Body>>>(_: &S) {}
    answers_axum_bodies(&limits.layer().layer(router.clone()));

    let app = router.layer(limits.layer());
    let response = app
        .clone()
        .oneshot(Request::new(Body::empty()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    chunks.send(Ok(Bytes::from("a"))).await.unwrap();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "a");
    assert!(
        !slots.state().await.unwrap().allowed(),
        "held while streaming"
    );

    let refused = app
        .clone()
        .oneshot(Request::new(Body::empty()))
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["ratelimit"], "\"slots\";r=0");
    let text = refused.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(text, "rate limit exceeded: retry after 1 s\n");

    chunks.send(Ok(Bytes::from("b"))).await.unwrap();
    drop(chunks);
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, "b");
    assert!(
        slots.state().await.unwrap().allowed(),
        "released at its end"
    );
}

#[tokio::test]
async fn header_keys_partition_and_a_missing_header_is_refused_or_pooled() {
    let setup = Setup::new(&[("api", LimiterBuilder::token_bucket("m", 1.0))]);
    let key = || Header::named("x-api-key").unwrap();
    let limits = RouteLimits::builder()
        .limit(Limit::new(setup.limiter("api"), key()))
        .build();
    let with_key = |value: &str| {
        let mut request = Request::new(String::new());
        request
            .headers_mut()
            .insert("x-api-key", value.parse().unwrap());
        request
    };
    assert_eq!(status(&limits, with_key("a")).await, StatusCode::OK);
    assert_eq!(
        status(&limits, with_key("a")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(status(&limits, with_key("b")).await, StatusCode::OK);

    let missing = send(&limits, Request::new(String::new())).await;
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    let body = missing.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "the request has no `x-api-key` header\n");
    assert_eq!(status(&limits, with_key("")).await, StatusCode::BAD_REQUEST);

    let pooled = RouteLimits::builder()
        .limit(Limit::new(setup.limiter("api"), key()))
        .on_missing_key(MissingKey::LimiterWide)
        .build();
    assert_eq!(
        status(&pooled, Request::new(String::new())).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&pooled, Request::new(String::new())).await,
        StatusCode::TOO_MANY_REQUESTS,
        "requests without a key share the limiter-wide key"
    );
}

#[tokio::test]
async fn a_closure_picks_the_key() {
    let setup = Setup::new(&[("api", LimiterBuilder::token_bucket("m", 1.0))]);
    let by_tenant = |parts: &Parts| {
        let path = parts.uri.path().strip_prefix("/tenants/")?;
        Some(path.split('/').next()?.to_owned())
    };
    let limits = RouteLimits::builder()
        .limit(Limit::new(setup.limiter("api"), by_tenant))
        .build();
    let get = |uri: &str| Request::get(uri).body(String::new()).unwrap();
    assert_eq!(status(&limits, get("/tenants/a/x")).await, StatusCode::OK);
    assert_eq!(
        status(&limits, get("/tenants/a/y")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(status(&limits, get("/tenants/b/x")).await, StatusCode::OK);
    assert_eq!(
        status(&limits, get("/other")).await,
        StatusCode::BAD_REQUEST
    );
}

fn client_key(setup: &Setup, request: Request<String>) -> Result<String, ratesync::http::KeyError> {
    let (mut parts, _) = request.into_parts();
    ClientIp::from_config(setup.registry.config()).extract(&mut parts)
}

fn with_header(mut request: Request<String>, name: &'static str, value: &str) -> Request<String> {
    request.headers_mut().append(name, value.parse().unwrap());
    request
}

#[test]
fn client_ip_believes_forwarding_headers_only_from_trusted_proxies() {
    let setup = Setup::new(&[]);
    let key = |request| client_key(&setup, request).unwrap();
    // An untrusted peer's forged headers change nothing.
    let forged = with_header(request_from("203.0.113.9"), "x-forwarded-for", "1.1.1.1");
    let forged = with_header(forged, "x-real-ip", "1.1.1.2");
    assert_eq!(key(forged), "203.0.113.9");
    // A trusted chain is read right to left, up to the first untrusted hop.
    let chain = with_header(
        request_from("10.0.0.1"),
        "x-forwarded-for",
        "6.6.6.6, 198.51.100.7, 10.0.0.2",
    );
    assert_eq!(key(chain), "198.51.100.7");
    // Several header lines are one list.
    let lines = with_header(request_from("10.0.0.1"), "x-forwarded-for", "198.51.100.7");
    let lines = with_header(lines, "x-forwarded-for", "10.9.9.9");
    assert_eq!(key(lines), "198.51.100.7");
    // An unusable hop stops the walk at the last trusted address.
    let garbage = with_header(
        request_from("10.0.0.1"),
        "x-forwarded-for",
        "1.2.3.4, nonsense",
    );
    assert_eq!(key(garbage), "10.0.0.1");
    // Every hop trusted: the leftmost is the best known.
    let internal = with_header(request_from("10.0.0.1"), "x-forwarded-for", "10.0.0.3");
    assert_eq!(key(internal), "10.0.0.3");
    // Without X-Forwarded-For: Forwarded (RFC 7239), then X-Real-IP.
    let forwarded = with_header(
        request_from("10.0.0.1"),
        "forwarded",
        "for=192.0.2.60;proto=http, for=\"[2001:db8::5]:8080\"",
    );
    assert_eq!(key(forwarded), "192.0.2.60", "2001:db8::/32 is trusted too");
    let real_ip = with_header(request_from("10.0.0.1"), "x-real-ip", "192.0.2.61");
    assert_eq!(key(real_ip), "192.0.2.61");
    // No headers: the peer.
    assert_eq!(key(request_from("10.0.0.1")), "10.0.0.1");
    // No peer address at all is a setup error (500), not the client's.
    let error = client_key(&setup, Request::new(String::new())).unwrap_err();
    assert!(!error.is_client_error(), "{error}");
}

#[tokio::test]
async fn client_ip_keys_the_layer() {
    let setup = Setup::new(&[("api", LimiterBuilder::token_bucket("m", 1.0))]);
    let limits = RouteLimits::builder()
        .limit(Limit::new(
            setup.limiter("api"),
            ClientIp::from_config(setup.registry.config()),
        ))
        .build();
    let via_proxy = |client: &str| with_header(request_from("10.0.0.1"), "x-forwarded-for", client);
    assert_eq!(
        status(&limits, via_proxy("198.51.100.1")).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&limits, via_proxy("198.51.100.1")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        status(&limits, via_proxy("198.51.100.2")).await,
        StatusCode::OK
    );
    // A client that is not behind the proxy cannot borrow another's key.
    let forged = with_header(
        request_from("198.51.100.3"),
        "x-forwarded-for",
        "198.51.100.9",
    );
    assert_eq!(status(&limits, forged).await, StatusCode::OK);
    assert!(
        setup
            .limiter("api")
            .key("198.51.100.3")
            .state()
            .await
            .unwrap()
            .remaining()
            == 0
    );
    assert!(setup
        .limiter("api")
        .key("198.51.100.9")
        .state()
        .await
        .unwrap()
        .allowed());
}

#[tokio::test]
async fn an_impossible_cost_is_a_server_error() {
    let setup = Setup::new(&[("api", LimiterBuilder::token_bucket("m", 1.0).burst(3))]);
    let limits = RouteLimits::builder()
        .limit(Limit::new(setup.limiter("api"), LimiterWide).cost(4))
        .build();
    let response = send(&limits, Request::new(String::new())).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        body, "internal server error\n",
        "no internals leak to the client"
    );
}

#[tokio::test]
async fn a_fail_closed_outage_is_503_and_a_fail_open_one_admits() {
    let config = Config::builder()
        .store("remote", StoreBuilder::memory())
        .limiter(
            "closed",
            LimiterBuilder::token_bucket("remote", 1.0).fail_closed(true),
        )
        .limiter("open", LimiterBuilder::token_bucket("remote", 1.0))
        .build()
        .unwrap();
    // The memory engine behind the conformance suite's fault switch, turned to "down":
    // every call fails as an unreachable server would.
    let faults = Arc::new(Faults::default());
    faults.down.store(true, Ordering::SeqCst);
    let engine = FlakyEngine {
        inner: MemoryEngine::new(&MemoryConfig::default()),
        faults,
    };
    let registry = Registry::builder(config)
        .engine("remote", Arc::new(engine))
        .build()
        .unwrap();
    let (closed, open) = (
        registry.limiter("closed").unwrap(),
        registry.limiter("open").unwrap(),
    );

    let limits = RouteLimits::builder()
        .limit(Limit::new(closed.clone(), LimiterWide))
        .build();
    let response = send(&limits, Request::new(String::new())).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().get("retry-after").is_none());

    // Two limits: the fail-open one's failed peek does not block; the take admits.
    let both_open = RouteLimits::builder()
        .limit(Limit::new(open.clone(), LimiterWide))
        .limit(Limit::new(open.clone(), Header::named("x-user").unwrap()))
        .build();
    let request = with_header(Request::new(String::new()), "x-user", "u");
    assert_eq!(status(&both_open, request).await, StatusCode::OK);

    let mixed = RouteLimits::builder()
        .limit(Limit::new(open, LimiterWide))
        .limit(Limit::new(closed, LimiterWide))
        .build();
    assert_eq!(
        status(&mixed, Request::new(String::new())).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

/// A service that is ready only once polled, like a `ConcurrencyLimit`: calling a
/// clone that was never polled ready is the bug of tower-rs/tower#764's kind.
#[derive(Default)]
struct ReadyOnce {
    ready: bool,
    misuse: Arc<AtomicBool>,
}

impl Clone for ReadyOnce {
    fn clone(&self) -> Self {
        ReadyOnce {
            ready: false,
            misuse: self.misuse.clone(),
        }
    }
}

impl Service<Request<String>> for ReadyOnce {
    type Response = Response<RateLimitBody<String>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.ready = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<String>) -> Self::Future {
        if !std::mem::take(&mut self.ready) {
            self.misuse.store(true, Ordering::SeqCst);
        }
        std::future::ready(Ok(Response::new(RateLimitBody::new(String::new()))))
    }
}

#[tokio::test]
async fn the_service_polled_ready_is_the_one_called() {
    let setup = Setup::new(&[("api", LimiterBuilder::token_bucket("m", 1.0).burst(10))]);
    // One limit is decided in `call` itself; two are a group, checked in the future.
    let one = RouteLimits::builder()
        .limit(Limit::new(setup.limiter("api"), LimiterWide))
        .build();
    let two = RouteLimits::builder()
        .limit(Limit::new(setup.limiter("api"), LimiterWide))
        .limit(Limit::new(
            setup.limiter("api"),
            Header::named("x-user").unwrap(),
        ))
        .build();
    for limits in [one, two] {
        let inner = ReadyOnce::default();
        let misuse = inner.misuse.clone();
        let mut service = limits.layer().layer(inner);
        for _ in 0..3 {
            let request = with_header(Request::new(String::new()), "x-user", "u");
            let response = service.ready().await.unwrap().call(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
        assert!(
            !misuse.load(Ordering::SeqCst),
            "called a clone never polled ready"
        );
    }
}

/// A route of one limit on a store deciding in this process is checked in `call`
/// itself, without a future; on any other store the check is awaited. Both answer
/// the same, header for header.
#[tokio::test]
async fn a_store_asked_later_answers_as_one_deciding_in_place() {
    let limiter = LimiterBuilder::token_bucket("m", 0.4).burst(3);
    let in_place = Setup::new(&[("api", limiter.clone())]);
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(1));
    let faults = Arc::new(Faults::default());
    let engine = FlakyEngine {
        inner: MemoryEngine::with_clock(&MemoryConfig::default(), Arc::new(clock.clone())),
        faults: faults.clone(),
    };
    let config = Config::builder()
        .store("m", StoreBuilder::memory())
        .trusted_proxy_networks(["10.0.0.0/8", "2001:db8::/32"])
        .limiter("api", limiter)
        .build()
        .unwrap();
    let asked = Registry::builder(config)
        .engine("m", Arc::new(engine))
        .build()
        .unwrap();
    let route = |registry: &Registry| {
        RouteLimits::builder()
            .limit(Limit::new(
                registry.limiter("api").unwrap(),
                ClientIp::from_config(registry.config()),
            ))
            .build()
    };
    let (in_place, asked) = (route(&in_place.registry), route(&asked));
    let forwarded = |client: &str| with_header(request_from("10.0.0.1"), "x-forwarded-for", client);
    for client in ["203.0.113.9", "2001:db8:0:0:0:0:0:7"] {
        for _ in 0..4 {
            let expected = send(&in_place, forwarded(client)).await;
            let response = send(&asked, forwarded(client)).await;
            assert_eq!(response.status(), expected.status());
            assert_eq!(response.headers(), expected.headers());
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let expected = expected.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, expected);
        }
        let last = send(&in_place, forwarded(client)).await;
        assert_eq!(last.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    assert!(
        faults.calls.load(Ordering::SeqCst) >= 8,
        "the check was awaited"
    );
}

/// `docs/design.md#shadow-mode`: a limiter in shadow mode answers every request
/// normally, on the one-limit path and in a group, with its real numbers in the
/// headers.
#[tokio::test]
async fn a_shadow_limiter_never_answers_429() {
    let setup = Setup::new(&[
        (
            "trial",
            LimiterBuilder::sliding_window("m", 2, 60.0).shadow(true),
        ),
        ("api", LimiterBuilder::token_bucket("m", 100.0).burst(100)),
    ]);
    let alone = RouteLimits::builder()
        .limit(Limit::new(setup.limiter("trial"), LimiterWide))
        .build();
    for _ in 0..4 {
        let response = send(&alone, Request::new(String::new())).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = send(&alone, Request::new(String::new())).await;
    assert_eq!(
        header(response.headers(), "ratelimit"),
        "\"trial\";r=0;t=60",
        "the limit's real state"
    );
    let together = RouteLimits::builder()
        .limit(Limit::new(setup.limiter("trial"), LimiterWide))
        .limit(Limit::new(setup.limiter("api"), LimiterWide))
        .build();
    let response = send(&together, Request::new(String::new())).await;
    assert_eq!(response.status(), StatusCode::OK, "a group too");
}

/// `docs/design.md#hot-reload`: a route built before a reload shows the new quota
/// after it (the layer's handles follow, and so do its headers).
#[tokio::test]
async fn a_route_shows_the_quota_a_reload_gave() {
    let setup = Setup::new(&[("api", LimiterBuilder::sliding_window("m", 2, 60.0))]);
    let limits = RouteLimits::builder()
        .limit(Limit::new(setup.limiter("api"), LimiterWide))
        .build();
    let response = send(&limits, Request::new(String::new())).await;
    assert_eq!(
        header(response.headers(), "ratelimit-policy"),
        "\"api\";q=2;w=60"
    );
    let before = setup.registry.config().clone();
    let mut after = before.clone();
    after.limiters = Config::builder()
        .store("m", StoreBuilder::memory())
        .limiter("api", LimiterBuilder::sliding_window("m", 5, 60.0))
        .build()
        .unwrap()
        .limiters;
    let _reloaded = setup.registry.reloaded(&before, after).unwrap();
    let response = send(&limits, Request::new(String::new())).await;
    assert_eq!(
        header(response.headers(), "ratelimit-policy"),
        "\"api\";q=5;w=60"
    );
    assert_eq!(header(response.headers(), "ratelimit"), "\"api\";r=3;t=60");
}
