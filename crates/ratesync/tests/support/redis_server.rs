//! One `redis-server` on a free loopback port, keeping nothing on disk.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::process::{free_port, inline_command, require_binaries, wait_until, ServerProcess};
use super::REDIS_BINARIES;

/// Builds the command line of one server for a given port and directory (a
/// Sentinel writes its config file there first).
type Arguments = Box<dyn Fn(u16, &Path) -> Vec<String> + Send + Sync>;

/// A `redis-server` this test owns: killed on drop, restartable on the same port.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    arguments: Arguments,
    process: Mutex<Option<ServerProcess>>,
}

impl RedisServer {
    /// Starts `redis-server --port P --bind 127.0.0.1 --save "" --appendonly no`
    /// in a fresh temporary directory and waits until it answers PING.
    pub fn start() -> Self {
        Self::start_with(Vec::new())
    }

    /// Like [`Self::start`], with extra arguments (`--replicaof`, cluster options).
    pub fn start_with(extra: Vec<String>) -> Self {
        require_binaries(REDIS_BINARIES);
        Self::launch(Box::new(move |port, dir| {
            let mut args = standalone_arguments(port, dir);
            args.extend(extra.iter().cloned());
            args
        }))
    }

    /// A server that is not running yet: its port is chosen (and nothing listens
    /// on it) so a client can be pointed at it before [`Self::restart`] starts it.
    pub fn not_started() -> Self {
        RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().expect("temporary directory"),
            arguments: Box::new(standalone_arguments),
            process: Mutex::new(None),
        }
    }

    /// Starts a server whose command line `arguments` builds, on a free port,
    /// retrying with another port when one is taken between choosing and binding.
    pub(super) fn launch(mut arguments: Arguments) -> Self {
        let mut dir = tempfile::tempdir().expect("temporary directory");
        for _ in 0..20 {
            let server = RedisServer {
                port: free_port(),
                dir,
                arguments,
                process: Mutex::new(None),
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(Launch::PortTaken) => (dir, arguments) = (server.dir, server.arguments),
                Err(Launch::Failed(log)) => panic!("redis-server did not start:\n{log}"),
            }
        }
        panic!("redis-server found no free port in 20 attempts");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The directory the server runs in (its log is `redis.log` there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn is_running(&self) -> bool {
        self.process.lock().unwrap().is_some()
    }

    /// SIGKILL: the server vanishes as in a crash; clients see connections reset,
    /// then refused.
    pub fn kill(&self) {
        if let Some(process) = self.process.lock().unwrap().take() {
            process.kill();
        }
    }

    /// A clean `SHUTDOWN NOSAVE` (killed if it does not exit within 5 s).
    pub fn stop(&self) {
        if let Some(process) = self.process.lock().unwrap().take() {
            let _ = inline_command(self.port, "SHUTDOWN NOSAVE");
            process.wait_or_kill(Duration::from_secs(5));
        }
    }

    /// Starts the server again on the same port (killing it first if it runs). It
    /// comes back empty: no data, no script cache. Retries for up to 10 s while
    /// the port is still held by a dying process.
    pub fn restart(&self) {
        self.kill();
        let mut last = String::new();
        let started = wait_until(Duration::from_secs(10), || match self.spawn() {
            Ok(()) => true,
            Err(Launch::PortTaken) => false,
            Err(Launch::Failed(log)) => {
                last = log;
                true
            }
        });
        assert!(
            started && self.is_running(),
            "redis-server did not restart on port {}:\n{last}",
            self.port
        );
    }

    /// Runs `redis-cli -p PORT ARGS...` and returns its output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }

    /// Starts `redis-cli -p PORT ARGS...` in the background (`DEBUG SLEEP 2`).
    pub fn cli_spawn(&self, args: &[&str]) -> Child {
        cli_command(self.port, args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-cli")
    }

    /// The server's log so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn(&self) -> Result<(), Launch> {
        let mut command = Command::new("redis-server");
        command.args((self.arguments)(self.port, self.dir.path()));
        let mut process = ServerProcess::spawn(command, &self.log_path())
            .map_err(|error| Launch::Failed(format!("cannot run redis-server: {error}")))?;
        let answered = wait_until(Duration::from_secs(10), || {
            process.has_exited() || inline_command(self.port, "PING").as_deref() == Some("+PONG")
        });
        if answered && !process.has_exited() {
            *self.process.lock().unwrap() = Some(process);
            return Ok(());
        }
        drop(process);
        let log = self.log();
        if log.contains("Address already in use") {
            Err(Launch::PortTaken)
        } else {
            Err(Launch::Failed(log))
        }
    }
}

enum Launch {
    PortTaken,
    Failed(String),
}

pub(super) fn standalone_arguments(port: u16, dir: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        &dir.display().to_string(),
    ]
    .map(String::from)
    .into();
    // Redis 7 refuses DEBUG (the slow-server test's DEBUG SLEEP) unless enabled;
    // older servers do not know the option and allow DEBUG anyway.
    if major_version() >= 7 {
        args.extend(["--enable-debug-command".into(), "local".into()]);
    }
    args
}

/// The major version of the installed `redis-server`.
pub fn major_version() -> u32 {
    static VERSION: OnceLock<u32> = OnceLock::new();
    *VERSION.get_or_init(|| {
        let output = Command::new("redis-server")
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        // "Redis server v=7.0.15 sha=..."
        output
            .split("v=")
            .nth(1)
            .and_then(|v| v.split('.').next())
            .and_then(|major| major.parse().ok())
            .unwrap_or(0)
    })
}

fn cli_command(port: u16, args: &[&str]) -> Command {
    let mut command = Command::new("redis-cli");
    command
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args);
    command
}

/// Runs `redis-cli -p PORT ARGS...` and returns its output, trimmed.
pub fn cli(port: u16, args: &[&str]) -> String {
    let output = cli_command(port, args)
        .stdin(Stdio::null())
        .output()
        .expect("run redis-cli");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    text.trim().to_owned()
}
