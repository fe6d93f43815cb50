//! `Permit`: proof of admission, and the holder of a concurrency slot.

use std::sync::Arc;

use super::LimiterInner;
use crate::algorithm::LeaseId;
use crate::decision::Decision;

/// An admitted attempt. For limiters with `max_concurrent`, it holds a slot (a
/// renewed lease) until dropped or [`Permit::release`]d; otherwise it holds nothing,
/// and `limiter.acquire().await?;` is the whole of a rate-limit gate. (Not
/// `#[must_use]` for that reason: keep it in a variable, `let _permit = ...`, while
/// the work a slot guards is running.)
pub struct Permit {
    decision: Decision,
    /// Boxed: most permits hold no slot, and a small `Permit` is cheap to return.
    slot: Option<Box<HeldSlot>>,
}

impl Permit {
    #[inline]
    pub(crate) fn new(decision: Decision, slot: Option<Box<HeldSlot>>) -> Self {
        Permit { decision, slot }
    }

    /// The decision that admitted this attempt (remaining, reset time, limit).
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// Whether this permit holds a concurrency slot.
    pub fn holds_slot(&self) -> bool {
        self.slot.is_some()
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
            .finish()
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
