//! Why a request was not let through, and the response that says so. The layer and
//! the axum extractor answer with the same statuses, headers and bodies.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, StatusCode};

use super::key::KeyError;
use crate::AcquireError;

/// A request refused by its route's limits.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// A limit refused (HTTP 429). `headers` carry `Retry-After` and the
    /// `RateLimit` headers of the refusing limit, then of the others.
    #[error("rate limit exceeded: retry after {retry_after} s")]
    RateLimited {
        /// The `Retry-After` value: whole seconds, rounded up, at least 1.
        retry_after: u64,
        /// The headers of the response.
        headers: HeaderMap,
    },
    /// The store of a `fail_closed` limiter is down (HTTP 503, `docs/design.md#failure-policy`).
    #[error(transparent)]
    StoreUnavailable(AcquireError),
    /// A limit's cost exceeds its limiter's capacity, so no request could ever be
    /// admitted (HTTP 500): the route is misconfigured, the client did nothing wrong.
    #[error(transparent)]
    InvalidCost(AcquireError),
    /// No key could be taken from the request (HTTP 400, or 500 when the server's
    /// setup is at fault; see [`KeyError::is_client_error`]).
    #[error(transparent)]
    Key(KeyError),
}

impl Rejection {
    /// The HTTP status of the response.
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Rejection::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::InvalidCost(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Rejection::Key(error) if error.is_client_error() => StatusCode::BAD_REQUEST,
            Rejection::Key(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Status, headers and a short plain-text body. A server-side fault is logged
    /// here. A missing key that is the server's wiring (no peer address, a path
    /// parameter the route lacks) is named in the body too, since it shows on the
    /// first request and a log needs a `tracing` subscriber to be seen; the text
    /// describes the setup, never the request or the configuration. Other faults
    /// are described to the client only by their status.
    pub(crate) fn into_parts(self) -> (StatusCode, HeaderMap, Bytes) {
        let status = self.status();
        let (mut headers, body) = match self {
            Rejection::RateLimited {
                retry_after,
                headers,
            } => (
                headers,
                format!("rate limit exceeded: retry after {retry_after} s\n"),
            ),
            Rejection::StoreUnavailable(error) => {
                tracing::warn!(%error, "refusing a request: rate limiter store unavailable");
                (HeaderMap::new(), "rate limiter unavailable\n".to_owned())
            }
            Rejection::Key(error) if error.is_client_error() => {
                (HeaderMap::new(), format!("{error}\n"))
            }
            Rejection::InvalidCost(error) => {
                tracing::error!(%error, "refusing a request: misconfigured rate limit");
                (HeaderMap::new(), "internal server error\n".to_owned())
            }
            Rejection::Key(error) => {
                tracing::error!(%error, "refusing a request: no rate-limit key");
                (
                    HeaderMap::new(),
                    format!("internal server error (rate limit setup): {error}\n"),
                )
            }
        };
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        (status, headers, Bytes::from(body))
    }
}
