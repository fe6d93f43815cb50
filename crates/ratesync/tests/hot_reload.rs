//! Hot reload (`docs/design.md#hot-reload`): a registry that follows its file applies
//! each valid edit as a whole, keeps the state of limiters whose algorithm is
//! unchanged, refuses an invalid edit and keeps the running limits; handles taken
//! before a reload follow it. The same reload keeps state on every engine.
//!
//! The file-watching tests wait for the watcher with generous bounds (a reload is
//! applied within about a second; they allow 10 s on a loaded machine); the engine
//! tests call `Registry::reloaded` directly.

#![cfg(feature = "watch")]

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratesync::{AcquireError, Config, Error, Limiter, Registry, Rule, WatchedRegistry};

/// How long a test waits for an edit to be applied: far above the second it takes.
const APPLIED_WITHIN: Duration = Duration::from_secs(10);

fn memory_file(limiters: &str) -> String {
    format!("[stores.local]\nengine = \"memory\"\n\n{limiters}")
}

fn window(name: &str, limit: u32) -> String {
    format!(
        "[limiters.{name}]\nstore = \"local\"\nalgorithm = \"sliding_window\"\nlimit = {limit}\nwindow_seconds = 600\n"
    )
}

/// Writes `text` as editors do: a new file renamed over the old one.
fn save(path: &Path, text: &str) {
    let temporary = path.with_extension("toml.tmp");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

fn window_limit(limiter: &Limiter) -> Option<u32> {
    match limiter.policy().rule {
        Some(Rule::SlidingWindow(sw)) => Some(sw.limit()),
        _ => None,
    }
}

/// Waits until `ready`, at most [`APPLIED_WITHIN`].
async fn applied(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + APPLIED_WITHIN;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "not applied within {APPLIED_WITHIN:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn admitted(limiter: &Limiter, key: &str, attempts: u32) -> u32 {
    let mut admitted = 0;
    for _ in 0..attempts {
        admitted += u32::from(limiter.key(key).try_acquire().await.is_ok());
    }
    admitted
}

fn watched(dir: &tempfile::TempDir, text: &str) -> (std::path::PathBuf, WatchedRegistry) {
    let path = dir.path().join("rate-sync.toml");
    std::fs::write(&path, text).unwrap();
    let registry = Registry::watch(&path).expect("the file builds");
    (path, registry)
}

/// Raising a window's limit from 5 to 8 lets a key that used 5 take exactly 3 more;
/// an invalid edit after it leaves 8 in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_edit_applies_and_keeps_state_an_invalid_one_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (path, registry) = watched(&dir, &memory_file(&window("api", 5)));
    let api = registry.limiter("api").unwrap();
    assert_eq!(admitted(&api, "user", 6).await, 5);

    save(&path, &memory_file(&window("api", 8)));
    applied("limit 8", || window_limit(&api) == Some(8)).await;
    assert_eq!(
        admitted(&api, "user", 5).await,
        3,
        "the same key: 3 more, no reset"
    );
    assert_eq!(
        registry.limiter("api").unwrap().policy(),
        api.policy(),
        "the handle taken before follows the registry"
    );

    save(
        &path,
        &memory_file("[limiters.api]\nstore = \"local\"\nlimit = \"many\"\n"),
    );
    // A valid edit is applied within a second; give the invalid one three.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(window_limit(&api), Some(8), "the running limits stay");
    assert_eq!(admitted(&api, "someone-new", 9).await, 8);

    save(&path, &memory_file(&window("api", 8)));
    save(
        &path,
        &memory_file(&format!("{}{}", window("api", 8), window("login", 2))),
    );
    applied("login added", || registry.limiter("login").is_ok()).await;
    assert_eq!(admitted(&api, "user", 1).await, 0, "api kept its state");

    // Switched to shadow mode and back: the same state, refusing nobody meanwhile.
    let shadow = |on: bool| memory_file(&format!("{}shadow = {on}\n", window("api", 8)));
    save(&path, &shadow(true));
    applied("shadow on", || api.config().shadow).await;
    assert_eq!(admitted(&api, "user", 3).await, 3, "would refuse, admits");
    save(&path, &shadow(false));
    applied("shadow off", || !api.config().shadow).await;
    assert_eq!(
        admitted(&api, "user", 1).await,
        0,
        "enforced again, state unchanged"
    );
}

/// A removed limiter refuses new calls and resets with the not-configured error,
/// through handles taken before; its permits stay valid until released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_limiter_refuses_new_calls_and_keeps_its_permits() {
    let dir = tempfile::tempdir().unwrap();
    let slots = "[limiters.uploads]\nstore = \"local\"\nmax_concurrent = 1\n";
    let (path, registry) = watched(&dir, &memory_file(&format!("{slots}{}", window("api", 5))));
    let uploads = registry.limiter("uploads").unwrap();
    let held = uploads.key("k").try_acquire().await.unwrap();
    assert!(held.holds_slot());

    save(&path, &memory_file(&window("api", 5)));
    applied("uploads removed", || registry.limiter("uploads").is_err()).await;
    assert!(matches!(
        registry.limiter("uploads"),
        Err(Error::UnknownLimiter(name)) if name == "uploads"
    ));
    let refused = uploads.key("other").try_acquire().await.unwrap_err();
    assert!(
        matches!(&refused, AcquireError::NotConfigured { limiter } if &**limiter == "uploads"),
        "{refused}"
    );
    assert!(refused.to_string().contains("not configured"), "{refused}");
    // Nor can it forget keys any more (a limiter of that name may come back).
    for reset in [uploads.key("k").reset().await, uploads.reset().await] {
        assert!(
            matches!(&reset, Err(AcquireError::NotConfigured { .. })),
            "{reset:?}"
        );
    }
    held.release().await;
}

/// A reload of a limiter's rule keeps its keys' state on each engine: the store keeps
/// it under the limiter's name (memory: carried over in the process).
async fn reload_keeps_state(store: &str) {
    let file = |limit: u32| {
        Config::from_toml_str(
            &format!("{store}\n{}", window("api", limit).replace("600", "60")),
            "rate-sync.toml",
        )
        .unwrap()
    };
    let before = file(5);
    let registry = Registry::from_config(before.clone()).unwrap();
    let api = registry.limiter("api").unwrap();
    let key = format!("user-{:x}", fastrand::u64(..));
    assert_eq!(admitted(&api, &key, 6).await, 5);
    let registry = registry.reloaded(&before, file(8)).unwrap();
    assert_eq!(window_limit(&registry.limiter("api").unwrap()), Some(8));
    assert_eq!(
        admitted(&api, &key, 5).await,
        3,
        "3 more, through the old handle"
    );
    assert_eq!(
        admitted(&registry.limiter("api").unwrap(), &key, 1).await,
        0
    );
}

#[tokio::test]
async fn a_reload_keeps_state_on_memory() {
    reload_keeps_state("[stores.local]\nengine = \"memory\"\n").await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_state_on_redis() {
    let server = support::RedisServer::start();
    reload_keeps_state(&format!(
        "[stores.local]\nengine = \"redis\"\nurl = \"{}\"\n",
        server.url()
    ))
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_state_on_postgres() {
    let server = support::PostgresServer::start();
    reload_keeps_state(&format!(
        "[stores.local]\nengine = \"postgres\"\nurl = \"{}\"\nauto_create = true\n",
        server.url()
    ))
    .await;
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_state_on_nats() {
    let server = support::NatsServer::start();
    reload_keeps_state(&format!(
        "[stores.local]\nengine = \"nats\"\nurl = \"{}\"\nauto_create = true\n",
        server.url()
    ))
    .await;
}

/// 64 tasks decide on one key while the file raises the limit from 100 to 150: no
/// admission beyond the new limit, none beyond the cap at any moment, and every slot
/// comes back (no permit lost across the reload).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_under_load_loses_no_permit_and_admits_nothing_beyond_the_limits() {
    let limiter =
        |limit: u32| memory_file(&format!("{}max_concurrent = 8\n", window("api", limit)));
    let dir = tempfile::tempdir().unwrap();
    let (path, registry) = watched(&dir, &limiter(100));
    let api = registry.limiter("api").unwrap();
    let admitted = Arc::new(AtomicU64::new(0));
    let in_flight = Arc::new(AtomicU64::new(0));
    let most_in_flight = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(4);
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (api, admitted) = (api.clone(), admitted.clone());
            let (in_flight, most) = (in_flight.clone(), most_in_flight.clone());
            tokio::spawn(async move {
                while Instant::now() < stop {
                    match api.key("k").try_acquire().await {
                        Ok(permit) => {
                            admitted.fetch_add(1, Ordering::Relaxed);
                            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::Relaxed);
                            tokio::task::yield_now().await;
                            in_flight.fetch_sub(1, Ordering::SeqCst);
                            permit.release().await;
                        }
                        Err(_) => tokio::task::yield_now().await,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    save(&path, &limiter(150));
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(window_limit(&api), Some(150), "applied during the run");
    assert_eq!(
        admitted.load(Ordering::Relaxed),
        150,
        "exactly the new limit"
    );
    assert!(most_in_flight.load(Ordering::Relaxed) <= 8, "the cap held");
    let state = api.key("k").state().await.unwrap();
    assert_eq!(state.remaining(), 0, "the window is full");

    // Room in the window again: all 8 slots of the key are free, none was lost.
    save(&path, &limiter(1000));
    applied("limit 1000", || window_limit(&api) == Some(1000)).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(api.key("k").try_acquire().await.expect("a free slot"));
    }
    let ninth = api.key("k").try_acquire().await.unwrap_err();
    assert_eq!(
        ninth.decision().and_then(|d| d.denied_by()),
        Some(ratesync::DeniedBy::Concurrency)
    );
}

/// Each edit is counted once in `ratesync_config_reloads_total{result}`, and a broken
/// file is refused once, not at every event (the watcher's own reads are events too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_edit_is_counted_once() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test process");
    let dir = tempfile::tempdir().unwrap();
    let (path, registry) = watched(&dir, &memory_file(&window("api", 5)));
    let api = registry.limiter("api").unwrap();
    save(&path, &memory_file(&window("api", 6)));
    applied("limit 6", || window_limit(&api) == Some(6)).await;
    save(
        &path,
        &memory_file("[limiters.api]\nstore = \"local\"\nlimit = \"six\"\n"),
    );
    // Long enough for the edit to be refused, and for the watcher to have re-read the
    // file many times over if its own reads counted as changes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // One snapshot: the recorder's counters are read as they are now.
    let snapshot = snapshotter.snapshot().into_hashmap();
    let reloads = |result: &str| {
        snapshot
            .iter()
            .find(|(key, _)| {
                key.key().name() == "ratesync_config_reloads_total"
                    && key.key().labels().any(|l| l.value() == result)
            })
            .map_or(0, |(_, (_, _, value))| match value {
                DebugValue::Counter(n) => *n,
                _ => 0,
            })
    };
    assert_eq!((reloads("applied"), reloads("rejected")), (1, 1));
    assert_eq!(window_limit(&api), Some(6), "the running limits stay");
}

/// A store whose settings change is rebuilt (it reconnects) and its limiters move
/// with it; a store nothing changed is kept, and so are its limiters' keys.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_store_reconnects_and_its_limiters_move() {
    let (first, second) = (support::RedisServer::start(), support::RedisServer::start());
    let file = |url: &str| {
        let text = format!(
            "[stores.cache]\nengine = \"redis\"\nurl = \"{url}\"\n\n[stores.local]\nengine = \"memory\"\n\n{}{}",
            window("api", 5).replace("\"local\"", "\"cache\""),
            window("login", 2),
        );
        Config::from_toml_str(&text, "rate-sync.toml").unwrap()
    };
    let before = file(&first.url());
    let registry = Registry::from_config(before.clone()).unwrap();
    let (api, login) = (
        registry.limiter("api").unwrap(),
        registry.limiter("login").unwrap(),
    );
    assert_eq!(admitted(&api, "k", 6).await, 5);
    assert_eq!(admitted(&login, "k", 3).await, 2);

    let registry = registry.reloaded(&before, file(&second.url())).unwrap();
    assert_eq!(
        admitted(&api, "k", 6).await,
        5,
        "the new server: the key is fresh there"
    );
    assert_eq!(
        admitted(&login, "k", 1).await,
        0,
        "the memory store was kept"
    );
    drop(first);
    assert_eq!(
        admitted(&registry.limiter("api").unwrap(), "k", 1).await,
        0,
        "decided on the second server, which has its 5"
    );
}
