//! The release feed of a Redis store: its pub/sub channel.
//!
//! The release, refund and reset scripts PUBLISH release messages
//! ([`crate::engine::encoding::release_message`]) on the store's channel; the
//! store's release listener ([`crate::store::listener`]) subscribes through this
//! feed, on the server, a cluster node, or the master the sentinels name now, so a
//! restarted or failed-over server is followed.

use std::sync::{Arc, Weak};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;

use super::connection::Connection;
use crate::engine::encoding::parse_release_message;
use crate::store::listener::{ReleaseFeed, Released};

pub(super) struct RedisFeed {
    connection: Weak<Connection>,
    channel: String,
}

impl RedisFeed {
    pub fn new(connection: &Arc<Connection>, channel: &str) -> Self {
        RedisFeed {
            connection: Arc::downgrade(connection),
            channel: channel.to_owned(),
        }
    }
}

impl ReleaseFeed for RedisFeed {
    fn open(
        &self,
        _limiters: Vec<Box<[u8]>>,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Released>, String>> {
        Box::pin(async move {
            let connection = self.connection.upgrade().ok_or("engine dropped")?;
            let subscribed = async {
                let client = connection.pubsub_client().await?;
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&self.channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let pubsub = tokio::time::timeout(connection.connect_timeout(), subscribed)
                .await
                .map_err(|_| "subscription timed out".to_owned())?
                .map_err(|error| format!("subscription failed: {:?}", error.kind()))?;
            let messages = pubsub.into_on_message().filter_map(|message| async move {
                let payload = std::str::from_utf8(message.get_payload_bytes()).ok()?;
                parse_release_message(payload)
            });
            Ok(messages.boxed())
        })
    }
}
