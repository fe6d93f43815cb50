//! Why a command failed, as one exit code and one line per problem on stderr.

use std::io::{self, Write};
use std::time::Duration;

use ratesync::store::StoreError;
use ratesync::{AcquireError, ConfigError};

/// Exit codes (sysexits.h names where one fits, so shell scripts can tell a refusal
/// that is worth retrying from a broken configuration).
pub mod exit {
    pub const OK: u8 = 0;
    /// Invalid configuration, unknown limiter, impossible cost, nothing to work on.
    pub const CONFIG: u8 = 1;
    /// Invalid command line (clap uses 2 for its own errors too).
    pub const USAGE: u8 = 2;
    /// `EX_UNAVAILABLE`: the store could not be reached.
    pub const UNAVAILABLE: u8 = 69;
    /// `EX_IOERR`: the output could not be written (a full disk, not a closed pipe).
    pub const IOERR: u8 = 74;
    /// `EX_TEMPFAIL`: refused or timed out; trying again later can succeed.
    pub const TEMPFAIL: u8 = 75;
}

/// A failed command: the exit code and the lines to print on stderr.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    lines: Vec<String>,
    /// Refusals are an expected outcome, not an error: printed without `error: `.
    refusal: bool,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            lines: vec![message.into()],
            refusal: false,
        }
    }

    pub fn config(message: impl Into<String>) -> Self {
        Failure::new(exit::CONFIG, message)
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Failure::new(exit::USAGE, message)
    }

    /// Stdout could not be written. A reader that stopped reading (`ratesync check |
    /// head -1`) wants no more output, which is no failure: the command ends at once,
    /// quietly, with 0, as `rg` and `fd` do. Any other write error is reported.
    pub fn output(err: io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::BrokenPipe => Failure {
                code: exit::OK,
                lines: Vec::new(),
                refusal: false,
            },
            _ => Failure::new(exit::IOERR, format!("cannot write to stdout: {err}")),
        }
    }

    /// `acquire` (or `run`) failing after waiting up to `timeout`. A call that never
    /// waited (timeout 0) or gave up early (its retry-after lies past the timeout) is
    /// reported as the refusal it is: the core calls both a timeout, which for no
    /// wait at all would read "timed out after 0.001s".
    pub fn acquire(err: AcquireError, timeout: Option<Duration>) -> Self {
        let AcquireError::TimedOut {
            limiter,
            waited_nanos,
            decision,
        } = &err
        else {
            return err.into();
        };
        let retry_after = decision.retry_after().as_secs_f64();
        let line = match timeout {
            Some(t) if t.is_zero() => {
                format!("limiter `{limiter}` refused: retry after {retry_after:.3}s")
            }
            Some(t) if Duration::from_nanos(*waited_nanos) < t => format!(
                "limiter `{limiter}` refused: retry after {retry_after:.3}s, longer than the \
                 timeout of {:.3}s",
                t.as_secs_f64()
            ),
            // It waited out its whole timeout: the core's words are right.
            _ => return err.into(),
        };
        Failure {
            code: exit::TEMPFAIL,
            lines: vec![line],
            refusal: true,
        }
    }

    /// Prints one line per problem on stderr (a stderr that cannot be written, with
    /// nowhere left to say so, is let be).
    pub fn print(&self) {
        let mut stderr = io::stderr().lock();
        for line in &self.lines {
            let _ = if self.refusal {
                writeln!(stderr, "{line}")
            } else {
                writeln!(stderr, "error: {line}")
            };
        }
    }
}

impl From<ConfigError> for Failure {
    fn from(err: ConfigError) -> Self {
        // `ConfigError` prints one `file:line: path: message` line per issue.
        Failure {
            code: exit::CONFIG,
            lines: err.to_string().lines().map(str::to_owned).collect(),
            refusal: false,
        }
    }
}

impl From<ratesync::Error> for Failure {
    fn from(err: ratesync::Error) -> Self {
        match err {
            ratesync::Error::Config(err) => err.into(),
            ratesync::Error::Store {
                source: StoreError::EngineUnavailable { .. },
                ..
            } => Failure::config(err.to_string()),
            ratesync::Error::Store { .. } => Failure::new(exit::UNAVAILABLE, err.to_string()),
            ratesync::Error::UnknownLimiter(_) => Failure::config(err.to_string()),
        }
    }
}

impl From<AcquireError> for Failure {
    fn from(err: AcquireError) -> Self {
        match &err {
            AcquireError::Denied { .. } | AcquireError::TimedOut { .. } => Failure {
                code: exit::TEMPFAIL,
                lines: vec![err.to_string()],
                refusal: true,
            },
            AcquireError::StoreUnavailable { .. } => {
                Failure::new(exit::UNAVAILABLE, err.to_string())
            }
            AcquireError::InvalidCost { .. }
            | AcquireError::SlotTwice { .. }
            | AcquireError::NotConfigured { .. } => Failure::config(err.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ratesync::{AcquireError, Decision, DeniedBy};

    use super::*;

    fn refusal() -> Decision {
        let quarter = Duration::from_millis(250);
        Decision::refusing(DeniedBy::Rate, 1, 0, quarter, quarter)
    }

    #[test]
    fn refusals_and_timeouts_exit_75_with_the_retry_after() {
        let denied = Failure::from(AcquireError::Denied {
            limiter: "api".into(),
            decision: refusal(),
        });
        assert_eq!(denied.code, exit::TEMPFAIL);
        assert!(denied.lines[0].contains("0.250"), "{:?}", denied.lines);
        let timed_out = Failure::from(AcquireError::TimedOut {
            limiter: "api".into(),
            waited_nanos: 1_000_000_000,
            decision: refusal(),
        });
        assert_eq!(timed_out.code, exit::TEMPFAIL);
    }

    fn timed_out(waited: Duration) -> AcquireError {
        AcquireError::TimedOut {
            limiter: "api".into(),
            waited_nanos: waited.as_nanos() as u64,
            decision: refusal(),
        }
    }

    #[test]
    fn a_call_that_did_not_wait_out_its_timeout_is_refused_not_timed_out() {
        let ms = Duration::from_millis;
        let never_waited = Failure::acquire(timed_out(ms(1)), Some(Duration::ZERO));
        assert_eq!(never_waited.code, exit::TEMPFAIL);
        assert_eq!(
            never_waited.lines,
            ["limiter `api` refused: retry after 0.250s"]
        );
        let gave_up = Failure::acquire(timed_out(ms(1)), Some(ms(100)));
        assert_eq!(gave_up.code, exit::TEMPFAIL);
        assert_eq!(
            gave_up.lines,
            ["limiter `api` refused: retry after 0.250s, longer than the timeout of 0.100s"]
        );
        let waited_out = Failure::acquire(timed_out(ms(2000)), Some(ms(2000)));
        assert_eq!(
            waited_out.lines,
            ["limiter `api` timed out after 2.000s: retry after 0.250s"]
        );
        let denied = AcquireError::Denied {
            limiter: "api".into(),
            decision: refusal(),
        };
        assert_eq!(
            Failure::acquire(denied, Some(Duration::ZERO)).lines,
            ["limiter `api` refused: retry after 0.250s"]
        );
    }

    #[test]
    fn a_closed_stdout_ends_quietly_other_write_errors_exit_74() {
        let closed = Failure::output(io::Error::from(io::ErrorKind::BrokenPipe));
        assert_eq!((closed.code, closed.lines.len()), (exit::OK, 0));
        let full = Failure::output(io::Error::other("no space left on device"));
        assert_eq!(full.code, exit::IOERR);
        assert_eq!(
            full.lines,
            ["cannot write to stdout: no space left on device"]
        );
    }

    #[test]
    fn store_outages_exit_69() {
        let err = AcquireError::StoreUnavailable {
            limiter: "api".into(),
            store: "cache".into(),
            source: StoreError::Timeout(Duration::from_secs(5)),
        };
        assert_eq!(Failure::from(err).code, exit::UNAVAILABLE);
    }
}
