//! Processes the tests own: binaries that may be missing, free ports, and server
//! processes that are killed whatever happens to the test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Makes sure every binary in `names` is on `PATH`: a test that needs a missing one
/// fails, naming it (never passes without running). `./scripts/test.sh` installs
/// them, and reports the tests of a service it could not install as skipped.
pub fn require_binaries(names: &[&str]) {
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| !on_path(name))
        .collect();
    if !missing.is_empty() {
        missing_service(&format!(
            "{} not found on PATH (Debian: apt-get install redis-server redis-tools faketime \
             openssl postgresql)",
            missing.join(", ")
        ));
    }
}

/// Fails the test that needs a service which is not installed, saying which one
/// and how to get it.
pub fn missing_service(message: &str) -> ! {
    panic!("this test needs {message}; ./scripts/test.sh installs what the tests need");
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| is_executable(&dir.join(name))))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A port nothing listens on right now. Another process may take it before the
/// server binds it: callers retry with a fresh port when the server cannot bind.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind an ephemeral loopback port")
        .port()
}

/// Polls `ready` every 20 ms until it holds or `limit` passes; whether it held.
pub fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends one inline command over plain TCP and returns the first reply line
/// (`+PONG`, `-LOADING ...`); `None` when nothing answers.
pub fn inline_command(port: u16, command: &str) -> Option<String> {
    let address = ("127.0.0.1", port);
    let mut stream = TcpStream::connect(address).ok()?;
    let limit = Some(Duration::from_millis(500));
    stream.set_read_timeout(limit).ok()?;
    stream.set_write_timeout(limit).ok()?;
    stream.write_all(format!("{command}\r\n").as_bytes()).ok()?;
    let mut reply = Vec::new();
    let mut byte = [0u8];
    while stream.read(&mut byte).ok()? == 1 && byte[0] != b'\n' {
        reply.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&reply).trim_end().to_owned())
}

/// A running server process and its watchdog; both are killed on drop.
pub struct ServerProcess {
    child: Child,
    watchdog: Option<Child>,
}

impl ServerProcess {
    /// Starts `command` with its output sent to `log` (never to the test's own
    /// stdout, which the test runner waits on), watched so that it dies with the
    /// test process even when it is never dropped.
    pub fn spawn(mut command: Command, log: &Path) -> std::io::Result<Self> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()?;
        let watchdog = watchdog(child.id());
        Ok(ServerProcess { child, watchdog })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (it could not bind its port, say).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, as a crash would; waits for the process to be gone.
    pub fn kill(mut self) {
        self.kill_now();
    }

    fn kill_now(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }

    /// Waits up to `limit` for the process to exit by itself; kills it otherwise.
    pub fn wait_or_kill(mut self, limit: Duration) {
        let _ = wait_until(limit, || self.has_exited());
        self.kill_now();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// A shell loop that kills `server` once this test process is gone: a server held
/// in a `static` is never dropped, and a test process killed by the runner's
/// timeout drops nothing.
fn watchdog(server: u32) -> Option<Child> {
    let script = r#"while kill -0 "$1" 2>/dev/null; do sleep 0.5; done; kill -9 "$2" 2>/dev/null"#;
    Command::new("sh")
        .args(["-c", script, "watchdog"])
        .arg(std::process::id().to_string())
        .arg(server.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}
