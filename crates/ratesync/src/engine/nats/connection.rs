//! The one client of a store and its bucket: opened on first use, shared by every
//! limiter and key, bound again after the bucket vanished.
//!
//! Opening connects to the first server of `url` that answers (async-nats tries
//! them in turn and, once connected, reconnects by itself forever, following the
//! server list), finds the bucket, creates it when `auto_create` is set, and
//! calibrates the clock (see `clock`). Every request the client sends is bounded
//! by its request timeout, set a little under the store's deadline, so a call to a
//! server that vanished fails rather than hangs; the store runtime cancels it at the
//! deadline anyway. One task opens at a time; the others wait for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::{Config as BucketConfig, Store};
use async_nats::jetstream::stream::StorageType;
use async_nats::{ConnectOptions, Event, ServerAddr};
use parking_lot::RwLock;

use super::clock::ServerClock;
use crate::config::NatsConfig;
use crate::store::listener::Origin;
use crate::store::{client_timeout, StoreError};

/// The shortest life an entry gets, whatever the limiters need: idle keys vanish
/// after a day, and the bucket never churns entries of keys in use.
const MIN_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// A connected client and its bucket.
pub(crate) struct Bound {
    pub kv: Store,
    generation: u64,
}

pub(crate) struct Connection {
    servers: Vec<ServerAddr>,
    token: Option<String>,
    pub bucket: String,
    auto_create: bool,
    /// The store's deadline on every call; the client's own timeouts fit under it.
    pub timeout: Duration,
    current: RwLock<Option<Arc<Bound>>>,
    generation: AtomicU64,
    connecting: tokio::sync::Mutex<()>,
    /// Longest state life any limiter of this store needs (ns): the bucket's
    /// `max_age` must not be shorter.
    longest_span: AtomicU64,
    pub clock: Arc<ServerClock>,
    /// Secrets that must not leak into error messages.
    secrets: Vec<String>,
    /// This engine instance's id, in its inbox subjects.
    origin: Origin,
}

impl Connection {
    pub fn new(config: &NatsConfig, timeout: Duration, origin: Origin) -> Result<Self, StoreError> {
        let mut servers = Vec::new();
        let mut secrets: Vec<String> = config.token.iter().map(|t| t.expose().to_owned()).collect();
        for part in config.url.expose().split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let address: ServerAddr = part.parse().map_err(|_| {
                StoreError::Backend(format!(
                    "not a NATS server address: {}",
                    crate::config::secret::SecretUrl::new(part)
                ))
            })?;
            if let Ok(url) = url::Url::parse(part) {
                secrets.extend(url.password().map(str::to_owned));
                if !url.username().is_empty() {
                    secrets.push(url.username().to_owned());
                }
            }
            servers.push(address);
        }
        if servers.is_empty() {
            return Err(StoreError::Backend("no NATS server in `url`".to_owned()));
        }
        secrets.retain(|s| !s.is_empty());
        Ok(Connection {
            servers,
            token: config.token.as_ref().map(|t| t.expose().to_owned()),
            bucket: config.bucket_name.clone(),
            auto_create: config.auto_create,
            timeout,
            current: RwLock::new(None),
            generation: AtomicU64::new(0),
            connecting: tokio::sync::Mutex::new(()),
            longest_span: AtomicU64::new(0),
            clock: Arc::new(ServerClock::new(origin)),
            secrets,
            origin,
        })
    }

    /// Records that a limiter keeps state for up to `span` ns after its last write.
    pub fn need_span(&self, span: u64) {
        self.longest_span.fetch_max(span, Ordering::Relaxed);
    }

    /// The bound bucket, opening the connection first when there is none.
    pub async fn get(&self) -> Result<Arc<Bound>, StoreError> {
        if let Some(bound) = self.current.read().as_ref() {
            return Ok(bound.clone());
        }
        let _connecting = self.connecting.lock().await;
        if let Some(bound) = self.current.read().as_ref() {
            return Ok(bound.clone());
        }
        let kv = self.open().await?;
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let bound = Arc::new(Bound { kv, generation });
        self.clock.calibrate(&bound.kv, self.timeout).await?;
        *self.current.write() = Some(bound.clone());
        Ok(bound)
    }

    /// Forgets `bound` (the bucket is gone): the next call binds it again.
    pub fn discard(&self, bound: &Bound) {
        let mut current = self.current.write();
        if current
            .as_ref()
            .is_some_and(|b| b.generation == bound.generation)
        {
            *current = None;
        }
    }

    async fn open(&self) -> Result<Store, StoreError> {
        let clock = Arc::downgrade(&self.clock);
        let mut options = ConnectOptions::new()
            // Replies come to inboxes named by the client's id generator, whose state
            // a forked child shares with its parent and siblings: two processes could
            // then receive each other's replies (another process's CAS
            // acknowledgement taken for ours). The engine's own id, unique per
            // process, keeps every client's inboxes apart.
            .custom_inbox_prefix(format!("_INBOX.rs{}", self.origin.hex()))
            .connection_timeout(self.timeout.mul_f64(0.5))
            .request_timeout(Some(client_timeout(self.timeout)))
            .max_reconnects(None)
            .event_callback(move |event| {
                let clock = clock.clone();
                async move {
                    // Possibly another server of the list, with another clock.
                    if matches!(event, Event::Connected) {
                        if let Some(clock) = clock.upgrade() {
                            clock.mark_stale();
                        }
                    }
                }
            });
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        let client = options
            .connect(self.servers.clone())
            .await
            .map_err(|e| StoreError::Connection(self.mask(e.to_string())))?;
        let mut jetstream = async_nats::jetstream::new(client);
        jetstream.set_timeout(client_timeout(self.timeout));
        match jetstream.get_key_value(&self.bucket).await {
            Ok(kv) => {
                self.check_max_age(&jetstream, &kv).await?;
                Ok(kv)
            }
            Err(_) if self.auto_create => self.create(&jetstream).await,
            Err(error) if is_not_found(&error) => Err(StoreError::Backend(format!(
                "the NATS KV bucket `{bucket}` does not exist: set `auto_create = true` on the \
                 store, or create it with `nats kv add {bucket} --history 1 --ttl {ttl}s`",
                bucket = self.bucket,
                ttl = self.max_age().as_secs(),
            ))),
            Err(error) => Err(StoreError::Connection(self.mask(error.to_string()))),
        }
    }

    /// The bucket's `max_age`: a day, or the longest state life of the store's
    /// limiters (a long window, a slow bucket, a long lease) when that is longer.
    fn max_age(&self) -> Duration {
        let span = Duration::from_nanos(self.longest_span.load(Ordering::Relaxed));
        // Whole seconds, rounded up, with one to spare for the clock's uncertainty.
        let span = Duration::from_secs(span.as_secs() + 2);
        span.max(MIN_MAX_AGE)
    }

    /// Creates the bucket. Several processes may start at once: when another one
    /// created it first, this one binds to it.
    async fn create(
        &self,
        jetstream: &async_nats::jetstream::Context,
    ) -> Result<Store, StoreError> {
        let config = BucketConfig {
            bucket: self.bucket.clone(),
            description: "ratesync rate-limiter state (one entry per limiter and key)".to_owned(),
            history: 1,
            max_age: self.max_age(),
            storage: StorageType::File,
            ..Default::default()
        };
        match jetstream.create_key_value(config).await {
            Ok(kv) => Ok(kv),
            Err(create_error) => match jetstream.get_key_value(&self.bucket).await {
                Ok(kv) => Ok(kv),
                Err(_) => Err(StoreError::Backend(self.mask(format!(
                    "cannot create the NATS KV bucket `{}`: {create_error}",
                    self.bucket
                )))),
            },
        }
    }

    /// A bucket whose entries expire before a limiter's state is done with would
    /// loosen that limiter: raise its `max_age` (auto_create) or say how.
    async fn check_max_age(
        &self,
        jetstream: &async_nats::jetstream::Context,
        kv: &Store,
    ) -> Result<(), StoreError> {
        let needed = Duration::from_nanos(self.longest_span.load(Ordering::Relaxed));
        let max_age = kv.stream.cached_info().config.max_age;
        if max_age.is_zero() || max_age >= needed {
            return Ok(());
        }
        if !self.auto_create {
            return Err(StoreError::Backend(format!(
                "the NATS KV bucket `{bucket}` keeps entries {have}s, shorter than a limiter's \
                 state lives ({need}s): raise it with `nats kv edit {bucket} --ttl {need}s`, or \
                 set `auto_create = true` to let ratesync do it",
                bucket = self.bucket,
                have = max_age.as_secs(),
                need = needed.as_secs() + 1,
            )));
        }
        let mut config = kv.stream.cached_info().config.clone();
        config.max_age = self.max_age();
        jetstream
            .update_stream(config)
            .await
            .map(drop)
            .map_err(|e| StoreError::Backend(self.mask(e.to_string())))
    }

    /// `text` with any secret replaced by `***`.
    pub fn mask(&self, mut text: String) -> String {
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "***");
            }
        }
        text
    }
}

fn is_not_found(error: &async_nats::jetstream::context::KeyValueError) -> bool {
    let text = error.to_string();
    text.contains("not found") || text.contains("10059")
}
