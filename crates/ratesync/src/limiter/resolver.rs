//! Rules that a function gives keys (`docs/design.md#overrides`): tiers that live
//! elsewhere (a database of plans) rather than in the configuration. The function's
//! answer for a key is cached, in a bounded cache; each distinct rule it gives is
//! one limiter of the limiter's name, built the first time it is given.

use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use super::LimiterInner;
use crate::algorithm::Rule;
use crate::metrics::LogThrottle;
use crate::store::{EngineLimiter, StoreError};

/// A key's own rule, as a [`Resolver`] gives it: the limiter's rule replaced (`None`:
/// no rate, only the cap) and its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyRule {
    /// The key's rate rule; `None`: no rate, only the cap.
    pub rule: Option<Rule>,
    /// The key's concurrency cap; `None`: no cap.
    pub max_concurrent: Option<NonZeroU32>,
}

/// The rule of a key, or `None` for the limiter's own.
pub type ResolveFn = dyn Fn(&str) -> Option<KeyRule> + Send + Sync;

/// A function giving keys rules of their own, with the number of keys whose answer is
/// kept (`Registry::with_resolver`). A key's answer is asked once while it stays
/// in the cache: a changed answer applies once the key has left it.
#[derive(Clone)]
pub struct Resolver {
    resolve: Arc<ResolveFn>,
    cache_size: usize,
}

impl Resolver {
    /// A resolver of `resolve`, keeping the answers of up to `cache_size` keys.
    pub fn new(
        cache_size: usize,
        resolve: impl Fn(&str) -> Option<KeyRule> + Send + Sync + 'static,
    ) -> Self {
        Resolver {
            resolve: Arc::new(resolve),
            cache_size: cache_size.max(1),
        }
    }
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("cache_size", &self.cache_size)
            .finish_non_exhaustive()
    }
}

/// The most distinct rules one resolver may give: each is a limiter kept for the
/// limiter's life. Past it, a key gets the limiter's own rule (logged).
pub const MAX_RESOLVED_RULES: usize = 256;

/// Builds the limiter of a rule.
/// Builds the limiter of a rule, from the engine limiter that decided it before a
/// reload, when there was one.
type Build = dyn Fn(KeyRule, Option<&Arc<dyn EngineLimiter>>) -> Result<LimiterInner, StoreError>
    + Send
    + Sync;

/// A resolver at work for one limiter.
pub(super) struct Resolved {
    resolver: Resolver,
    /// Each key's answer: 0 for the limiter's own rule, `i + 1` for `limiters[i]`.
    answers: quick_cache::sync::Cache<String, u16>,
    limiters: Box<[OnceLock<Arc<LimiterInner>>]>,
    /// The rules of `limiters`, in order; taken only when a key's answer is new.
    rules: Mutex<Vec<KeyRule>>,
    build: Box<Build>,
    refused: LogThrottle,
    /// The engine limiters of the rules given before the last reload: a rule given
    /// again takes its keys' state over from its own (`docs/design.md#overrides`).
    before: Vec<(KeyRule, Arc<dyn EngineLimiter>)>,
}

impl Resolved {
    /// The rules of `resolver`, each built by `build` when first given; a rebuild on
    /// a reload takes over the rules `previous` gave (its state, where the store keeps
    /// it in the process).
    pub(super) fn new(
        resolver: Resolver,
        previous: Option<&Resolved>,
        build: impl Fn(KeyRule, Option<&Arc<dyn EngineLimiter>>) -> Result<LimiterInner, StoreError>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        Resolved {
            answers: quick_cache::sync::Cache::new(resolver.cache_size),
            resolver,
            limiters: (0..MAX_RESOLVED_RULES).map(|_| OnceLock::new()).collect(),
            rules: Mutex::new(Vec::new()),
            build: Box::new(build),
            refused: LogThrottle::default(),
            before: previous.map(Resolved::engines).unwrap_or_default(),
        }
    }

    /// The engine limiter of every rule given so far, and of those carried from before
    /// the last reload that were not given again.
    fn engines(&self) -> Vec<(KeyRule, Arc<dyn EngineLimiter>)> {
        let rules = self.rules.lock();
        let built = rules.iter().zip(self.limiters());
        let mut engines: Vec<_> = built.map(|(r, l)| (*r, l.engine.clone())).collect();
        for (rule, engine) in &self.before {
            if !rules.contains(rule) {
                engines.push((*rule, engine.clone()));
            }
        }
        engines
    }

    /// The limiter of `key`'s own rule, if the resolver gives it one.
    pub(super) fn route(&self, key: &str) -> Option<&Arc<LimiterInner>> {
        let answer = match self.answers.get(key) {
            Some(answer) => answer,
            None => {
                let answer = self.answer(key);
                self.answers.insert(key.to_owned(), answer);
                answer
            }
        };
        let index = usize::from(answer).checked_sub(1)?;
        self.limiters[index].get()
    }

    /// The limiters built so far.
    pub(super) fn limiters(&self) -> impl Iterator<Item = &Arc<LimiterInner>> {
        self.limiters.iter().map_while(OnceLock::get)
    }

    /// Asks the resolver (never under a lock: it may be slow) and finds or builds the
    /// limiter of its answer.
    fn answer(&self, key: &str) -> u16 {
        let Some(rule) = (self.resolver.resolve)(key) else {
            return 0;
        };
        if rule.rule.is_none() && rule.max_concurrent.is_none() {
            return self.refuse("a rule without a rate and without max_concurrent");
        }
        let mut rules = self.rules.lock();
        if let Some(index) = rules.iter().position(|known| *known == rule) {
            return index as u16 + 1;
        }
        if rules.len() == MAX_RESOLVED_RULES {
            return self.refuse("more distinct rules than MAX_RESOLVED_RULES (256)");
        }
        let before = self.before.iter().find(|(known, _)| *known == rule);
        match (self.build)(rule, before.map(|(_, engine)| engine)) {
            Ok(limiter) => {
                let index = rules.len();
                // Set once, under the lock, before anyone can be told the index.
                let _ = self.limiters[index].set(Arc::new(limiter));
                rules.push(rule);
                index as u16 + 1
            }
            Err(error) => self.refuse(&format!("its store refused the rule: {error}")),
        }
    }

    /// A key whose answer cannot be used gets the limiter's own rule; logged, at most
    /// once per interval.
    #[cold]
    fn refuse(&self, why: &str) -> u16 {
        if let Some(suppressed) = self.refused.allow() {
            tracing::warn!(
                suppressed,
                "a resolver's rule is not used ({why}); the limiter's own applies"
            );
        }
        0
    }
}
