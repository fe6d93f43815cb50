//! The process-wide registry of the Python API. `configure_store`,
//! `configure_limiter` and `load_config` replace it with a new snapshot that shares
//! every store and limiter they did not change (`Registry::with_store` and
//! `with_limiter` in the core), so memory state survives later configuration.
//!
//! The file discovered at import is loaded then; if it is invalid, the error is kept
//! and raised by every use until `load_config` succeeds (import itself never fails).

use std::path::{Path, PathBuf};

use parking_lot::RwLock;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use ratesync::config::{format_utc_offset, EngineConfig, StoreConfig};
use ratesync::{
    Config, KeyRule, LimiterBuilder, LimiterConfig, OverrideBuilder, Registry, Resolver, Rule,
    StoreBuilder,
};

use crate::errors;

struct State {
    registry: Registry,
    /// An invalid discovered file, raised by every use until `load_config` succeeds.
    pending: Option<ratesync::Error>,
}

static STATE: RwLock<Option<State>> = RwLock::new(None);

fn empty() -> Registry {
    Registry::from_config(Config::default()).expect("an empty registry always builds")
}

/// The current registry, or the error of the discovered file.
pub(crate) fn current() -> PyResult<Registry> {
    match STATE.read().as_ref() {
        None => Ok(empty()),
        Some(State {
            pending: Some(error),
            ..
        }) => Err(errors::config_error(&error.to_string())),
        Some(state) => Ok(state.registry.clone()),
    }
}

pub(crate) fn limiter(name: &str) -> PyResult<ratesync::Limiter> {
    current()?
        .limiter(name)
        .map_err(|_| errors::limiter_not_found(name))
}

/// Changes the registry with `change`, under the lock so that concurrent
/// configuration calls do not lose each other's work.
fn update(change: impl FnOnce(&Registry) -> Result<Registry, ratesync::Error>) -> PyResult<()> {
    let _runtime = crate::runtime::handle().enter();
    let mut state = STATE.write();
    let registry = match state.as_ref() {
        None => empty(),
        Some(State {
            pending: Some(error),
            ..
        }) => return Err(errors::config_error(&error.to_string())),
        Some(state) => state.registry.clone(),
    };
    let next = change(&registry).map_err(|e| errors::from_error(&e))?;
    *state = Some(State {
        registry: next,
        pending: None,
    });
    Ok(())
}

/// A rebuilt registry for a forked child: network clients of the parent are tied to
/// its runtime; memory state starts fresh, as in any new process.
///
/// The parent's registry is leaked, never dropped: dropping it would cancel its
/// timers and tasks on the parent's runtime, taking locks that one of the parent's
/// threads may have held at the instant of the fork, and that no thread of the
/// child will ever release (a deadlock inside `fork()`).
pub(crate) fn after_fork_in_child() {
    let mut state = STATE.write();
    if let Some(State { registry, .. }) = state.as_mut() {
        let _runtime = crate::runtime::handle().enter();
        if let Ok(rebuilt) = Registry::from_config(registry.config().clone()) {
            std::mem::forget(std::mem::replace(registry, rebuilt));
        }
    }
}

/// Loads the file found by discovery (`docs/design.md#configuration`), keeping its
/// error for later.
#[pyfunction]
fn discover_on_import() {
    let _runtime = crate::runtime::handle().enter();
    let loaded = Config::discover(None)
        .map_err(ratesync::Error::from)
        .and_then(|config| Registry::from_config(config.unwrap_or_default()));
    *STATE.write() = Some(match loaded {
        Ok(registry) => State {
            registry,
            pending: None,
        },
        Err(error) => State {
            registry: empty(),
            pending: Some(error),
        },
    });
}

/// Loads `path` (or the discovered file) into the configuration: its stores and
/// limiters are added to those configured before, replacing those of the same ids
/// (`Registry::merged`), as rate-sync's `load_config` does. After an invalid
/// discovered file, the loaded one starts from nothing.
///
/// With `watch`, the file is followed (`ratesync::ConfigWatch`,
/// `docs/design.md#hot-reload`): each valid edit replaces what the file gave before
/// (`Registry::reloaded`); an invalid one is logged and changes nothing. A file
/// loaded with `watch` again replaces its earlier watch.
#[pyfunction]
#[pyo3(signature = (path=None, watch=false))]
fn load_config(py: Python<'_>, path: Option<PathBuf>, watch: bool) -> PyResult<Option<PathBuf>> {
    let _runtime = crate::runtime::handle().enter();
    let config =
        Config::discover(path.as_deref()).map_err(|e| errors::config_error(&e.to_string()))?;
    let Some(config) = config else {
        return Ok(None);
    };
    let source = config.source.clone();
    // Followed: watched from before it is read, so that no edit is missed.
    let (config, watch) = match (watch, &source) {
        (true, Some(file)) => {
            let (watch, config) =
                ratesync::ConfigWatch::open(file).map_err(|e| errors::from_error(&e))?;
            (config, Some(watch))
        }
        _ => (config, None),
    };
    let loaded = config.clone();
    let mut state = STATE.write();
    let base = match state.as_ref() {
        Some(State {
            registry,
            pending: None,
        }) => registry.clone(),
        _ => empty(),
    };
    let registry = base.merged(config).map_err(|e| errors::from_error(&e))?;
    *state = Some(State {
        registry,
        pending: None,
    });
    drop(state);
    if let (Some(watch), Some(file)) = (watch, &source) {
        // Reloads take the registry's lock on the watch thread: not under the GIL.
        py.detach(|| follow(file, watch, loaded))?;
    }
    Ok(source)
}

/// Reloads of followed files applied so far: Python drops the `RateLimiter` objects
/// it handed out (they describe the configuration of their day) when it changes.
static RELOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many reloads of followed files have been applied.
#[pyfunction]
fn reloads() -> u64 {
    RELOADS.load(std::sync::atomic::Ordering::Acquire)
}

/// Gives keys of limiter `limiter_id` rules of their own from `resolver(key)`: `None`,
/// or a dict of the rule fields an override may set (`docs/design.md#overrides`),
/// validated against the limiter's rule as an override would be. The answers of up
/// to `cache_size` keys are kept. A resolver that raises, or answers what does not
/// validate, leaves the key to the limiter's own rule (logged).
#[pyfunction]
#[pyo3(signature = (limiter_id, resolver, cache_size = 10_000))]
fn set_resolver(limiter_id: &str, resolver: Py<PyAny>, cache_size: usize) -> PyResult<()> {
    let name = limiter_id.to_owned();
    let resolve = move |key: &str| {
        Python::attach(|py| match resolver.call1(py, (key,)) {
            Ok(answer) if answer.is_none(py) => None,
            Ok(answer) => key_rule(&name, answer.bind(py))
                .map_err(
                    |error| tracing::warn!(limiter = %name, "resolver answer not used: {error}"),
                )
                .ok(),
            Err(error) => {
                tracing::warn!(limiter = %name, "resolver raised: {error}");
                None
            }
        })
    };
    update(|registry| registry.with_resolver(limiter_id, Resolver::new(cache_size, resolve)))
}

/// A resolver's `answer` as the rule of a key of limiter `name`: the limiter's rule with
/// the answer's fields, validated as an override of it.
fn key_rule(name: &str, answer: &Bound<'_, PyAny>) -> PyResult<KeyRule> {
    let answer = answer
        .cast::<PyDict>()
        .map_err(|_| errors::config_error("a resolver answers None or a dict of rule fields"))?;
    let registry = current()?;
    let base = registry
        .config()
        .limiters
        .get(name)
        .ok_or_else(|| errors::limiter_not_found(name))?;
    let rule = RuleInfo::of(base.rule.as_ref());
    let mut limiter = LimiterBuilder::new("s").option("algorithm", rule.algorithm);
    let fields: [(&str, Option<toml::Value>); 8] = [
        ("rate_per_second", rule.rate_per_second.map(Into::into)),
        ("burst", rule.burst.map(|n| i64::from(n).into())),
        ("limit", rule.limit.map(|n| i64::from(n).into())),
        ("window_seconds", rule.window_seconds.map(Into::into)),
        ("precision", rule.precision.map(|n| i64::from(n).into())),
        ("period", rule.period.map(Into::into)),
        ("utc_offset", rule.utc_offset.map(Into::into)),
        (
            "max_concurrent",
            base.max_concurrent.map(|n| i64::from(n.get()).into()),
        ),
    ];
    for (key, value) in fields {
        if let Some(value) = value {
            limiter = limiter.option(key, value);
        }
    }
    let mut over = OverrideBuilder::keys(["resolved"]);
    for (key, value) in answer.iter() {
        let key: String = key.extract()?;
        if let Some(value) = to_toml(&value, &key)? {
            over = over.option(&key, value);
        }
    }
    let config = Config::builder()
        .store("s", StoreBuilder::memory())
        .limiter(name, limiter.key_override(over))
        .build()
        .map_err(|e| errors::config_error(&e.to_string()))?;
    let over = &config.limiters[name].overrides[0];
    Ok(KeyRule {
        rule: over.rule,
        max_concurrent: over.max_concurrent,
    })
}

/// The files followed, by path: dropping a watch stops it.
static WATCHES: parking_lot::Mutex<Vec<(PathBuf, ratesync::ConfigWatch)>> =
    parking_lot::Mutex::new(Vec::new());

/// Follows `file` with `watch`, from `loaded`, its contents merged into the registry.
fn follow(file: &Path, mut watch: ratesync::ConfigWatch, loaded: Config) -> PyResult<()> {
    let mut before = loaded;
    watch
        .follow(move |after| {
            let _runtime = crate::runtime::handle().enter();
            let mut state = STATE.write();
            let registry = match state.as_ref() {
                Some(State {
                    registry,
                    pending: None,
                }) => registry.clone(),
                _ => empty(),
            };
            let next = registry.reloaded(&before, after.clone())?;
            *state = Some(State {
                registry: next,
                pending: None,
            });
            before = after;
            RELOADS.fetch_add(1, std::sync::atomic::Ordering::Release);
            Ok(())
        })
        .map_err(|e| errors::from_error(&e))?;
    let mut watches = WATCHES.lock();
    watches.retain(|(path, _)| path != file);
    watches.push((file.to_path_buf(), watch));
    Ok(())
}

#[pyfunction]
fn configure_store(store_id: &str, engine: &str, options: &Bound<'_, PyDict>) -> PyResult<()> {
    let mut store = StoreBuilder::new(engine);
    for (key, value) in options.iter() {
        let key: String = key.extract()?;
        if let Some(value) = to_toml(&value, &key)? {
            store = store.option(&key, value);
        }
    }
    update(|registry| registry.with_store(store_id, store))
}

#[pyfunction]
fn configure_limiter(limiter_id: &str, options: &Bound<'_, PyDict>) -> PyResult<()> {
    let mut limiter = LimiterBuilder::default();
    let mut store_id = None;
    for (key, value) in options.iter() {
        let key: String = key.extract()?;
        if key == "store" {
            store_id = Some(value.extract::<String>()?);
        }
        if let Some(value) = to_toml(&value, &key)? {
            limiter = limiter.option(&key, value);
        }
    }
    if let Some(store_id) = store_id {
        if !current()?.config().stores.contains_key(&store_id) {
            return Err(errors::store_not_found(&store_id));
        }
    }
    update(|registry| registry.with_limiter(limiter_id, limiter))
}

/// A Python value as the TOML value a file would hold; `None` leaves the key out.
fn to_toml(value: &Bound<'_, PyAny>, key: &str) -> PyResult<Option<toml::Value>> {
    if value.is_none() {
        return Ok(None);
    }
    if let Ok(b) = value.extract::<bool>() {
        return Ok(Some(toml::Value::Boolean(b)));
    }
    if let Ok(i) = value.extract::<i64>() {
        return Ok(Some(toml::Value::Integer(i)));
    }
    if let Ok(f) = value.extract::<f64>() {
        return Ok(Some(toml::Value::Float(f)));
    }
    if value.is_instance_of::<PyString>() {
        return Ok(Some(toml::Value::String(value.extract()?)));
    }
    // A table: one of a limiter's `overrides`.
    if let Ok(dict) = value.cast::<PyDict>() {
        let mut table = toml::Table::new();
        for (name, item) in dict.iter() {
            let name: String = name.extract()?;
            if let Some(item) = to_toml(&item, &format!("{key}.{name}"))? {
                table.insert(name, item);
            }
        }
        return Ok(Some(toml::Value::Table(table)));
    }
    if let Ok(items) = value.extract::<Vec<Bound<'_, PyAny>>>() {
        let mut array = Vec::new();
        for item in &items {
            array.extend(to_toml(item, key)?);
        }
        return Ok(Some(toml::Value::Array(array)));
    }
    Err(errors::config_error(&format!(
        "{key}: unsupported value of type {}",
        value.get_type().name()?
    )))
}

/// A limiter `name` on a store of its own, in a registry of its own (the engine
/// classes constructed directly). Options as for `configure_store` / `configure_limiter`
/// (without `store`).
pub(crate) fn private_limiter(
    name: &str,
    engine: &str,
    store_options: &Bound<'_, PyDict>,
    limiter_options: &Bound<'_, PyDict>,
) -> PyResult<ratesync::Limiter> {
    let mut store = StoreBuilder::new(engine);
    for (key, value) in store_options.iter() {
        let key: String = key.extract()?;
        if let Some(value) = to_toml(&value, &key)? {
            store = store.option(&key, value);
        }
    }
    let mut limiter =
        LimiterBuilder::default().option("store", toml::Value::String("private".into()));
    for (key, value) in limiter_options.iter() {
        let key: String = key.extract()?;
        if let Some(value) = to_toml(&value, &key)? {
            limiter = limiter.option(&key, value);
        }
    }
    let _runtime = crate::runtime::handle().enter();
    let registry = empty()
        .with_store("private", store)
        .and_then(|r| r.with_limiter(name, limiter))
        .map_err(|e| errors::from_error(&e))?;
    registry
        .limiter(name)
        .map_err(|_| errors::limiter_not_found(name))
}

/// Every store with its settings, secrets masked.
#[pyfunction]
fn list_stores(py: Python<'_>) -> PyResult<Py<PyDict>> {
    let registry = current()?;
    let out = PyDict::new(py);
    for (id, store) in &registry.config().stores {
        out.set_item(id, store_info(py, store)?)?;
    }
    Ok(out.unbind())
}

fn store_info<'py>(py: Python<'py>, store: &StoreConfig) -> PyResult<Bound<'py, PyDict>> {
    let info = PyDict::new(py);
    info.set_item("engine", store.engine.engine_name())?;
    info.set_item("strategy", store.engine.engine_name())?;
    match &store.engine {
        EngineConfig::Memory(m) => info.set_item("max_keys", m.max_keys.map(|n| n.get()))?,
        EngineConfig::Redis(r) => {
            info.set_item("url", r.url.masked())?;
            // The database used: the one set, else the URL's, else 0 (as rate-sync).
            let db_of_url = url::Url::parse(r.url.expose())
                .ok()
                .and_then(|url| url.path().trim_start_matches('/').parse::<u32>().ok());
            info.set_item("db", r.db.or(db_of_url).unwrap_or(0))?;
            info.set_item("pool_min_size", r.pool_min_size)?;
            info.set_item("pool_max_size", r.pool_max_size)?;
            info.set_item("timing_margin_ms", r.timing_margin_ms)?;
            info.set_item("password", r.password.as_ref().map(|_| "***"))?;
            info.set_item("key_prefix", &r.key_prefix)?;
            info.set_item("socket_timeout", r.socket_timeout.as_secs_f64())?;
            info.set_item(
                "socket_connect_timeout",
                r.socket_connect_timeout.as_secs_f64(),
            )?;
            info.set_item("cluster", r.cluster)?;
        }
        EngineConfig::Postgres(p) => {
            info.set_item("url", p.url.masked())?;
            info.set_item("schema_name", &p.schema_name)?;
            info.set_item("table_name", &p.table_name)?;
            info.set_item("auto_create", p.auto_create)?;
            info.set_item("pool_min_size", p.pool_min_size)?;
            info.set_item("pool_max_size", p.pool_max_size)?;
            info.set_item("timing_margin_ms", p.timing_margin_ms)?;
        }
        EngineConfig::Nats(n) => {
            info.set_item("url", n.url.masked())?;
            info.set_item("token", n.token.as_ref().map(|_| "***"))?;
            info.set_item("bucket_name", &n.bucket_name)?;
        }
    }
    Ok(info)
}

/// Every limiter with its settings, as rate-sync's `list_limiters` (keys as there).
#[pyfunction]
fn list_limiters(py: Python<'_>) -> PyResult<Py<PyDict>> {
    let registry = current()?;
    let out = PyDict::new(py);
    for (id, limiter) in &registry.config().limiters {
        out.set_item(id, limiter_info(py, limiter)?)?;
    }
    Ok(out.unbind())
}

/// The quota limiter `limiter_id` was configured with for `key` (its override's, else
/// its own), `(units, window seconds)` (`ratesync::RateQuota`), or `None` when it has
/// no rate (a concurrency cap).
#[pyfunction]
#[pyo3(signature = (limiter_id, key = ""))]
fn limiter_quota(limiter_id: &str, key: &str) -> PyResult<Option<(u64, f64)>> {
    let quota = limiter(limiter_id)?.quota_for(key);
    Ok(quota.map(|quota| (quota.units, quota.window.as_secs_f64())))
}

/// The settings of limiter `limiter_id`.
#[pyfunction]
fn limiter_config(py: Python<'_>, limiter_id: &str) -> PyResult<Py<PyDict>> {
    let registry = current()?;
    let config = registry
        .config()
        .limiters
        .get(limiter_id)
        .ok_or_else(|| errors::limiter_not_found(limiter_id))?;
    Ok(limiter_info(py, config)?.unbind())
}

fn limiter_info<'py>(py: Python<'py>, limiter: &LimiterConfig) -> PyResult<Bound<'py, PyDict>> {
    let info = PyDict::new(py);
    info.set_item("store_id", &limiter.store)?;
    info.set_item("backend", &limiter.store)?;
    RuleInfo::of(limiter.rule.as_ref()).set_items(&info)?;
    info.set_item("max_concurrent", limiter.max_concurrent.map(|n| n.get()))?;
    let overrides = PyList::empty(py);
    for over in &limiter.overrides {
        // As configured: what it applies to, and the rule it gives them.
        let item = PyDict::new(py);
        if !over.keys.is_empty() {
            item.set_item("keys", &over.keys)?;
        }
        if let Some(prefix) = &over.key_prefix {
            item.set_item("key_prefix", prefix)?;
        }
        RuleInfo::of(over.rule.as_ref()).set_items(&item)?;
        // The limiter's own, which an override cannot set.
        item.del_item("algorithm")?;
        item.set_item("max_concurrent", over.max_concurrent.map(|n| n.get()))?;
        overrides.append(item)?;
    }
    info.set_item("overrides", overrides)?;
    info.set_item("lease_ttl", limiter.lease_ttl.as_secs_f64())?;
    info.set_item("timeout", limiter.timeout.map(|t| t.as_secs_f64()))?;
    info.set_item("fail_closed", limiter.fail_closed)?;
    info.set_item("shadow", limiter.shadow)?;
    info.set_item("initialized", true)?;
    Ok(info)
}

/// A rule as the keys of `configure_limiter` that give it back (`clone_limiter`
/// configures a copy from them): keys the rule does not read are `None`.
#[derive(Default)]
struct RuleInfo {
    algorithm: &'static str,
    rate_per_second: Option<f64>,
    burst: Option<u32>,
    limit: Option<u32>,
    window_seconds: Option<f64>,
    precision: Option<u32>,
    period: Option<&'static str>,
    utc_offset: Option<String>,
}

impl RuleInfo {
    /// These keys in `dict`.
    fn set_items(self, dict: &Bound<'_, PyDict>) -> PyResult<()> {
        dict.set_item("algorithm", self.algorithm)?;
        dict.set_item("rate_per_second", self.rate_per_second)?;
        dict.set_item("burst", self.burst)?;
        dict.set_item("limit", self.limit)?;
        // Whole seconds read back as the integer files usually give (300, not 300.0).
        match self.window_seconds {
            Some(seconds) if seconds.fract() == 0.0 && seconds < 1e15 => {
                dict.set_item("window_seconds", seconds as i64)?
            }
            seconds => dict.set_item("window_seconds", seconds)?,
        }
        dict.set_item("precision", self.precision)?;
        dict.set_item("period", self.period)?;
        dict.set_item("utc_offset", self.utc_offset)
    }

    fn of(rule: Option<&Rule>) -> Self {
        match rule {
            // A limiter without a rate is configured as rate-sync's default
            // algorithm with no rate: it reads back that way.
            None => RuleInfo {
                algorithm: "token_bucket",
                ..RuleInfo::default()
            },
            Some(Rule::TokenBucket(tb)) => RuleInfo {
                algorithm: "token_bucket",
                rate_per_second: Some(tb.configured_rate()),
                burst: Some(tb.burst()),
                ..RuleInfo::default()
            },
            Some(Rule::SlidingWindow(sw)) => RuleInfo {
                algorithm: "sliding_window",
                limit: Some(sw.limit()),
                window_seconds: Some(sw.window_nanos() as f64 / 1e9),
                precision: Some(sw.precision()),
                ..RuleInfo::default()
            },
            Some(Rule::FixedWindow(fw)) => RuleInfo {
                algorithm: "fixed_window",
                limit: Some(fw.limit()),
                // A calendar period has no one length (months differ): `period`
                // says it, and `window_seconds` would conflict with it.
                window_seconds: fw
                    .period()
                    .is_none()
                    .then(|| fw.window_nanos() as f64 / 1e9),
                period: fw.period().map(|p| p.name()),
                // Windows aligned to the Unix epoch are those of offset 0 without
                // the day's constraint: no offset reads back as one, as configured.
                utc_offset: match (fw.period(), fw.utc_offset()) {
                    (None, 0) => None,
                    (_, offset) => Some(format_utc_offset(offset)),
                },
                ..RuleInfo::default()
            },
        }
    }
}

/// The `[fastapi] trusted_proxy_networks` of the configuration (empty when unset).
#[pyfunction]
fn trusted_proxy_networks() -> PyResult<Vec<String>> {
    Ok(current()?.config().fastapi.trusted_proxy_networks.clone())
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(trusted_proxy_networks, m)?)?;
    m.add_function(wrap_pyfunction!(discover_on_import, m)?)?;
    m.add_function(wrap_pyfunction!(load_config, m)?)?;
    m.add_function(wrap_pyfunction!(configure_store, m)?)?;
    m.add_function(wrap_pyfunction!(configure_limiter, m)?)?;
    m.add_function(wrap_pyfunction!(list_stores, m)?)?;
    m.add_function(wrap_pyfunction!(list_limiters, m)?)?;
    m.add_function(wrap_pyfunction!(limiter_config, m)?)?;
    m.add_function(wrap_pyfunction!(limiter_quota, m)?)?;
    m.add_function(wrap_pyfunction!(reloads, m)?)?;
    m.add_function(wrap_pyfunction!(set_resolver, m)?)?;
    Ok(())
}
