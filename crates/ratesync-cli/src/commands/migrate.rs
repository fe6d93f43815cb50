//! `ratesync migrate`: create the PostgreSQL tables and functions of the configured
//! stores, or print the SQL that does (for a DBA, a migration tool, `psql -f`).

use std::path::Path;

use ratesync::config::{EngineConfig, PostgresConfig};

use crate::failure::{exit, Failure};
use crate::{load, output};

/// Create the PostgreSQL schema of the configured stores (idempotent, safe to run
/// while other processes use or create it), or print its SQL with --print.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the SQL instead of applying it (one transaction per store).
    #[arg(long)]
    pub print: bool,

    /// Only this store; default: every PostgreSQL store of the configuration.
    #[arg(long, value_name = "ID")]
    pub store: Option<String>,

    /// Create the table UNLOGGED: no write-ahead log, so faster, but emptied after
    /// a crash of the database server and not replicated. Only applies when the
    /// table is created.
    #[arg(long)]
    pub unlogged: bool,
}

pub async fn run(explicit: Option<&Path>, args: Args) -> Result<u8, Failure> {
    let config = load::require(explicit)?;
    let stores: Vec<(&str, &PostgresConfig)> = config
        .stores
        .iter()
        .filter(|(id, _)| args.store.as_deref().is_none_or(|only| only == id.as_str()))
        .filter_map(|(id, store)| match &store.engine {
            EngineConfig::Postgres(postgres) => Some((id.as_str(), postgres)),
            _ => None,
        })
        .collect();
    if stores.is_empty() {
        return Err(Failure::config(match &args.store {
            Some(id) => format!("no PostgreSQL store `{id}` in the configuration"),
            None => "the configuration has no PostgreSQL store (engine = \"postgres\")".to_owned(),
        }));
    }
    for (id, postgres) in stores {
        if args.print {
            let sql = postgres_sql(postgres, args.unlogged)?;
            output::print(format_args!("-- store `{id}` ({})\n{sql}", postgres.url))?;
            continue;
        }
        apply(id, postgres, args.unlogged).await?;
        output::print(format_args!(
            "store `{id}`: {}.{} is up to date",
            postgres.schema_name, postgres.table_name
        ))?;
    }
    Ok(exit::OK)
}

#[cfg(feature = "postgres")]
fn postgres_sql(config: &PostgresConfig, unlogged: bool) -> Result<String, Failure> {
    ratesync::engine::postgres::migration_sql(config, unlogged)
        .map_err(|error| Failure::config(error.to_string()))
}

#[cfg(feature = "postgres")]
async fn apply(id: &str, config: &PostgresConfig, unlogged: bool) -> Result<(), Failure> {
    ratesync::engine::postgres::migrate(config, unlogged)
        .await
        .map_err(|error| Failure::new(exit::UNAVAILABLE, format!("store `{id}`: {error}")))
}

#[cfg(not(feature = "postgres"))]
fn postgres_sql(_: &PostgresConfig, _: bool) -> Result<String, Failure> {
    Err(unavailable())
}

#[cfg(not(feature = "postgres"))]
async fn apply(_: &str, _: &PostgresConfig, _: bool) -> Result<(), Failure> {
    Err(unavailable())
}

#[cfg(not(feature = "postgres"))]
fn unavailable() -> Failure {
    Failure::config("this build of ratesync has no PostgreSQL engine (cargo feature `postgres`)")
}
