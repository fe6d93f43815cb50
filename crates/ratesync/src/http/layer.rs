//! `RateLimitLayer`: wraps a service so that every request passes its route's limits.

use tower::Layer;

use super::limits::RouteLimits;
use super::service::RateLimitService;

/// A tower [`Layer`] enforcing [`RouteLimits`]. Services it builds share the limits
/// (one `Arc`), so cloned services count against the same state.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limits: RouteLimits,
}

impl RateLimitLayer {
    /// A layer enforcing `limits`.
    pub fn new(limits: RouteLimits) -> Self {
        RateLimitLayer { limits }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService::new(inner, self.limits.clone())
    }
}
