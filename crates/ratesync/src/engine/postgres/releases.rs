//! The release feed of a PostgreSQL store: its LISTEN channel.
//!
//! The release and refund functions `pg_notify` a release message
//! ([`crate::engine::encoding::release_message`]) on the store's channel when their
//! transaction commits, and the engine announces the keys a reset freed; the store's
//! release listener ([`crate::store::listener`]) listens through this feed, on a
//! connection of its own that follows a restarted database.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio_postgres::AsyncMessage;

use super::database::Database;
use super::schema::quote_ident;
use crate::engine::encoding::parse_release_message;
use crate::store::listener::{ReleaseFeed, Released};

/// Bound on opening a listening connection.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) struct PostgresFeed {
    database: Arc<Database>,
    channel: String,
}

impl PostgresFeed {
    pub fn new(database: &Arc<Database>, channel: &str) -> Self {
        PostgresFeed {
            database: database.clone(),
            channel: channel.to_owned(),
        }
    }
}

impl ReleaseFeed for PostgresFeed {
    fn open(
        &self,
        _limiters: Vec<Box<[u8]>>,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Released>, String>> {
        Box::pin(async move {
            let (client, mut connection) =
                tokio::time::timeout(OPEN_TIMEOUT, self.database.connect_driven_by_caller())
                    .await
                    .map_err(|_| "could not connect in time".to_owned())?
                    .map_err(|error| format!("could not connect: {error}"))?;
            // The connection yields the notifications and must be driven for LISTEN
            // to be sent: drive both until LISTEN is acknowledged.
            let listen_sql = format!("LISTEN {}", quote_ident(&self.channel));
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            let mut early = Vec::new();
            {
                let listen = client.batch_execute(&listen_sql);
                tokio::pin!(listen);
                loop {
                    tokio::select! {
                        done = &mut listen => {
                            done.map_err(|error| format!("LISTEN failed: {error}"))?;
                            break;
                        }
                        message = messages.next() => match message {
                            Some(Ok(message)) => early.push(message),
                            _ => return Err("connection closed".to_owned()),
                        },
                    }
                }
            }
            // The client must live as long as the stream: dropping it closes the
            // connection.
            let releases = futures::stream::iter(early.into_iter().map(Ok))
                .chain(messages)
                .take_while(|message| std::future::ready(message.is_ok()))
                .filter_map(move |message| {
                    let _client = &client;
                    let released = match message {
                        Ok(AsyncMessage::Notification(n)) => parse_release_message(n.payload()),
                        _ => None,
                    };
                    std::future::ready(released)
                });
            Ok(releases.boxed())
        })
    }
}
