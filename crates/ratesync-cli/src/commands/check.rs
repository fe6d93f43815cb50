//! `ratesync check`: validate a configuration and show what it defines.

use std::path::Path;

use ratesync::engine;
use ratesync::{Config, StoreConfig};

use crate::failure::{exit, Failure};
use crate::{load, output};

/// Validate a configuration file and show its stores and limiters.
///
/// Exits 0 when the file is valid (even if a store's engine is not in this build:
/// the file itself is fine), 1 with one line per problem otherwise.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(explicit: Option<&Path>, _args: Args) -> Result<u8, Failure> {
    let config = load::require(explicit)?;
    let origin = config
        .source
        .as_ref()
        .map_or_else(|| "configuration".to_owned(), |p| p.display().to_string());
    output::print(format_args!(
        "{origin}: valid, {} store(s), {} limiter(s)",
        config.stores.len(),
        config.limiters.len()
    ))?;
    if !config.stores.is_empty() {
        output::print(stores(&config))?;
    }
    if !config.limiters.is_empty() {
        output::print(limiters(&config))?;
    }
    Ok(exit::OK)
}

fn stores(config: &Config) -> comfy_table::Table {
    let mut table = output::table(["store", "engine", "location", "in this build"]);
    for (id, store) in &config.stores {
        table.add_row([
            id.clone(),
            store.engine.engine_name().to_owned(),
            store.engine.location(),
            availability(store),
        ]);
    }
    table
}

/// Whether this binary can open stores of this engine; `check` stays offline, so
/// it says nothing about whether the store answers.
fn availability(store: &StoreConfig) -> String {
    if engine::available(store.engine.engine_name()) {
        "yes".to_owned()
    } else {
        "no (not in this build)".to_owned()
    }
}

fn limiters(config: &Config) -> comfy_table::Table {
    let mut table = output::table([
        "limiter",
        "store",
        "algorithm",
        "rule",
        "max concurrent",
        "timeout",
        "on store failure",
    ]);
    for (id, limiter) in &config.limiters {
        table.add_row([
            id.clone(),
            limiter.store.clone(),
            output::algorithm(limiter).to_owned(),
            output::limit_now(limiter),
            output::optional(limiter.max_concurrent),
            output::timeout(limiter),
            if limiter.fail_closed {
                "fail closed"
            } else {
                "fail open"
            }
            .to_owned(),
        ]);
    }
    table
}
