//! Configuration in code (`docs/design.md#configuration-in-code`). Builders only record
//! keys and values, exactly as a file would hold them; `build` runs the same validation
//! as a file, so code and file accept the same things and fail with the same messages
//! (without lines). The generic `option` methods let the Python binding pass `**kwargs`
//! through.

use indexmap::IndexMap;

use super::error::{ConfigError, Issues};
use super::raw::{self, Entry, Item, Table, Value};
use super::types::{Config, LimiterConfig, StoreConfig};
use super::validate;
use crate::algorithm::Period;

/// Origin of errors from [`ConfigBuilder::build`].
const ORIGIN: &str = "configuration";

/// Builds a [`Config`] in code: `Config::builder().store(..).limiter(..).build()`.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ConfigBuilder {
    stores: IndexMap<String, StoreBuilder>,
    limiters: IndexMap<String, LimiterBuilder>,
    trusted_proxy_networks: Option<Vec<String>>,
}

impl Config {
    /// Starts a configuration in code.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }
}

impl ConfigBuilder {
    /// Adds (or replaces) the store `id`.
    pub fn store(mut self, id: &str, store: StoreBuilder) -> Self {
        self.stores.insert(id.to_owned(), store);
        self
    }

    /// Adds (or replaces) the limiter `id`.
    pub fn limiter(mut self, id: &str, limiter: LimiterBuilder) -> Self {
        self.limiters.insert(id.to_owned(), limiter);
        self
    }

    /// The proxy networks whose forwarding headers are trusted: the `[http]` table's
    /// `trusted_proxy_networks`, read by `ClientIp::from_config` and by the Python
    /// FastAPI integration.
    pub fn trusted_proxy_networks<S: Into<String>>(
        mut self,
        networks: impl IntoIterator<Item = S>,
    ) -> Self {
        self.trusted_proxy_networks = Some(networks.into_iter().map(Into::into).collect());
        self
    }

    /// Validates everything; all problems are reported together.
    pub fn build(self) -> Result<Config, ConfigError> {
        let mut root = Table::default();
        let section = |entries: Vec<(String, Table)>| Table {
            entries: entries
                .into_iter()
                .map(|(id, table)| entry(id, Value::Table(table)))
                .collect(),
        };
        let stores = self
            .stores
            .into_iter()
            .map(|(id, s)| (id, s.table))
            .collect();
        let limiters = self
            .limiters
            .into_iter()
            .map(|(id, l)| (id, l.table))
            .collect();
        root.entries
            .push(entry("stores".into(), Value::Table(section(stores))));
        root.entries
            .push(entry("limiters".into(), Value::Table(section(limiters))));
        if let Some(networks) = self.trusted_proxy_networks {
            let array = toml::Value::Array(networks.into_iter().map(toml::Value::String).collect());
            let http = raw::table_from_entries([("trusted_proxy_networks".to_owned(), array)]);
            root.entries.push(entry("http".into(), Value::Table(http)));
        }
        validate::validate(&root, Issues::default(), ORIGIN)
    }
}

fn entry(key: String, value: Value) -> Entry {
    Entry {
        key,
        key_line: None,
        item: Item { value, line: None },
    }
}

/// Sets `key` in `table`, keeping the order keys were first set in.
fn set(table: &mut Table, key: &str, value: toml::Value) {
    let item = raw::from_toml(value);
    match table.entries.iter_mut().find(|e| e.key == key) {
        Some(existing) => existing.item = item,
        None => table.entries.push(Entry {
            key: key.to_owned(),
            key_line: None,
            item,
        }),
    }
}

/// One store, as the keys of a `[stores.ID]` table.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct StoreBuilder {
    table: Table,
}

impl StoreBuilder {
    /// A store of `engine` (`memory`, `redis`, `postgres`, `nats`; checked by `build`).
    pub fn new(engine: &str) -> Self {
        StoreBuilder::default().option("engine", engine)
    }

    /// Process memory: nothing to install, one process only.
    pub fn memory() -> Self {
        StoreBuilder::new("memory")
    }

    /// A Redis store at `url` (`redis://`, `rediss://`, `redis+sentinel://`,
    /// `unix://`; a comma-separated seed list for a Cluster) (`docs/design.md#redis`).
    pub fn redis(url: &str) -> Self {
        StoreBuilder::new("redis").option("url", url)
    }

    /// A PostgreSQL store at `url` (`postgres://` or `postgresql://`; libpq's
    /// `sslmode` is honoured) (`docs/design.md#postgresql`).
    pub fn postgres(url: &str) -> Self {
        StoreBuilder::new("postgres").option("url", url)
    }

    /// A NATS JetStream KV store at `url` (`nats://`, `tls://`, `ws://`, `wss://`);
    /// `url` may list several servers, comma-separated (`docs/design.md#nats`).
    pub fn nats(url: &str) -> Self {
        StoreBuilder::new("nats").option("url", url)
    }

    /// Sets any store key, as the file would (`db`, `key_prefix`, `max_keys`...).
    pub fn option(mut self, key: &str, value: impl Into<toml::Value>) -> Self {
        set(&mut self.table, key, value.into());
        self
    }

    /// Validates this store alone, as table `[stores.<id>]` of a file would be.
    pub(crate) fn validate(self, id: &str) -> Result<StoreConfig, ConfigError> {
        let mut config = Config::builder().store(id, self).build()?;
        Ok(config
            .stores
            .swap_remove(id)
            .expect("a valid configuration keeps its store"))
    }
}

/// One limiter, as the keys of a `[limiters.ID]` table.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct LimiterBuilder {
    table: Table,
}

impl LimiterBuilder {
    /// A limiter on `store` with no rule yet (set one through `option`).
    pub fn new(store: &str) -> Self {
        LimiterBuilder::default().option("store", store)
    }

    /// A token bucket refilled at `rate_per_second`, burst 1 unless [`Self::burst`].
    pub fn token_bucket(store: &str, rate_per_second: f64) -> Self {
        LimiterBuilder::new(store)
            .option("algorithm", "token_bucket")
            .option("rate_per_second", rate_per_second)
    }

    /// At most `limit` units in any `window_seconds`.
    pub fn sliding_window(store: &str, limit: u32, window_seconds: f64) -> Self {
        LimiterBuilder::new(store)
            .option("algorithm", "sliding_window")
            .option("limit", i64::from(limit))
            .option("window_seconds", window_seconds)
    }

    /// At most `limit` units per window of `window_seconds`, the windows aligned to
    /// the Unix epoch, or with [`Self::utc_offset`] to local midnight (the window
    /// must then divide a day) (`docs/design.md#fixed-windows`).
    pub fn fixed_window(store: &str, limit: u32, window_seconds: f64) -> Self {
        LimiterBuilder::new(store)
            .option("algorithm", "fixed_window")
            .option("limit", i64::from(limit))
            .option("window_seconds", window_seconds)
    }

    /// At most `limit` units per calendar `period` (day, week from Monday, month),
    /// in UTC unless [`Self::utc_offset`] (`docs/design.md#fixed-windows`).
    pub fn calendar(store: &str, limit: u32, period: Period) -> Self {
        LimiterBuilder::new(store)
            .option("algorithm", "fixed_window")
            .option("limit", i64::from(limit))
            .option("period", period.name())
    }

    /// The UTC offset a fixed window's days start at, as a file writes it:
    /// `"+05:30"`, `"-08:00"`, `"UTC"`.
    pub fn utc_offset(self, offset: &str) -> Self {
        self.option("utc_offset", offset)
    }

    /// The runs a sliding window keeps per key (`docs/design.md#sliding-window`).
    pub fn precision(self, precision: u32) -> Self {
        self.option("precision", i64::from(precision))
    }

    /// The most units a token bucket admits at once after an idle spell (default 1:
    /// calls spaced exactly `1 / rate_per_second` apart) (`docs/design.md#token-bucket`).
    pub fn burst(self, burst: u32) -> Self {
        self.option("burst", i64::from(burst))
    }

    /// Caps calls in flight at once (any algorithm).
    pub fn max_concurrent(self, max: u32) -> Self {
        self.option("max_concurrent", i64::from(max))
    }

    /// Default wait bound of `acquire`, in seconds; 0 = never wait.
    pub fn timeout(self, seconds: f64) -> Self {
        self.option("timeout", seconds)
    }

    /// `acquire` waits as long as it takes (the default).
    pub fn no_timeout(mut self) -> Self {
        self.table.entries.retain(|e| e.key != "timeout");
        self
    }

    /// On store failure: `true` errors, `false` (default) admits.
    pub fn fail_closed(self, fail_closed: bool) -> Self {
        self.option("fail_closed", fail_closed)
    }

    /// Shadow mode (default `false`): calls the limit would refuse are admitted
    /// without consuming anything, and counted (`docs/design.md#shadow-mode`).
    pub fn shadow(self, shadow: bool) -> Self {
        self.option("shadow", shadow)
    }

    /// Seconds a concurrency lease lives without renewal (default 60).
    pub fn lease_ttl(self, seconds: f64) -> Self {
        self.option("lease_ttl", seconds)
    }

    /// Sets any limiter key, as the file would.
    pub fn option(mut self, key: &str, value: impl Into<toml::Value>) -> Self {
        set(&mut self.table, key, value.into());
        self
    }

    /// Adds a rule of their own for some keys, after those added before (the first
    /// that matches a key decides it): one `[[limiters.ID.overrides]]` table
    /// (`docs/design.md#overrides`).
    pub fn key_override(mut self, over: OverrideBuilder) -> Self {
        let table = raw::from_toml(toml::Value::Table(over.table));
        if !self.table.contains("overrides") {
            set(&mut self.table, "overrides", toml::Value::Array(Vec::new()));
        }
        // Set to something else through `option`: validation reports it.
        if let Some(Entry {
            item:
                Item {
                    value: Value::Array(items),
                    ..
                },
            ..
        }) = self.table.entries.iter_mut().find(|e| e.key == "overrides")
        {
            items.push(table);
        }
        self
    }

    /// Validates this limiter alone, as table `[limiters.<id>]` of a file whose
    /// stores are `stores` would be. Those stores are already valid: limiter rules
    /// only need their ids, so memory placeholders stand in for them.
    pub(crate) fn validate<'a>(
        self,
        id: &str,
        stores: impl IntoIterator<Item = &'a str>,
    ) -> Result<LimiterConfig, ConfigError> {
        let builder = stores.into_iter().fold(Config::builder(), |b, store| {
            b.store(store, StoreBuilder::memory())
        });
        let mut config = builder.limiter(id, self).build()?;
        Ok(config
            .limiters
            .swap_remove(id)
            .expect("a valid configuration keeps its limiter"))
    }
}

/// One per-key override of a limiter's rule, as the keys of a
/// `[[limiters.ID.overrides]]` table: `OverrideBuilder::keys(["vip"]).burst(10)`.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct OverrideBuilder {
    table: toml::Table,
}

impl OverrideBuilder {
    /// An override for these exact keys.
    pub fn keys<S: Into<String>>(keys: impl IntoIterator<Item = S>) -> Self {
        let keys = keys.into_iter().map(|k| toml::Value::String(k.into()));
        OverrideBuilder::default().option("keys", toml::Value::Array(keys.collect()))
    }

    /// An override for the keys that start with `prefix`.
    pub fn key_prefix(prefix: &str) -> Self {
        OverrideBuilder::default().option("key_prefix", prefix)
    }

    /// Also the keys that start with `prefix`.
    pub fn and_key_prefix(self, prefix: &str) -> Self {
        self.option("key_prefix", prefix)
    }

    /// The token bucket's rate for these keys, in units per second.
    pub fn rate_per_second(self, rate_per_second: f64) -> Self {
        self.option("rate_per_second", rate_per_second)
    }

    /// The token bucket's burst for these keys.
    pub fn burst(self, burst: u32) -> Self {
        self.option("burst", i64::from(burst))
    }

    /// The window limit (sliding or fixed) for these keys.
    pub fn limit(self, limit: u32) -> Self {
        self.option("limit", i64::from(limit))
    }

    /// The window length for these keys, in seconds; replaces the limiter's `period`.
    pub fn window_seconds(self, window_seconds: f64) -> Self {
        self.option("window_seconds", window_seconds)
    }

    /// The calendar period of a fixed window for these keys; replaces the limiter's
    /// `window_seconds`.
    pub fn period(self, period: Period) -> Self {
        self.option("period", period.name())
    }

    /// The concurrency cap for these keys.
    pub fn max_concurrent(self, max_concurrent: u32) -> Self {
        self.option("max_concurrent", i64::from(max_concurrent))
    }

    /// Sets any override key, as the file would.
    pub fn option(mut self, key: &str, value: impl Into<toml::Value>) -> Self {
        self.table.insert(key.to_owned(), value.into());
        self
    }
}
