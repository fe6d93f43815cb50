//! `rediss://`: the Redis engine over TLS, against a redis-server with a TLS port and
//! a certificate from a private CA made by the test (openssl). The server is verified:
//! trusted through `SSL_CERT_FILE` (how an operator adds a private CA), refused
//! without it. One test in this binary, because it sets a process-wide variable.
#![cfg(feature = "redis")]

mod support;

use std::net::TcpListener;

use ratesync::{AcquireError, Config, LimiterBuilder, Registry, StoreBuilder};

fn registry(url: &str) -> Registry {
    let config = Config::builder()
        .store(
            "tls",
            StoreBuilder::redis(url).option("socket_timeout", 2.0),
        )
        .limiter(
            "once",
            LimiterBuilder::token_bucket("tls", 0.01).fail_closed(true),
        )
        .build()
        .unwrap();
    Registry::from_config(config).unwrap()
}

#[tokio::test]
async fn rediss_connects_to_a_verified_server() {
    support::require_binaries(&["redis-server", "redis-cli", "openssl"]);
    let certs = support::TestCertificates::make();
    let tls_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = |path: std::path::PathBuf| path.display().to_string();
    let _server = support::RedisServer::start_with(vec![
        "--tls-port".into(),
        tls_port.to_string(),
        "--tls-cert-file".into(),
        path(certs.server_cert()),
        "--tls-key-file".into(),
        path(certs.server_key()),
        "--tls-ca-cert-file".into(),
        path(certs.ca()),
        "--tls-auth-clients".into(),
        "no".into(),
    ]);
    let url = format!("rediss://127.0.0.1:{tls_port}/0");

    // Without the private CA the server's certificate is not trusted: refused.
    let untrusted = registry(&url).limiter("once").unwrap();
    let error = untrusted.try_acquire().await.unwrap_err();
    assert!(
        matches!(error, AcquireError::StoreUnavailable { .. }),
        "an unverified server is not used: {error}"
    );

    // SAFETY: the only test in this binary; the variable is read when a TLS client
    // is built, below.
    unsafe { std::env::set_var("SSL_CERT_FILE", certs.ca()) };
    let once = registry(&url).limiter("once").unwrap();
    once.key("k")
        .try_acquire()
        .await
        .expect("admitted over TLS");
    let refused = once.key("k").try_acquire().await.unwrap_err();
    assert!(matches!(refused, AcquireError::Denied { .. }), "{refused}");
}
