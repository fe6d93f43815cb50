//! Values that must never be printed: passwords, tokens, credentials in URLs.

use std::fmt;

/// A secret string; `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        SecretString(value.into())
    }

    /// The secret itself, for handing to a client library. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A store URL (or comma-separated list of URLs) whose credentials are masked when
/// printed: `redis://user:***@host:6379/0`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps `value`, one URL or a comma-separated list; nothing is checked here.
    pub fn new(value: impl Into<String>) -> Self {
        SecretUrl(value.into())
    }

    /// The URL with its credentials, for handing to a client library. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password (or lone token in the user part) replaced by `***`.
    pub fn masked(&self) -> String {
        self.0
            .split(',')
            .map(|part| mask_one(part.trim()))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn mask_one(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            } else if !url.username().is_empty() && url.scheme().starts_with("nats") {
                // `nats://TOKEN@host` puts the token in the user part: mask it too.
                let _ = url.set_username("***");
            }
            url.to_string()
        }
        // Not a URL we can parse: mask everything between the scheme and the host.
        Err(_) => match (raw.find("://"), raw.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                format!("{}***{}", &raw[..scheme_end + 3], &raw[at..])
            }
            _ => raw.to_owned(),
        },
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.masked())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_masked() {
        let url = SecretUrl::new("redis://user:hunter2@cache:6379/0");
        assert_eq!(url.to_string(), "redis://user:***@cache:6379/0");
        assert!(!format!("{url:?}").contains("hunter2"));
        let url = SecretUrl::new("nats://s3cret@a:4222,nats://b:4222");
        assert_eq!(url.to_string(), "nats://***@a:4222,nats://b:4222");
        let url = SecretUrl::new("postgresql://root@127.0.0.1:5432/test");
        assert_eq!(url.to_string(), "postgresql://root@127.0.0.1:5432/test");
        assert_eq!(SecretString::new("12345").to_string(), "***");
    }
}
