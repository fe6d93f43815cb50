//! The process-wide default registry, for one-liners: `ratesync::acquire("api")`.
//!
//! Built on first use from the discovered configuration file
//! (`docs/design.md#configuration-files`), or set by the application with
//! [`set_default_registry`]. A file that fails to load is reported by every call until
//! it is fixed or a registry is set.

use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::{AcquireError, Error};
use crate::limiter::{Limiter, Permit};
use crate::registry::Registry;

static DEFAULT: RwLock<Option<Registry>> = RwLock::new(None);

/// The default registry, loading the discovered configuration on first use.
pub fn default_registry() -> Result<Registry, Arc<Error>> {
    if let Some(registry) = DEFAULT.read().as_ref() {
        return Ok(registry.clone());
    }
    let mut slot = DEFAULT.write();
    if let Some(registry) = slot.as_ref() {
        return Ok(registry.clone());
    }
    let registry = Registry::discover().map_err(Arc::new)?;
    *slot = Some(registry.clone());
    Ok(registry)
}

/// Replaces the default registry (e.g. with one built in code).
pub fn set_default_registry(registry: Registry) {
    *DEFAULT.write() = Some(registry);
}

/// A limiter of the default registry.
pub fn limiter(name: &str) -> Result<Limiter, Arc<Error>> {
    default_registry()?.limiter(name).map_err(Arc::new)
}

/// Errors of the one-liners: the registry could not be had, or the attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum DefaultAcquireError {
    /// The default registry could not be built (an invalid configuration file, say)
    /// or has no limiter of that name.
    #[error(transparent)]
    Registry(Arc<Error>),
    /// The attempt itself failed.
    #[error(transparent)]
    Acquire(#[from] AcquireError),
}

/// Waits for a permit of limiter `name` of the default registry.
pub async fn acquire(name: &str) -> Result<Permit, DefaultAcquireError> {
    let limiter = limiter(name).map_err(DefaultAcquireError::Registry)?;
    Ok(limiter.acquire().await?)
}

/// One attempt on limiter `name` of the default registry.
pub async fn try_acquire(name: &str) -> Result<Permit, DefaultAcquireError> {
    let limiter = limiter(name).map_err(DefaultAcquireError::Registry)?;
    Ok(limiter.try_acquire().await?)
}
