//! `RateLimited`: the axum extractor, for limits checked inside a handler's
//! signature rather than by a layer.

use std::marker::PhantomData;

use axum::extract::{FromRef, FromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::HeaderMap;

use super::limits::{Checked, RouteLimits};
use super::rejection::Rejection;
use crate::Permit;

/// Proof that the request passed the [`RouteLimits`] `L`, taken from the router's
/// state (`L: FromRef<S>`); a refusal answers with the same response as the layer.
///
/// The permits (concurrency slots) are held while the value lives: keep it until
/// the handler's work is done. Its [`headers`](Self::headers) are the `RateLimit`
/// headers for the response; return them with it to show them.
///
/// With one set of limits, the state can be the `RouteLimits` itself (or implement
/// `FromRef` for it). For several, give each its own type that implements
/// `FromRef<S>` and `AsRef<RouteLimits>`, and extract `RateLimited<ThatType>`.
///
/// ```
/// use axum::{routing::get, Router};
/// use ratesync::http::{ClientIp, Limit, RateLimited, RouteLimits};
/// # fn app(limiter: ratesync::Limiter) -> Router {
/// async fn handler(limited: RateLimited) -> (axum::http::HeaderMap, &'static str) {
///     (limited.headers().clone(), "hello")
/// }
///
/// let limits = RouteLimits::builder()
///     .limit(Limit::new(limiter, ClientIp::peer()))
///     .build();
/// Router::new().route("/", get(handler)).with_state(limits)
/// # }
/// ```
pub struct RateLimited<L = RouteLimits> {
    permits: Vec<Permit>,
    headers: HeaderMap,
    _limits: PhantomData<fn() -> L>,
}

impl<L> RateLimited<L> {
    /// The `RateLimit` headers of the decision (empty when the limits were built
    /// with `headers(false)`).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The permits taken, one per limit, in order.
    pub fn permits(&self) -> &[Permit] {
        &self.permits
    }
}

impl<S, L> FromRequestParts<S> for RateLimited<L>
where
    S: Send + Sync,
    L: FromRef<S> + AsRef<RouteLimits>,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Rejection> {
        let limits: RouteLimits = L::from_ref(state).as_ref().clone();
        let admitted = match limits.check_now(parts) {
            Checked::Now(decided) => decided?,
            Checked::Later(keys) => limits.check(&keys).await?,
        };
        let mut headers = HeaderMap::new();
        admitted.headers.add_to(&mut headers);
        Ok(RateLimited {
            permits: admitted.permits.into_vec(),
            headers,
            _limits: PhantomData,
        })
    }
}

impl AsRef<RouteLimits> for RouteLimits {
    fn as_ref(&self) -> &RouteLimits {
        self
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        self.into_parts().into_response()
    }
}

impl<L> std::fmt::Debug for RateLimited<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimited")
            .field("permits", &self.permits)
            .field("headers", &self.headers)
            .finish()
    }
}
