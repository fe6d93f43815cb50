//! Which key of a limiter a request counts against.
//!
//! A [`KeyExtractor`] turns a request into a key; small named implementations cover
//! the usual cases, and any `Fn(&Parts) -> Option<String>` closure is one too.

use std::any::Any;
use std::net::{IpAddr, SocketAddr};

use http::header::{HeaderName, InvalidHeaderName};
use http::request::Parts;
use http::HeaderMap;

use super::client_ip::{client_ip, TrustedProxies};
use super::value::IpText;

/// Picks the key a request counts against.
pub trait KeyExtractor: Send + Sync + 'static {
    /// The key of this request (the empty string is the limiter-wide key).
    ///
    /// `parts` is mutable only because axum's path parameters are reachable through
    /// its extractors alone, which take `&mut Parts`; no extractor here changes it.
    fn extract(&self, parts: &mut Parts) -> Result<String, KeyError>;
}

/// Why a request has no key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// [`Header`]: the request lacks the header.
    #[error("the request has no `{0}` header")]
    MissingHeader(HeaderName),
    /// [`Header`]: the header's value is not visible ASCII, so not a usable key.
    #[error("the `{0}` header is not visible ASCII")]
    InvalidHeader(HeaderName),
    /// A closure extractor returned `None`.
    #[error("the key extractor found no key in the request")]
    NoKey,
    /// [`ClientIp`]: the request carries no peer address (a server setup error).
    #[error("`ClientIp` needs the peer address, and the request carries none: serve the app with `into_make_service_with_connect_info::<SocketAddr>()` (axum) or insert a `SocketAddr` request extension")]
    NoPeerAddress,
    /// `PathParam` (feature `axum`): no such parameter, often because the layer runs
    /// before routing (a server setup error).
    #[error("the request has no path parameter `{0}`: parameters exist only once a route matched, so add the layer with `Router::route_layer` (or use the `RateLimited` extractor)")]
    NoPathParam(String),
}

impl KeyError {
    /// Whether the request is at fault (HTTP 400), rather than the server's setup
    /// (HTTP 500: no peer address, a path parameter that the route does not have).
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            KeyError::MissingHeader(_) | KeyError::InvalidHeader(_) | KeyError::NoKey
        )
    }
}

/// The client's IP address, believing forwarding headers only from trusted proxies
/// (see [`client_ip`](super::client_ip)). The peer address comes from axum's
/// `ConnectInfo<SocketAddr>` or from a `SocketAddr` request extension.
#[derive(Debug, Clone, Default)]
pub struct ClientIp {
    trusted: TrustedProxies,
}

impl ClientIp {
    /// Trusts the proxies in `trusted`.
    pub fn new(trusted: TrustedProxies) -> Self {
        ClientIp { trusted }
    }

    /// Trusts nobody: the peer address is the client (the default, as in Python).
    pub fn peer() -> Self {
        Self::default()
    }

    /// Trusts the `[http] trusted_proxy_networks` of `config` (or `[fastapi]`, its
    /// rate-sync name), the list the Python integration reads too (e.g.
    /// `ClientIp::from_config(registry.config())`).
    pub fn from_config(config: &crate::Config) -> Self {
        Self::new(TrustedProxies::from_config(config))
    }

    /// The client IP of a request, or `None` without a peer address.
    pub fn client_ip(&self, parts: &Parts) -> Option<IpAddr> {
        let peer = peer_addr(parts)?;
        Some(client_ip(peer, &parts.headers, &self.trusted))
    }
}

impl KeyExtractor for ClientIp {
    fn extract(&self, parts: &mut Parts) -> Result<String, KeyError> {
        self.key(parts).map(|ip| ip.as_str().to_owned())
    }
}

impl ClientIp {
    /// The key: the client IP as text, on the stack.
    fn key(&self, parts: &Parts) -> Result<IpText, KeyError> {
        self.client_ip(parts)
            .map(IpText::new)
            .ok_or(KeyError::NoPeerAddress)
    }
}

fn peer_addr(parts: &Parts) -> Option<IpAddr> {
    #[cfg(feature = "axum")]
    if let Some(info) = parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(info.0.ip());
    }
    parts.extensions.get::<SocketAddr>().map(SocketAddr::ip)
}

/// The value of a request header (e.g. an API key). A missing or empty header has
/// no key: an empty key would be the limiter-wide one.
#[derive(Debug, Clone)]
pub struct Header {
    name: HeaderName,
}

impl Header {
    /// The header `name`, e.g. `Header::new(HeaderName::from_static("x-api-key"))`.
    pub fn new(name: HeaderName) -> Self {
        Header { name }
    }

    /// The header named `name`, checked.
    pub fn named(name: &str) -> Result<Self, InvalidHeaderName> {
        HeaderName::try_from(name).map(Self::new)
    }
}

impl KeyExtractor for Header {
    fn extract(&self, parts: &mut Parts) -> Result<String, KeyError> {
        self.key(&parts.headers).map(str::to_owned)
    }
}

impl Header {
    /// The key: the header's value, borrowed.
    fn key<'p>(&self, headers: &'p HeaderMap) -> Result<&'p str, KeyError> {
        let value = headers
            .get(&self.name)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| KeyError::MissingHeader(self.name.clone()))?;
        value
            .to_str()
            .map_err(|_| KeyError::InvalidHeader(self.name.clone()))
    }
}

/// One key for every request: the limit applies to the route as a whole.
#[derive(Debug, Clone, Copy, Default)]
pub struct LimiterWide;

impl KeyExtractor for LimiterWide {
    fn extract(&self, _: &mut Parts) -> Result<String, KeyError> {
        Ok(String::new())
    }
}

/// A path parameter of the matched axum route (`/users/{id}` → `id`), percent-decoded.
///
/// Parameters exist only once a route matched: add the layer with
/// `Router::route_layer` (with `Router::layer` the 404 fallback has none and answers
/// 500; around the whole router, no request has any), or use the extractor.
#[cfg(feature = "axum")]
#[derive(Debug, Clone)]
pub struct PathParam {
    name: String,
}

#[cfg(feature = "axum")]
impl PathParam {
    /// The parameter `name` of the route's path.
    pub fn new(name: impl Into<String>) -> Self {
        PathParam { name: name.into() }
    }
}

#[cfg(feature = "axum")]
impl KeyExtractor for PathParam {
    fn extract(&self, parts: &mut Parts) -> Result<String, KeyError> {
        use axum::extract::{FromRequestParts, RawPathParams};
        use futures::FutureExt;
        // `RawPathParams` reads an extension the router set: it never awaits.
        let params = RawPathParams::from_request_parts(parts, &())
            .now_or_never()
            .and_then(Result::ok);
        params
            .and_then(|params| {
                params
                    .iter()
                    .find(|(name, _)| *name == self.name)
                    .map(|(_, value)| value.to_owned())
            })
            .ok_or_else(|| KeyError::NoPathParam(self.name.clone()))
    }
}

/// Any closure from the request to its key; `None` means the request has none.
impl<F> KeyExtractor for F
where
    F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
{
    fn extract(&self, parts: &mut Parts) -> Result<String, KeyError> {
        self(parts).ok_or(KeyError::NoKey)
    }
}

/// A limit's key extractor. The ones of this module are kept by type, so that their
/// keys are read without allocating: a borrowed header value, an IP address as text
/// on the stack (`KeyExtractor::extract` returns a `String`, one allocation per
/// request on the layer's hot path, `docs/design.md#http`). Any other goes through
/// the trait.
pub(crate) enum Keyer {
    ClientIp(ClientIp),
    Header(Header),
    LimiterWide,
    Any(Box<dyn KeyExtractor>),
}

impl Keyer {
    pub(crate) fn new<K: KeyExtractor>(key: K) -> Self {
        let known = &key as &dyn Any;
        if let Some(ip) = known.downcast_ref::<ClientIp>() {
            Keyer::ClientIp(ip.clone())
        } else if let Some(header) = known.downcast_ref::<Header>() {
            Keyer::Header(header.clone())
        } else if known.is::<LimiterWide>() {
            Keyer::LimiterWide
        } else {
            Keyer::Any(Box::new(key))
        }
    }

    /// The key of this request, as [`KeyExtractor::extract`] gives it.
    pub(crate) fn key<'p>(&self, parts: &'p mut Parts) -> Result<RequestKey<'p>, KeyError> {
        match self {
            Keyer::ClientIp(ip) => ip.key(parts).map(RequestKey::Ip),
            Keyer::Header(header) => header.key(&parts.headers).map(RequestKey::Borrowed),
            Keyer::LimiterWide => Ok(RequestKey::Borrowed("")),
            Keyer::Any(key) => key.extract(parts).map(RequestKey::Owned),
        }
    }
}

/// One request's key for one limit, from [`Keyer::key`].
pub(crate) enum RequestKey<'p> {
    Borrowed(&'p str),
    Ip(IpText),
    Owned(String),
}

impl RequestKey<'_> {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            RequestKey::Borrowed(key) => key,
            RequestKey::Ip(ip) => ip.as_str(),
            RequestKey::Owned(key) => key,
        }
    }

    pub(crate) fn into_owned(self) -> String {
        match self {
            RequestKey::Owned(key) => key,
            key => key.as_str().to_owned(),
        }
    }
}
