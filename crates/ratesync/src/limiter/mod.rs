//! `Limiter`: the API of one configured limiter (`docs/design.md#calls`).
//!
//! - `try_acquire`: one attempt, never waits. Its future is decided on its first
//!   poll when the store answers at once (the memory engine).
//! - `try_acquire_now`: the same attempt without an async runtime, for a store that
//!   decides in this process; `None` for one that must be asked over the network.
//! - `acquire`: waits until admitted or until the timeout (explicit, else the
//!   limiter's `timeout`, else forever). A rate refusal sleeps exactly its
//!   retry-after; a concurrency refusal waits for a release (or a bounded poll).
//!   Dropping a waiting `acquire` consumes nothing: only an admission writes state.
//! - `state`: the current decision, consuming nothing. `reset`: forget state.
//! - [`try_acquire_all`] / [`acquire_all`]: several calls, all or nothing.
//!
//! Every call takes an optional key (`limiter.key("user-1")`) and cost
//! (`.cost(3)`); the empty key is the limiter-wide key.

mod all;
mod attempt;
mod permit;
mod resolver;
mod wait;
mod waiters;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use self::all::{acquire_all, try_acquire_all};
pub use self::attempt::TryAcquire;
pub use self::permit::Permit;
pub use self::resolver::{KeyRule, ResolveFn, Resolver, MAX_RESOLVED_RULES};

use self::permit::{HeldSlot, Reservation};
use self::resolver::Resolved;
use self::waiters::Waiters;
use crate::algorithm::{check_cost, LeaseId, Policy, RateQuota, Receipt, Rule};
use crate::config::{KeyOverride, LimiterConfig};
use crate::decision::Decision;
use crate::engine::memory::MemoryLimiter;
use crate::error::{AcquireError, SettleError};
use crate::metrics::{LimiterMetrics, LogThrottle};
use crate::store::{EngineLimiter, LimiterSpec, ReleaseSignal, StoreError, StoreRuntime};

/// A handle on one configured limiter. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<LimiterInner>,
}

pub(crate) struct LimiterInner {
    name: Arc<str>,
    config: LimiterConfig,
    policy: Policy,
    engine: Arc<dyn EngineLimiter>,
    /// The same limiter when its store decides in this process (the memory engine),
    /// called directly by an attempt: the hot path of a decision, with no dynamic
    /// call, future or copy of an answer around it (`docs/design.md#calls`). The one
    /// place the in-process path is chosen; everything else goes through `engine`.
    in_process: Option<Arc<MemoryLimiter>>,
    /// The rule as users configured it, computed once: Python reads it with every
    /// result.
    quota: Option<RateQuota>,
    /// The largest cost the policy can ever admit (its rule's capacity; any without
    /// a rule).
    max_cost: u32,
    store: Arc<StoreRuntime>,
    waiters: Arc<Waiters>,
    metrics: LimiterMetrics,
    /// Fail-open admissions are logged, at most once per interval.
    fail_open_log: LogThrottle,
    /// The limiters deciding the keys of its overrides; `None` without any, so that
    /// routing a key costs one check (`docs/design.md#overrides`).
    overrides: Option<Box<Overrides>>,
    /// Set once a reload has replaced (or removed) this limiter: calls through
    /// handles taken before go to its successor, while its permits stay its own
    /// (`docs/design.md#hot-reload`).
    successor: OnceLock<Arc<LimiterInner>>,
    /// A removed limiter's successor: it refuses every call as not configured (its
    /// `max_cost` is 0, so the check every call makes is the only one).
    removed: bool,
    /// Wakes `waiters` on releases in other processes: the store's listener routes
    /// to it only while this limiter holds it.
    releases: ReleaseSignal,
}

/// A limiter's overrides, each a limiter of the same name, store and waiters with its
/// own rule, and how a key finds the first that matches it.
struct Overrides {
    limiters: Vec<Arc<LimiterInner>>,
    /// Each exact key, with the first override listing it.
    exact: std::collections::HashMap<Box<str>, usize>,
    /// The prefixes, in override order.
    prefixes: Vec<(usize, Box<str>)>,
    /// The rules a resolver gives keys no override matches.
    resolved: Option<Resolved>,
}

impl Overrides {
    /// The override deciding `key`, if any: the first that matches it, else the
    /// resolver's rule for it.
    #[inline(never)]
    fn route(&self, key: &str) -> Option<&Arc<LimiterInner>> {
        let exact = self.exact.get(key).copied();
        let prefixed = self
            .prefixes
            .iter()
            .take_while(|(index, _)| exact.is_none_or(|first| *index < first))
            .find(|(_, prefix)| key.starts_with(&**prefix))
            .map(|(index, _)| *index);
        match prefixed.or(exact) {
            Some(index) => Some(&self.limiters[index]),
            None => self.resolved.as_ref()?.route(key),
        }
    }
}

impl Limiter {
    /// Limiter `name` of `config` on `store`. `previous`: the limiter it replaces on
    /// a reload (`docs/design.md#hot-reload`): on the same store, the keys a store
    /// keeps in the process carry over, and its waiters are woken by this one's
    /// releases.
    pub(crate) fn new(
        name: &str,
        config: LimiterConfig,
        store: Arc<StoreRuntime>,
        previous: Option<&Limiter>,
        resolver: Option<&Resolver>,
    ) -> Result<Self, StoreError> {
        let name: Arc<str> = name.into();
        let previous = previous
            .map(|limiter| limiter.inner.current())
            .filter(|previous| Arc::ptr_eq(&previous.store, &store));
        let waiters = previous.map_or_else(Default::default, |p| p.waiters.clone());
        let woken = waiters.clone();
        let releases = ReleaseSignal::new(move |key| woken.released(key));
        let before = previous.map(|p| &p.engine);
        let mut inner = LimiterInner::new(&name, config, &store, &waiters, releases, before)?;
        if !inner.config.overrides.is_empty() || resolver.is_some() {
            let resolved = resolver.map(|resolver| {
                let (name, config) = (name.clone(), inner.config.clone());
                let (store, waiters) = (store.clone(), waiters.clone());
                let before = previous.and_then(|p| p.overrides.as_ref()?.resolved.as_ref());
                Resolved::new(resolver.clone(), before, move |rule, before| {
                    let config = config.with_rule(rule.rule, rule.max_concurrent);
                    let signal = ReleaseSignal::detached();
                    LimiterInner::new(&name, config, &store, &waiters, signal, before)
                })
            });
            let mut overrides = Overrides {
                limiters: Vec::new(),
                exact: std::collections::HashMap::new(),
                prefixes: Vec::new(),
                resolved,
            };
            for (index, over) in inner.config.overrides.iter().enumerate() {
                // The limiter's own signal wakes the waiters they share. An override
                // for the same keys as before keeps their state.
                let config = inner.config.overridden(over);
                let before = previous
                    .and_then(|p| p.override_for(over))
                    .map(|o| &o.engine);
                let signal = ReleaseSignal::detached();
                let limiter = LimiterInner::new(&name, config, &store, &waiters, signal, before)?;
                overrides.limiters.push(Arc::new(limiter));
                for key in &over.keys {
                    overrides.exact.entry(key.as_str().into()).or_insert(index);
                }
                if let Some(prefix) = &over.key_prefix {
                    overrides.prefixes.push((index, prefix.as_str().into()));
                }
            }
            inner.overrides = Some(Box::new(overrides));
        }
        Ok(Limiter {
            inner: Arc::new(inner),
        })
    }

    /// Hands this limiter's calls over to `next` (a reload rebuilt it), or with
    /// `None` retires it (a reload removed it): handles taken before follow
    /// (`docs/design.md#hot-reload`).
    pub(crate) fn replace_with(&self, next: Option<&Limiter>) {
        self.inner.current().replace_with(next);
    }

    /// The store this limiter decides in now.
    pub(crate) fn store(&self) -> &Arc<StoreRuntime> {
        &self.inner.current().store
    }

    /// The limiter's configured name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Id of the store the limiter decides in.
    pub fn store_id(&self) -> &str {
        &self.inner.current().store.id
    }

    /// The engine of that store (`"memory"`, `"redis"`, ...).
    pub fn engine_name(&self) -> &'static str {
        self.inner.current().store.engine.name()
    }

    /// The limiter's validated configuration.
    pub fn config(&self) -> &LimiterConfig {
        &self.inner.current().config
    }

    /// The rule and concurrency cap the store enforces.
    pub fn policy(&self) -> &Policy {
        &self.inner.current().policy
    }

    /// The rule as the quota users configured (`None` without a rate): what the
    /// HTTP headers show, where [`Decision::limit`] is what decisions count (a token
    /// bucket's burst).
    pub fn quota(&self) -> Option<RateQuota> {
        self.inner.current().quota
    }

    /// A call on one key.
    #[inline]
    pub fn key<'a>(&'a self, key: &'a str) -> Call<'a> {
        self.call_on(key)
    }

    /// A call of a given cost on the limiter-wide key.
    pub fn cost(&self, cost: u32) -> Call<'_> {
        self.call().cost(cost)
    }

    #[inline]
    fn call(&self) -> Call<'_> {
        self.call_on("")
    }

    /// A call on `key`, decided by the limiter that decides it now (routed once).
    #[inline(always)]
    fn call_on<'a>(&'a self, key: &'a str) -> Call<'a> {
        let inner = self.inner.route(key);
        Call {
            limiter: self,
            inner,
            key,
            cost: 1,
            timeout: inner.config.timeout,
            settleable: false,
            wait_out: false,
        }
    }

    /// Waits until admitted, up to the limiter's `timeout`.
    pub async fn acquire(&self) -> Result<Permit, AcquireError> {
        self.call().acquire().await
    }

    /// One attempt, never waits.
    pub fn try_acquire(&self) -> TryAcquire<'_> {
        self.call().try_acquire()
    }

    /// One attempt decided now, without an async runtime, when the store decides in
    /// this process (see [`Call::try_acquire_now`]).
    #[inline]
    pub fn try_acquire_now(&self) -> Option<Result<Permit, AcquireError>> {
        self.call().try_acquire_now()
    }

    /// The current decision for a cost of 1, consuming nothing. A store that cannot
    /// answer is an error here whatever the failure policy.
    pub async fn state(&self) -> Result<Decision, AcquireError> {
        self.call().state().await
    }

    /// Forgets the state of every key of this limiter (its overrides' keys too).
    pub async fn reset(&self) -> Result<(), AcquireError> {
        for inner in self.inner.current().with_overrides() {
            inner.reset(None).await?;
        }
        Ok(())
    }

    /// The rule as the quota users configured for `key` (its override's, else the
    /// limiter's; `None` without a rate): what the HTTP headers show for it.
    pub fn quota_for(&self, key: &str) -> Option<RateQuota> {
        self.inner.route(key).quota
    }

    /// Whether some keys have rules of their own (`docs/design.md#overrides`).
    pub fn has_overrides(&self) -> bool {
        self.inner.current().overrides.is_some()
    }

    /// The rule and cap that decide `key` (its override's, else the limiter's).
    pub fn policy_for(&self, key: &str) -> &Policy {
        &self.inner.route(key).policy
    }
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("name", &self.inner.name)
            .field("store", &self.inner.store.id)
            .field("policy", &self.inner.policy)
            .finish()
    }
}

/// One call's options: key, cost and timeout. Built from [`Limiter::key`] or
/// [`Limiter::cost`]; ends with `acquire`, `try_acquire`, `state` or `reset`.
#[derive(Clone, Copy)]
#[must_use = "a Call does nothing until acquire, try_acquire, state or reset"]
pub struct Call<'a> {
    limiter: &'a Limiter,
    /// The limiter deciding `key`: `limiter`'s, or its override's for the key.
    inner: &'a Arc<LimiterInner>,
    key: &'a str,
    cost: u32,
    timeout: Option<Duration>,
    settleable: bool,
    wait_out: bool,
}

impl<'a> Call<'a> {
    /// The key whose state is used (default: the limiter-wide key).
    #[inline]
    pub fn key(mut self, key: &'a str) -> Self {
        self.key = key;
        self.inner = self.limiter.inner.route(key);
        self
    }

    /// Units this call takes (default 1).
    pub fn cost(mut self, cost: u32) -> Self {
        self.cost = cost;
        self
    }

    /// The cost is an estimate, settled when the work is done: the permit of an
    /// admission can give back what the work did not use ([`Permit::settle`]). Off
    /// by default, since a permit that can settle carries its limiter and key
    /// (`docs/design.md#settle`).
    pub fn settleable(mut self) -> Self {
        self.settleable = true;
        self
    }

    /// Wait bound for `acquire`: `Some(ZERO)` never waits, `None` waits forever.
    /// Defaults to the limiter's configured `timeout`.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// `acquire` waits out its whole timeout even when the store's retry-after says
    /// the call cannot be admitted within it, re-trying meanwhile, since a reset, a
    /// settle or a release may free room early: admitted as soon as a re-try is,
    /// else `TimedOut` at the deadline. The contract of rate-sync's
    /// `try_acquire(timeout)`, which the Python package keeps
    /// (`docs/design.md#waiting`). Off by default: a Rust caller learns at once that
    /// the wait cannot succeed, with the retry-after to tell its own client.
    pub fn wait_out_timeout(mut self) -> Self {
        self.wait_out = true;
        self
    }

    /// The limiter this call is on.
    pub fn limiter(&self) -> &'a Limiter {
        self.limiter
    }

    /// Waits until admitted or the timeout passes.
    pub async fn acquire(self) -> Result<Permit, AcquireError> {
        wait::acquire(self).await
    }

    /// One attempt, never waits.
    #[inline]
    pub fn try_acquire(self) -> TryAcquire<'a> {
        TryAcquire::new(self)
    }

    /// One attempt, decided now when the store answers at once (a memory store
    /// always does): the synchronous `try_acquire`, for code without an async
    /// runtime. `None` when the store must be asked over the network: then
    /// `try_acquire().await` (the attempt is not made twice; nothing was asked).
    #[inline]
    pub fn try_acquire_now(self) -> Option<Result<Permit, AcquireError>> {
        let memory = self.inner.in_process.as_deref()?;
        self.decide_in_process(memory, Some)
    }

    /// The decision this call would get now, consuming nothing.
    pub async fn state(self) -> Result<Decision, AcquireError> {
        self.inner.peek(self.key, self.cost).await
    }

    /// Forgets this key's state.
    pub async fn reset(self) -> Result<(), AcquireError> {
        self.inner.reset(Some(self.key)).await
    }
}

impl LimiterInner {
    /// A limiter deciding by `config`'s policy in `store`, its waiters `waiters` woken
    /// by `releases` from other processes.
    fn new(
        name: &Arc<str>,
        config: LimiterConfig,
        store: &Arc<StoreRuntime>,
        waiters: &Arc<Waiters>,
        releases: ReleaseSignal,
        previous: Option<&Arc<dyn EngineLimiter>>,
    ) -> Result<Self, StoreError> {
        let policy = config.policy();
        let spec = LimiterSpec {
            id: name.clone(),
            policy,
            releases: releases.clone(),
        };
        let engine = match previous {
            Some(previous) => store.engine.limiter_replacing(spec, previous)?,
            None => store.engine.limiter(spec)?,
        };
        let in_process = (engine.clone() as Arc<dyn std::any::Any + Send + Sync>)
            .downcast::<MemoryLimiter>()
            .ok();
        Ok(LimiterInner {
            metrics: LimiterMetrics::new(name, &store.id),
            fail_open_log: LogThrottle::default(),
            name: name.clone(),
            config,
            policy,
            engine,
            in_process,
            quota: policy.rule.as_ref().map(Rule::quota),
            max_cost: policy
                .rule
                .as_ref()
                .map_or(u32::MAX, |rule| rule.capacity()),
            store: store.clone(),
            waiters: waiters.clone(),
            overrides: None,
            successor: OnceLock::new(),
            removed: false,
            releases,
        })
    }

    /// What a handle on this limiter decides with now: the limiter itself, or after a
    /// reload its successor (`docs/design.md#hot-reload`). One atomic load when no
    /// reload ever happened.
    #[inline(always)]
    fn current(self: &Arc<Self>) -> &Arc<Self> {
        let mut this = self;
        while let Some(next) = this.successor.get() {
            this = next;
        }
        this
    }

    /// Hands this limiter's calls over to `next` (a reload rebuilt it), or with
    /// `None` retires it (a reload removed it).
    pub(crate) fn replace_with(self: &Arc<Self>, next: Option<&Limiter>) {
        let next = match next {
            Some(next) => next.inner.clone(),
            None => Arc::new(LimiterInner {
                name: self.name.clone(),
                config: self.config.clone(),
                policy: self.policy,
                engine: self.engine.clone(),
                in_process: None,
                quota: self.quota,
                max_cost: 0,
                store: self.store.clone(),
                waiters: self.waiters.clone(),
                metrics: self.metrics.clone(),
                fail_open_log: LogThrottle::default(),
                overrides: None,
                successor: OnceLock::new(),
                removed: true,
                releases: self.releases.clone(),
            }),
        };
        // The one place successors are set, under the registry's reload: once.
        let _ = self.successor.set(next);
    }

    /// The limiter deciding `key` now: an override's, else this one (after a reload,
    /// its successor's).
    #[inline(always)]
    fn route(self: &Arc<Self>, key: &str) -> &Arc<Self> {
        let this = self.current();
        match &this.overrides {
            None => this,
            Some(overrides) => overrides.route(key).unwrap_or(this),
        }
    }

    /// The limiter of this limiter's override for exactly the keys of `over`.
    fn override_for(&self, over: &KeyOverride) -> Option<&Arc<Self>> {
        let overrides = self.overrides.as_deref()?;
        let index = self
            .config
            .overrides
            .iter()
            .position(|mine| mine.keys == over.keys && mine.key_prefix == over.key_prefix)?;
        overrides.limiters.get(index)
    }

    /// This limiter and those of its overrides (and of its resolver's rules).
    fn with_overrides(self: &Arc<Self>) -> impl Iterator<Item = &Arc<Self>> {
        let overrides = self.overrides.as_deref();
        let listed = overrides.into_iter().flat_map(|o| o.limiters.iter());
        let resolved = overrides
            .and_then(|o| o.resolved.as_ref())
            .into_iter()
            .flat_map(Resolved::limiters);
        std::iter::once(self).chain(listed).chain(resolved)
    }

    /// One comparison on the way to every decision: `1 <= cost <= max_cost`
    /// (`cost - 1` wraps to the largest value for 0); the reason comes out of line.
    #[inline]
    fn check_cost(&self, cost: u32) -> Result<(), AcquireError> {
        match cost.wrapping_sub(1) < self.max_cost {
            true => Ok(()),
            false => Err(self.invalid_cost(cost)),
        }
    }

    /// What every call on a limiter a reload removed gets.
    #[cold]
    fn not_configured(&self) -> AcquireError {
        AcquireError::NotConfigured {
            limiter: self.name.clone(),
        }
    }

    #[cold]
    #[inline(never)]
    fn invalid_cost(&self, cost: u32) -> AcquireError {
        if self.removed {
            return self.not_configured();
        }
        let source = match check_cost(&self.policy, cost) {
            Err(source) => source,
            Ok(()) => unreachable!("max_cost is the policy's capacity"),
        };
        AcquireError::InvalidCost {
            limiter: self.name.clone(),
            source,
        }
    }

    #[inline]
    fn new_lease_id(&self) -> Option<LeaseId> {
        self.policy.concurrency.map(|_| LeaseId::random())
    }

    /// Turns a store's answer into a permit or a refusal, applying the failure
    /// policy. `settleable`: the cost of a call whose permit can settle it.
    fn conclude(
        self: &Arc<Self>,
        key: &str,
        lease: Option<LeaseId>,
        settleable: Option<u32>,
        result: Result<(Decision, Receipt), StoreError>,
    ) -> Result<Permit, AcquireError> {
        let (permit, receipt) = match result {
            Ok((decision, receipt)) => {
                let permit = match self.config.shadow {
                    false => self.decided::<false>(key, lease, decision),
                    true => self.decided::<true>(key, lease, decision),
                };
                (permit?, Some(receipt))
            }
            // Fail-open took nothing from the store: there is nothing to settle.
            Err(error) => (Permit::new(self.on_store_error(error)?, None), None),
        };
        Ok(match settleable {
            Some(cost) => self.reserved(permit, key, cost, receipt),
            None => permit,
        })
    }

    /// `permit`, able to settle the `cost` it took (`receipt`: where the store
    /// recorded it; `None` when nothing was taken). A shadow-mode admission took
    /// nothing, whatever the store recorded of the refusal.
    #[cold]
    #[inline(never)]
    fn reserved(
        self: &Arc<Self>,
        permit: Permit,
        key: &str,
        cost: u32,
        receipt: Option<Receipt>,
    ) -> Permit {
        let receipt = receipt.filter(|_| permit.decision().shadow_denied_by().is_none());
        permit.with_reservation(Reservation::new(self.clone(), key, cost, receipt))
    }

    /// A decision as a permit or a refusal (`SHADOW`: for a limiter in shadow mode,
    /// whose refusals are admissions). Inlined: on the in-process path the decision
    /// goes from the store's arithmetic straight into the permit, never copied
    /// through memory on the way (`docs/design.md#calls`). Shadow mode is a constant
    /// here, not a test: a refusal that may turn into a permit makes the compiler
    /// build every permit in memory, which made every admission 70 % slower.
    #[inline(always)]
    fn decided<const SHADOW: bool>(
        self: &Arc<Self>,
        key: &str,
        lease: Option<LeaseId>,
        decision: Decision,
    ) -> Result<Permit, AcquireError> {
        match decision.allowed() {
            true => Ok(self.admitted(key, lease, decision)),
            false if SHADOW => Ok(self.shadow_admitted(decision)),
            false => Err(self.denied(decision)),
        }
    }

    /// A refusal of a limiter in shadow mode (`docs/design.md#shadow-mode`): admitted,
    /// holding nothing (the refusal consumed nothing, so neither does this), counted
    /// and logged at debug level.
    #[cold]
    #[inline(never)]
    fn shadow_admitted(&self, refusal: Decision) -> Permit {
        let decision = refusal.shadowed();
        self.metrics.admitted.increment(1);
        self.metrics.shadow_denied.increment(1);
        tracing::debug!(
            limiter = %self.name,
            denied_by = ?decision.shadow_denied_by(),
            retry_after = ?decision.retry_after(),
            "shadow mode: admitted a call the limit would refuse"
        );
        Permit::new(decision, None)
    }

    /// The permit of an admission: it holds the slot when a lease was taken.
    #[inline(always)]
    fn admitted(self: &Arc<Self>, key: &str, lease: Option<LeaseId>, decision: Decision) -> Permit {
        self.metrics.admitted.increment(1);
        let slot = lease.map(|id| self.hold_slot(key, id));
        Permit::new(decision, slot)
    }

    #[inline(always)]
    fn denied(&self, decision: Decision) -> AcquireError {
        self.metrics.denied.increment(1);
        AcquireError::Denied {
            limiter: self.name.clone(),
            decision,
        }
    }

    /// The failure policy (`docs/design.md#failure-policy`): `fail_closed` limiters
    /// report the outage; the others admit, counted and logged.
    #[cold]
    #[inline(never)]
    fn on_store_error(&self, source: StoreError) -> Result<Decision, AcquireError> {
        if self.config.fail_closed {
            return Err(self.store_unavailable(source));
        }
        self.metrics.store_errors.increment(1);
        self.metrics.fail_open.increment(1);
        if let Some(suppressed) = self.fail_open_log.allow() {
            tracing::warn!(
                limiter = %self.name,
                store = %self.store.id,
                error = %source,
                suppressed,
                "store failed; admitting without a decision (fail-open)"
            );
        }
        Ok(Decision::fail_open(self.policy.limit()))
    }

    /// The slot an admission with a lease holds until its permit is dropped.
    #[inline(never)]
    fn hold_slot(self: &Arc<Self>, key: &str, id: LeaseId) -> Box<HeldSlot> {
        self.metrics.permits_in_use.increment(1.0);
        if let Some(cc) = self.policy.concurrency {
            self.store.leases.hold(
                &self.store,
                id,
                self.engine.clone(),
                key,
                Duration::from_nanos(cc.lease_ttl),
            );
        }
        Box::new(HeldSlot::new(self.clone(), key, id))
    }

    pub(crate) async fn release_slot(&self, key: &str, id: LeaseId) {
        self.store.leases.forget(id);
        self.metrics.permits_in_use.decrement(1.0);
        let released = self.store.ask(self.engine.release(key, id)).await;
        if let Err(error) = released {
            // The lease expires after `lease_ttl` by itself; nothing is lost for long.
            self.metrics.store_errors.increment(1);
            tracing::warn!(limiter = %self.name, %error, "could not release a concurrency lease; it will expire");
        }
        self.waiters.released(key);
    }

    /// Gives back `cost` units of the admission that issued `receipt` (a settle).
    async fn give_back(&self, key: &str, cost: u32, receipt: Receipt) -> Result<(), SettleError> {
        let refunded = self
            .store
            .ask(self.engine.refund(key, cost, receipt, None))
            .await;
        refunded.map_err(|source| SettleError::Store(self.store_unavailable(source)))
    }

    /// A peek reports what the store says; when the store cannot say, that is an
    /// error whatever the failure policy (fail-open admits attempts, it does not
    /// invent state).
    async fn peek(&self, key: &str, cost: u32) -> Result<Decision, AcquireError> {
        self.check_cost(cost)?;
        let result = self.store.ask(self.engine.peek(key, cost)).await;
        result.map_err(|source| self.store_unavailable(source))
    }

    async fn reset(&self, key: Option<&str>) -> Result<(), AcquireError> {
        // A removed limiter's keys are no longer its to forget: a limiter of the same
        // name may come back with a reload and find them (`docs/design.md#hot-reload`).
        if self.removed {
            return Err(self.not_configured());
        }
        let result = self.store.ask(self.engine.reset(key)).await;
        result.map_err(|source| self.store_unavailable(source))
    }

    fn store_unavailable(&self, source: StoreError) -> AcquireError {
        self.metrics.store_errors.increment(1);
        AcquireError::StoreUnavailable {
            limiter: self.name.clone(),
            store: self.store.id.clone(),
            source,
        }
    }
}
