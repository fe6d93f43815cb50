//! `Permit`: proof of admission, and the holder of a concurrency slot.

use std::sync::Arc;

use super::LimiterInner;
use crate::algorithm::{LeaseId, Receipt};
use crate::decision::Decision;
use crate::error::SettleError;

/// An admitted attempt. For limiters with `max_concurrent`, it holds a slot (a
/// renewed lease) until dropped or [`Permit::release`]d; otherwise it holds nothing,
/// and `limiter.acquire().await?;` is the whole of a rate-limit gate. (Not
/// `#[must_use]` for that reason: keep it in a variable, `let _permit = ...`, while
/// the work a slot guards is running.)
pub struct Permit {
    decision: Decision,
    /// Boxed: most permits hold no slot, and a small `Permit` is cheap to return.
    slot: Option<Box<HeldSlot>>,
    /// What a settleable call took ([`crate::Call::settleable`]).
    reservation: Option<Box<Reservation>>,
}

impl Permit {
    #[inline]
    pub(crate) fn new(decision: Decision, slot: Option<Box<HeldSlot>>) -> Self {
        Permit {
            decision,
            slot,
            reservation: None,
        }
    }

    #[inline]
    pub(crate) fn with_reservation(self, reservation: Reservation) -> Self {
        Permit {
            reservation: Some(Box::new(reservation)),
            ..self
        }
    }

    /// The decision that admitted this attempt (remaining, reset time, limit).
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// Whether this permit holds a concurrency slot.
    pub fn holds_slot(&self) -> bool {
        self.slot.is_some()
    }

    /// Settles the cost of a settleable call ([`crate::Call::settleable`]) at `used`
    /// units, once the work is done: the store gets back the rest, atomically. Calls
    /// already waiting on the rate keep their retry-after (`docs/design.md#settle`).
    /// Never more than the call took: units that
    /// have left the window or refilled are not given back twice. The first settle
    /// counts; later ones change nothing (and a settle that failed is not retried,
    /// since the store may have applied it). Keeps the concurrency slot, if any.
    pub async fn settle(&mut self, used: u32) -> Result<(), SettleError> {
        let Some(reservation) = self.reservation.as_mut() else {
            return Err(SettleError::NotSettleable);
        };
        reservation.settle(used).await
    }

    /// Releases the slot now and waits until the store has recorded it. Dropping the
    /// permit releases too, without waiting (in the background for remote stores).
    pub async fn release(mut self) {
        if let Some(slot) = self.slot.take() {
            slot.release().await;
        }
    }
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("decision", &self.decision)
            .field("holds_slot", &self.slot.is_some())
            .field("settleable", &self.reservation.is_some())
            .finish()
    }
}

/// The cost a settleable call took, and where the store recorded it.
pub(crate) struct Reservation {
    limiter: Arc<LimiterInner>,
    key: Box<str>,
    cost: u32,
    /// `None` when nothing was taken (a fail-open admission) or once settled.
    receipt: Option<Receipt>,
}

impl Reservation {
    pub fn new(limiter: Arc<LimiterInner>, key: &str, cost: u32, receipt: Option<Receipt>) -> Self {
        Reservation {
            limiter,
            key: key.into(),
            cost,
            receipt,
        }
    }

    async fn settle(&mut self, used: u32) -> Result<(), SettleError> {
        if used > self.cost {
            return Err(SettleError::AboveCost {
                limiter: self.limiter.name.clone(),
                used,
                cost: self.cost,
            });
        }
        match self.receipt.take() {
            Some(receipt) if used < self.cost => {
                let unused = self.cost - used;
                self.limiter.give_back(&self.key, unused, receipt).await
            }
            _ => Ok(()),
        }
    }
}

pub(crate) struct HeldSlot {
    pub limiter: Arc<LimiterInner>,
    pub key: Box<str>,
    pub id: LeaseId,
    released: bool,
}

impl HeldSlot {
    pub fn new(limiter: Arc<LimiterInner>, key: &str, id: LeaseId) -> Self {
        HeldSlot {
            limiter,
            key: key.into(),
            id,
            released: false,
        }
    }

    async fn release(mut self: Box<Self>) {
        self.released = true;
        self.limiter.release_slot(&self.key, self.id).await;
    }
}

impl Drop for HeldSlot {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // Nobody waits for this release: it completes here when the store answers
        // at once, else in the background.
        let (limiter, key, id) = (self.limiter.clone(), std::mem::take(&mut self.key), self.id);
        crate::background::finish(async move { limiter.release_slot(&key, id).await });
    }
}
