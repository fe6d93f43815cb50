//! The response body: [`LimitedBody`], what the layer needs of the inner service's
//! body type (a refusal's text; holding an admitted request's permits until the body
//! has been sent), and [`RateLimitBody`], which gives that to any body.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::Permit;

/// A body type the layer can answer with: the inner service's own, so the layer's
/// responses have the type the inner service's have (`docs/design.md#http`).
///
/// - With the `axum` feature, axum's `Body`: a `Router`'s responses stay
///   `Response<axum::body::Body>`, which axum passes on as it is. Only a response
///   that holds concurrency slots is wrapped (in a [`RateLimitBody`], then boxed,
///   as axum boxes any other body).
/// - [`RateLimitBody<B>`] over any `http_body::Body`: a service with another body
///   type answers `Response<RateLimitBody<B>>`, its body wrapped with
///   [`RateLimitBody::new`] (for instance with `ServiceExt::map_response`).
///
/// A body type of your own can implement it too.
#[diagnostic::on_unimplemented(
    message = "the rate-limit layer cannot answer with a `{Self}` body",
    label = "the inner service's response body",
    note = "wrap the inner service's body in `ratesync::http::RateLimitBody` \
            (`service.map_response(|r| r.map(RateLimitBody::new))`), or use axum's `Body`"
)]
pub trait LimitedBody: Body + Sized {
    /// The body of a refusal: its short plain text.
    fn refusal(text: Bytes) -> Self;

    /// This body, keeping `permits` until it has been sent in full or dropped, so
    /// that a concurrency slot covers a streamed response too. Called only with
    /// permits that hold a slot.
    fn holding(self, permits: Vec<Permit>) -> Self;
}

pin_project! {
    /// A response body that can hold an admitted request's permits, or be the short
    /// text of a refusal: the [`LimitedBody`] for a service of any body type.
    ///
    /// An admitted request's concurrency slots are released when its body ends or
    /// is dropped, not when the handler returns: a slot then covers a streamed
    /// response too, which is what `max_concurrent` is there to bound.
    pub struct RateLimitBody<B> {
        #[pin]
        kind: Kind<B>,
        // Those that hold a slot: empty (no allocation) unless the route has a
        // concurrency cap.
        permits: Vec<Permit>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner {
            #[pin]
            body: B,
        },
        Text {
            text: Option<Bytes>,
        },
    }
}

impl<B> RateLimitBody<B> {
    /// `body`, holding nothing yet.
    pub fn new(body: B) -> Self {
        RateLimitBody {
            kind: Kind::Inner { body },
            permits: Vec::new(),
        }
    }
}

impl<B> LimitedBody for RateLimitBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    fn refusal(text: Bytes) -> Self {
        RateLimitBody {
            kind: Kind::Text { text: Some(text) },
            permits: Vec::new(),
        }
    }

    fn holding(mut self, permits: Vec<Permit>) -> Self {
        // An inner layer may hold some already (nested limits).
        self.permits.extend(permits);
        self
    }
}

#[cfg(feature = "axum")]
impl LimitedBody for axum::body::Body {
    fn refusal(text: Bytes) -> Self {
        axum::body::Body::from(text)
    }

    fn holding(self, permits: Vec<Permit>) -> Self {
        // The one case that boxes: axum's body cannot carry anything of ours.
        axum::body::Body::new(RateLimitBody::new(self).holding(permits))
    }
}

impl<B> Body for RateLimitBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = match this.kind.project() {
            KindProj::Inner { body } => ready!(body.poll_frame(cx)),
            KindProj::Text { text } => text.take().map(|text| Ok(Frame::data(text.into()))),
        };
        if frame.is_none() {
            // Sent in full: the slots need not wait for the body to be dropped.
            this.permits.clear();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Text { text } => text.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Text { text } => {
                SizeHint::with_exact(text.as_ref().map_or(0, |t| t.len() as u64))
            }
        }
    }
}

impl<B> std::fmt::Debug for RateLimitBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct("RateLimitBody");
        if let Kind::Text { text } = &self.kind {
            debug.field("text", text);
        }
        debug
            .field("permits", &self.permits.len())
            .finish_non_exhaustive()
    }
}
