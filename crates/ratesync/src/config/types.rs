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
    pub engine: EngineConfig,
}

/// Engine name and connection settings of a store.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineConfig {
    Memory(MemoryConfig),
    Redis(RedisConfig),
    Postgres(PostgresConfig),
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
    pub url: SecretUrl,
    pub db: Option<u32>,
    pub password: Option<SecretString>,
    pub key_prefix: String,
    pub pool_min_size: Option<u32>,
    pub pool_max_size: Option<u32>,
    pub socket_timeout: Duration,
    pub socket_connect_timeout: Duration,
    pub timing_margin_ms: Option<f64>,
    pub cluster: bool,
    pub sentinels: Vec<SecretUrl>,
    pub sentinel_master: Option<String>,
}

/// `engine = "postgres"`.
#[derive(Debug, Clone, PartialEq)]
pub struct PostgresConfig {
    pub url: SecretUrl,
    pub schema_name: String,
    pub table_name: String,
    pub auto_create: bool,
    pub pool_min_size: Option<u32>,
    pub pool_max_size: Option<u32>,
    pub timing_margin_ms: Option<f64>,
}

/// `engine = "nats"`.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsConfig {
    /// One or more servers (the file's comma-separated list).
    pub url: SecretUrl,
    pub token: Option<SecretString>,
    pub bucket_name: String,
    pub auto_create: bool,
    pub retry_interval: Option<Duration>,
    pub max_retries: Option<u32>,
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
    pub max_concurrent: Option<NonZeroU32>,
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
        LimiterConfig {
            rule: over.rule,
            max_concurrent: over.max_concurrent,
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
