//! Why a command failed, as one exit code and one line per problem on stderr.

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

    /// Prints one line per problem on stderr.
    pub fn print(&self) {
        for line in &self.lines {
            if self.refusal {
                eprintln!("{line}");
            } else {
                eprintln!("error: {line}");
            }
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
            AcquireError::InvalidCost { .. } | AcquireError::SlotTwice { .. } => {
                Failure::config(err.to_string())
            }
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
