//! The axum side of `docs/design.md#http`: the layer on a `Router` (client IP from
//! `ConnectInfo`, path parameters) and the `RateLimited` extractor, which answers
//! refusals with the same response as the layer.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRef};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use ratesync::http::{ClientIp, Limit, LimiterWide, PathParam, RateLimited, RouteLimits};
use ratesync::{Config, LimiterBuilder, ManualClock, Registry, StoreBuilder};
use tower::{Layer, ServiceExt};

fn registry() -> Registry {
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(1));
    let config = Config::builder()
        .store("m", StoreBuilder::memory())
        .limiter("per_ip", LimiterBuilder::token_bucket("m", 0.5).burst(2))
        .limiter("per_user", LimiterBuilder::token_bucket("m", 1.0))
        .limiter("login", LimiterBuilder::sliding_window("m", 1, 60.0))
        .trusted_proxy_networks(["10.0.0.0/8"])
        .build()
        .unwrap();
    Registry::builder(config).clock(clock).build().unwrap()
}

fn get_from(uri: &str, peer: &str) -> Request<Body> {
    let mut request = Request::get(uri).body(Body::empty()).unwrap();
    let peer = SocketAddr::new(peer.parse().unwrap(), 50000);
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

async fn call(app: &Router, request: Request<Body>) -> Response {
    app.clone().oneshot(request).await.unwrap()
}

async fn text(response: Response) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn the_layer_keys_a_router_by_client_ip_from_connect_info() {
    let registry = registry();
    let limits = RouteLimits::builder()
        .limit(Limit::new(
            registry.limiter("per_ip").unwrap(),
            ClientIp::from_config(registry.config()),
        ))
        .build();
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(limits.layer());
    for _ in 0..2 {
        let response = call(&app, get_from("/", "198.51.100.1")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["ratelimit-policy"], "\"per_ip\";q=2;w=4");
        assert_eq!(text(response).await, "hello");
    }
    let refused = call(&app, get_from("/", "198.51.100.1")).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "2");
    assert_eq!(refused.headers()["ratelimit"], "\"per_ip\";r=0;t=2");

    // Behind the trusted proxy, the forwarded client is the key.
    let mut proxied = get_from("/", "10.1.1.1");
    proxied
        .headers_mut()
        .insert("x-forwarded-for", "198.51.100.2".parse().unwrap());
    assert_eq!(call(&app, proxied).await.status(), StatusCode::OK);

    // Without ConnectInfo the server is misconfigured: 500, not the client's fault.
    let bare = Request::get("/").body(Body::empty()).unwrap();
    assert_eq!(
        call(&app, bare).await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

#[tokio::test]
async fn a_path_parameter_keys_a_route_layer() {
    let registry = registry();
    let limits = RouteLimits::builder()
        .limit(Limit::new(
            registry.limiter("per_user").unwrap(),
            PathParam::new("id"),
        ))
        .build();
    let app = Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route_layer(limits.layer());
    let req = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
    assert_eq!(call(&app, req("/users/1")).await.status(), StatusCode::OK);
    assert_eq!(
        call(&app, req("/users/1")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(call(&app, req("/users/2")).await.status(), StatusCode::OK);
    assert_eq!(
        call(&app, req("/users/caf%C3%A9")).await.status(),
        StatusCode::OK
    );
    assert!(
        registry
            .limiter("per_user")
            .unwrap()
            .key("café")
            .state()
            .await
            .unwrap()
            .remaining()
            == 0,
        "the key is the percent-decoded parameter"
    );
    assert_eq!(
        call(&app, req("/nowhere")).await.status(),
        StatusCode::NOT_FOUND,
        "a route layer leaves unmatched paths alone"
    );

    // Wrapped around the whole router, the layer runs before routing: no parameter.
    let outside = limits
        .layer()
        .layer(Router::new().route("/users/{id}", get(|| async { "user" })));
    let response = outside.oneshot(req("/users/3")).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

async fn greet(limited: RateLimited) -> (HeaderMap, &'static str) {
    (limited.headers().clone(), "welcome")
}

#[tokio::test]
async fn the_extractor_admits_with_headers_and_refuses_like_the_layer() {
    let registry = registry();
    let limits = RouteLimits::builder()
        .limit(Limit::new(
            registry.limiter("per_ip").unwrap(),
            ClientIp::from_config(registry.config()),
        ))
        .legacy_headers(true)
        .build();
    let app = Router::new().route("/", get(greet)).with_state(limits);
    for remaining in ["1", "0"] {
        let response = call(&app, get_from("/", "192.0.2.1")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-ratelimit-remaining"], remaining);
        assert_eq!(text(response).await, "welcome");
    }
    let refused = call(&app, get_from("/", "192.0.2.1")).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "2");
    assert_eq!(refused.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(
        refused.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(
        text(refused).await,
        "rate limit exceeded: retry after 2 s\n"
    );
}

/// An application state with two sets of limits, one per kind of route.
#[derive(Clone)]
struct AppState {
    login: Login,
    api: RouteLimits,
}

#[derive(Clone)]
struct Login(RouteLimits);

impl AsRef<RouteLimits> for Login {
    fn as_ref(&self) -> &RouteLimits {
        &self.0
    }
}

impl FromRef<AppState> for Login {
    fn from_ref(state: &AppState) -> Self {
        state.login.clone()
    }
}

impl FromRef<AppState> for RouteLimits {
    fn from_ref(state: &AppState) -> Self {
        state.api.clone()
    }
}

#[tokio::test]
async fn each_route_can_extract_its_own_limits_from_the_state() {
    let registry = registry();
    let limit = |name: &str| Limit::new(registry.limiter(name).unwrap(), LimiterWide);
    let state = AppState {
        login: Login(RouteLimits::builder().limit(limit("login")).build()),
        api: RouteLimits::builder().limit(limit("per_ip")).build(),
    };
    let app = Router::new()
        .route("/login", get(|_: RateLimited<Login>| async { "in" }))
        .route("/api", get(|_: RateLimited| async { "data" }))
        .with_state(state);
    let req = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
    assert_eq!(call(&app, req("/login")).await.status(), StatusCode::OK);
    let refused = call(&app, req("/login")).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "60");
    assert_eq!(call(&app, req("/api")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn serving_without_connect_info_names_the_fix_in_the_500() {
    let registry = registry();
    let limits = RouteLimits::builder()
        .limit(Limit::new(
            registry.limiter("per_ip").unwrap(),
            ClientIp::from_config(registry.config()),
        ))
        .build();
    let layered = Router::new()
        .route("/", get(|| async { "hello" }))
        .route_layer(limits.layer());
    let extracted = Router::new()
        .route("/", get(greet))
        .with_state(limits.clone());
    for app in [layered, extracted] {
        // What `axum::serve(listener, app)` gives a handler: no `ConnectInfo`.
        let bare = Request::get("/").body(Body::empty()).unwrap();
        let response = call(&app, bare).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = text(response).await;
        assert!(
            body.contains("`ClientIp` needs the peer address")
                && body.contains("into_make_service_with_connect_info::<SocketAddr>()"),
            "the body names the cause without a tracing subscriber: {body:?}"
        );
    }
}
