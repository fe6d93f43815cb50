//! `RateLimitService`: checks a request's limits, then calls the inner service or
//! answers the refusal itself.

use std::task::{Context, Poll};

use http::{Request, Response};
use tower::Service;

use super::body::LimitedBody;
use super::future::ResponseFuture;
use super::limits::{Checked, RouteLimits};

/// The service of [`RateLimitLayer`](super::RateLimitLayer).
///
/// A refused request never reaches the inner service: it gets 429 (with
/// `Retry-After` and `RateLimit` headers), 503 when a `fail_closed` limiter's store
/// is down, 400 or 500 when it has no key (see [`MissingKey`](super::MissingKey)),
/// 500 when a limit's cost can never be admitted. An admitted request's concurrency
/// slots are held until its response body has been sent (or dropped).
#[derive(Debug, Clone)]
pub struct RateLimitService<S> {
    inner: S,
    limits: RouteLimits,
}

impl<S> RateLimitService<S> {
    pub(crate) fn new(inner: S, limits: RouteLimits) -> Self {
        RateLimitService { inner, limits }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimitService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: LimitedBody,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The limits are checked per request (the key is in the request), so
        // readiness is the inner service's alone.
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        let keys = match self.limits.check_now(&mut parts) {
            // Decided in this process: the service that was polled ready is called
            // right away, as a layer without a check would (`docs/design.md#http`).
            Checked::Now(Ok(admitted)) => {
                let future = self.inner.call(Request::from_parts(parts, body));
                return ResponseFuture::calling(future, admitted);
            }
            Checked::Now(Err(rejection)) => return ResponseFuture::rejected(rejection),
            Checked::Later(keys) => keys,
        };
        // The service that was polled ready goes with this request and is called once
        // the limits admit it (whatever its readiness reserved, it keeps during the
        // check); the fresh clone stays, to be polled ready next (tower's usual swap).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let limits = self.limits.clone();
        // Boxed: the check is an async call into the stores, whose type cannot be
        // named; it owns everything it uses, so it borrows nothing from the request.
        let check = Box::pin(async move { limits.check(&keys).await });
        ResponseFuture::checking(check, inner, Request::from_parts(parts, body))
    }
}
