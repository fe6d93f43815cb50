//! A private CA and a server certificate signed by it, made with `openssl` in a
//! temporary directory, for the tests that start TLS servers (`rediss://`,
//! PostgreSQL's `sslmode`). The certificate is for 127.0.0.1 and localhost.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `ca.pem`, `server.pem` and `server.key` in a directory removed on drop.
pub struct TestCertificates {
    dir: tempfile::TempDir,
}

impl TestCertificates {
    /// Makes them; panics when openssl fails (check `require_binaries(&["openssl"])`).
    pub fn make() -> Self {
        let dir = tempfile::tempdir().unwrap();
        make_certificates(dir.path());
        TestCertificates { dir }
    }

    /// The CA's certificate, which clients must trust.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server's certificate.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The server's private key.
    pub fn server_key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(output.status.success(), "openssl {args:?}: {output:?}");
}

fn make_certificates(dir: &Path) {
    let ca = "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=ratesync-test-ca";
    openssl(dir, &ca.split(' ').collect::<Vec<_>>());
    let csr = "req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1";
    openssl(dir, &csr.split(' ').collect::<Vec<_>>());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    let sign = "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 1 -extfile ext.cnf";
    openssl(dir, &sign.split(' ').collect::<Vec<_>>());
}
