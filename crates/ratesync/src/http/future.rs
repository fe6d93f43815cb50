//! `ResponseFuture`: the limits' check, then the inner service's response.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures::future::BoxFuture;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::Service;

use super::body::LimitedBody;
use super::headers::RateLimitValues;
use super::limits::Admitted;
use super::rejection::Rejection;
use crate::Permit;

type Check = BoxFuture<'static, Result<Admitted, Rejection>>;

pin_project! {
    /// The future of [`RateLimitService`](super::RateLimitService).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B, S::Future>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B, F> {
        // The limits are being checked; `service` (already ready) and `request` wait.
        Checking {
            check: Check,
            service: Option<S>,
            request: Option<Request<B>>,
        },
        // Admitted: the inner service runs while the permits hold their slots. Only
        // the permits that hold one are kept (no vector for a route without a
        // concurrency cap).
        Calling {
            #[pin]
            future: F,
            permits: Vec<Permit>,
            headers: Option<RateLimitValues>,
        },
        // Refused before any check (no key).
        Rejected {
            rejection: Option<Rejection>,
        },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn checking(check: Check, service: S, request: Request<B>) -> Self {
        ResponseFuture {
            state: State::Checking {
                check,
                service: Some(service),
                request: Some(request),
            },
        }
    }

    // Inlined, as are the states' constructors: the inner future is then written
    // once, in place, rather than copied through each constructor.
    #[inline(always)]
    pub(crate) fn calling(future: S::Future, admitted: Admitted) -> Self {
        ResponseFuture {
            state: State::calling(future, admitted),
        }
    }

    pub(crate) fn rejected(rejection: Rejection) -> Self {
        ResponseFuture {
            state: State::Rejected {
                rejection: Some(rejection),
            },
        }
    }
}

impl<S, B, F> State<S, B, F> {
    #[inline(always)]
    fn calling(future: F, admitted: Admitted) -> Self {
        State::Calling {
            future,
            permits: admitted.permits.holding_slots(),
            headers: Some(admitted.headers),
        }
    }
}

const POLLED_AFTER_COMPLETION: &str = "ResponseFuture polled after completion";

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: LimitedBody,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Checking {
                    check,
                    service,
                    request,
                } => {
                    let admitted = match ready!(check.as_mut().poll(cx)) {
                        Ok(admitted) => admitted,
                        Err(rejection) => return Poll::Ready(Ok(refusal(rejection))),
                    };
                    let mut service = service.take().expect(POLLED_AFTER_COMPLETION);
                    let request = request.take().expect(POLLED_AFTER_COMPLETION);
                    let future = service.call(request);
                    state.set(State::calling(future, admitted));
                }
                StateProj::Calling {
                    future,
                    permits,
                    headers,
                } => {
                    // On an error the permits drop here, releasing their slots.
                    let mut response = ready!(future.poll(cx))?;
                    let headers = headers.take().expect(POLLED_AFTER_COMPLETION);
                    // A header the service set itself wins.
                    headers.add_to(response.headers_mut());
                    if !permits.is_empty() {
                        let permits = std::mem::take(permits);
                        response = response.map(|body| body.holding(permits));
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Rejected { rejection } => {
                    let rejection = rejection.take().expect(POLLED_AFTER_COMPLETION);
                    return Poll::Ready(Ok(refusal(rejection)));
                }
            }
        }
    }
}

fn refusal<B: LimitedBody>(rejection: Rejection) -> Response<B> {
    let (status, headers, text) = rejection.into_parts();
    let mut response = Response::new(B::refusal(text));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}
