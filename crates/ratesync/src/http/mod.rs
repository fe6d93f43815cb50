//! The HTTP surface (`docs/design.md#http`): a tower [`RateLimitLayer`] and, with the
//! `axum` feature, the `RateLimited` extractor.
//!
//! A route's [`RouteLimits`] are one or more [`Limit`]s: a limiter, a
//! [`KeyExtractor`] that picks the key a request counts against ([`ClientIp`]
//! through trusted proxies only, a [`Header`], an axum `PathParam`, the
//! [`LimiterWide`] key, or any closure over the request's `Parts`), and a cost. A
//! request is admitted only if every limit admits it; a refused one consumes
//! nothing (see [`crate::try_acquire_all`] for the one race left). HTTP requests
//! never wait for room: they are answered at once.
//!
//! | outcome | response |
//! |---|---|
//! | admitted | the inner response, plus `RateLimit` / `RateLimit-Policy` (switch off with `headers(false)`) |
//! | a limit refused | 429, `Retry-After` (whole seconds, rounded up) and the `RateLimit` headers |
//! | a `fail_closed` limiter's store is down | 503 (a fail-open limiter admits) |
//! | no key in the request | 400 (500 when the server's setup is at fault); or the limiter-wide key, with [`MissingKey::LimiterWide`] |
//! | a cost the limiter can never admit | 500: a misconfigured route |
//!
//! The legacy `X-RateLimit-Limit/Remaining/Reset` headers are added with
//! `legacy_headers(true)`. The headers are the Python FastAPI integration's, byte
//! for byte. Concurrency slots are held until the response body has been sent.
//!
//! The layer's responses have the inner service's body type, which must be a
//! [`LimitedBody`]: axum's `Body` (feature `axum`), or [`RateLimitBody`], which wraps
//! any other body (`RateLimitBody::new`), as below.
//!
//! [`ClientIp`] believes `X-Forwarded-For`, `Forwarded` and `X-Real-IP` only from
//! the proxies in [`TrustedProxies`] (by default none; [`ClientIp::from_config`]
//! reads `[http] trusted_proxy_networks`, or `[fastapi]` as rate-sync files name it,
//! as the Python integration does).
//!
//! ```
//! use std::convert::Infallible;
//!
//! use http::{Request, Response};
//! use ratesync::http::{ClientIp, Header, Limit, RateLimitBody, RouteLimits};
//! use ratesync::{Config, LimiterBuilder, Registry, StoreBuilder};
//! use tower::{service_fn, Layer};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::builder()
//!     .store("local", StoreBuilder::memory())
//!     .limiter("per_ip", LimiterBuilder::token_bucket("local", 10.0).burst(20))
//!     .limiter("per_key", LimiterBuilder::sliding_window("local", 1000, 3600.0))
//!     .trusted_proxy_networks(["10.0.0.0/8"])
//!     .build()?;
//! let registry = Registry::from_config(config)?;
//!
//! let limits = RouteLimits::builder()
//!     .limit(Limit::new(registry.limiter("per_ip")?, ClientIp::from_config(registry.config())))
//!     .limit(Limit::new(registry.limiter("per_key")?, Header::named("x-api-key")?).cost(2))
//!     .legacy_headers(true)
//!     .build();
//!
//! let service = limits.layer().layer(service_fn(|_: Request<String>| async {
//!     Ok::<_, Infallible>(Response::new(RateLimitBody::new(String::from("hello"))))
//! }));
//! # let _ = service;
//! # Ok(()) }
//! ```
//!
//! Files: `limits` (the limits of a route and their one check), `key` and
//! `client_ip` (which key a request counts against), `headers` (the `RateLimit`
//! headers), `value` (header values and keys written on the stack), `rejection` (the
//! refusal responses), `layer` / `service` / `future` / `body` (the tower
//! middleware), `extractor` (axum).

mod body;
mod client_ip;
#[cfg(feature = "axum")]
mod extractor;
mod future;
mod headers;
mod key;
mod layer;
mod limits;
mod rejection;
mod service;
mod value;

pub use self::body::{LimitedBody, RateLimitBody};
pub use self::client_ip::{
    client_ip, client_ip_from_lines, parse_ip, InvalidNetwork, TrustedProxies,
};
#[cfg(feature = "axum")]
pub use self::extractor::RateLimited;
pub use self::future::ResponseFuture;
pub use self::headers::{rate_limit_headers, LimitState, Quota};
#[cfg(feature = "axum")]
pub use self::key::PathParam;
pub use self::key::{ClientIp, Header, KeyError, KeyExtractor, LimiterWide};
pub use self::layer::RateLimitLayer;
pub use self::limits::{Limit, MissingKey, RouteLimits, RouteLimitsBuilder};
pub use self::rejection::Rejection;
pub use self::service::RateLimitService;
