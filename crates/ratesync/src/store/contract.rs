//! The engine contract: what a store must do for ratesync to limit through it
//! (`docs/design.md#the-engine-contract`).
//!
//! A store's [`Engine`] hands out one [`EngineLimiter`] per configured limiter; that
//! handle makes every decision for the limiter's keys. The contract every engine keeps:
//!
//! - **Atomic inside the store.** `acquire` reads the key's state, decides with the
//!   functions of [`crate::algorithm`] (or a faithful port of them to Lua or SQL) and
//!   writes the new state as one indivisible step in the store: two processes can
//!   never both take the last unit. Rate and concurrency are taken together or not at
//!   all; a refusal writes nothing that changes a later decision.
//! - **Groups all or nothing.** [`Engine::acquire_all`] admits every member of a group
//!   or none; engines with multi-key atomicity decide the group in one step, the
//!   others reserve in order and refund (the default method).
//! - **Refunds never give back more than was taken** ([`EngineLimiter::refund`]).
//! - **The store's clock.** "Now" is read by the store at decision time (Redis `TIME`,
//!   PostgreSQL `clock_timestamp()`, NATS server timestamps, the memory engine's
//!   [`crate::Clock`]), never by the calling host.
//! - **Keys expire** once their state equals a fresh key's; **keys are opaque** (any
//!   string, the empty one being the limiter-wide key) and cannot escape their
//!   namespace.
//! - **Bounded calls.** Every call resolves within the engine's [`Engine::deadline`]
//!   or is cut there by the store runtime; engines never panic on store input.
//! - **Answers at once when they can.** A call decided in this process without I/O
//!   (the memory engine) is [`StoreCall::Ready`]; the store runtime takes it without
//!   a future, a deadline or a task. Everything else is [`StoreCall::Pending`].
//! - **Leases.** `acquire` with a lease id takes a concurrency slot that expires
//!   `lease_ttl` later unless renewed; `release` and `renew` of an unknown or expired
//!   lease change nothing. A release seen from another process is reported through
//!   the limiter's [`ReleaseSignal`].

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{ready, BoxFuture, Either, Ready};

use super::ReleaseSignal;
use crate::algorithm::{GroupDecision, LeaseId, Policy, Receipt};
use crate::decision::Decision;

/// The future of a call that crosses the network.
pub type StoreFuture<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// An engine's answer to a call: known at once, or later.
///
/// A `Ready` call was carried out when it was made (the memory engine decides as it
/// builds its answer); a `Pending` one does nothing until it is awaited. So a wrapper
/// that may refuse a call must make the inner call only once it lets it through.
#[must_use = "a pending store call does nothing until it is awaited"]
pub enum StoreCall<'a, T> {
    /// Decided in this process, without I/O.
    Ready(Result<T, StoreError>),
    /// To be awaited (under the store's deadline and circuit breaker).
    Pending(StoreFuture<'a, T>),
}

impl<'a, T> StoreCall<'a, T> {
    /// A call answered at once.
    pub fn ready(value: T) -> Self {
        StoreCall::Ready(Ok(value))
    }

    /// A call answered by `future`.
    pub fn pending(
        future: impl std::future::Future<Output = Result<T, StoreError>> + Send + 'a,
    ) -> Self {
        StoreCall::Pending(Box::pin(future))
    }
}

/// `.await` on a store call gives its answer, at once or when it comes (without a
/// deadline: the store runtime adds one).
impl<'a, T: 'a> std::future::IntoFuture for StoreCall<'a, T> {
    type Output = Result<T, StoreError>;
    type IntoFuture = Either<Ready<Result<T, StoreError>>, StoreFuture<'a, T>>;

    fn into_future(self) -> Self::IntoFuture {
        match self {
            StoreCall::Ready(result) => Either::Left(ready(result)),
            StoreCall::Pending(future) => Either::Right(future),
        }
    }
}

/// A coordination backend: memory, Redis, PostgreSQL, NATS.
pub trait Engine: Send + Sync + 'static {
    /// The configuration name of the engine (`"memory"`, `"redis"`, ...).
    fn name(&self) -> &'static str;

    /// The bound on every call to this store: Redis's `socket_timeout`, a default for
    /// the others. The store runtime cuts any call there.
    fn deadline(&self) -> Duration {
        DEFAULT_DEADLINE
    }

    /// The handle through which all decisions of limiter `spec.id` are made. Called
    /// once per limiter when a registry is built.
    fn limiter(&self, spec: LimiterSpec) -> Result<Arc<dyn EngineLimiter>, StoreError>;

    /// The handle of limiter `spec.id` replacing `previous` (the same limiter before a
    /// reload, on this engine). A store that keeps state outside the process finds it
    /// under the same id, as [`Engine::limiter`] does; one that keeps it in the
    /// process carries `previous`'s keys over when the new policy reads them the same
    /// way (`docs/design.md#hot-reload`).
    fn limiter_replacing(
        &self,
        spec: LimiterSpec,
        previous: &Arc<dyn EngineLimiter>,
    ) -> Result<Arc<dyn EngineLimiter>, StoreError> {
        let _ = previous;
        self.limiter(spec)
    }

    /// A cheap call that succeeds when the store answers; the circuit breaker probes
    /// with it in the background while the circuit is open.
    fn ping(&self) -> StoreCall<'_, ()> {
        StoreCall::ready(())
    }

    /// Admits every member or none (`docs/design.md#groups`). Members are distinct
    /// (limiter, key) pairs of limiters this engine made.
    ///
    /// The default reserves each member in order and, when one refuses, refunds
    /// those already taken: for engines without multi-key atomicity (NATS). Other
    /// processes can see a reservation between its taking and its refund.
    fn acquire_all<'a>(&'a self, members: &'a [GroupMember<'a>]) -> StoreCall<'a, GroupDecision> {
        StoreCall::pending(super::groups::reserve_in_order(members))
    }
}

/// What an engine needs to know about a limiter.
#[derive(Debug, Clone)]
pub struct LimiterSpec {
    /// The limiter's configured name; engines use it to namespace keys.
    pub id: Arc<str>,
    /// The rule and concurrency cap to enforce.
    pub policy: Policy,
    /// Where to report releases observed from other processes. Engines route to it
    /// only while its maker holds it (`ReleaseSignal::route`).
    pub releases: ReleaseSignal,
}

/// One member of a group: a call on one (limiter, key).
#[derive(Clone, Copy)]
pub struct GroupMember<'a> {
    /// The member's limiter, made by the engine deciding the group.
    pub limiter: &'a dyn EngineLimiter,
    /// The key (`""` for the limiter-wide key).
    pub key: &'a str,
    /// Units the member takes.
    pub cost: u32,
    /// The lease to take a concurrency slot under, as in [`EngineLimiter::acquire`].
    pub lease: Option<LeaseId>,
}

/// Decisions for one limiter, on one store.
pub trait EngineLimiter: Any + Send + Sync {
    /// Decides an attempt of `cost` on `key` and consumes it when admitted; with a
    /// lease id, also takes a concurrency slot under that id, atomically. The
    /// receipt says where the admission left its mark, for a refund.
    fn acquire<'a>(
        &'a self,
        key: &'a str,
        cost: u32,
        lease: Option<LeaseId>,
    ) -> StoreCall<'a, (Decision, Receipt)>;

    /// The decision an attempt of `cost` would get now, consuming nothing.
    fn peek<'a>(&'a self, key: &'a str, cost: u32) -> StoreCall<'a, Decision>;

    /// Gives back the `cost` units of the admission that issued `receipt`, and its
    /// lease; never more than it took (`docs/design.md#refunds`).
    fn refund<'a>(
        &'a self,
        key: &'a str,
        cost: u32,
        receipt: Receipt,
        lease: Option<LeaseId>,
    ) -> StoreCall<'a, ()>;

    /// Gives back a concurrency slot. Unknown or expired leases are ignored.
    fn release<'a>(&'a self, key: &'a str, lease: LeaseId) -> StoreCall<'a, ()>;

    /// Extends a live lease by `lease_ttl` from now. `false` when it had expired.
    fn renew<'a>(&'a self, key: &'a str, lease: LeaseId) -> StoreCall<'a, bool>;

    /// Forgets the state of `key`, or of every key of this limiter when `None`.
    fn reset<'a>(&'a self, key: Option<&'a str>) -> StoreCall<'a, ()>;
}

impl dyn EngineLimiter {
    /// This limiter as the engine's own type, for the group calls of the engine that
    /// made it (`None` for a limiter of another engine).
    pub fn downcast<L: EngineLimiter>(&self) -> Option<&L> {
        (self as &dyn Any).downcast_ref()
    }
}

/// The deadline of a store call when the store's configuration sets none.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);

/// How long a client library may wait for one answer: a little under the store's
/// deadline, so that the engine sees its own timeout (and replaces a connection whose
/// server vanished) before the store runtime cancels the call.
pub fn client_timeout(deadline: Duration) -> Duration {
    deadline.mul_f64(0.9)
}

/// A store that could not give an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store's engine was not compiled in: its cargo feature is off.
    #[error("the `{engine}` engine is not available in this build of ratesync (build with the `{engine}` cargo feature)")]
    EngineUnavailable {
        /// The engine's configuration name (`redis`, `postgres`, `nats`).
        engine: String,
    },
    /// The call was cut at the store's deadline, given here
    /// (`docs/design.md#the-store-runtime`).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The store could not be reached, or the connection broke during the call.
    #[error("cannot reach the store: {0}")]
    Connection(String),
    /// The store answered with an error, or with an answer the engine cannot read;
    /// also a configuration the client library refuses.
    #[error("the store refused the call: {0}")]
    Backend(String),
    /// Refused without trying: the circuit breaker is open after repeated failures,
    /// and a background probe closes it when the store answers again
    /// (`docs/design.md#the-store-runtime`).
    #[error("circuit open after repeated store failures; retrying in the background")]
    CircuitOpen,
    /// A group given to an engine holds a limiter another engine made: a caller bug.
    #[error("a group member belongs to another store's engine")]
    ForeignLimiter,
}
