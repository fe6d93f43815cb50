//! Where a store's connections go and how: tokio-postgres's settings from the URL,
//! and TLS as its `sslmode` asks. The shared clients, the release listener and
//! `ratesync migrate` all connect through one [`Database`], so they agree on TLS.

use std::time::Duration;

use tokio::sync::OnceCell;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::tls;
use crate::config::postgres_url::{split_tls, PostgresTls};
use crate::config::PostgresConfig;
use crate::store::StoreError;

pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to drive (it also yields LISTEN notifications).
pub(crate) type Connection =
    tokio_postgres::Connection<Socket, <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream>;

/// A store's database: one per store, shared by everything that connects to it.
pub(crate) struct Database {
    config: tokio_postgres::Config,
    tls: PostgresTls,
    /// Built at the first connection (it reads root certificates), then shared.
    connector: OnceCell<MakeRustlsConnect>,
}

impl Database {
    /// Reads the store's `url` without any I/O.
    pub fn new(config: &PostgresConfig) -> Result<Self, StoreError> {
        let invalid = |why: String| {
            StoreError::Backend(format!(
                "postgres `url` {} is not a valid PostgreSQL connection string: {why}",
                config.url
            ))
        };
        let (url, tls) = split_tls(config.url.expose()).map_err(invalid)?;
        // tokio-postgres's messages name the option or value, never the password.
        let mut pg: tokio_postgres::Config = url.parse().map_err(|e| invalid(chain(&e)))?;
        pg.ssl_mode(tls::ssl_mode(tls.mode));
        // As libpq, `sslmode` does not apply to a unix socket (PostgreSQL offers no
        // TLS there): `require` must not fail a local connection.
        if only_unix_sockets(&pg) {
            pg.ssl_mode(tokio_postgres::config::SslMode::Disable);
        }
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(CONNECT_TIMEOUT);
        }
        if pg.get_application_name().is_none() {
            pg.application_name("ratesync");
        }
        Ok(Database {
            config: pg,
            tls,
            connector: OnceCell::new(),
        })
    }

    /// Connects a client and returns its connection, for the caller to drive.
    pub async fn connect_driven_by_caller(&self) -> Result<(Client, Connection), StoreError> {
        let connector = self
            .connector
            .get_or_try_init(|| async { tls::connector(&self.tls) })
            .await?
            .clone();
        self.config.connect(connector).await.map_err(|error| {
            let message = chain(&error);
            // Which TLS settings failed, so the fix is clear (a missing CA, a server
            // without TLS under `require`).
            if message.starts_with("error performing TLS handshake") {
                StoreError::Connection(format!("{message} ({})", tls::describe(&self.tls)))
            } else {
                StoreError::Connection(message)
            }
        })
    }

    /// Connects a client and drives its connection in the background; the connection
    /// task ends (and the client reports closed) when the socket does.
    pub async fn connect(&self) -> Result<Client, StoreError> {
        let (client, connection) = self.connect_driven_by_caller().await?;
        crate::background::handle().spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "PostgreSQL connection ended");
            }
        });
        Ok(client)
    }
}

fn only_unix_sockets(config: &tokio_postgres::Config) -> bool {
    #[cfg(unix)]
    let unix =
        |host: &tokio_postgres::config::Host| matches!(host, tokio_postgres::config::Host::Unix(_));
    #[cfg(not(unix))]
    let unix = |_: &tokio_postgres::config::Host| false;
    config.get_hostaddrs().is_empty()
        && !config.get_hosts().is_empty()
        && config.get_hosts().iter().all(unix)
}

/// An error with its causes: tokio-postgres's own message ("error performing TLS
/// handshake") says what failed, only its source says why ("invalid peer certificate:
/// UnknownIssuer").
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
