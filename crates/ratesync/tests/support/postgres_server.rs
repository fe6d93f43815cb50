//! One PostgreSQL server on a free loopback port, in a temporary data directory.
//!
//! `initdb` (trust authentication, user `postgres`) into a fresh directory, then
//! `postgres` with its unix socket in that directory, `fsync = off` and asynchronous
//! commits (the data is thrown away anyway). PostgreSQL refuses to run as root: when
//! the tests run as root, the server runs as the `postgres` user (through `setpriv`),
//! and the directory is handed to that user.
//!
//! [`PostgresServer::start_with_tls`] turns TLS on (`ssl = on` with a given certificate
//! and key) and replaces `pg_hba.conf`, e.g. with `hostssl` lines only, so a client
//! that connects at all has proved it encrypts.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::process::{free_port, require_binaries, wait_until, ServerProcess};

/// The binaries the PostgreSQL tests need on PATH (the others are found beside it).
pub const POSTGRES_BINARIES: &[&str] = &["initdb"];

/// A PostgreSQL server this test owns: killed on drop, restartable on the same port
/// with its data kept (as after a crash).
pub struct PostgresServer {
    port: u16,
    dir: tempfile::TempDir,
    process: Mutex<Option<ServerProcess>>,
}

impl PostgresServer {
    /// Initialises a data directory and starts the server on a free port, retrying
    /// with another port when one is taken between choosing and binding.
    pub fn start() -> Self {
        Self::start_configured(None)
    }

    /// As [`Self::start`], with TLS on: `cert` and `key` (PEM) are copied into the
    /// data directory, owned by the server's user with mode 0600 (PostgreSQL refuses a
    /// key others can read), and `hba` replaces `pg_hba.conf`.
    pub fn start_with_tls(cert: &Path, key: &Path, hba: &str) -> Self {
        Self::start_configured(Some((cert, key, hba)))
    }

    fn start_configured(tls: Option<(&Path, &Path, &str)>) -> Self {
        require_postgres();
        let mut dir = tempfile::tempdir().expect("temporary directory");
        let data = dir.path().join("data");
        let mut initdb = as_server_user(&bin_dir().join("initdb"));
        initdb
            .args(["-D", &data.display().to_string()])
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .args(["--locale=C.UTF-8"]);
        hand_over(dir.path());
        let output = initdb.stdin(Stdio::null()).output().expect("run initdb");
        assert!(
            output.status.success(),
            "initdb failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if let Some((cert, key, hba)) = tls {
            configure_tls(&data, cert, key, hba);
        }
        for _ in 0..20 {
            let server = PostgresServer {
                port: free_port(),
                dir,
                process: Mutex::new(None),
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(Launch::PortTaken) => dir = server.dir,
                Err(Launch::Failed(log)) => panic!("postgres did not start:\n{log}"),
            }
        }
        panic!("postgres found no free port in 20 attempts");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgresql://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The directory of the server's unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn is_running(&self) -> bool {
        self.process.lock().unwrap().is_some()
    }

    /// An immediate shutdown (as a crash: no checkpoint, clients' sockets reset),
    /// then SIGKILL if it lingers.
    pub fn kill(&self) {
        if let Some(process) = self.process.lock().unwrap().take() {
            let _ = Command::new("kill")
                .args(["-QUIT", &process.pid().to_string()])
                .status();
            process.wait_or_kill(Duration::from_secs(10));
        }
    }

    /// Starts the server again on the same port and data (crash recovery first).
    pub fn restart(&self) {
        self.kill();
        let mut last = String::new();
        let started = wait_until(Duration::from_secs(20), || match self.spawn() {
            Ok(()) => true,
            Err(Launch::PortTaken) => false,
            Err(Launch::Failed(log)) => {
                last = log;
                true
            }
        });
        assert!(
            started && self.is_running(),
            "postgres did not restart on port {}:\n{last}",
            self.port
        );
    }

    /// `psql -c SQL` as the superuser (unaligned, tuples only).
    fn psql_command(&self, sql: &str) -> Command {
        let mut command = Command::new(bin_dir().join("psql"));
        command
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", "postgres", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .stdin(Stdio::null());
        command
    }

    /// Starts `psql -c SQL` in the background (a session holding a lock).
    pub fn psql_spawn(&self, sql: &str) -> std::process::Child {
        self.psql_command(sql)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn psql")
    }

    /// Runs `psql -c SQL` as the superuser and returns its output (unaligned, tuples
    /// only), trimmed.
    pub fn psql(&self, sql: &str) -> String {
        let output = self.psql_command(sql).output().expect("run psql");
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        text.trim().to_owned()
    }

    /// The server's log so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn spawn(&self) -> Result<(), Launch> {
        let mut command = as_server_user(&bin_dir().join("postgres"));
        let dir = self.dir.path().display().to_string();
        command
            .args(["-D", &format!("{dir}/data"), "-p", &self.port.to_string()])
            .args(["-k", &dir, "-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=300"])
            // For assertion messages: what waited on a lock or ran for long.
            .args([
                "-c",
                "log_lock_waits=on",
                "-c",
                "log_min_duration_statement=1000",
            ]);
        let mut process = ServerProcess::spawn(command, &self.log_path())
            .map_err(|error| Launch::Failed(format!("cannot run postgres: {error}")))?;
        hand_over(&self.log_path());
        let answered = wait_until(Duration::from_secs(20), || {
            process.has_exited() || self.accepts_connections()
        });
        if answered && !process.has_exited() {
            *self.process.lock().unwrap() = Some(process);
            return Ok(());
        }
        drop(process);
        let log = self.log();
        if log.contains("Address already in use") || log.contains("could not bind") {
            Err(Launch::PortTaken)
        } else {
            Err(Launch::Failed(log))
        }
    }

    fn accepts_connections(&self) -> bool {
        Command::new(bin_dir().join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-t", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

/// Copies the certificate and key into `data`, turns TLS on, writes `pg_hba.conf`.
fn configure_tls(data: &Path, cert: &Path, key: &Path, hba: &str) {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    std::fs::copy(cert, data.join("server.crt")).expect("copy the server certificate");
    std::fs::copy(key, data.join("server.key")).expect("copy the server key");
    std::fs::set_permissions(
        data.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod the server key");
    std::fs::write(data.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))
        .expect("open postgresql.conf");
    // Relative paths are read from the data directory.
    writeln!(
        conf,
        "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'"
    )
    .expect("write postgresql.conf");
    hand_over(data);
}

enum Launch {
    PortTaken,
    Failed(String),
}

/// Makes sure the PostgreSQL server binaries are installed (on PATH, or where Debian
/// puts them): the test fails otherwise, naming them.
pub fn require_postgres() {
    if find_bin_dir().is_none() {
        require_binaries(POSTGRES_BINARIES);
    }
}

/// The directory of the PostgreSQL binaries: where `initdb` on PATH really lives, or
/// Debian's `/usr/lib/postgresql/<version>/bin` (Debian links none of them into
/// PATH), the newest first.
fn find_bin_dir() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let on_path = std::env::split_paths(&path)
            .map(|dir| dir.join("initdb"))
            .find(|initdb| initdb.is_file())
            .and_then(|initdb| std::fs::canonicalize(initdb).ok())
            .and_then(|initdb| initdb.parent().map(Path::to_path_buf));
        on_path.or_else(|| {
            let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                .ok()?
                .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
                .filter(|bin| bin.join("initdb").is_file())
                .collect();
            versions.sort_by_key(|bin| {
                bin.parent()
                    .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
                    .unwrap_or(0)
            });
            versions.pop()
        })
    })
    .clone()
}

fn bin_dir() -> PathBuf {
    find_bin_dir().expect("PostgreSQL binaries (checked by require_postgres)")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// A command that runs `program` as the `postgres` user when the tests run as root.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("setpriv");
        command
            .args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Gives `path` to the `postgres` user when the tests run as root.
fn hand_over(path: &Path) {
    if is_root() {
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status();
    }
}
