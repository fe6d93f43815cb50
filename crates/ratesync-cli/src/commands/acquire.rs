//! `ratesync acquire`: take units from a limiter, for shell scripts and cron jobs.

use std::path::Path;

use super::CallArgs;
use crate::failure::{exit, Failure};
use crate::load;

/// Take units from a limiter, waiting up to its timeout.
///
/// Prints nothing and exits 0 when admitted (a fail-open limiter whose store is down
/// admits with a warning on stderr). Exits 75 when refused or timed out, printing
/// the retry-after on stderr; 69 when a fail-closed limiter's store is unavailable;
/// 1 for a configuration problem (unknown limiter, cost above the burst or limit).
/// A concurrency slot, if the limiter has one, is released on exit: use
/// `ratesync run` to hold it while a command runs.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The limiter's id in the configuration.
    pub limiter: String,

    #[command(flatten)]
    pub call: CallArgs,
}

pub async fn run(explicit: Option<&Path>, args: Args) -> Result<u8, Failure> {
    let limiter = load::limiter(explicit, &args.limiter)?;
    let permit = args.call.acquire(&limiter).await?;
    permit.release().await;
    Ok(exit::OK)
}
