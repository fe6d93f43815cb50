//! `Registry`: the stores and limiters of one configuration, built once and shared.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use indexmap::IndexMap;

use crate::config::Config;
use crate::engine::{self, Engine};
use crate::error::Error;
use crate::limiter::Limiter;
use crate::store::StoreRuntime;

/// The limiters of one configuration and the stores they share (one client per
/// store, never one per limiter or key). Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
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

    /// Builds the discovered configuration file (SPEC §3.1); an empty registry when
    /// there is none.
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
}

impl RegistryBuilder {
    fn new(config: Config) -> Self {
        RegistryBuilder {
            config,
            engines: HashMap::new(),
        }
    }

    /// Uses `engine` for store `store_id` instead of building one from its configuration.
    pub fn engine(mut self, store_id: &str, engine: Arc<dyn Engine>) -> Self {
        self.engines.insert(store_id.to_owned(), engine);
        self
    }

    /// Builds every store, then every limiter. Nothing is kept on failure.
    pub fn build(mut self) -> Result<Registry, Error> {
        let mut stores = HashMap::new();
        for (id, store) in &self.config.stores {
            let engine = match self.engines.remove(id) {
                Some(engine) => engine,
                None => engine::build(&store.engine).map_err(|source| Error::Store {
                    store: id.clone(),
                    source,
                })?,
            };
            let timeout = engine::call_timeout(&store.engine);
            stores.insert(id.clone(), StoreRuntime::new(id, engine, timeout));
        }
        let mut limiters = IndexMap::new();
        for (name, limiter) in &self.config.limiters {
            // Validation guarantees the store exists.
            let store = stores[&limiter.store].clone();
            let built =
                Limiter::new(name, limiter.clone(), store).map_err(|source| Error::Store {
                    store: limiter.store.clone(),
                    source,
                })?;
            limiters.insert(name.clone(), built);
        }
        Ok(Registry {
            inner: Arc::new(Inner {
                config: self.config,
                limiters,
            }),
        })
    }
}
