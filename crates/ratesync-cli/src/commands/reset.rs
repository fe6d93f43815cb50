//! `ratesync reset`: forget a limiter's state.

use std::path::Path;

use crate::failure::{exit, Failure};
use crate::{load, output};

/// Forget the state of one key of a limiter, or of all its keys.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The limiter's id in the configuration.
    pub limiter: String,

    /// Only this key; default: every key of the limiter.
    #[arg(long, value_name = "K")]
    pub key: Option<String>,
}

pub async fn run(explicit: Option<&Path>, args: Args) -> Result<u8, Failure> {
    let limiter = load::limiter(explicit, &args.limiter)?;
    match &args.key {
        Some(key) => limiter.key(key).reset().await?,
        None => limiter.reset().await?,
    }
    let scope = match &args.key {
        Some(key) => format!("key `{key}`"),
        None => "all keys".to_owned(),
    };
    output::print(format_args!("reset `{}` ({scope})", limiter.name()))?;
    if limiter.engine_name() == "memory" {
        output::note(format_args!(
            "note: store `{}` is process memory: its state lives only inside one process",
            limiter.store_id()
        ));
    }
    Ok(exit::OK)
}
