//! `TryAcquire`: the future of one attempt.
//!
//! Written out by hand rather than as an `async fn` because it is the hot path of
//! every decision: its first poll asks the store, and when the store answers at once
//! (the memory engine) the permit comes back from that same poll, with no state
//! machine, allocation or task around it. An answer that needs the network is
//! awaited under the store's deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;

use super::{Call, LimiterInner, Permit};
use crate::algorithm::{LeaseId, Receipt};
use crate::decision::Decision;
use crate::error::AcquireError;
use crate::store::{Answer, StoreError};

/// One attempt at a limiter, never waiting for room: [`Call::try_acquire`].
#[must_use = "futures do nothing unless polled"]
pub struct TryAcquire<'a> {
    state: State<'a>,
}

enum State<'a> {
    Start(Call<'a>),
    Asking {
        limiter: &'a Arc<LimiterInner>,
        key: &'a str,
        lease: Option<LeaseId>,
        answer: BoxFuture<'a, Result<(Decision, Receipt), StoreError>>,
    },
    Done,
}

impl<'a> TryAcquire<'a> {
    pub(super) fn new(call: Call<'a>) -> Self {
        TryAcquire {
            state: State::Start(call),
        }
    }
}

impl Future for TryAcquire<'_> {
    type Output = Result<Permit, AcquireError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let State::Start(call) = this.state {
            let limiter = &call.limiter.inner;
            if let Err(error) = limiter.check_cost(call.cost) {
                this.state = State::Done;
                return Poll::Ready(Err(error));
            }
            let lease = limiter.new_lease_id();
            let asked = limiter.engine.acquire(call.key, call.cost, lease);
            match limiter.store.call(asked) {
                Answer::Ready(result) => {
                    this.state = State::Done;
                    let result = result.map(|(decision, _)| decision);
                    return Poll::Ready(limiter.settle(call.key, lease, result));
                }
                Answer::Pending(answer) => {
                    this.state = State::Asking {
                        limiter,
                        key: call.key,
                        lease,
                        answer,
                    }
                }
            }
        }
        match &mut this.state {
            State::Asking {
                limiter,
                key,
                lease,
                answer,
            } => {
                let result = std::task::ready!(answer.as_mut().poll(cx));
                let settled = limiter.settle(key, *lease, result.map(|(decision, _)| decision));
                this.state = State::Done;
                Poll::Ready(settled)
            }
            State::Start(_) | State::Done => panic!("TryAcquire polled after completion"),
        }
    }
}
