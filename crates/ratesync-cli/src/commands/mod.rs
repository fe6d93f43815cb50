//! One module per command. Each has an `Args` (its command line) and a `run` that
//! returns the exit code or a [`Failure`].

pub mod acquire;
pub mod bench;
pub mod check;
pub mod demo;
pub mod migrate;
pub mod reset;
pub mod run;
pub mod status;

use std::time::Duration;

use ratesync::{Call, Limiter, Permit};

use crate::failure::Failure;

/// Key, cost and timeout of one call, shared by `acquire` and `run`.
#[derive(Debug, Clone, clap::Args)]
pub struct CallArgs {
    /// Key (user, client, tenant) whose state is used; default: the limiter-wide key.
    #[arg(long, value_name = "K")]
    pub key: Option<String>,

    /// Units the call takes.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub cost: u32,

    /// Longest wait in seconds (0 = never wait); default: the limiter's `timeout`.
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    pub timeout: Option<Duration>,
}

impl CallArgs {
    /// The call these options describe on `limiter`.
    pub fn call<'a>(&'a self, limiter: &'a Limiter) -> Call<'a> {
        let mut call = limiter.cost(self.cost);
        if let Some(key) = &self.key {
            call = call.key(key);
        }
        if let Some(timeout) = self.timeout {
            call = call.timeout(Some(timeout));
        }
        call
    }

    /// [`Self::call`]'s `acquire`, its failure as the command reports it.
    pub async fn acquire(&self, limiter: &Limiter) -> Result<Permit, Failure> {
        // What the call waits at most: `--timeout`, else the limiter's.
        let timeout = self.timeout.or(limiter.config().timeout);
        self.call(limiter)
            .acquire()
            .await
            .map_err(|err| Failure::acquire(err, timeout))
    }
}

/// A non-negative number of seconds, fractions allowed.
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("`{text}` must be a finite number of seconds, 0 or more"))
}

/// A positive number of seconds, for how long a command runs.
pub fn parse_positive_seconds(text: &str) -> Result<Duration, String> {
    let duration = parse_seconds(text)?;
    if duration.is_zero() {
        return Err("must be more than 0 seconds".to_owned());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_parse_strictly() {
        assert_eq!(parse_seconds("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_seconds("0"), Ok(Duration::ZERO));
        for bad in ["-1", "NaN", "inf", "1e400", "", "abc"] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
        assert!(parse_positive_seconds("0").is_err());
    }
}
