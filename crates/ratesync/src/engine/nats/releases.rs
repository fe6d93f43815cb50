//! The release feed of a NATS store: a KV watch of its concurrency limiters' entries.
//!
//! A release (or a refund that gives back a lease) writes its entry with the `FREED`
//! flag, the writer's origin and the key; a reset purges the entry. The watch sees
//! both: a freed slot names its origin, a purge names none (every instance acts on
//! it). The watch only covers the limiters it was opened for, so the store's release
//! listener ([`crate::store::listener`]) reopens it when a limiter is added; it only
//! delivers new writes.

use std::sync::{Arc, Weak};

use async_nats::jetstream::kv::{Entry, Operation};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;

use super::connection::Connection;
use super::keys::split_entry;
use super::state::released_key;
use crate::store::listener::{Origin, ReleaseFeed, Released};

pub(super) struct NatsFeed {
    connection: Weak<Connection>,
    /// This engine instance, as the entries it writes name it.
    origin: u64,
}

impl NatsFeed {
    pub fn new(connection: &Arc<Connection>, origin: u64) -> Self {
        NatsFeed {
            connection: Arc::downgrade(connection),
            origin,
        }
    }
}

impl ReleaseFeed for NatsFeed {
    fn open(
        &self,
        limiters: Vec<Box<[u8]>>,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Released>, String>> {
        Box::pin(async move {
            let connection = self.connection.upgrade().ok_or("engine dropped")?;
            let filters: Vec<String> = limiters
                .iter()
                .map(|limiter| format!("{}.>", String::from_utf8_lossy(limiter)))
                .collect();
            let opened = async {
                let bound = connection.get().await.map_err(|e| e.to_string())?;
                bound
                    .kv
                    .watch_many(filters)
                    .await
                    .map_err(|e| connection.mask(e.to_string()))
            };
            let entries = tokio::time::timeout(connection.timeout, opened)
                .await
                .map_err(|_| "the watch did not open in time".to_owned())??;
            let own = self.origin;
            let released = entries
                .take_while(|entry| std::future::ready(entry.is_ok()))
                .filter_map(move |entry| {
                    std::future::ready(entry.ok().and_then(|e| released(&e, own)))
                });
            Ok(released.boxed())
        })
    }

    fn filters_by_limiter(&self) -> bool {
        true
    }
}

/// What a watched write says: a slot of a key freed by another instance, or a reset.
fn released(entry: &Entry, own: u64) -> Option<Released> {
    let (limiter, name_key) = split_entry(&entry.key)?;
    let (origin, key) = match entry.operation {
        // A release by another instance names its key in the value (a hashed entry
        // name cannot be turned back into the key).
        Operation::Put => match released_key(&entry.value) {
            Some((origin, key)) if origin != own => (Some(Origin(origin)), key),
            _ => return None,
        },
        // A reset: any origin. A hashed key cannot be named; its waiters are left to
        // the fallback poll.
        Operation::Delete | Operation::Purge => (None, name_key?),
    };
    Some(Released {
        origin,
        limiter: limiter.as_bytes().into(),
        key,
    })
}
