//! One `nats-server -js` on a free loopback port, its JetStream store in its own
//! temporary directory (kept across restarts, as a real server's disk is).
//!
//! The binary: `$RATESYNC_NATS_SERVER`, else `target/nats-venv/bin/nats-server`
//! (what `scripts/install-nats-server.sh` installs), else a `nats-server` on `PATH`
//! of version 2.10 or later (Debian's 2.9 is too old for JetStream KV clients).
//! Without one, the tests skip loudly (and fail under `CI=true`).

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use ratesync::config::{EngineConfig, NatsConfig};
use ratesync::{Config, StoreBuilder};

use super::process::{free_port, missing_service, wait_until, ServerProcess};

/// A `nats-server` this test owns: killed on drop, restartable on the same port.
pub struct NatsServer {
    port: u16,
    dir: tempfile::TempDir,
    token: Option<String>,
    process: Mutex<Option<ServerProcess>>,
}

impl NatsServer {
    /// Starts `nats-server -js` in a fresh temporary directory and waits until it
    /// greets clients.
    pub fn start() -> Self {
        Self::launch(None)
    }

    /// A server that requires `token` from its clients.
    pub fn start_with_token(token: &str) -> Self {
        Self::launch(Some(token.to_owned()))
    }

    fn launch(token: Option<String>) -> Self {
        let mut dir = tempfile::tempdir().expect("temporary directory");
        let mut token = token;
        for _ in 0..20 {
            let server = NatsServer {
                port: free_port(),
                dir,
                token,
                process: Mutex::new(None),
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(Launch::PortTaken) => (dir, token) = (server.dir, server.token),
                Err(Launch::Failed(log)) => panic!("nats-server did not start:\n{log}"),
            }
        }
        panic!("nats-server found no free port in 20 attempts");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.process.lock().unwrap().is_some()
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&self) {
        if let Some(process) = self.process.lock().unwrap().take() {
            process.kill();
        }
    }

    /// Starts the server again on the same port and store directory (killing it
    /// first if it runs): the bucket and its entries survive, as on a real restart.
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
            "nats-server did not restart on port {}:\n{last}",
            self.port
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    fn spawn(&self) -> Result<(), Launch> {
        let binary = binary();
        let mut command = Command::new(binary);
        command
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js"])
            .arg("-sd")
            .arg(self.dir.path().join("store"));
        if let Some(token) = &self.token {
            command.args(["--auth", token]);
        }
        let _ = std::fs::write(self.log_path(), "");
        let mut process = ServerProcess::spawn(command, &self.log_path())
            .map_err(|error| Launch::Failed(format!("cannot run nats-server: {error}")))?;
        let answered = wait_until(Duration::from_secs(10), || {
            process.has_exited() || (greets(self.port) && self.log().contains("Server is ready"))
        });
        if answered && !process.has_exited() {
            *self.process.lock().unwrap() = Some(process);
            return Ok(());
        }
        drop(process);
        let log = self.log();
        if log.contains("address already in use") {
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

/// Whether something on `port` sends a NATS `INFO` greeting.
fn greets(port: u16) -> bool {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO")
}

/// The nats-server to run, found once (see the module docs); a test fails without
/// one, saying how to install it.
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = BINARY.get_or_init(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let candidates = std::env::var_os("RATESYNC_NATS_SERVER")
            .map(PathBuf::from)
            .into_iter()
            .chain([workspace.join("target/nats-venv/bin/nats-server")])
            .chain(std::env::var_os("PATH").into_iter().flat_map(|path| {
                std::env::split_paths(&path)
                    .map(|dir| dir.join("nats-server"))
                    .collect::<Vec<_>>()
            }));
        let mut seen = Vec::new();
        for candidate in candidates {
            if !candidate.is_file() {
                continue;
            }
            match version(&candidate) {
                Some(v) if v >= (2, 10) => return Ok(candidate),
                v => seen.push(format!("{} ({v:?})", candidate.display())),
            }
        }
        Err(if seen.is_empty() {
            "none".to_owned()
        } else {
            seen.join(", ")
        })
    });
    match found {
        Ok(binary) => binary,
        Err(seen) => missing_service(&format!(
            "nats-server ≥ 2.10 (found: {seen}; run scripts/install-nats-server.sh, or set \
             RATESYNC_NATS_SERVER)"
        )),
    }
}

/// `nats-server --version` → "nats-server: v2.10.26" → (2, 10).
fn version(binary: &Path) -> Option<(u32, u32)> {
    let output = Command::new(binary).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.split(" v").nth(1)?;
    let mut parts = version.trim().split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The validated settings of a NATS store described in code, as `NatsEngine::new`
/// takes them (`StoreBuilder::nats(url).option("auto_create", true)`).
pub fn nats_config(store: StoreBuilder) -> NatsConfig {
    let config = Config::builder()
        .store("s", store)
        .build()
        .expect("valid NATS store settings");
    match &config.stores["s"].engine {
        EngineConfig::Nats(nats) => nats.clone(),
        other => panic!("not a NATS store: {}", other.engine_name()),
    }
}
