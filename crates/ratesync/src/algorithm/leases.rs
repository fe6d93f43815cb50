//! Concurrency slots as leases: an id and an expiry. A holder that disappears
//! without releasing loses its slot when the lease expires; a live holder renews it.

use std::time::Duration;

/// Identifies one held slot. Random, so ids from many processes do not collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub u64);

impl LeaseId {
    /// A fresh random id.
    pub fn random() -> Self {
        LeaseId(fastrand::u64(..))
    }
}

/// A validated concurrency cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Concurrency {
    /// Most leases held at once.
    pub max: u32,
    /// Nanoseconds a lease lives without renewal.
    pub lease_ttl: u64,
}

/// The live leases of one key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseSet {
    leases: Vec<(LeaseId, u64)>,
}

impl LeaseSet {
    /// Leases counted at `now` (expired ones are dropped first).
    pub fn live(&mut self, now: u64) -> usize {
        self.leases.retain(|(_, expires)| *expires > now);
        self.leases.len()
    }

    /// Live leases at `now`, without dropping anything.
    pub fn count_live(&self, now: u64) -> usize {
        self.leases.iter().filter(|(_, e)| *e > now).count()
    }

    /// Time until the earliest live lease expires: the longest a waiter must wait.
    pub fn earliest_expiry(&self, now: u64) -> Duration {
        let earliest = self
            .leases
            .iter()
            .map(|(_, e)| *e)
            .filter(|e| *e > now)
            .min();
        Duration::from_nanos(earliest.map_or(0, |e| e - now))
    }

    /// Records a new lease. The caller has checked there is room.
    pub fn insert(&mut self, id: LeaseId, now: u64, ttl: u64) {
        self.leases.push((id, now.saturating_add(ttl)));
    }

    /// Pushes a live lease's expiry to `now + ttl`. False when the lease is unknown
    /// or already expired (its slot may have been given to someone else).
    pub fn renew(&mut self, id: LeaseId, now: u64, ttl: u64) -> bool {
        match self.leases.iter_mut().find(|(l, e)| *l == id && *e > now) {
            Some((_, expires)) => {
                *expires = now.saturating_add(ttl);
                true
            }
            None => false,
        }
    }

    /// Removes a lease. Releasing twice, or a lease never taken, changes nothing.
    pub fn release(&mut self, id: LeaseId) -> bool {
        let before = self.leases.len();
        self.leases.retain(|(l, _)| *l != id);
        self.leases.len() != before
    }

    /// Every lease recorded, live or expired: (id, expiry).
    pub fn entries(&self) -> impl Iterator<Item = (LeaseId, u64)> + '_ {
        self.leases.iter().copied()
    }

    /// A set rebuilt from the entries [`Self::entries`] gave (a store read it back).
    pub fn from_entries(entries: impl IntoIterator<Item = (LeaseId, u64)>) -> Self {
        LeaseSet {
            leases: entries.into_iter().collect(),
        }
    }

    /// When the last lease expires (0 when none is held).
    pub fn idle_at(&self) -> u64 {
        self.leases.iter().map(|(_, e)| *e).max().unwrap_or(0)
    }
}
