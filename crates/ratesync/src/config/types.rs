//! The validated configuration: what a `rate-sync.toml` (or the builder) says, after
//! every check of `docs/design.md#validation` has passed. Holding one of these means it is valid.

use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;

use super::secret::{SecretString, SecretUrl};
use crate::algorithm::{Concurrency, Policy, Rule};

/// Default `lease_ttl`: how long a concurrency lease lives without renewal.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(60);

/// A whole configuration: stores and the limiters that use them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// The file this came from, if any.
    pub source: Option<PathBuf>,
    /// Stores by id, in file order.
    pub stores: IndexMap<String, StoreConfig>,
    /// Limiters by id, in file order.
    pub limiters: IndexMap<String, LimiterConfig>,
    /// The `[http]` table (or `[fastapi]`, its name in rate-sync files), read by
    /// the HTTP integrations: the Rust layer and FastAPI. The field keeps its
    /// rate-sync name.
    pub fastapi: FastApiConfig,
}

/// One `[stores.ID]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// The engine and its settings.
    pub engine: EngineConfig,
}

/// Engine name and connection settings of a store.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineConfig {
    /// `engine = "memory"` (`docs/design.md#memory`).
    Memory(MemoryConfig),
    /// `engine = "redis"` (`docs/design.md#redis`).
    Redis(RedisConfig),
    /// `engine = "postgres"` (`docs/design.md#postgresql`).
    Postgres(PostgresConfig),
    /// `engine = "nats"` (`docs/design.md#nats`).
    Nats(NatsConfig),
}

impl EngineConfig {
    /// The value of the `engine` key.
    pub fn engine_name(&self) -> &'static str {
        match self {
            EngineConfig::Memory(_) => "memory",
            EngineConfig::Redis(_) => "redis",
            EngineConfig::Postgres(_) => "postgres",
            EngineConfig::Nats(_) => "nats",
        }
    }

    /// Where the store lives, with credentials masked; safe to print.
    pub fn location(&self) -> String {
        match self {
            EngineConfig::Memory(_) => "process memory".to_owned(),
            EngineConfig::Redis(c) => c.url.to_string(),
            EngineConfig::Postgres(c) => c.url.to_string(),
            EngineConfig::Nats(c) => c.url.to_string(),
        }
    }
}

/// `engine = "memory"`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryConfig {
    /// Most keys tracked at once; idle keys are evicted first. `None` = unbounded.
    pub max_keys: Option<NonZeroUsize>,
}

/// `engine = "redis"`.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    /// `redis://`, `rediss://`, `redis+sentinel://`, `unix://` or `redis+unix://`;
    /// for a Cluster, a comma-separated list of seed nodes.
    pub url: SecretUrl,
    /// The database number; when set, it wins over the one in `url`.
    pub db: Option<u32>,
    /// The password; when set, it wins over the one in `url`.
    pub password: Option<SecretString>,
    /// Start of every Redis key the store writes (default `"rate_limit"`).
    pub key_prefix: String,
    /// Validated but unused: the engine keeps one multiplexed connection
    /// (`docs/design.md#redis`).
    pub pool_min_size: Option<u32>,
    /// Validated but unused, as `pool_min_size`.
    pub pool_max_size: Option<u32>,
    /// The deadline of every call to the store (default 5 s).
    pub socket_timeout: Duration,
    /// The bound on opening a connection (default 5 s).
    pub socket_connect_timeout: Duration,
    /// Accepted from rate-sync files and ignored: subtracting it could only loosen a
    /// limit (`docs/design.md#store-tables`).
    pub timing_margin_ms: Option<f64>,
    /// Whether `url` is a Redis Cluster (default `false`); not with Sentinel.
    pub cluster: bool,
    /// Sentinels to ask for the master (the file's `host:port` strings, as
    /// `redis://` URLs); empty without Sentinel or when the `redis+sentinel://` URL
    /// lists them.
    pub sentinels: Vec<SecretUrl>,
    /// The name of the master the sentinels monitor, unless the `redis+sentinel://`
    /// URL names it.
    pub sentinel_master: Option<String>,
}

/// `engine = "postgres"`.
#[derive(Debug, Clone, PartialEq)]
pub struct PostgresConfig {
    /// `postgres://` or `postgresql://`; libpq's `sslmode` is honoured.
    pub url: SecretUrl,
    /// The schema of the state table (default `"public"`).
    pub schema_name: String,
    /// The state table (default `"rate_limiter_state"`); its functions and index are
    /// named after it.
    pub table_name: String,
    /// Whether the first connection creates or migrates the table and functions
    /// (default `false`: `ratesync migrate` does it).
    pub auto_create: bool,
    /// The number of clients when `pool_max_size` is absent (both absent: 4).
    pub pool_min_size: Option<u32>,
    /// The number of clients the store opens (at most 64).
    pub pool_max_size: Option<u32>,
    /// Accepted from rate-sync files and ignored (`docs/design.md#store-tables`).
    pub timing_margin_ms: Option<f64>,
}

/// `engine = "nats"`.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsConfig {
    /// One or more servers (the file's comma-separated list).
    pub url: SecretUrl,
    /// The authentication token, if the servers want one.
    pub token: Option<SecretString>,
    /// The JetStream KV bucket holding the state (default `"rate_limits"`).
    pub bucket_name: String,
    /// Whether a missing bucket is created (default `false`: it is an error naming
    /// the `nats kv add` command).
    pub auto_create: bool,
    /// Base pause after a lost compare-and-set; `None` = 1 ms
    /// (`DEFAULT_RETRY_INTERVAL` of the NATS engine).
    pub retry_interval: Option<Duration>,
    /// Conflicting writes tolerated per decision before it fails; `None` = 50.
    pub max_retries: Option<u32>,
    /// Accepted from rate-sync files and ignored (`docs/design.md#store-tables`).
    pub timing_margin_ms: Option<f64>,
}

/// One `[limiters.ID]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct LimiterConfig {
    /// Id of the store the limiter uses.
    pub store: String,
    /// The rate rule; `None` for a limiter that only caps concurrency (rate-sync
    /// allows `max_concurrent` without `rate_per_second`). Validation guarantees a
    /// rule, a cap, or both.
    pub rule: Option<Rule>,
    /// Most permits held at once, per key; `None` = no cap
    /// (`docs/design.md#concurrency`).
    pub max_concurrent: Option<NonZeroU32>,
    /// How long a concurrency lease lives without renewal ([`DEFAULT_LEASE_TTL`]
    /// unless set); only used with `max_concurrent`.
    pub lease_ttl: Duration,
    /// Default wait bound for `acquire`; `None` = wait forever, zero = never wait.
    pub timeout: Option<Duration>,
    /// On store failure: `false` admits (fail-open), `true` errors.
    pub fail_closed: bool,
    /// Shadow mode: every call is decided, but one the limit would refuse is admitted
    /// without consuming anything (`docs/design.md#shadow-mode`).
    pub shadow: bool,
    /// Rules of their own for some keys, in order: the first that matches a key
    /// decides it (`docs/design.md#overrides`).
    pub overrides: Vec<KeyOverride>,
}

/// One `[[limiters.ID.overrides]]` table: the keys it applies to and their rule.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyOverride {
    /// Keys matched exactly.
    pub keys: Vec<String>,
    /// Keys matched by their start.
    pub key_prefix: Option<String>,
    /// The limiter's rule with the override's fields: same algorithm.
    pub rule: Option<Rule>,
    /// The concurrency cap of these keys (the limiter's unless overridden).
    pub max_concurrent: Option<NonZeroU32>,
}

impl KeyOverride {
    /// Whether this override applies to `key`.
    pub fn matches(&self, key: &str) -> bool {
        self.key_prefix
            .as_deref()
            .is_some_and(|prefix| key.starts_with(prefix))
            || self.keys.iter().any(|k| k == key)
    }
}

impl LimiterConfig {
    /// This limiter as it decides the keys of `over`: its rule and cap replaced,
    /// everything else (store, timeout, failure policy, shadow mode) its own.
    pub fn overridden(&self, over: &KeyOverride) -> LimiterConfig {
        self.with_rule(over.rule, over.max_concurrent)
    }

    /// This limiter deciding by `rule` and `max_concurrent` instead of its own (an
    /// override's, a resolver's), everything else its own, without overrides.
    pub fn with_rule(&self, rule: Option<Rule>, max_concurrent: Option<NonZeroU32>) -> Self {
        LimiterConfig {
            rule,
            max_concurrent,
            overrides: Vec::new(),
            ..self.clone()
        }
    }

    /// The rule and concurrency cap the engines enforce.
    pub fn policy(&self) -> Policy {
        Policy {
            rule: self.rule,
            concurrency: self.max_concurrent.map(|max| Concurrency {
                max: max.get(),
                lease_ttl: crate::clock::saturating_nanos(self.lease_ttl),
            }),
        }
    }
}

impl LimiterConfig {
    /// Whether this limiter only caps concurrency (no rate was configured).
    pub fn is_concurrency_only(&self) -> bool {
        self.rule.is_none()
    }
}

/// The `[http]` table, also accepted as `[fastapi]` (rate-sync's name; a file with
/// both is invalid).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FastApiConfig {
    /// Proxy networks whose forwarding headers are trusted, as CIDR strings.
    pub trusted_proxy_networks: Vec<String>,
}
