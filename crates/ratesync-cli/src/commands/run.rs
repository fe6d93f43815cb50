//! `ratesync run`: run a command under a limit, holding the permit while it runs.

use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::process::ExitStatus;

use super::CallArgs;
use crate::failure::Failure;
use crate::load;

/// Wait for a permit, run a command while holding it, then release it. The
/// configuration file is followed while the command runs.
///
/// Exits with the command's exit code (128 + N when it is killed by signal N), 75
/// when refused or timed out, 69 when a fail-closed limiter's store is unavailable,
/// 126/127 when the command cannot be started, 1 for a configuration problem.
///
/// Example: ratesync run nightly --timeout 60 -- ./sync.sh --full
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The limiter's id in the configuration.
    pub limiter: String,

    #[command(flatten)]
    pub call: CallArgs,

    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

pub async fn run(explicit: Option<&Path>, args: Args) -> Result<u8, Failure> {
    // The file is followed while the command runs: a long run sees its edits.
    let (_followed, limiter) = load::followed_limiter(explicit, &args.limiter)?;
    let permit = args.call.acquire(&limiter).await?;
    // Ctrl-C reaches the command too (same process group): let it decide, and stay
    // alive to release the permit and report its exit code.
    let _interrupts = ignore_interrupts();
    let status = tokio::process::Command::new(&args.command[0])
        .args(&args.command[1..])
        .status()
        .await;
    permit.release().await;
    match status {
        Ok(status) => Ok(exit_code(status)),
        Err(err) => Err(spawn_failure(&args.command[0], &err)),
    }
}

/// The shell's convention: the code, or 128 + the signal that killed the command.
fn exit_code(status: ExitStatus) -> u8 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return (128 + signal).clamp(0, 255) as u8;
        }
    }
    status.code().map_or(1, |code| (code & 0xff) as u8)
}

/// The shell's convention again: 127 not found, 126 found but not runnable.
fn spawn_failure(program: &OsString, err: &io::Error) -> Failure {
    let code = match err.kind() {
        io::ErrorKind::NotFound => 127,
        _ => 126,
    };
    Failure::new(
        code,
        format!("cannot run `{}`: {err}", program.to_string_lossy()),
    )
}

#[cfg(unix)]
fn ignore_interrupts() -> Option<tokio::signal::unix::Signal> {
    // Registering a handler replaces the default action (exit) for the rest of the
    // process, which ends right after the command.
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok()
}

#[cfg(not(unix))]
fn ignore_interrupts() -> Option<()> {
    None
}
