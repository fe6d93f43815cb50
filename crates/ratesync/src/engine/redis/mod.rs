//! The Redis engine (SPEC §5 redis). Work in progress: see issue 3.

use std::sync::Arc;

use super::{Engine, EngineLimiter, LimiterSpec, StoreError};
use crate::config::RedisConfig;

/// A Redis store: one multiplexed connection shared by all its limiters and keys.
pub struct RedisEngine {}

impl RedisEngine {
    /// Prepares the engine; connects on first use.
    pub fn new(_config: &RedisConfig) -> Result<Self, StoreError> {
        Ok(RedisEngine {})
    }
}

impl Engine for RedisEngine {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn limiter(&self, _spec: LimiterSpec) -> Result<Arc<dyn EngineLimiter>, StoreError> {
        Err(StoreError::EngineUnavailable {
            engine: "redis".to_owned(),
        })
    }
}
