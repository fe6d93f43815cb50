//! The Lua scripts, and running them: EVALSHA, falling back to EVAL when the server
//! has lost its script cache (restart, `SCRIPT FLUSH`, a new cluster node).
//!
//! Each operation is one script in `scripts/*.lua`, with the helpers of
//! `scripts/lib.lua` (the reference algorithm, ported once) prepended; each file
//! starts with the invariant it keeps.

use redis::{Cmd, FromRedisValue, ServerErrorKind};

use super::connection::Connection;
use crate::store::StoreError;

/// Where the scripts read "now": the server's `TIME`, or (tests only) a clock the
/// test sets, passed as each call's last argument.
#[derive(Clone, Default)]
pub(crate) enum ScriptClock {
    #[default]
    Server,
    #[cfg(feature = "testing")]
    Pinned(crate::testing::PinnedClock),
}

/// One script: its body and the SHA1 that EVALSHA names it by.
pub(crate) struct LuaScript {
    body: String,
    sha: String,
    #[cfg(feature = "testing")]
    clock: ScriptClock,
}

impl LuaScript {
    fn new(operation: &str, clock: &ScriptClock) -> Self {
        let mut body = String::from(include_str!("scripts/lib.lua"));
        match clock {
            ScriptClock::Server => {}
            #[cfg(feature = "testing")]
            ScriptClock::Pinned(_) => {
                body.push_str("\nlocal function clock() return tonumber(ARGV[#ARGV]) end\n")
            }
        }
        body.push('\n');
        body.push_str(operation);
        LuaScript {
            sha: redis::Script::new(&body).get_hash().to_owned(),
            body,
            #[cfg(feature = "testing")]
            clock: clock.clone(),
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
        let command = |name: &str, script: &str| {
            let mut cmd = Cmd::with_capacity(16, script.len() + 200);
            cmd.arg(name).arg(script).arg(keys);
            args(&mut cmd);
            #[cfg(feature = "testing")]
            if let ScriptClock::Pinned(clock) = &self.clock {
                cmd.arg(clock.micros());
            }
            cmd
        };
        match connection
            .query_raw::<T>(&command("EVALSHA", &self.sha))
            .await
        {
            Err(error) if error.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript) => {
                connection.query::<T>(&command("EVAL", &self.body)).await
            }
            Err(error) => Err(connection.map_error(error)),
            Ok(value) => Ok(value),
        }
    }
}

/// The scripts of the engine, hashed once per store.
pub(crate) struct Scripts {
    pub acquire: LuaScript,
    pub peek: LuaScript,
    pub refund: LuaScript,
    pub release: LuaScript,
    pub renew: LuaScript,
    pub reset: LuaScript,
}

impl Scripts {
    pub fn new(clock: &ScriptClock) -> Self {
        Scripts {
            acquire: LuaScript::new(include_str!("scripts/acquire.lua"), clock),
            peek: LuaScript::new(include_str!("scripts/peek.lua"), clock),
            refund: LuaScript::new(include_str!("scripts/refund.lua"), clock),
            release: LuaScript::new(include_str!("scripts/release.lua"), clock),
            renew: LuaScript::new(include_str!("scripts/renew.lua"), clock),
            reset: LuaScript::new(include_str!("scripts/reset.lua"), clock),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_carry_the_helpers_and_distinct_hashes() {
        let scripts = Scripts::new(&ScriptClock::Server);
        let all = [
            &scripts.acquire,
            &scripts.peek,
            &scripts.refund,
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
}
