//! The TLS settings of a `postgres://` URL: libpq's `sslmode` and `sslrootcert`.
//!
//! tokio-postgres reads `sslmode` but knows only `disable`, `prefer` and `require`,
//! and refuses keys it does not know (`sslrootcert`). So both are taken out of the
//! query here and the rest of the URL is handed to tokio-postgres unchanged. The
//! configuration checks a store's URL with this at load time and the PostgreSQL engine
//! connects from the same reading, so a URL that loads is one the engine can use.
//! Messages never contain the URL (it may hold a password).

use std::path::PathBuf;

use percent_encoding::percent_decode_str;

/// libpq's `sslmode`, as libpq means it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS when the server offers it, else plain (libpq's default). libpq's `allow`
    /// (plain first, TLS if the server insists) is read as this: both take either.
    Prefer,
    /// TLS or nothing; the certificate is not checked (encryption only), unless a
    /// root certificate is given (`sslrootcert`), as libpq does.
    Require,
    /// TLS with a certificate chain to a trusted root; any host name.
    VerifyCa,
    /// TLS with a trusted chain for the host connected to.
    VerifyFull,
}

/// Where trusted roots come from for a verifying mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RootCerts {
    /// No `sslrootcert`, or `sslrootcert=system` (as libpq 16): the system trust
    /// store, which `SSL_CERT_FILE` / `SSL_CERT_DIR` replace.
    System,
    /// `sslrootcert=/path/ca.pem`: the PEM certificates of this file only.
    File(PathBuf),
}

/// The TLS part of a store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PostgresTls {
    pub mode: SslMode,
    pub roots: RootCerts,
}

impl PostgresTls {
    /// Whether the server's certificate chain is checked. A root certificate given
    /// with `prefer` or `require` asks for it too (libpq does the same when it finds
    /// a root certificate file).
    // Without the PostgreSQL engine only validation reads the URL.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub fn verifies_chain(&self) -> bool {
        match self.mode {
            SslMode::Disable => false,
            SslMode::Prefer | SslMode::Require => matches!(self.roots, RootCerts::File(_)),
            SslMode::VerifyCa | SslMode::VerifyFull => true,
        }
    }
}

/// libpq TLS keys that would need client certificates or revocation lists, which
/// ratesync does not support yet: refused by name rather than ignored.
const UNSUPPORTED_KEYS: &[&str] = &["sslcert", "sslkey", "sslpassword", "sslcrl", "sslcrldir"];

/// Splits `raw` into the URL tokio-postgres reads (without `sslmode` and
/// `sslrootcert`) and its TLS settings. Query parameters are `key=value` pairs joined
/// by `&`; the last of a repeated key wins, as in libpq.
pub(crate) fn split_tls(raw: &str) -> Result<(String, PostgresTls), String> {
    let mut tls = PostgresTls {
        mode: SslMode::Prefer,
        roots: RootCerts::System,
    };
    let Some((base, query)) = raw.split_once('?') else {
        return Ok((raw.to_owned(), tls));
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode_str(value)
            .decode_utf8()
            .map_err(|_| format!("the URL's `{key}` is not valid UTF-8 once decoded"))?;
        match key {
            "sslmode" => tls.mode = ssl_mode(&value)?,
            "sslrootcert" if value.is_empty() => {
                return Err(
                    "the URL's `sslrootcert` is empty; expected a file path or `system`".to_owned(),
                )
            }
            "sslrootcert" if value == "system" => tls.roots = RootCerts::System,
            "sslrootcert" => tls.roots = RootCerts::File(PathBuf::from(value.as_ref())),
            key if UNSUPPORTED_KEYS.contains(&key) => {
                return Err(format!(
                    "the URL's `{key}` is not supported: ratesync connects to PostgreSQL \
                     without a client certificate"
                ))
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, tls))
}

fn ssl_mode(value: &str) -> Result<SslMode, String> {
    Ok(match value {
        "disable" => SslMode::Disable,
        "allow" | "prefer" => SslMode::Prefer,
        "require" => SslMode::Require,
        "verify-ca" => SslMode::VerifyCa,
        "verify-full" => SslMode::VerifyFull,
        other => {
            return Err(format!(
                "unknown `sslmode` `{other}` in the URL; expected disable, allow, prefer, \
                 require, verify-ca or verify-full"
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(raw: &str) -> (String, PostgresTls) {
        split_tls(raw).unwrap()
    }

    #[test]
    fn without_a_query_tls_is_preferred_and_the_url_is_unchanged() {
        let (url, tls) = split("postgres://u:p@db:5432/app");
        assert_eq!(url, "postgres://u:p@db:5432/app");
        assert_eq!(tls.mode, SslMode::Prefer);
        assert!(!tls.verifies_chain());
    }

    #[test]
    fn tls_keys_are_taken_out_and_the_others_kept_in_order() {
        let (url, tls) = split(
            "postgresql://db/app?application_name=x&sslmode=verify-full\
             &sslrootcert=%2Fetc%2Fca%2Bbundle.pem&connect_timeout=3",
        );
        assert_eq!(
            url,
            "postgresql://db/app?application_name=x&connect_timeout=3"
        );
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.roots, RootCerts::File("/etc/ca+bundle.pem".into()));
        let (url, tls) = split("postgres://db/app?sslmode=require&sslrootcert=system");
        assert_eq!(url, "postgres://db/app");
        assert_eq!(tls.roots, RootCerts::System);
        assert!(!tls.verifies_chain());
    }

    #[test]
    fn a_root_certificate_makes_require_verify_the_chain() {
        let (_, tls) = split("postgres://db/app?sslmode=require&sslrootcert=/ca.pem");
        assert!(tls.verifies_chain());
    }

    #[test]
    fn unknown_modes_and_client_certificates_are_refused_by_name() {
        let error = split_tls("postgres://u:secret@db/app?sslmode=verify").unwrap_err();
        assert!(error.contains("`sslmode` `verify`"), "{error}");
        assert!(!error.contains("secret"));
        let error = split_tls("postgres://db/app?sslcert=/c.pem").unwrap_err();
        assert!(error.contains("`sslcert` is not supported"), "{error}");
        assert!(split_tls("postgres://db/app?sslrootcert=").is_err());
    }

    #[test]
    fn every_libpq_mode_is_read() {
        for (text, mode) in [
            ("disable", SslMode::Disable),
            ("allow", SslMode::Prefer),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            let (_, tls) = split(&format!("postgres://db/app?sslmode={text}"));
            assert_eq!(tls.mode, mode, "{text}");
        }
    }
}
