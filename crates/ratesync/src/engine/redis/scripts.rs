//! The Lua scripts, and running them (`docs/design.md#redis`).
//!
//! Each operation is one file in `scripts/*.lua`, run with the helpers of
//! `scripts/lib.lua` (the reference algorithm, ported once); each file starts with
//! the invariant it keeps. They reach the server in one of two forms, built from the
//! same text:
//!
//! - **A function library** (Redis 7: `FUNCTION LOAD`, `FCALL`): the helpers are
//!   defined once, when the library is loaded, instead of on every call. The library
//!   is named after the hash of its text, so that processes of different versions
//!   sharing a server each find their own. It is loaded when a call finds it missing
//!   (a new server, a restart without persistence, `FUNCTION FLUSH`); in a Cluster,
//!   on every master at once.
//! - **Scripts** (`EVALSHA`, falling back to `EVAL` when the server has lost its
//!   script cache): for servers without functions (Redis 6) or whose ACL refuses
//!   them. A store switches to this form for good the first time its server says
//!   functions are unavailable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use redis::{Cmd, FromRedisValue, RedisError, ServerErrorKind};

use super::connection::Connection;
use crate::engine::micros::{call_answers, CallAnswer};
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

/// The answers of a `packed` reply to calls of `members` members each, in order
/// (`acquire.lua`; `peek.lua` answers like one call of one member). A decision
/// travels as four integers (`answer` in `scripts/lib.lua`) and is read back into the
/// six every engine answers with (`DECISION_LEN`); a call's refusing member is sent
/// only for calls of several members (one member refused when its decision is).
/// The answer, so widened, is split as every engine's is (`call_answers`).
pub(crate) fn answers(
    packed: &[u8],
    members: impl IntoIterator<Item = usize> + Clone,
) -> Result<Vec<CallAnswer>, StoreError> {
    let values = unpack(packed)?;
    let cut = || StoreError::Backend(format!("a cut answer of {} values", values.len()));
    let mut sent = values.iter().copied();
    let mut widened = vec![sent.next().ok_or_else(cut)?];
    for members in members.clone() {
        let refused_at = widened.len();
        widened.push(match members {
            1 => 0,
            _ => sent.next().ok_or_else(cut)?,
        });
        for _ in 0..members {
            let mut next = || sent.next().ok_or_else(cut);
            let (denied_by, remaining, reset, last) = (next()?, next()?, next()?, next()?);
            widened.extend(match denied_by {
                0 => [1, remaining, 0, reset, 0, last],
                _ => [0, remaining, last, reset, denied_by, 0],
            });
            if members == 1 && denied_by != 0 {
                widened[refused_at] = 1;
            }
        }
    }
    // Values left over are an answer to other calls: `call_answers` refuses it.
    widened.extend(sent);
    call_answers(&widened, members)
}

/// The integers of a `packed` answer: little-endian doubles, each an integer below
/// 2^53 (every time and count the scripts compute is).
fn unpack(answer: &[u8]) -> Result<Vec<i64>, StoreError> {
    let unexpected = || StoreError::Backend(format!("unexpected answer of {} bytes", answer.len()));
    let chunks = answer.chunks_exact(8);
    if !chunks.remainder().is_empty() {
        return Err(unexpected());
    }
    chunks
        .map(|bytes| {
            let value = f64::from_le_bytes(bytes.try_into().map_err(|_| unexpected())?);
            match value.fract() == 0.0 && value.abs() < 9_007_199_254_740_992.0 {
                true => Ok(value as i64),
                false => Err(unexpected()),
            }
        })
        .collect()
}

/// The operations, in the order of their files.
const OPERATIONS: [(&str, &str); 6] = [
    ("acquire", include_str!("scripts/acquire.lua")),
    ("peek", include_str!("scripts/peek.lua")),
    ("refund", include_str!("scripts/refund.lua")),
    ("release", include_str!("scripts/release.lua")),
    ("renew", include_str!("scripts/renew.lua")),
    ("reset", include_str!("scripts/reset.lua")),
];

/// The library every script of a store belongs to, and which form its server runs.
struct Library {
    /// The `FUNCTION LOAD` text: the helpers, then each operation registered as a
    /// function.
    text: String,
    /// False once the server has said it has no functions for us (then EVALSHA).
    functions: AtomicBool,
}

impl Library {
    /// Loads the library, replacing one of the same name (the same text: a
    /// concurrent load by another process is harmless). In a Cluster the client
    /// sends `FUNCTION LOAD` to every master.
    async fn load(&self, connection: &Connection) -> Result<(), RedisError> {
        let mut cmd = redis::cmd("FUNCTION");
        cmd.arg("LOAD").arg("REPLACE").arg(&self.text);
        connection.query_raw::<redis::Value>(&cmd).await.map(drop)
    }

    /// Stops using functions on this store, for good.
    fn give_up_functions(&self, error: &RedisError) {
        if self.functions.swap(false, Ordering::Relaxed) {
            tracing::info!(
                %error,
                "Redis functions unavailable on this server; running the scripts with EVALSHA"
            );
        }
    }
}

/// One operation: its function name and, for EVALSHA, its script and SHA1.
pub(crate) struct LuaScript {
    function: String,
    script: String,
    sha: String,
    library: Arc<Library>,
    #[cfg(feature = "testing")]
    clock: ScriptClock,
}

impl LuaScript {
    /// Runs the operation with `keys` keys; `args` appends the keys, then the
    /// arguments.
    pub async fn run<T: FromRedisValue>(
        &self,
        connection: &Connection,
        keys: usize,
        args: impl Fn(&mut Cmd),
    ) -> Result<T, StoreError> {
        if self.library.functions.load(Ordering::Relaxed) {
            match self.call_function(connection, keys, &args).await {
                Ok(value) => return Ok(value),
                Err(error) if functions_unavailable(&error) => {
                    self.library.give_up_functions(&error)
                }
                Err(error) => return Err(connection.map_error(error)),
            }
        }
        self.call_script(connection, keys, &args).await
    }

    /// FCALL; when the server does not have the library, loads it and calls again.
    async fn call_function<T: FromRedisValue>(
        &self,
        connection: &Connection,
        keys: usize,
        args: &impl Fn(&mut Cmd),
    ) -> Result<T, RedisError> {
        let call = self.command("FCALL", &self.function, keys, args);
        match connection.query_raw::<T>(&call).await {
            Err(error) if function_missing(&error) => {
                self.library.load(connection).await?;
                connection.query_raw::<T>(&call).await
            }
            answer => answer,
        }
    }

    /// EVALSHA sends 40 bytes instead of the body. On NOSCRIPT the same call is sent
    /// once more as EVAL, which also caches the script on that server: one extra
    /// round trip after a restart, and it reaches the node that owns the keys in a
    /// cluster (a separate SCRIPT LOAD would go to every master).
    async fn call_script<T: FromRedisValue>(
        &self,
        connection: &Connection,
        keys: usize,
        args: &impl Fn(&mut Cmd),
    ) -> Result<T, StoreError> {
        match connection
            .query_raw::<T>(&self.command("EVALSHA", &self.sha, keys, args))
            .await
        {
            Err(error) if error.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript) => {
                let eval = self.command("EVAL", &self.script, keys, args);
                connection.query::<T>(&eval).await
            }
            Err(error) => Err(connection.map_error(error)),
            Ok(value) => Ok(value),
        }
    }

    fn command(&self, name: &str, target: &str, keys: usize, args: &impl Fn(&mut Cmd)) -> Cmd {
        let mut cmd = Cmd::with_capacity(16, target.len() + 200);
        cmd.arg(name).arg(target).arg(keys);
        args(&mut cmd);
        #[cfg(feature = "testing")]
        if let ScriptClock::Pinned(clock) = &self.clock {
            cmd.arg(clock.micros());
        }
        cmd
    }
}

/// FCALL of a function the server does not have.
fn function_missing(error: &RedisError) -> bool {
    error.code() == Some("ERR") && error.detail() == Some("Function not found")
}

/// The server has no functions (Redis 6: FCALL and FUNCTION are unknown commands)
/// or its ACL does not let this user call or load them.
fn functions_unavailable(error: &RedisError) -> bool {
    error.kind() == redis::ErrorKind::Server(ServerErrorKind::NoPerm)
        || (error.code() == Some("ERR")
            && error
                .detail()
                .is_some_and(|detail| detail.starts_with("unknown command")))
}

/// The SHA1 of `text` in hex, as EVALSHA names a script.
fn sha1(text: &str) -> String {
    redis::Script::new(text).get_hash().to_owned()
}

/// The scripts of the engine, built once per store.
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
        let helpers = include_str!("scripts/lib.lua");
        // A pinned clock shadows the helpers' `clock` inside each operation, where
        // the call's arguments are in scope.
        let prologue = match clock {
            ScriptClock::Server => "",
            #[cfg(feature = "testing")]
            ScriptClock::Pinned(_) => "local function clock() return tonumber(ARGV[#ARGV]) end\n",
        };
        // `operation_<name>`: not the helpers' `peek`, which the body calls.
        let operation = |name: &str, body: &str| {
            format!("local function operation_{name}(KEYS, ARGV)\nbind()\n{prologue}{body}\nend\n")
        };
        let mut functions = String::new();
        for (name, body) in OPERATIONS {
            functions.push_str(&operation(name, body));
        }
        let hash = sha1(&format!("{helpers}\n{functions}"));
        let function_name = |name: &str| format!("ratesync_{name}_{}", &hash[..16]);
        let mut text = format!(
            "#!lua name=ratesync_{}\n{helpers}\n{functions}",
            &hash[..16]
        );
        for (name, _) in OPERATIONS {
            text.push_str(&format!(
                "redis.register_function('{}', operation_{name})\n",
                function_name(name)
            ));
        }
        let library = Arc::new(Library {
            text,
            functions: AtomicBool::new(true),
        });
        let script = |name: &str, body: &str| {
            let script = format!(
                "{helpers}\n{}return operation_{name}(KEYS, ARGV)\n",
                operation(name, body)
            );
            LuaScript {
                function: function_name(name),
                sha: sha1(&script),
                script,
                library: library.clone(),
                #[cfg(feature = "testing")]
                clock: clock.clone(),
            }
        };
        let [acquire, peek, refund, release, renew, reset] =
            OPERATIONS.map(|(name, body)| script(name, body));
        Scripts {
            acquire,
            peek,
            refund,
            release,
            renew,
            reset,
        }
    }

    /// Runs every operation as a script from now on (test hook: the path of servers
    /// without functions).
    #[cfg(feature = "testing")]
    pub fn without_functions(&self) {
        self.acquire
            .library
            .functions
            .store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(scripts: &Scripts) -> [&LuaScript; 6] {
        [
            &scripts.acquire,
            &scripts.peek,
            &scripts.refund,
            &scripts.release,
            &scripts.renew,
            &scripts.reset,
        ]
    }

    #[test]
    fn scripts_carry_the_helpers_and_distinct_hashes() {
        let scripts = Scripts::new(&ScriptClock::Server);
        for script in all(&scripts) {
            assert!(script.script.contains("local function clock"));
            assert_eq!(script.sha.len(), 40);
            assert_eq!(script.sha, sha1(&script.script));
        }
        let mut hashes: Vec<_> = all(&scripts).iter().map(|s| s.sha.as_str()).collect();
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), 6);
    }

    #[test]
    fn the_library_registers_every_operation_under_its_hashed_name() {
        let scripts = Scripts::new(&ScriptClock::Server);
        let text = &scripts.acquire.library.text;
        let name = text
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("#!lua name="))
            .expect("a library header");
        let hash = name
            .strip_prefix("ratesync_")
            .expect("named ratesync_<hash>");
        assert_eq!(hash.len(), 16);
        for script in all(&scripts) {
            assert!(script.function.ends_with(hash));
            assert!(text.contains(&format!("redis.register_function('{}',", script.function)));
        }
    }

    #[test]
    fn a_packed_answer_reads_back_exactly_and_nothing_else_passes() {
        let values = [0_i64, 1, -7, 1_765_000_000_123_456, (1 << 53) - 1];
        let bytes: Vec<u8> = values
            .iter()
            .flat_map(|&v| (v as f64).to_le_bytes())
            .collect();
        assert_eq!(unpack(&bytes).unwrap(), values);
        assert!(unpack(&bytes[..7]).is_err(), "a cut answer");
        assert!(unpack(&0.5_f64.to_le_bytes()).is_err(), "not an integer");
        assert!(unpack(&f64::NAN.to_le_bytes()).is_err());
        assert!(unpack(&1e16_f64.to_le_bytes()).is_err(), "beyond 2^53");
    }

    #[test]
    fn four_integer_answers_read_back_as_six() {
        let packed = |values: &[i64]| -> Vec<u8> {
            values
                .iter()
                .flat_map(|&v| (v as f64).to_le_bytes())
                .collect()
        };
        // now; an admitted call; a call refused by its rate; a group whose second
        // member refused (by concurrency), its first peeked.
        let reply = packed(&[100, 0, 4, 50, 150, 1, 0, 30, 20, 2, 0, 3, 0, 0, 2, 0, 9, 7]);
        let calls = answers(&reply, [1, 1, 2]).unwrap();
        assert_eq!(calls.len(), 3);
        assert!(calls.iter().all(|call| call.now == 100));
        assert_eq!(
            (calls[0].refused, &calls[0].decisions[..]),
            (0, &[1, 4, 0, 50, 0, 150][..])
        );
        assert_eq!(
            (calls[1].refused, &calls[1].decisions[..]),
            (1, &[0, 0, 20, 30, 1, 0][..])
        );
        assert_eq!(calls[2].refused, 2);
        assert_eq!(calls[2].decisions, [1, 3, 0, 0, 0, 0, 0, 0, 7, 9, 2, 0]);
        assert!(answers(&reply, [1, 1]).is_err(), "values left over");
        assert!(answers(&reply, [1, 1, 3]).is_err(), "values missing");
    }
}
