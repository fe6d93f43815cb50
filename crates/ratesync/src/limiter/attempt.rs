//! `TryAcquire`: the future of one attempt.
//!
//! Written out by hand rather than as an `async fn` because it is the hot path of
//! every decision: its first poll decides. A limiter whose store decides in this
//! process (the memory engine) is called directly and the permit comes back from
//! that same poll, with no state machine, allocation or task around it; any other
//! store is asked through the engine contract, and an answer that needs the network
//! is awaited under the store's deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;

use super::{Call, LimiterInner, Permit};
use crate::algorithm::{LeaseId, Receipt};
use crate::decision::Decision;
use crate::engine::memory::MemoryLimiter;
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
        settleable: Option<u32>,
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

/// How an attempt at a store that is asked (not one deciding in this process) starts.
enum Asked<'a> {
    /// Decided at once: the store answered at once, or the attempt was refused
    /// before the store was asked (an impossible cost).
    Decided(Result<Permit, AcquireError>),
    /// The store's answer comes later, for an attempt taking `lease`.
    Pending {
        answer: BoxFuture<'a, Result<(Decision, Receipt), StoreError>>,
        lease: Option<LeaseId>,
    },
}

impl<'a> Call<'a> {
    /// An attempt decided by a store in this process, handed to `answer`: the one
    /// path of `try_acquire` (and of every try of `acquire`) and of
    /// `try_acquire_now` on such a store. `answer` wraps the outcome where it is
    /// built, so the permit is written once, where the caller reads it
    /// (`docs/design.md#calls`).
    #[inline(always)]
    pub(super) fn decide_in_process<R>(
        self,
        memory: &MemoryLimiter,
        answer: impl FnOnce(Result<Permit, AcquireError>) -> R,
    ) -> R {
        match self.inner.config.shadow {
            false => self.decide_in_process_as::<false, R>(memory, answer),
            true => self.decide_in_shadow(memory, answer),
        }
    }

    /// [`Call::decide_in_process`] for a limiter in shadow mode, out of the way of
    /// the others' admissions.
    #[cold]
    #[inline(never)]
    fn decide_in_shadow<R>(
        self,
        memory: &MemoryLimiter,
        answer: impl FnOnce(Result<Permit, AcquireError>) -> R,
    ) -> R {
        self.decide_in_process_as::<true, R>(memory, answer)
    }

    #[inline(always)]
    fn decide_in_process_as<const SHADOW: bool, R>(
        self,
        memory: &MemoryLimiter,
        answer: impl FnOnce(Result<Permit, AcquireError>) -> R,
    ) -> R {
        let limiter = &self.inner;
        if let Err(error) = limiter.check_cost(self.cost) {
            return answer(Err(error));
        }
        let lease = limiter.new_lease_id();
        memory.decide(self.key, self.cost, lease, |decision, receipt| {
            let decided = limiter.decided::<SHADOW>(self.key, lease, decision);
            answer(match self.settleable {
                false => decided,
                true => decided
                    .map(|permit| limiter.reserved(permit, self.key, self.cost, Some(receipt))),
            })
        })
    }

    /// The cost, when the permit of an admission can settle it.
    fn settle_cost(&self) -> Option<u32> {
        self.settleable.then_some(self.cost)
    }

    /// An attempt at any other store: asked through the engine contract.
    fn ask(self) -> Asked<'a> {
        let limiter = &self.inner;
        if let Err(error) = limiter.check_cost(self.cost) {
            return Asked::Decided(Err(error));
        }
        let lease = limiter.new_lease_id();
        match limiter
            .store
            .call(limiter.engine.acquire(self.key, self.cost, lease))
        {
            Answer::Ready(result) => {
                Asked::Decided(limiter.conclude(self.key, lease, self.settle_cost(), result))
            }
            Answer::Pending(answer) => Asked::Pending { answer, lease },
        }
    }
}

impl Future for TryAcquire<'_> {
    type Output = Result<Permit, AcquireError>;

    /// Inlined into the caller: a decision in this process is then written straight
    /// where the caller's `.await` reads it. Asking a store is out of line.
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let State::Start(call) = this.state {
            if let Some(memory) = call.inner.in_process.as_deref() {
                this.state = State::Done;
                return call.decide_in_process(memory, Poll::Ready);
            }
        }
        this.poll_store(cx)
    }
}

impl TryAcquire<'_> {
    /// An attempt at a store that is asked: starts it, then awaits the answer.
    #[inline(never)]
    fn poll_store(&mut self, cx: &mut Context<'_>) -> Poll<Result<Permit, AcquireError>> {
        if let State::Start(call) = self.state {
            match call.ask() {
                Asked::Decided(decided) => {
                    self.state = State::Done;
                    return Poll::Ready(decided);
                }
                Asked::Pending { answer, lease } => {
                    self.state = State::Asking {
                        limiter: call.inner,
                        key: call.key,
                        lease,
                        settleable: call.settle_cost(),
                        answer,
                    }
                }
            }
        }
        match &mut self.state {
            State::Asking {
                limiter,
                key,
                lease,
                settleable,
                answer,
            } => {
                let result = std::task::ready!(answer.as_mut().poll(cx));
                let concluded = limiter.conclude(key, *lease, *settleable, result);
                self.state = State::Done;
                Poll::Ready(concluded)
            }
            State::Start(_) | State::Done => panic!("TryAcquire polled after completion"),
        }
    }
}
