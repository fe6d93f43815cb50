//! `RateLimitBody`: the response body, holding the request's permits until it has
//! been sent, or the short text of a refusal.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::Permit;

pin_project! {
    /// The body of a response of [`RateLimitService`](super::RateLimitService).
    ///
    /// An admitted request's concurrency slots are released when its body ends or
    /// is dropped, not when the handler returns: a slot then covers a streamed
    /// response too, which is what `max_concurrent` is there to bound.
    pub struct RateLimitBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner {
            #[pin]
            body: B,
            permits: Vec<Permit>,
        },
        Text {
            text: Option<Bytes>,
        },
    }
}

impl<B> RateLimitBody<B> {
    pub(crate) fn new(body: B, permits: Vec<Permit>) -> Self {
        RateLimitBody {
            kind: Kind::Inner { body, permits },
        }
    }

    pub(crate) fn text(text: Bytes) -> Self {
        RateLimitBody {
            kind: Kind::Text { text: Some(text) },
        }
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
        match self.project().kind.project() {
            KindProj::Inner { body, permits } => {
                let frame = ready!(body.poll_frame(cx));
                if frame.is_none() {
                    // Sent in full: the slots need not wait for the body to be dropped.
                    permits.clear();
                }
                Poll::Ready(frame)
            }
            KindProj::Text { text } => {
                Poll::Ready(text.take().map(|text| Ok(Frame::data(text.into()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body, .. } => body.is_end_stream(),
            Kind::Text { text } => text.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body, .. } => body.size_hint(),
            Kind::Text { text } => {
                SizeHint::with_exact(text.as_ref().map_or(0, |t| t.len() as u64))
            }
        }
    }
}

impl<B> std::fmt::Debug for RateLimitBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Inner { permits, .. } => f
                .debug_struct("RateLimitBody")
                .field("permits", &permits.len())
                .finish_non_exhaustive(),
            Kind::Text { text } => f.debug_struct("RateLimitBody").field("text", text).finish(),
        }
    }
}
