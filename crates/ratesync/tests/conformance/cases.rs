//! The cases of the conformance suite. Each reads like the sentence of `docs/design.md` it checks.

use std::sync::Arc;
use std::time::Duration;

use ratesync::algorithm::LeaseId;
use ratesync::store::{LimiterSpec, ReleaseSignal};
use ratesync::{AcquireError, DeniedBy, LimiterBuilder, SettleError};
use tokio::time::Instant;

use super::{advance, assert_about, limiter, registry, unique, Backend};

const MS: Duration = Duration::from_millis(1);

fn denied(result: Result<ratesync::Permit, AcquireError>) -> ratesync::Decision {
    match result {
        Err(AcquireError::Denied { decision, .. }) => decision,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// `docs/design.md#token-bucket`: `burst` at once, then one unit per `1/rate`.
pub async fn token_bucket_burst_then_spacing(b: &dyn Backend) {
    let api = limiter(b, LimiterBuilder::token_bucket("s", 10.0).burst(3));
    for remaining in [2, 1, 0] {
        let permit = api.try_acquire().await.expect("burst is available at once");
        assert_eq!(permit.decision().remaining(), remaining);
        assert_eq!(permit.decision().limit(), 3);
    }
    let refusal = denied(api.try_acquire().await);
    assert_eq!(refusal.denied_by(), Some(DeniedBy::Rate));
    assert_about(
        refusal.retry_after(),
        100 * MS,
        b.tolerance(),
        "retry-after",
    );
    advance(100 * MS).await;
    api.try_acquire().await.expect("one unit per interval");
    denied(api.try_acquire().await);
}

/// `docs/design.md#token-bucket`: retry-after is exact: just before it, refused; at it, admitted.
pub async fn token_bucket_retry_after_is_exact(b: &dyn Backend) {
    let api = limiter(b, LimiterBuilder::token_bucket("s", 4.0));
    api.try_acquire().await.unwrap();
    let retry = denied(api.try_acquire().await).retry_after();
    assert_about(retry, 250 * MS, b.tolerance(), "retry-after");
    let early = MS.max(b.tolerance());
    advance(retry - early).await;
    denied(api.try_acquire().await);
    advance(early).await;
    api.try_acquire().await.expect("admitted at retry-after");
}

/// `docs/design.md#sliding-window`: at most `limit` in any window; the oldest admission
/// leaving frees a unit.
pub async fn sliding_window_is_exact(b: &dyn Backend) {
    let login = limiter(b, LimiterBuilder::sliding_window("s", 3, 1.0));
    login.try_acquire().await.unwrap();
    advance(400 * MS).await;
    login.try_acquire().await.unwrap();
    login.try_acquire().await.unwrap();
    let refusal = denied(login.try_acquire().await);
    assert_about(
        refusal.retry_after(),
        600 * MS,
        b.tolerance(),
        "oldest leaves",
    );
    advance(600 * MS).await;
    let permit = login.try_acquire().await.expect("oldest admission left");
    assert_eq!(permit.decision().remaining(), 0);
    denied(login.try_acquire().await);
}

/// `docs/design.md#sliding-window`: retry-after = when the oldest admission in the
/// window leaves it.
pub async fn sliding_window_retry_after_is_exact(b: &dyn Backend) {
    let w = limiter(b, LimiterBuilder::sliding_window("s", 2, 0.5));
    w.try_acquire().await.unwrap();
    w.try_acquire().await.unwrap();
    let retry = denied(w.try_acquire().await).retry_after();
    assert_about(retry, 500 * MS, b.tolerance(), "retry-after");
    let early = MS.max(b.tolerance());
    advance(retry - early).await;
    denied(w.try_acquire().await);
    advance(early).await;
    w.try_acquire().await.expect("admitted at retry-after");
}

/// `docs/design.md#algorithms`: cost n takes n units; a cost above capacity is an
/// error, never allowed.
pub async fn cost_takes_units_and_is_bounded(b: &dyn Backend) {
    let bucket = limiter(b, LimiterBuilder::token_bucket("s", 1.0).burst(10));
    let permit = bucket.cost(7).try_acquire().await.unwrap();
    assert_eq!(permit.decision().remaining(), 3);
    let refusal = denied(bucket.cost(4).try_acquire().await);
    assert_about(
        refusal.retry_after(),
        1000 * MS,
        b.tolerance(),
        "one unit short",
    );
    bucket.cost(3).try_acquire().await.unwrap();
    for bad in [0, 11, u32::MAX] {
        let error = bucket.cost(bad).try_acquire().await.unwrap_err();
        assert!(matches!(error, AcquireError::InvalidCost { .. }), "{error}");
    }

    let window = limiter(b, LimiterBuilder::sliding_window("s", 5, 60.0));
    window.cost(5).try_acquire().await.unwrap();
    denied(window.try_acquire().await);
    assert!(matches!(
        window.cost(6).try_acquire().await,
        Err(AcquireError::InvalidCost { .. })
    ));
}

/// `docs/design.md#settle`: a settleable permit gives back the unused part of its
/// cost, once, never more than it took; a plain permit cannot settle.
pub async fn settle_gives_back_the_unused_part(b: &dyn Backend) {
    let tokens = limiter(b, LimiterBuilder::sliding_window("s", 10, 60.0));
    let mut permit = tokens.cost(8).settleable().try_acquire().await.unwrap();
    assert_eq!(permit.decision().remaining(), 2);
    denied(tokens.cost(3).try_acquire().await);
    permit.settle(3).await.unwrap();
    permit.settle(0).await.unwrap();
    assert_eq!(tokens.state().await.unwrap().remaining(), 7, "settled once");
    assert!(matches!(
        permit.settle(9).await,
        Err(SettleError::AboveCost {
            used: 9,
            cost: 8,
            ..
        })
    ));
    let mut plain = tokens.try_acquire().await.unwrap();
    assert!(matches!(
        plain.settle(0).await,
        Err(SettleError::NotSettleable)
    ));

    let bucket = limiter(b, LimiterBuilder::token_bucket("s", 1.0).burst(10));
    let mut permit = bucket.cost(10).settleable().try_acquire().await.unwrap();
    permit.settle(4).await.unwrap();
    bucket
        .cost(6)
        .try_acquire()
        .await
        .expect("the unused 6 came back");
    denied(bucket.try_acquire().await);
}

/// `docs/design.md#calls`: `state()` returns the decision without consuming anything.
pub async fn peek_consumes_nothing(b: &dyn Backend) {
    for builder in [
        LimiterBuilder::token_bucket("s", 1.0).burst(2),
        LimiterBuilder::sliding_window("s", 2, 60.0),
        LimiterBuilder::token_bucket("s", 1.0)
            .burst(2)
            .max_concurrent(1),
    ] {
        let l = limiter(b, builder);
        for _ in 0..5 {
            let state = l.key("k").state().await.unwrap();
            assert!(state.allowed());
            assert_eq!(state.remaining(), 2);
        }
        let first = l.key("k").try_acquire().await.unwrap();
        assert_eq!(first.decision().remaining(), 1);
        let state = l.key("k").state().await.unwrap();
        assert_eq!(state.remaining(), 1);
        first.release().await;
        l.key("k").try_acquire().await.unwrap().release().await;
        let state = l.key("k").state().await.unwrap();
        assert!(!state.allowed());
        assert_eq!(state.denied_by(), Some(DeniedBy::Rate));
    }
}

/// `docs/design.md#calls`: `reset()` clears a key's state, or the whole limiter's.
pub async fn reset_forgets_a_key_or_the_limiter(b: &dyn Backend) {
    let l = limiter(b, LimiterBuilder::token_bucket("s", 0.001));
    for key in ["a", "b", ""] {
        l.key(key).try_acquire().await.unwrap();
        denied(l.key(key).try_acquire().await);
    }
    l.key("a").reset().await.unwrap();
    l.key("a").try_acquire().await.expect("key a was reset");
    denied(l.key("b").try_acquire().await);
    l.reset().await.unwrap();
    for key in ["b", ""] {
        l.key(key).try_acquire().await.expect("limiter was reset");
    }
}

/// `docs/design.md#keys`: every key has its own state; no identifier can reach another's.
pub async fn keys_are_isolated_whatever_their_bytes(b: &dyn Backend) {
    let l = limiter(b, LimiterBuilder::token_bucket("s", 0.001));
    let long = "x".repeat(10_000);
    let keys = [
        "", "a", "A", "a:b", "a", "{a}", "a}", "*", "a b", "ä", "🦀", "\0", "\n", "a\0b", "../a",
        "%2F", &long,
    ];
    let distinct: std::collections::BTreeSet<&str> = keys.iter().copied().collect();
    let mut admitted = 0;
    for key in keys {
        if l.key(key).try_acquire().await.is_ok() {
            admitted += 1;
        }
    }
    assert_eq!(
        admitted,
        distinct.len(),
        "each distinct key admitted exactly once"
    );
    let other = limiter(b, LimiterBuilder::token_bucket("s", 0.001));
    other
        .key("a")
        .try_acquire()
        .await
        .expect("limiters do not share keys");
}

/// `docs/design.md#concurrency`: `max_concurrent` caps simultaneous holders, per key.
pub async fn concurrency_caps_holders(b: &dyn Backend) {
    let l = limiter(
        b,
        LimiterBuilder::token_bucket("s", 1000.0)
            .burst(100)
            .max_concurrent(2),
    );
    let p1 = l.try_acquire().await.unwrap();
    let p2 = l.try_acquire().await.unwrap();
    assert!(p1.holds_slot() && p2.holds_slot());
    let refusal = denied(l.try_acquire().await);
    assert_eq!(refusal.denied_by(), Some(DeniedBy::Concurrency));
    let _other_key = l
        .key("other")
        .try_acquire()
        .await
        .expect("slots are per key");
    p1.release().await;
    let p3 = l
        .try_acquire()
        .await
        .expect("an explicitly released slot is free at once");
    // Dropping releases too; for a remote store the release is sent in the
    // background, so the next holder waits for it rather than trying once.
    drop(p2);
    let _p4 = l
        .key("")
        .timeout(Some(Duration::from_secs(5)))
        .acquire()
        .await
        .expect("a dropped permit's slot comes back");
    drop(p3);
}

fn spec(name: &str, max: u32, ttl: Duration) -> LimiterSpec {
    let policy = ratesync::Policy {
        rule: Some(ratesync::Rule::TokenBucket(
            ratesync::TokenBucket::new(1e6, 1000).unwrap(),
        )),
        concurrency: Some(ratesync::algorithm::Concurrency {
            max,
            lease_ttl: ttl.as_nanos() as u64,
        }),
    };
    LimiterSpec {
        id: unique(name).into(),
        policy,
        releases: ReleaseSignal::detached(),
    }
}

/// `docs/design.md#concurrency`: a lease whose holder is gone expires after `lease_ttl`.
pub async fn released_and_expired_leases_return(b: &dyn Backend) {
    let ttl = Duration::from_millis(300);
    let engine = b.engine();
    let l = engine.limiter(spec("lease", 1, ttl)).unwrap();
    let crashed_holder = LeaseId::random();
    assert!(l
        .acquire("k", 1, Some(crashed_holder))
        .await
        .unwrap()
        .0
        .allowed());
    let refusal = l.acquire("k", 1, Some(LeaseId::random())).await.unwrap().0;
    assert_eq!(refusal.denied_by(), Some(DeniedBy::Concurrency));
    // A slot comes back when its holder lets go (or its lease runs out): no clock
    // can tell, so the refusal promises no time beyond the rate's own.
    assert_eq!(refusal.retry_after(), Duration::ZERO);
    advance(ttl + b.tolerance()).await;
    let next = LeaseId::random();
    assert!(
        l.acquire("k", 1, Some(next)).await.unwrap().0.allowed(),
        "expired lease returned"
    );
    l.release("k", next).await.unwrap();
    assert!(l
        .acquire("k", 1, Some(LeaseId::random()))
        .await
        .unwrap()
        .0
        .allowed());
}

/// `docs/design.md#concurrency-leases`: releasing twice, or a lease never taken, changes nothing.
pub async fn double_release_changes_nothing(b: &dyn Backend) {
    let engine = b.engine();
    let l = engine
        .limiter(spec("double", 1, Duration::from_secs(60)))
        .unwrap();
    let a = LeaseId::random();
    assert!(l.acquire("k", 1, Some(a)).await.unwrap().0.allowed());
    l.release("k", a).await.unwrap();
    let b_lease = LeaseId::random();
    assert!(l.acquire("k", 1, Some(b_lease)).await.unwrap().0.allowed());
    l.release("k", a).await.unwrap();
    l.release("k", LeaseId::random()).await.unwrap();
    l.release("nobody-here", a).await.unwrap();
    let c = l.acquire("k", 1, Some(LeaseId::random())).await.unwrap().0;
    assert_eq!(
        c.denied_by(),
        Some(DeniedBy::Concurrency),
        "b still holds the slot"
    );
    assert!(
        !l.renew("k", a).await.unwrap(),
        "a released lease cannot be renewed"
    );
    assert!(l.renew("k", b_lease).await.unwrap());
}

/// `docs/design.md#concurrency`: while the holder lives, its lease is renewed, so long
/// operations keep their slot.
pub async fn held_leases_are_renewed(b: &dyn Backend) {
    let l = limiter(
        b,
        LimiterBuilder::token_bucket("s", 1000.0)
            .burst(100)
            .max_concurrent(1)
            .lease_ttl(0.3),
    );
    let held = l.try_acquire().await.unwrap();
    for _ in 0..4 {
        advance(Duration::from_millis(250)).await;
        let refusal = denied(l.try_acquire().await);
        assert_eq!(
            refusal.denied_by(),
            Some(DeniedBy::Concurrency),
            "slot still held"
        );
    }
    held.release().await;
    l.try_acquire().await.expect("released");
}

/// `docs/design.md#decisions`: rate and concurrency are taken together or not at all.
pub async fn rate_and_concurrency_are_atomic(b: &dyn Backend) {
    let l = limiter(b, LimiterBuilder::token_bucket("s", 10.0).max_concurrent(1));
    let held = l.try_acquire().await.unwrap();
    advance(100 * MS).await;
    // Refused for concurrency: must not consume the refilled unit.
    assert_eq!(
        denied(l.try_acquire().await).denied_by(),
        Some(DeniedBy::Concurrency)
    );
    held.release().await;
    let held = l
        .try_acquire()
        .await
        .expect("the refused attempt consumed no rate");
    held.release().await;
    // Refused for rate: must not take the free slot.
    assert_eq!(
        denied(l.try_acquire().await).denied_by(),
        Some(DeniedBy::Rate)
    );
    advance(100 * MS).await;
    l.try_acquire()
        .await
        .expect("the refused attempt held no slot");
}

/// `docs/design.md#waiting`: `acquire` sleeps exactly the retry-after, no busy polling.
pub async fn acquire_sleeps_exactly_the_retry_after(b: &dyn Backend) {
    let l = limiter(b, LimiterBuilder::token_bucket("s", 5.0));
    l.acquire().await.unwrap();
    let started = Instant::now();
    l.acquire().await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= 200 * MS - b.tolerance() && waited <= 200 * MS + MS + b.tolerance(),
        "waited {waited:?}"
    );
}

/// `docs/design.md#waiting`: a timeout returns a distinct result that says how long to wait.
pub async fn acquire_times_out_with_retry_after(b: &dyn Backend) {
    let l = limiter(b, LimiterBuilder::token_bucket("s", 1.0).timeout(0.5));
    l.acquire().await.unwrap();
    let started = Instant::now();
    match l.acquire().await {
        Err(AcquireError::TimedOut { decision, .. }) => assert_about(
            decision.retry_after(),
            1000 * MS,
            b.tolerance(),
            "retry-after",
        ),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        started.elapsed() <= b.tolerance() + MS,
        "a hopeless wait returns at once"
    );
    let zero = l.key("").timeout(Some(Duration::ZERO)).acquire().await;
    assert!(
        matches!(zero, Err(AcquireError::TimedOut { .. })),
        "zero never waits"
    );
    let long = l
        .key("")
        .timeout(Some(Duration::from_secs(2)))
        .acquire()
        .await;
    long.expect("a long enough timeout waits and is admitted");
}

/// `docs/design.md#release-signalling`: waiting for a slot is woken by a release, not by polling.
pub async fn acquire_is_woken_by_a_release(b: &dyn Backend) {
    let l = limiter(
        b,
        LimiterBuilder::token_bucket("s", 1000.0)
            .burst(100)
            .max_concurrent(1),
    );
    let held = l.try_acquire().await.unwrap();
    let waiter = {
        let l = l.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let permit = l.acquire().await.unwrap();
            (started.elapsed(), permit)
        })
    };
    advance(120 * MS).await;
    drop(held);
    let (waited, _permit) = waiter.await.unwrap();
    assert!(
        waited >= 120 * MS && waited < 120 * MS + 50 * MS + b.tolerance(),
        "woken by the release, waited {waited:?}"
    );
}

/// `docs/design.md#release-signalling`: waiters in one process are served first-come first-served.
pub async fn waiters_are_served_in_order(b: &dyn Backend) {
    let l = limiter(
        b,
        LimiterBuilder::token_bucket("s", 1000.0)
            .burst(100)
            .max_concurrent(1),
    );
    let held = l.try_acquire().await.unwrap();
    let (order_tx, mut order_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for id in 0..4 {
        let (l, tx) = (l.clone(), order_tx.clone());
        tasks.push(tokio::spawn(async move {
            let permit = l.acquire().await.unwrap();
            tx.send(id).unwrap();
            advance(10 * MS).await;
            drop(permit);
        }));
        advance(5 * MS).await;
    }
    drop(held);
    for task in tasks {
        task.await.unwrap();
    }
    let mut order = Vec::new();
    while let Ok(id) = order_rx.try_recv() {
        order.push(id);
    }
    assert_eq!(order, vec![0, 1, 2, 3]);
}

/// `docs/design.md#waiting`: cancelling a waiting `acquire` consumes nothing.
pub async fn cancelled_acquire_consumes_nothing(b: &dyn Backend) {
    // One unit per 500 ms: the three 30 ms waits plus a remote store's round
    // trips on a loaded machine stay far from the first refill, so each wait
    // is still pending when it is cancelled.
    let l = limiter(b, LimiterBuilder::token_bucket("s", 2.0).burst(2));
    l.try_acquire().await.unwrap();
    l.try_acquire().await.unwrap();
    for _ in 0..3 {
        let cancelled = tokio::time::timeout(30 * MS, l.acquire()).await;
        assert!(cancelled.is_err(), "the wait was cancelled");
    }
    advance(1000 * MS).await;
    let state = l.state().await.unwrap();
    assert!(
        state.remaining() + 1 >= 2,
        "two units refilled, none taken: {state:?}"
    );
}

/// `docs/design.md#distributed-tests`, in one process: many concurrent callers never
/// exceed the limit.
pub async fn concurrent_callers_never_exceed_the_limit(b: &dyn Backend) {
    let name = unique("many");
    let reg = registry(
        b,
        vec![(
            name.clone(),
            LimiterBuilder::sliding_window("s", 50, 3600.0),
        )],
    );
    let l = reg.limiter(&name).unwrap();
    let admitted = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (l, admitted) = (l.clone(), admitted.clone());
            tokio::spawn(async move {
                for _ in 0..10 {
                    if l.try_acquire().await.is_ok() {
                        admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(admitted.load(std::sync::atomic::Ordering::Relaxed), 50);
}

/// `docs/design.md#failure-policy`: while the store is down, fail-open limiters admit
/// and fail-closed ones refuse with a distinct error, each within its deadline; once
/// the store is back, both decide normally again without a restart.
pub async fn store_outage_follows_the_failure_policy(b: &dyn Backend) {
    let Some(outage) = b.outage() else {
        eprintln!("skipped: this backend cannot take its store down");
        return;
    };
    let (open, closed) = (unique("open"), unique("closed"));
    let reg = registry(
        b,
        vec![
            (open.clone(), LimiterBuilder::token_bucket("s", 0.001)),
            (
                closed.clone(),
                LimiterBuilder::token_bucket("s", 0.001).fail_closed(true),
            ),
        ],
    );
    let (open, closed) = (reg.limiter(&open).unwrap(), reg.limiter(&closed).unwrap());
    outage.begin().await;
    for _ in 0..3 {
        open.try_acquire()
            .await
            .expect("fail-open admits while the store is down");
    }
    let error = closed.acquire().await.unwrap_err();
    assert!(
        matches!(error, AcquireError::StoreUnavailable { .. }),
        "{error}"
    );
    outage.end().await;
    // The circuit (if it opened) closes once a background probe gets an answer.
    let mut recovered = false;
    for _ in 0..40 {
        match closed.try_acquire().await {
            Ok(_) => {
                recovered = true;
                break;
            }
            Err(AcquireError::StoreUnavailable { .. }) => advance(250 * MS).await,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert!(
        recovered,
        "the limiter decides again within 10 s of the store's return"
    );
    denied(closed.try_acquire().await);
}

/// `docs/design.md#groups`: several limiters of one store decided together: all
/// admit or none is consumed, rate and slots alike; permits hold their slots.
pub async fn groups_are_all_or_nothing(b: &dyn Backend) {
    let (window, bucket, slots) = (unique("window"), unique("bucket"), unique("slots"));
    let reg = registry(
        b,
        vec![
            (window.clone(), LimiterBuilder::sliding_window("s", 3, 60.0)),
            (bucket.clone(), LimiterBuilder::token_bucket("s", 0.01)),
            (slots.clone(), LimiterBuilder::new("s").max_concurrent(1)),
        ],
    );
    let (window, bucket, slots) = (
        reg.limiter(&window).unwrap(),
        reg.limiter(&bucket).unwrap(),
        reg.limiter(&slots).unwrap(),
    );
    let pair = [window.key("k"), bucket.key("k")];
    let admitted = ratesync::try_acquire_all(&pair)
        .await
        .expect("both have room");
    assert_eq!(admitted[0].decision().remaining(), 2);
    for _ in 0..3 {
        let refusal = ratesync::try_acquire_all(&pair).await.unwrap_err();
        assert_eq!(refusal.index, 1, "the bucket is empty");
        assert_eq!(
            refusal.decisions[0].map(|d| d.remaining()),
            Some(2),
            "the window's peek"
        );
    }
    assert_eq!(
        window.key("k").state().await.unwrap().remaining(),
        2,
        "refused groups took nothing from the window"
    );

    let held = [window.key("j"), slots.key("j")];
    let permits = ratesync::try_acquire_all(&held)
        .await
        .expect("a slot is free");
    assert!(permits[1].holds_slot());
    let refusal = ratesync::try_acquire_all(&held).await.unwrap_err();
    assert_eq!(refusal.index, 1);
    assert_eq!(
        refusal.decisions[1].and_then(|d| d.denied_by()),
        Some(DeniedBy::Concurrency)
    );
    assert_eq!(window.key("j").state().await.unwrap().remaining(), 2);
    for permit in permits {
        permit.release().await;
    }
    ratesync::try_acquire_all(&held)
        .await
        .expect("the released slot is free");
    assert_eq!(window.key("j").state().await.unwrap().remaining(), 1);
}

/// `docs/design.md#shadow-mode`: a limiter in shadow mode decides every call, admits
/// the ones its limit would refuse without consuming anything (so its state is what
/// enforcing would have left), and says so in the decision; in a group it refuses
/// nothing, and the others are decided as if it were not there.
pub async fn shadow_mode_admits_what_it_would_refuse(b: &dyn Backend) {
    let (window, slots, bucket) = (unique("window"), unique("slots"), unique("bucket"));
    let reg = registry(
        b,
        vec![
            (
                window.clone(),
                LimiterBuilder::sliding_window("s", 3, 60.0).shadow(true),
            ),
            (
                slots.clone(),
                LimiterBuilder::new("s").max_concurrent(1).shadow(true),
            ),
            (bucket.clone(), LimiterBuilder::token_bucket("s", 0.01)),
        ],
    );
    let (window, slots, bucket) = (
        reg.limiter(&window).unwrap(),
        reg.limiter(&slots).unwrap(),
        reg.limiter(&bucket).unwrap(),
    );

    let mut would_refuse = 0;
    for _ in 0..6 {
        let permit = window.try_acquire().await.expect("shadow mode admits");
        assert!(permit.decision().allowed() && permit.decision().denied_by().is_none());
        if let Some(by) = permit.decision().shadow_denied_by() {
            assert_eq!(by, DeniedBy::Rate);
            assert!(
                permit.decision().retry_after() > Duration::ZERO,
                "the would-be wait"
            );
            would_refuse += 1;
        }
    }
    assert_eq!(would_refuse, 3);
    assert_eq!(
        window.state().await.unwrap().remaining(),
        0,
        "3 taken, as enforcing would have"
    );
    let peek = window.state().await.unwrap();
    assert_eq!(
        peek.denied_by(),
        Some(DeniedBy::Rate),
        "a peek tells the truth"
    );
    let mut shadowed = window.cost(1).settleable().try_acquire().await.unwrap();
    assert!(shadowed.decision().shadow_denied_by().is_some());
    shadowed.settle(0).await.unwrap();
    assert_eq!(
        window.state().await.unwrap().remaining(),
        0,
        "a shadow admission took nothing, so settles nothing back"
    );
    let started = Instant::now();
    window
        .acquire()
        .await
        .expect("acquire does not wait either");
    assert!(started.elapsed() < Duration::from_secs(1));

    let held = slots.key("k").acquire().await.unwrap();
    let second = slots.key("k").try_acquire().await.unwrap();
    assert_eq!(
        second.decision().shadow_denied_by(),
        Some(DeniedBy::Concurrency)
    );
    assert!(held.holds_slot() && !second.holds_slot(), "no second slot");
    drop(second);
    held.release().await;
    assert!(slots.key("k").try_acquire().await.unwrap().holds_slot());

    // A group: the shadow window would refuse, the bucket has room; admitted, and
    // only the bucket consumed.
    let group = [window.key("g"), bucket.key("g")];
    for _ in 0..3 {
        window.key("g").try_acquire().await.unwrap();
    }
    let permits = ratesync::try_acquire_all(&group)
        .await
        .expect("a shadow limiter refuses no group");
    assert_eq!(
        permits[0].decision().shadow_denied_by(),
        Some(DeniedBy::Rate)
    );
    assert!(permits[1].decision().shadow_denied_by().is_none());
    assert_eq!(bucket.key("g").state().await.unwrap().remaining(), 0);
    let refusal = ratesync::try_acquire_all(&group).await.unwrap_err();
    assert_eq!(refusal.index, 1, "the enforced bucket still refuses");
    assert_eq!(window.key("g").state().await.unwrap().remaining(), 0);
}

/// `docs/design.md#overrides`: keys an override matches are decided by its rule (the
/// limiter's with the override's fields), the first matching override winning; every
/// other key by the limiter's; a reset of the limiter forgets them all.
pub async fn overrides_give_keys_their_own_rule(b: &dyn Backend) {
    use ratesync::OverrideBuilder;
    let api = limiter(
        b,
        LimiterBuilder::token_bucket("s", 0.01)
            .burst(2)
            .key_override(OverrideBuilder::keys(["vip", "pro:special"]).burst(10))
            .key_override(OverrideBuilder::key_prefix("pro:").burst(5))
            .key_override(OverrideBuilder::keys(["batch"]).max_concurrent(1)),
    );
    let admitted = |key: &'static str, n: u64| {
        let api = api.clone();
        async move {
            for taken in 1..=n {
                let permit = api.key(key).try_acquire().await.expect("within its burst");
                assert_eq!(permit.decision().remaining(), n - taken, "{key}");
                assert_eq!(permit.decision().limit(), n, "{key}: its own limit");
            }
            assert_eq!(
                denied(api.key(key).try_acquire().await).denied_by(),
                Some(DeniedBy::Rate),
                "{key}"
            );
        }
    };
    admitted("vip", 10).await;
    admitted("pro:special", 10).await; // listed exactly in the first override
    admitted("pro:acme", 5).await;
    admitted("anyone", 2).await;
    // 0.01/s: 18 per 1800 s holds a burst of 10; 3 per 300 s one of 2.
    assert_eq!(api.quota_for("vip").map(|q| q.units), Some(18));
    assert_eq!(api.quota_for("anyone").map(|q| q.units), Some(3));
    assert_eq!(api.policy_for("anyone").rule, api.policy().rule);

    let held = api.key("batch").acquire().await.unwrap();
    assert!(held.holds_slot());
    assert_eq!(
        denied(api.key("batch").try_acquire().await).denied_by(),
        Some(DeniedBy::Concurrency)
    );
    held.release().await;

    // A group takes each key's own rule.
    let other = limiter(b, LimiterBuilder::sliding_window("s", 5, 60.0));
    api.reset().await.unwrap();
    let group = [api.key("vip"), other.key("vip")];
    let permits = ratesync::try_acquire_all(&group).await.unwrap();
    assert_eq!(permits[0].decision().limit(), 10);
    assert_eq!(api.key("vip").state().await.unwrap().remaining(), 9);
    assert_eq!(
        api.key("anyone").state().await.unwrap().remaining(),
        2,
        "the reset reached the limiter's own keys"
    );
}
