//! `ratesync`: check a `rate-sync.toml`, acquire from a limiter, run a command under a
//! limit, inspect or reset state, and benchmark a limiter (`docs/design.md#cli`).
//!
//! Every command lives in its own module under `commands/`; this file only parses the
//! command line and turns the outcome into one exit code.

mod commands;
mod failure;
mod load;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};

const EXIT_CODES: &str = "\
Exit codes:
  0      success (for `acquire` and `run`: admitted; `run` then exits with CMD's code);
         also when stdout's reader stops reading (`ratesync check | head -1`)
  1      invalid configuration, unknown limiter, impossible cost, no configuration found
  2      invalid command line
  69     the store is unavailable (a `fail_closed` limiter could not reach it)
  74     the output could not be written
  75     refused or timed out (the retry-after is printed on stderr)
  126    `run`: CMD was found but cannot be run
  127    `run`: CMD was not found
  128+N  `run`: CMD was killed by signal N";

/// Distributed rate limiting from the shell: check a configuration, acquire,
/// run commands under a limit, inspect state, benchmark.
#[derive(Debug, Parser)]
#[command(name = "ratesync", version, after_help = EXIT_CODES)]
struct Cli {
    /// Configuration file. Otherwise $RATE_SYNC_CONFIG, ./rate-sync.toml, then
    /// ./config/rate-sync.toml.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Check(commands::check::Args),
    Demo(commands::demo::Args),
    Acquire(commands::acquire::Args),
    Run(commands::run::Args),
    Status(commands::status::Args),
    Reset(commands::reset::Args),
    Bench(commands::bench::Args),
    Migrate(commands::migrate::Args),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    log_to_stderr();
    let config = cli.config.as_deref();
    let outcome = match cli.command {
        Command::Check(args) => commands::check::run(config, args).await,
        Command::Demo(args) => commands::demo::run(config, args).await,
        Command::Acquire(args) => commands::acquire::run(config, args).await,
        Command::Run(args) => commands::run::run(config, args).await,
        Command::Status(args) => commands::status::run(config, args).await,
        Command::Reset(args) => commands::reset::run(config, args).await,
        Command::Bench(args) => commands::bench::run(config, args).await,
        Command::Migrate(args) => commands::migrate::run(config, args).await,
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            failure.print();
            ExitCode::from(failure.code)
        }
    }
}

/// The core's warnings on stderr, one line each: without them a fail-open
/// admission (the store is down, the limiter admits without deciding) would pass
/// unseen. `RUST_LOG` chooses what to show; by default, warnings and errors.
fn log_to_stderr() {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::WARN.into())
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .init();
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
