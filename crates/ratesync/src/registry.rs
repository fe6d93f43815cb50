//! `Registry`: the stores and limiters of one configuration, built once and shared.
//!
//! A registry is an immutable snapshot. Configuration added at run time, one store or
//! limiter at a time ([`Registry::with_store`], [`Registry::with_limiter`], used by the
//! Python `configure_store` / `configure_limiter`), gives a new registry that shares
//! every store and limiter it did not change: state kept in memory survives limiters
//! being added later, and handles taken from the old snapshot keep working.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use indexmap::IndexMap;

use crate::clock::Clock;
use crate::config::{
    Config, EngineConfig, LimiterBuilder, LimiterConfig, StoreBuilder, StoreConfig,
};
use crate::engine;
use crate::engine::memory::MemoryEngine;
use crate::error::Error;
use crate::limiter::{Limiter, Resolver};
use crate::store::{Engine, StoreRuntime};

/// The limiters of one configuration and the stores they share (one client per
/// store, never one per limiter or key). Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    config: Config,
    /// The resolvers given in code, by limiter: kept across reloads.
    resolvers: HashMap<String, Resolver>,
    stores: IndexMap<String, Arc<StoreRuntime>>,
    limiters: IndexMap<String, Limiter>,
}

impl Registry {
    /// Builds every store and limiter of `config`; fails as a whole.
    pub fn from_config(config: Config) -> Result<Self, Error> {
        RegistryBuilder::new(config).build()
    }

    /// Reads and builds the configuration file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::from_config(Config::load(path)?)
    }

    /// Builds the discovered configuration file (`docs/design.md#configuration-files`);
    /// an empty registry when there is none.
    pub fn discover() -> Result<Self, Error> {
        Self::from_config(Config::discover(None)?.unwrap_or_default())
    }

    /// Starts a registry whose stores can be given engines explicitly (tests, custom
    /// clocks, engines built by the application).
    pub fn builder(config: Config) -> RegistryBuilder {
        RegistryBuilder::new(config)
    }

    /// The limiter named `name`.
    pub fn limiter(&self, name: &str) -> Result<Limiter, Error> {
        self.inner
            .limiters
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownLimiter(name.to_owned()))
    }

    /// Every limiter, in configuration order.
    pub fn limiters(&self) -> impl Iterator<Item = &Limiter> {
        self.inner.limiters.values()
    }

    /// The configuration this registry was built from.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// This registry plus store `id`, validated as `[stores.<id>]` of a file would be.
    ///
    /// Redefining a store with the same settings changes nothing (its state is kept).
    /// Redefining it with other settings builds a new store and moves the limiters that
    /// use it there, with fresh state. Every other store and limiter is shared as is.
    pub fn with_store(&self, id: &str, store: StoreBuilder) -> Result<Registry, Error> {
        let config = store.validate(id)?;
        if self.inner.config.stores.get(id) == Some(&config) {
            return Ok(self.clone());
        }
        let runtime = build_store(id, &config, None)?;
        let mut next = Inner::clone(&self.inner);
        next.config.stores.insert(id.to_owned(), config);
        next.stores.insert(id.to_owned(), runtime.clone());
        for (name, limiter) in &next.config.limiters {
            if limiter.store == id {
                let resolver = next.resolvers.get(name);
                let rebuilt = build_limiter(name, limiter, runtime.clone(), None, resolver)?;
                next.limiters.insert(name.clone(), rebuilt);
            }
        }
        Ok(Registry {
            inner: Arc::new(next),
        })
    }

    /// This registry plus limiter `id`, validated as `[limiters.<id>]` of a file whose
    /// stores are this registry's would be.
    ///
    /// Redefining a limiter with the same settings changes nothing (its state is kept);
    /// with other settings it starts fresh. Its store is shared, never rebuilt.
    pub fn with_limiter(&self, id: &str, limiter: LimiterBuilder) -> Result<Registry, Error> {
        let stores = self.inner.config.stores.keys().map(String::as_str);
        let config = limiter.validate(id, stores)?;
        if self.inner.config.limiters.get(id) == Some(&config) {
            return Ok(self.clone());
        }
        // Validation guarantees the store exists.
        let store = self.inner.stores[&config.store].clone();
        let built = build_limiter(id, &config, store, None, self.inner.resolvers.get(id))?;
        let mut next = Inner::clone(&self.inner);
        next.config.limiters.insert(id.to_owned(), config);
        next.limiters.insert(id.to_owned(), built);
        Ok(Registry {
            inner: Arc::new(next),
        })
    }
}

impl Registry {
    /// This registry with `resolver` giving keys of limiter `name` rules of their own
    /// (`docs/design.md#overrides`): a key no override of the file matches is asked
    /// about once while its answer stays cached. The limiter is rebuilt, keeping its
    /// keys' state; handles taken before follow. The resolver stays across reloads.
    pub fn with_resolver(&self, name: &str, resolver: Resolver) -> Result<Registry, Error> {
        let old = self.limiter(name)?;
        let config = &self.inner.config.limiters[name];
        let store = old.store().clone();
        let built = build_limiter(name, config, store, Some(&old), Some(&resolver))?;
        let mut next = Inner::clone(&self.inner);
        next.resolvers.insert(name.to_owned(), resolver);
        next.limiters.insert(name.to_owned(), built.clone());
        old.replace_with(Some(&built));
        Ok(Registry {
            inner: Arc::new(next),
        })
    }

    /// This registry plus every store and limiter of `other` (a loaded file), which
    /// replace those of the same ids: rate-sync's `load_config` adds to what was
    /// configured before it, and the Python package keeps that
    /// (`docs/design.md#python`). As with [`Registry::with_store`] and
    /// [`Registry::with_limiter`], what `other` does not change keeps its state; a
    /// store redefined with other settings is rebuilt, with every limiter that uses
    /// it. `other`'s `[fastapi]` networks replace these when it lists any. Fails as a
    /// whole.
    pub fn merged(&self, other: Config) -> Result<Registry, Error> {
        self.reloaded(&Config::default(), other)
    }

    /// This registry with the part that came from a file replaced by the file's new
    /// contents: `before` is what the file held, `after` what it holds now
    /// (`docs/design.md#hot-reload`). What the file added and no longer has is
    /// removed (a store only once no limiter uses it); what it has is added or
    /// replaces what was there. Everything else is as in [`Registry::merged`]:
    /// what does not change is shared as is, a limiter whose settings change keeps
    /// its keys' state where its store keeps them and the algorithm is the same, and
    /// handles taken from this registry follow (a removed limiter's refuse new calls
    /// with [`crate::AcquireError::NotConfigured`]). Fails as a whole: on an error
    /// nothing changes.
    pub fn reloaded(&self, before: &Config, after: Config) -> Result<Registry, Error> {
        let mut config = self.inner.config.clone();
        config
            .limiters
            .retain(|id, _| !before.limiters.contains_key(id) || after.limiters.contains_key(id));
        let in_use = |config: &Config, id: &str| config.limiters.values().any(|l| l.store == id);
        let gone: Vec<String> = before
            .stores
            .keys()
            .filter(|id| !after.stores.contains_key(*id) && !in_use(&config, id))
            .cloned()
            .collect();
        for id in gone {
            config.stores.shift_remove(&id);
        }
        config.stores.extend(after.stores);
        config.limiters.extend(after.limiters);
        if !after.fastapi.trusted_proxy_networks.is_empty()
            || !before.fastapi.trusted_proxy_networks.is_empty()
        {
            config.fastapi = after.fastapi;
        }
        if after.source.is_some() {
            config.source = after.source;
        }
        self.rebuilt(config)
    }

    /// The registry of `config`, sharing this one's stores and limiters where their
    /// settings are the same; the limiters it rebuilds or drops hand their calls
    /// over once everything is built.
    fn rebuilt(&self, config: Config) -> Result<Registry, Error> {
        let mut stores = IndexMap::new();
        for (id, store) in &config.stores {
            let kept = self
                .inner
                .stores
                .get(id)
                .filter(|_| self.inner.config.stores.get(id) == Some(store));
            let runtime = match kept {
                Some(runtime) => runtime.clone(),
                None => build_store(id, store, None)?,
            };
            stores.insert(id.clone(), runtime);
        }
        let mut limiters = IndexMap::new();
        let mut handed_over = Vec::new();
        for (name, limiter) in &config.limiters {
            // Validation guarantees the store exists.
            let store = &stores[&limiter.store];
            let old = self.inner.limiters.get(name);
            let kept = old.filter(|old| {
                self.inner.config.limiters.get(name) == Some(limiter)
                    && Arc::ptr_eq(old.store(), store)
            });
            let built = match kept {
                Some(limiter) => limiter.clone(),
                None => {
                    let resolver = self.inner.resolvers.get(name);
                    let built = build_limiter(name, limiter, store.clone(), old, resolver)?;
                    handed_over.extend(old.map(|old| (old.clone(), Some(built.clone()))));
                    built
                }
            };
            limiters.insert(name.clone(), built);
        }
        for (name, old) in &self.inner.limiters {
            if !limiters.contains_key(name) {
                handed_over.push((old.clone(), None));
            }
        }
        for (old, next) in handed_over {
            old.replace_with(next.as_ref());
        }
        Ok(Registry {
            inner: Arc::new(Inner {
                config,
                resolvers: self.inner.resolvers.clone(),
                stores,
                limiters,
            }),
        })
    }
}

fn build_store(
    id: &str,
    store: &StoreConfig,
    engine: Option<Arc<dyn Engine>>,
) -> Result<Arc<StoreRuntime>, Error> {
    let engine = match engine {
        Some(engine) => engine,
        None => engine::build(&store.engine).map_err(|source| Error::Store {
            store: id.to_owned(),
            source,
        })?,
    };
    Ok(StoreRuntime::new(id, engine))
}

fn build_limiter(
    name: &str,
    limiter: &LimiterConfig,
    store: Arc<StoreRuntime>,
    previous: Option<&Limiter>,
    resolver: Option<&Resolver>,
) -> Result<Limiter, Error> {
    Limiter::new(name, limiter.clone(), store, previous, resolver).map_err(|source| Error::Store {
        store: limiter.store.clone(),
        source,
    })
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field(
                "stores",
                &self.inner.config.stores.keys().collect::<Vec<_>>(),
            )
            .field("limiters", &self.inner.limiters.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Builds a [`Registry`], optionally with engines supplied by the caller.
pub struct RegistryBuilder {
    config: Config,
    engines: HashMap<String, Arc<dyn Engine>>,
    clock: Option<Arc<dyn Clock>>,
}

impl RegistryBuilder {
    fn new(config: Config) -> Self {
        RegistryBuilder {
            config,
            engines: HashMap::new(),
            clock: None,
        }
    }

    /// Memory stores decide on `clock` instead of the machine's: with a
    /// [`ManualClock`](crate::ManualClock) a test's decisions are exact and nothing
    /// sleeps. Network stores decide on their server's clock; stores given with
    /// [`engine`](Self::engine) keep their own.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Uses `engine` for store `store_id` instead of building one from its
    /// configuration. Its calls are bounded by the engine's own deadline.
    pub fn engine(mut self, store_id: &str, engine: Arc<dyn Engine>) -> Self {
        self.engines.insert(store_id.to_owned(), engine);
        self
    }

    /// Builds every store, then every limiter. Nothing is kept on failure.
    pub fn build(mut self) -> Result<Registry, Error> {
        let mut stores = IndexMap::new();
        for (id, store) in &self.config.stores {
            let engine = self.engines.remove(id).or_else(|| {
                let (EngineConfig::Memory(memory), Some(clock)) = (&store.engine, &self.clock)
                else {
                    return None;
                };
                Some(Arc::new(MemoryEngine::with_clock(memory, clock.clone())) as Arc<dyn Engine>)
            });
            let runtime = build_store(id, store, engine)?;
            stores.insert(id.clone(), runtime);
        }
        let mut limiters = IndexMap::new();
        for (name, limiter) in &self.config.limiters {
            // Validation guarantees the store exists.
            let store = stores[&limiter.store].clone();
            let built = build_limiter(name, limiter, store, None, None)?;
            limiters.insert(name.clone(), built);
        }
        Ok(Registry {
            inner: Arc::new(Inner {
                config: self.config,
                resolvers: HashMap::new(),
                stores,
                limiters,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, LimiterBuilder, Registry, StoreBuilder};

    fn config(stores: &[&str], limiters: &[(&str, &str, f64)]) -> Config {
        let mut builder = Config::builder();
        for store in stores {
            builder = builder.store(store, StoreBuilder::memory());
        }
        for (name, store, rate) in limiters {
            builder = builder.limiter(name, LimiterBuilder::token_bucket(store, *rate));
        }
        builder.build().unwrap()
    }

    #[tokio::test]
    async fn a_merged_file_adds_to_the_registry_and_keeps_what_it_leaves_alone() {
        let registry = Registry::from_config(config(&["a"], &[("kept", "a", 0.001)])).unwrap();
        registry
            .limiter("kept")
            .unwrap()
            .try_acquire()
            .await
            .unwrap();
        let merged = registry
            .merged(config(
                &["b"],
                &[("added", "b", 1.0), ("redefined", "b", 2.0)],
            ))
            .unwrap();
        let names: Vec<&str> = merged.limiters().map(|l| l.name()).collect();
        assert_eq!(names, ["kept", "added", "redefined"]);
        // Untouched by the file: the same limiter, its state kept.
        assert!(merged.limiter("kept").unwrap().try_acquire().await.is_err());

        let replaced = merged
            .merged(config(&["b"], &[("kept", "b", 5.0)]))
            .unwrap();
        let kept = replaced.limiter("kept").unwrap();
        assert_eq!(kept.store_id(), "b");
        assert!(
            kept.try_acquire().await.is_ok(),
            "a redefined limiter starts fresh"
        );
        assert_eq!(replaced.config().stores.len(), 2);
    }
}
