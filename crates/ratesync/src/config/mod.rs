//! Configuration: the `rate-sync.toml` format (`docs/design.md#configuration`) and its
//! programmatic builder.
//!
//! A file goes `parse` (TOML with lines, environment expanded) → `raw` tree →
//! `validate` → [`Config`]; the builder produces the same `raw` tree, so both go
//! through one validation and fail with the same messages.
//!
//! - `types`: the validated result ([`Config`], stores, limiters).
//! - `discover`: which file to read (explicit path, `RATE_SYNC_CONFIG`, `./rate-sync.toml`,
//!   `./config/rate-sync.toml`).
//! - `load`: reading a file or a string.
//! - `env`: `${VAR}`, `$VAR` and `${VAR:-default}` expansion in strings and table names.
//! - `parse`: TOML text to the `raw` tree, every value with its line.
//! - `validate`: the rules of `docs/design.md#validation`, every issue with table path and line.
//! - `builder`: the same configuration in code.
//! - `secret`: values that are never printed.
//! - `offset`: the `utc_offset` of fixed windows, parsed and written back.
//! - `sentinel_url`: the `redis+sentinel://` URL, read for validation and the engine.

mod builder;
mod discover;
mod env;
mod error;
mod load;
mod offset;
mod parse;
pub(crate) mod postgres_url;
mod raw;
pub mod secret;
pub(crate) mod sentinel_url;
mod types;
mod validate;

pub use builder::{ConfigBuilder, LimiterBuilder, OverrideBuilder, StoreBuilder};
pub use discover::{discover_path, discover_path_in, CONFIG_ENV_VAR, DEFAULT_LOCATIONS};
pub use error::{ConfigError, ConfigIssue};
pub use offset::{format_utc_offset, parse_utc_offset};
pub use types::*;
