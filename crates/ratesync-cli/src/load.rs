//! Finding the configuration and building just the part of it a command needs.

use std::path::Path;

use ratesync::{Config, Limiter, Registry};

use crate::failure::Failure;
use crate::output;

/// The discovered configuration (`docs/design.md#configuration-files`), or `None` when
/// there is no file.
pub fn discover(explicit: Option<&Path>) -> Result<Option<Config>, Failure> {
    Ok(Config::discover(explicit)?)
}

/// The discovered configuration; no file is an error that says where we looked.
pub fn require(explicit: Option<&Path>) -> Result<Config, Failure> {
    discover(explicit)?.ok_or_else(not_found)
}

fn not_found() -> Failure {
    let cwd = std::env::current_dir()
        .map(|dir| dir.display().to_string())
        .unwrap_or_else(|_| ".".to_owned());
    Failure::config(format!(
        "no configuration file found: RATE_SYNC_CONFIG is unset and neither \
         ./rate-sync.toml nor ./config/rate-sync.toml exists in {cwd}; pass --config FILE"
    ))
}

/// A registry of the named limiters and the stores they use, nothing else: a memory
/// limiter keeps working in a file that also names a store this build cannot open.
pub fn registry_for<'a>(
    config: &Config,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<Registry, Failure> {
    Ok(Registry::from_config(subset(config, names)?)?)
}

/// A registry of every limiter whose store can be opened; each store that cannot
/// is named in a note on stderr, with the limiters left out because of it.
pub fn registry_of_available(config: &Config) -> Result<Registry, Failure> {
    let mut names: Vec<&str> = config.limiters.keys().map(String::as_str).collect();
    loop {
        match Registry::from_config(subset(config, names.iter().copied())?) {
            Ok(registry) => return Ok(registry),
            Err(ratesync::Error::Store { store, source }) => {
                let skipped: Vec<&str> = names
                    .iter()
                    .copied()
                    .filter(|n| config.limiters[*n].store == store)
                    .collect();
                output::note(format_args!(
                    "note: skipping {}: store `{store}`: {source}",
                    skipped.join(", ")
                ));
                names.retain(|n| config.limiters[*n].store != store);
            }
            Err(err) => return Err(err.into()),
        }
    }
}

fn subset<'a>(
    config: &Config,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<Config, Failure> {
    let mut subset = Config {
        source: config.source.clone(),
        fastapi: config.fastapi.clone(),
        ..Config::default()
    };
    for name in names {
        let limiter = config
            .limiters
            .get(name)
            .ok_or_else(|| unknown(config, name))?;
        if let Some(store) = config.stores.get(&limiter.store) {
            subset.stores.insert(limiter.store.clone(), store.clone());
        }
        subset.limiters.insert(name.to_owned(), limiter.clone());
    }
    Ok(subset)
}

/// The limiter `name` of the discovered configuration.
pub fn limiter(explicit: Option<&Path>, name: &str) -> Result<Limiter, Failure> {
    let config = require(explicit)?;
    let registry = registry_for(&config, [name])?;
    Ok(registry.limiter(name)?)
}

/// The limiter `name` of the discovered configuration file, the file followed while
/// the returned registry lives (`docs/design.md#hot-reload`): its calls and the
/// renewal of its permits' leases go to the limiter as the file says now. Where the
/// whole file cannot be built (a store of an engine this build lacks), the limiter
/// alone, not followed, with a note saying so.
pub fn followed_limiter(
    explicit: Option<&Path>,
    name: &str,
) -> Result<(Option<ratesync::WatchedRegistry>, Limiter), Failure> {
    let config = require(explicit)?;
    if let Some(path) = &config.source {
        match Registry::watch(path) {
            Ok(watched) => {
                let limiter = watched.limiter(name).map_err(|_| unknown(&config, name))?;
                return Ok((Some(watched), limiter));
            }
            Err(error) => output::note(format_args!(
                "note: not following {}: {error}",
                path.display()
            )),
        }
    }
    let registry = registry_for(&config, [name])?;
    Ok((None, registry.limiter(name)?))
}

/// "no limiter named `x`", listing the ones there are.
pub fn unknown(config: &Config, name: &str) -> Failure {
    let known: Vec<&str> = config.limiters.keys().map(String::as_str).collect();
    let origin = config
        .source
        .as_ref()
        .map(|path| path.display().to_string())
        .unwrap_or_else(|| "the configuration".to_owned());
    if known.is_empty() {
        Failure::config(format!("no limiter named `{name}`: {origin} defines none"))
    } else {
        Failure::config(format!(
            "no limiter named `{name}` in {origin} (configured: {})",
            known.join(", ")
        ))
    }
}
