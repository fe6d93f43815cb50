//! TLS to the database, as the URL's `sslmode` asks (read by
//! `config::postgres_url`), over rustls with the process's crypto provider (ring unless
//! the application installed another, as the Redis engine does).
//!
//! - `disable`: tokio-postgres never asks for TLS.
//! - `prefer`, `require`: encryption without checking the certificate, as libpq does
//!   when it has no root certificate ([`EncryptionOnly`]); with `sslrootcert`, the
//!   chain is checked as for `verify-ca`.
//! - `verify-ca`: a chain to a trusted root, for any host name ([`ChainOnly`]).
//! - `verify-full`: a trusted chain for the host connected to (rustls's own check).
//!
//! Trusted roots: the `sslrootcert` file, else the system trust store read by
//! rustls-native-certs (which `SSL_CERT_FILE` / `SSL_CERT_DIR` replace, as for
//! `rediss://`). libpq would read `~/.postgresql/root.crt` instead; a service has no
//! meaningful home directory, and managed databases chain to public roots.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::postgres_url::{PostgresTls, RootCerts, SslMode};
use crate::store::StoreError;

/// What tokio-postgres itself must do: the verifying modes are `Require` to it (TLS
/// or nothing); the checks are the verifier's.
pub(crate) fn ssl_mode(mode: SslMode) -> tokio_postgres::config::SslMode {
    match mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            tokio_postgres::config::SslMode::Require
        }
    }
}

/// How `tls` reads in an error message: the mode and where trust comes from.
pub(crate) fn describe(tls: &PostgresTls) -> String {
    let mode = match tls.mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        SslMode::VerifyCa => "verify-ca",
        SslMode::VerifyFull => "verify-full",
    };
    if !tls.verifies_chain() {
        return format!("sslmode={mode}, certificate not verified");
    }
    match &tls.roots {
        RootCerts::System => format!("sslmode={mode}, roots from the system trust store"),
        RootCerts::File(path) => format!("sslmode={mode}, sslrootcert={}", path.display()),
    }
}

/// The rustls connector for `tls`. Reads the trusted roots (a file, or the system
/// store), so it is built at the first connection, not with the engine.
pub(crate) fn connector(tls: &PostgresTls) -> Result<MakeRustlsConnect, StoreError> {
    // rustls needs a process-wide crypto provider; an application that installed its
    // own keeps it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Connection(format!("TLS setup: {e}")))?;
    let config = if tls.verifies_chain() {
        let roots = Arc::new(root_store(&tls.roots)?);
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| StoreError::Connection(format!("TLS setup: {e}")))?;
        if tls.mode == SslMode::VerifyFull {
            builder.with_webpki_verifier(verifier)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(verifier)))
        }
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptionOnly(provider)))
    };
    Ok(MakeRustlsConnect::new(config.with_no_client_auth()))
}

fn root_store(roots: &RootCerts) -> Result<RootCertStore, StoreError> {
    let mut store = RootCertStore::empty();
    match roots {
        RootCerts::File(path) => {
            let unreadable = |e: rustls::pki_types::pem::Error| {
                StoreError::Connection(format!(
                    "cannot read the root certificates of sslrootcert={}: {e}",
                    path.display()
                ))
            };
            for cert in CertificateDer::pem_file_iter(path).map_err(unreadable)? {
                store.add(cert.map_err(unreadable)?).map_err(|e| {
                    StoreError::Connection(format!(
                        "sslrootcert={} holds an unusable certificate: {e}",
                        path.display()
                    ))
                })?;
            }
            if store.is_empty() {
                return Err(StoreError::Connection(format!(
                    "sslrootcert={} holds no PEM certificate",
                    path.display()
                )));
            }
        }
        RootCerts::System => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                let why: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
                return Err(StoreError::Connection(format!(
                    "no trusted root certificate in the system trust store ({}); give the \
                     database's CA with sslrootcert=/path/ca.pem in the URL, or SSL_CERT_FILE",
                    if why.is_empty() {
                        "it is empty".to_owned()
                    } else {
                        why.join("; ")
                    }
                )));
            }
        }
    }
    Ok(store)
}

/// `verify-ca`: rustls's full check, except that a certificate for another host
/// name is accepted. The name is checked last, after the chain, so every other
/// failure (unknown issuer, expired, bad signature) still refuses the server.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` / `require` without a root certificate: libpq's "encryption only". Any
/// certificate is accepted, so this protects against passive eavesdropping, not
/// against an active man in the middle (that is what `verify-full` is for). The
/// handshake signatures are still checked with the provider's algorithms, so the peer
/// must hold the private key of the certificate it sent.
#[derive(Debug)]
struct EncryptionOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptionOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
