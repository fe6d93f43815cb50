//! The Lua scripts, and running them: EVALSHA, falling back to EVAL when the server
//! has lost its script cache (restart, `SCRIPT FLUSH`, a new cluster node).
//!
//! Each operation is one script in `scripts/*.lua`, with the helpers of
//! `scripts/lib.lua` prepended; each file starts with the invariant it keeps.

use std::time::Duration;

use redis::{Cmd, FromRedisValue, ServerErrorKind, ToRedisArgs};

use super::connection::Connection;
use crate::decision::{Decision, DeniedBy};
use crate::engine::StoreError;

/// One script: its body and the SHA1 that EVALSHA names it by.
pub(crate) struct LuaScript {
    body: &'static str,
    sha: String,
}

impl LuaScript {
    fn new(body: &'static str) -> Self {
        LuaScript {
            body,
            sha: redis::Script::new(body).get_hash().to_owned(),
        }
    }

    /// Runs the script with `keys` keys; `args` appends the keys, then the arguments.
    ///
    /// EVALSHA sends 40 bytes instead of the body. On NOSCRIPT the same call is sent
    /// once more as EVAL, which also caches the script on that server: one extra
    /// round trip after a restart, and it reaches the node that owns the keys in a
    /// cluster (a separate SCRIPT LOAD would go to every master).
    pub async fn run<T: FromRedisValue>(
        &self,
        connection: &Connection,
        keys: usize,
        args: impl Fn(&mut Cmd),
    ) -> Result<T, StoreError> {
        let mut cmd = Cmd::with_capacity(12, 160);
        cmd.arg("EVALSHA").arg(self.sha.as_str()).arg(keys);
        args(&mut cmd);
        match connection.query_raw::<T>(&cmd).await {
            Err(error) if error.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript) => {
                let mut cmd = Cmd::with_capacity(12, self.body.len() + 160);
                cmd.arg("EVAL").arg(self.body).arg(keys);
                args(&mut cmd);
                connection.query::<T>(&cmd).await
            }
            Err(error) => Err(connection.map_error(error)),
            Ok(value) => Ok(value),
        }
    }
}

macro_rules! script {
    ($file:literal) => {
        LuaScript::new(concat!(
            include_str!("scripts/lib.lua"),
            "\n",
            include_str!(concat!("scripts/", $file))
        ))
    };
}

/// The scripts of the engine, hashed once per store.
pub(crate) struct Scripts {
    pub token_bucket: LuaScript,
    pub sliding_window: LuaScript,
    pub peek: LuaScript,
    pub release: LuaScript,
    pub renew: LuaScript,
    pub reset: LuaScript,
}

impl Scripts {
    pub fn new() -> Self {
        Scripts {
            token_bucket: script!("token_bucket.lua"),
            sliding_window: script!("sliding_window.lua"),
            peek: script!("peek.lua"),
            release: script!("release.lua"),
            renew: script!("renew.lua"),
            reset: script!("reset.lua"),
        }
    }
}

/// A decision as the scripts return it: five integers, times in microseconds.
pub(crate) struct ScriptDecision(pub [i64; 5]);

impl FromRedisValue for ScriptDecision {
    fn from_redis_value(value: redis::Value) -> Result<Self, redis::ParsingError> {
        let (allowed, remaining, retry, reset, denied) =
            <(i64, i64, i64, i64, i64)>::from_redis_value(value)?;
        Ok(ScriptDecision([allowed, remaining, retry, reset, denied]))
    }
}

impl ScriptDecision {
    /// The decision, for a rule whose capacity is `limit`.
    pub fn into_decision(self, limit: u64) -> Decision {
        let [allowed, remaining, retry, reset, denied] = self.0;
        let micros = |us: i64| Duration::from_micros(u64::try_from(us).unwrap_or(0));
        Decision {
            allowed: allowed == 1,
            denied_by: match denied {
                1 => Some(DeniedBy::Rate),
                2 => Some(DeniedBy::Concurrency),
                _ => None,
            },
            limit,
            remaining: u64::try_from(remaining).unwrap_or(0),
            retry_after: micros(retry),
            reset_after: micros(reset),
        }
    }
}

/// An optional pinned "now" (µs) as the scripts' last argument: empty means the
/// server's clock. Only the equivalence tests pin it.
pub(crate) struct Now(pub Option<u64>);

impl ToRedisArgs for Now {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + redis::RedisWrite,
    {
        match self.0 {
            Some(now) => now.write_redis_args(out),
            None => out.write_arg(b""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_carry_the_helpers_and_distinct_hashes() {
        let scripts = Scripts::new();
        let all = [
            &scripts.token_bucket,
            &scripts.sliding_window,
            &scripts.peek,
            &scripts.release,
            &scripts.renew,
            &scripts.reset,
        ];
        for script in all {
            assert!(script.body.contains("local function clock"));
            assert_eq!(script.sha.len(), 40);
        }
        let mut hashes: Vec<_> = all.iter().map(|s| s.sha.as_str()).collect();
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), all.len());
    }

    #[test]
    fn decisions_convert_microseconds_and_clamp_garbage() {
        let d = ScriptDecision([0, 3, 1_500, 2_000_000, 2]).into_decision(10);
        assert!(!d.allowed);
        assert_eq!(d.denied_by, Some(DeniedBy::Concurrency));
        assert_eq!(d.retry_after, Duration::from_micros(1_500));
        assert_eq!(d.reset_after, Duration::from_secs(2));
        let d = ScriptDecision([1, -1, -5, -5, 0]).into_decision(10);
        assert!(d.allowed && d.remaining == 0 && d.retry_after.is_zero());
    }
}
