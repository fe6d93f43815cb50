//! `[stores.ID]` tables: the engine and its connection settings (`docs/design.md#store-tables`).

use std::num::NonZeroUsize;
use std::time::Duration;

use super::super::error::Issues;
use super::super::postgres_url::split_tls;
use super::super::raw::Value;
use super::super::secret::{SecretString, SecretUrl};
use super::super::sentinel_url::parse_sentinel_url;
use super::super::types::{
    EngineConfig, MemoryConfig, NatsConfig, PostgresConfig, RedisConfig, StoreConfig,
};
use super::fields::{Field, Fields};
use super::formats::{self, NATS_SCHEMES, POSTGRES_SCHEMES, REDIS_SCHEMES};
use super::suggest::did_you_mean;

pub(crate) const ENGINES: &[&str] = &["memory", "redis", "postgres", "nats"];

/// The keys of each engine. `url` on memory is there only for rate-sync's documented
/// "engine from the environment" example, where it is empty.
const MEMORY_KEYS: &[&str] = &["engine", "max_keys", "url"];
const REDIS_KEYS: &[&str] = &[
    "engine",
    "url",
    "db",
    "password",
    "key_prefix",
    "pool_min_size",
    "pool_max_size",
    "socket_timeout",
    "socket_connect_timeout",
    "timing_margin_ms",
    "cluster",
    "sentinels",
    "sentinel_master",
];
const POSTGRES_KEYS: &[&str] = &[
    "engine",
    "url",
    "schema_name",
    "table_name",
    "auto_create",
    "pool_min_size",
    "pool_max_size",
    "timing_margin_ms",
];
const NATS_KEYS: &[&str] = &[
    "engine",
    "url",
    "token",
    "bucket_name",
    "auto_create",
    "retry_interval",
    "max_retries",
    "timing_margin_ms",
];

const DEFAULT_SOCKET_TIMEOUT: Duration = Duration::from_secs(5);

/// Validates one store table; `None` when it has issues (all reported).
pub(crate) fn store(f: &Fields<'_>, issues: &mut Issues) -> Option<StoreConfig> {
    let engine = match f.string(issues, "engine") {
        Field::Valid(engine) if !engine.is_empty() => engine,
        Field::Valid(_) | Field::Absent => {
            f.missing(
                issues,
                "engine",
                &format!(" (one of {})", ENGINES.join(", ")),
            );
            return None;
        }
        Field::Invalid => return None,
    };
    let keys = match engine {
        "memory" => MEMORY_KEYS,
        "redis" => REDIS_KEYS,
        "postgres" => POSTGRES_KEYS,
        "nats" => NATS_KEYS,
        unknown => {
            let hint = did_you_mean(unknown, ENGINES.iter().copied())
                .map(|close| format!("; did you mean `{close}`?"))
                .unwrap_or_default();
            f.report(
                issues,
                "engine",
                format!(
                    "unknown engine `{unknown}`; expected one of {}{hint}",
                    ENGINES.join(", ")
                ),
            );
            return None;
        }
    };
    let before = issues.len();
    f.check_keys(issues, &format!("a {engine} store"), keys, |key| {
        other_engine_of(key, engine).map(|other| format!("it is a {other} setting"))
    });
    let engine = match engine {
        "memory" => EngineConfig::Memory(memory(f, issues)),
        "redis" => EngineConfig::Redis(redis(f, issues)?),
        "postgres" => EngineConfig::Postgres(postgres(f, issues)?),
        _ => EngineConfig::Nats(nats(f, issues)?),
    };
    (issues.len() == before).then_some(StoreConfig { engine })
}

/// The engine that has `key`, when the store at hand does not.
fn other_engine_of(key: &str, engine: &str) -> Option<&'static str> {
    [
        ("redis", REDIS_KEYS),
        ("postgres", POSTGRES_KEYS),
        ("nats", NATS_KEYS),
        ("memory", MEMORY_KEYS),
    ]
    .into_iter()
    .find(|(name, keys)| *name != engine && keys.contains(&key))
    .map(|(name, _)| name)
}

fn memory(f: &Fields<'_>, issues: &mut Issues) -> MemoryConfig {
    if let Some(Value::String { text, .. }) = f.table.get("url").map(|i| &i.value) {
        if !text.trim().is_empty() {
            f.report(
                issues,
                "url",
                "a memory store has no URL; remove `url` or leave it empty",
            );
        }
    } else if f.table.contains("url") {
        f.report(issues, "url", "a memory store has no URL; remove `url`");
    }
    let max_keys = f
        .integer(issues, "max_keys", 1, i64::MAX)
        .ok()
        .and_then(|n| usize::try_from(n).ok())
        .and_then(NonZeroUsize::new);
    MemoryConfig { max_keys }
}

/// The required `url`, checked for `engine`.
fn url(
    f: &Fields<'_>,
    issues: &mut Issues,
    engine: &str,
    schemes: &[&str],
    list: bool,
) -> Option<SecretUrl> {
    let value = match f.table.get("url").map(|i| &i.value) {
        None => {
            f.missing(issues, "url", &format!(" for a {engine} store"));
            return None;
        }
        Some(Value::String { text, .. }) => text,
        Some(Value::Invalid) => return None,
        Some(other) => {
            f.report(
                issues,
                "url",
                format!("expected a string, got {}", other.type_name()),
            );
            return None;
        }
    };
    match formats::check_url(value, engine, schemes, list) {
        Ok(()) => Some(SecretUrl::new(value.trim())),
        Err(message) => {
            f.report(issues, "url", message);
            None
        }
    }
}

/// `pool_min_size` and `pool_max_size`, checked against each other.
fn pool(f: &Fields<'_>, issues: &mut Issues) -> (Option<u32>, Option<u32>) {
    let min = f.u32(issues, "pool_min_size", 0);
    let max = f.u32(issues, "pool_max_size", 1);
    if let (Field::Valid(min), Field::Valid(max)) = (min, max) {
        if min > max {
            f.report(
                issues,
                "pool_min_size",
                format!("pool_min_size ({min}) is larger than pool_max_size ({max})"),
            );
        }
    }
    (min.ok(), max.ok())
}

/// Most clients a PostgreSQL store opens (the bound of `engine/postgres/connection.rs`).
const POSTGRES_MAX_CLIENTS: u32 = 64;

/// [`pool`] for a PostgreSQL store, whose engine opens exactly `pool_max_size`
/// clients, else `pool_min_size`: that size must lie in 1..=64, or the engine would
/// quietly open a different number.
fn postgres_pool(f: &Fields<'_>, issues: &mut Issues) -> (Option<u32>, Option<u32>) {
    let (min, max) = pool(f, issues);
    // An invalid `pool_max_size` is already reported; `pool_min_size` is then unused.
    let in_use = match (max, f.table.contains("pool_max_size")) {
        (Some(max), _) => Some(("pool_max_size", max)),
        (None, false) => min.map(|min| ("pool_min_size", min)),
        (None, true) => None,
    };
    match in_use {
        Some((key, 0)) => f.report(
            issues,
            key,
            "must be at least 1 when `pool_max_size` is not set (it is then the number of \
             clients), got 0",
        ),
        Some((key, size)) if size > POSTGRES_MAX_CLIENTS => f.report(
            issues,
            key,
            format!(
                "must be at most {POSTGRES_MAX_CLIENTS} (the most clients a postgres store \
                 opens), got {size}"
            ),
        ),
        _ => {}
    }
    (min, max)
}

fn timing_margin(f: &Fields<'_>, issues: &mut Issues) -> Option<f64> {
    f.positive(issues, "timing_margin_ms", true).ok()
}

fn redis(f: &Fields<'_>, issues: &mut Issues) -> Option<RedisConfig> {
    // A Cluster may name several seed nodes, comma-separated, so it can start while
    // one of them is down; a redis+sentinel:// URL has a host list of its own.
    let seed_list = !matches!(
        f.table.get("url").map(|i| &i.value),
        Some(Value::String { text, .. }) if text.trim_start().starts_with("redis+sentinel")
    );
    let url = url(f, issues, "redis", REDIS_SCHEMES, seed_list);
    let sentinel_url = url
        .as_ref()
        .is_some_and(|u| u.expose().starts_with("redis+sentinel"));
    let sentinels = sentinels(f, issues);
    let sentinel_master = f.name(issues, "sentinel_master");
    let cluster = f.boolean(issues, "cluster");
    // Presence, not validity: a bad `sentinels` list is reported once, by itself.
    let has_sentinels = f.table.contains("sentinels");
    let uses_sentinel = sentinel_url || has_sentinels;
    if cluster.ok() == Some(true) && uses_sentinel {
        f.report(
            issues,
            "cluster",
            "`cluster = true` cannot be combined with Redis Sentinel",
        );
    }
    if has_sentinels && sentinel_master.is_absent() {
        f.missing(
            issues,
            "sentinel_master",
            " (the name of the master the sentinels monitor)",
        );
    }
    let url_names_master = url.as_ref().is_some_and(|u| {
        parse_sentinel_url(u.expose()).is_some_and(|parsed| parsed.master.is_some())
    });
    if sentinel_url && !url_names_master && sentinel_master.is_absent() {
        f.report(
            issues,
            "url",
            "the redis+sentinel:// URL names no master: add it as the path \
             (redis+sentinel://host:26379/mymaster) or set `sentinel_master`",
        );
    }
    if sentinel_master.is_present() && !uses_sentinel {
        f.report(
            issues,
            "sentinel_master",
            "only applies with `sentinels` or a redis+sentinel:// URL",
        );
    }
    let db = f.u32(issues, "db", 0).ok();
    let password = f
        .secret(issues, "password")
        .ok()
        .flatten()
        .map(SecretString::new);
    let key_prefix = f.name(issues, "key_prefix").or("rate_limit".to_owned());
    let (pool_min_size, pool_max_size) = pool(f, issues);
    let socket_timeout = f
        .seconds(issues, "socket_timeout", false)
        .or(DEFAULT_SOCKET_TIMEOUT);
    let socket_connect_timeout = f
        .seconds(issues, "socket_connect_timeout", false)
        .or(DEFAULT_SOCKET_TIMEOUT);
    let timing_margin_ms = timing_margin(f, issues);
    Some(RedisConfig {
        url: url?,
        db,
        password,
        key_prefix,
        pool_min_size,
        pool_max_size,
        socket_timeout,
        socket_connect_timeout,
        timing_margin_ms,
        cluster: cluster.or(false),
        sentinels: sentinels.unwrap_or_default(),
        sentinel_master: sentinel_master.ok(),
    })
}

/// `sentinels = ["host:26379", "redis://host2:26379"]`; `None` when absent or invalid.
fn sentinels(f: &Fields<'_>, issues: &mut Issues) -> Option<Vec<SecretUrl>> {
    let items = match f.table.get("sentinels").map(|i| &i.value) {
        None | Some(Value::Invalid) => return None,
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) => {
            f.report(issues, "sentinels", "must list at least one sentinel");
            return None;
        }
        Some(other) => {
            f.report(
                issues,
                "sentinels",
                format!(
                    "expected an array of \"host:port\" strings, got {}",
                    other.type_name()
                ),
            );
            return None;
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{}[{i}]", f.path("sentinels"));
        let text = match &item.value {
            Value::String { text, .. } => text.trim(),
            Value::Invalid => continue,
            other => {
                issues.push(
                    &path,
                    item.line,
                    format!("expected a \"host:port\" string, got {}", other.type_name()),
                );
                continue;
            }
        };
        // A bare `host:port` is the usual way to list sentinels.
        let url = if text.contains("://") {
            text.to_owned()
        } else {
            format!("redis://{text}")
        };
        match formats::check_url(&url, "redis sentinel", &["redis", "rediss"], false) {
            Ok(()) => out.push(SecretUrl::new(url)),
            Err(message) => issues.push(&path, item.line, message),
        }
    }
    (out.len() == items.len()).then_some(out)
}

fn postgres(f: &Fields<'_>, issues: &mut Issues) -> Option<PostgresConfig> {
    let url = url(f, issues, "postgres", POSTGRES_SCHEMES, false);
    // An unknown `sslmode` (or unsupported TLS key) is caught here, not at first use.
    let url = url.filter(|url| match split_tls(url.expose()) {
        Ok(_) => true,
        Err(message) => {
            f.report(issues, "url", message);
            false
        }
    });
    let mut identifier = |key: &str, default: &str| {
        let value = f.name(issues, key).or(default.to_owned());
        if let Err(message) = formats::check_sql_identifier(&value) {
            f.report(issues, key, message);
        }
        value
    };
    let schema_name = identifier("schema_name", "public");
    let table_name = identifier("table_name", "rate_limiter_state");
    let auto_create = f.boolean(issues, "auto_create").or(false);
    let (pool_min_size, pool_max_size) = postgres_pool(f, issues);
    let timing_margin_ms = timing_margin(f, issues);
    Some(PostgresConfig {
        url: url?,
        schema_name,
        table_name,
        auto_create,
        pool_min_size,
        pool_max_size,
        timing_margin_ms,
    })
}

fn nats(f: &Fields<'_>, issues: &mut Issues) -> Option<NatsConfig> {
    let url = url(f, issues, "nats", NATS_SCHEMES, true);
    let token = f
        .secret(issues, "token")
        .ok()
        .flatten()
        .map(SecretString::new);
    let bucket_name = f.name(issues, "bucket_name").or("rate_limits".to_owned());
    if let Err(message) = formats::check_bucket_name(&bucket_name) {
        f.report(issues, "bucket_name", message);
    }
    let auto_create = f.boolean(issues, "auto_create").or(false);
    let retry_interval = f.seconds(issues, "retry_interval", false).ok();
    let max_retries = f.u32(issues, "max_retries", 0).ok();
    let timing_margin_ms = timing_margin(f, issues);
    Some(NatsConfig {
        url: url?,
        token,
        bucket_name,
        auto_create,
        retry_interval,
        max_retries,
        timing_margin_ms,
    })
}
