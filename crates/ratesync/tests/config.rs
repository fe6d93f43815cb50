//! The configuration format (`docs/design.md#configuration`): what validates, and the
//! exact error (path and line) for what does not. Environment variables come from a
//! closure, never from the process environment, so these tests run in parallel safely.

use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use ratesync::algorithm::{Windows, DEFAULT_PRECISION};
use ratesync::config::{discover_path_in, ConfigIssue, EngineConfig, LimiterBuilder, StoreBuilder};
use ratesync::{Config, ConfigError, Period, Rule};

const COMPAT: &str = include_str!("fixtures/rate-sync-compat.toml");
const ALL_ENGINES: &str = include_str!("fixtures/all-engines.toml");

fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str_with_env(text, "rate-sync.toml", env(&[]))
}

fn issues(text: &str) -> Vec<ConfigIssue> {
    match parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(error) => {
            assert_eq!(error.origin, "rate-sync.toml");
            error.issues
        }
    }
}

/// Asserts that `text` fails with exactly one issue, at `path` and `line`, whose
/// message contains each of `needles`.
#[track_caller]
fn assert_issue(text: &str, path: &str, line: usize, needles: &[&str]) {
    let found = issues(text);
    assert_eq!(found.len(), 1, "expected one issue, got {found:#?}");
    let issue = &found[0];
    assert_eq!(issue.path, path, "{issue:?}");
    assert_eq!(issue.line, Some(line), "{issue:?}");
    for needle in needles {
        assert!(
            issue.message.contains(needle),
            "message {:?} lacks {needle:?}",
            issue.message
        );
    }
}

const STORE: &str = "[stores.local]\nengine = \"memory\"\n";

/// A file whose line 3 onwards is `limiter` (a `[limiters.api]` table body).
fn with_limiter(body: &str) -> String {
    format!("{STORE}[limiters.api]\nstore = \"local\"\n{body}")
}

// ---------------------------------------------------------------------------
// Valid files

#[test]
fn rate_sync_file_validates_unchanged() {
    let config = parse(COMPAT).unwrap();
    let ids: Vec<_> = config.stores.keys().map(String::as_str).collect();
    assert_eq!(ids, ["dev", "prod", "audit", "main"], "file order is kept");

    let EngineConfig::Redis(prod) = &config.stores["prod"].engine else {
        panic!("prod is redis")
    };
    assert_eq!(prod.url.expose(), "redis://localhost:6379/0");
    assert_eq!(prod.password, None, "an empty password means none");
    assert_eq!(prod.key_prefix, "ratelimit");
    assert_eq!(prod.db, Some(0));
    assert_eq!(prod.pool_max_size, Some(10));
    assert_eq!(prod.socket_timeout, Duration::from_secs(5));
    assert!(matches!(
        config.stores["main"].engine,
        EngineConfig::Memory(_)
    ));

    let login = &config.limiters["login"];
    let Some(Rule::SlidingWindow(window)) = login.rule else {
        panic!("login is a sliding window")
    };
    assert_eq!(
        (window.limit(), window.window_nanos()),
        (5, 300_000_000_000)
    );

    let api = &config.limiters["api"];
    let Some(Rule::TokenBucket(bucket)) = api.rule else {
        panic!("api is a token bucket")
    };
    assert_eq!(
        bucket.burst(),
        1,
        "rate-sync's strict spacing is the default"
    );
    assert_eq!(bucket.interval_nanos(), 10_000_000);
    assert_eq!(api.max_concurrent.map(|n| n.get()), Some(50));
    assert_eq!(api.timeout, Some(Duration::from_secs(30)));
    assert_eq!(api.lease_ttl, Duration::from_secs(60));
    assert!(config.limiters["external_api"].fail_closed);

    let reports = &config.limiters["reports"];
    assert!(reports.is_concurrency_only());
    assert_eq!(reports.max_concurrent.map(|n| n.get()), Some(4));

    let tenant = &config.limiters["tenant_api"];
    assert_eq!(tenant.timeout, Some(Duration::from_secs(30)));
    assert!(config.limiters.contains_key("default"));
    assert_eq!(config.fastapi.trusted_proxy_networks.len(), 4);
}

#[test]
fn rate_sync_file_follows_the_environment() {
    let vars = [
        ("REDIS_PASSWORD", "hunter2"),
        ("RATE_LIMIT_ENGINE", "redis"),
        ("RATE_LIMIT_URL", "redis://shared:6379/1"),
        ("API_RATE_LIMIT", "250"),
        ("LIMITER_ID", "tenant-7"),
    ];
    let config = Config::from_toml_str_with_env(COMPAT, "f", env(&vars)).unwrap();
    let EngineConfig::Redis(prod) = &config.stores["prod"].engine else {
        panic!()
    };
    assert_eq!(prod.password.as_ref().map(|p| p.expose()), Some("hunter2"));
    assert!(matches!(
        config.stores["main"].engine,
        EngineConfig::Redis(_)
    ));
    let Some(Rule::TokenBucket(bucket)) = config.limiters["tenant_api"].rule else {
        panic!()
    };
    assert_eq!(bucket.interval_nanos(), 4_000_000);
    assert!(config.limiters.contains_key("tenant-7"));
    assert!(!config.limiters.contains_key("default"));
}

#[test]
fn every_engine_and_key_validates() {
    let config = parse(ALL_ENGINES).unwrap();
    let engines: Vec<_> = config
        .stores
        .values()
        .map(|s| s.engine.engine_name())
        .collect();
    assert_eq!(engines, ["memory", "redis", "redis", "postgres", "nats"]);

    let EngineConfig::Memory(local) = &config.stores["local"].engine else {
        panic!()
    };
    assert_eq!(local.max_keys.map(|n| n.get()), Some(100_000));

    let EngineConfig::Redis(cache) = &config.stores["cache"].engine else {
        panic!()
    };
    assert_eq!(
        cache.password.as_ref().map(|p| p.expose()),
        Some("12345"),
        "strings stay strings"
    );
    assert_eq!(cache.db, Some(2));
    assert_eq!(cache.socket_timeout, Duration::from_millis(2500));
    assert_eq!(cache.socket_connect_timeout, Duration::from_secs(1));
    assert_eq!(cache.timing_margin_ms, Some(0.0));
    assert_eq!(cache.pool_min_size, Some(1));
    assert_eq!(
        cache.url.to_string(),
        "rediss://default:***@cache.internal:6380/2"
    );

    let EngineConfig::Redis(ha) = &config.stores["ha"].engine else {
        panic!()
    };
    assert_eq!(ha.sentinels.len(), 2);
    assert_eq!(ha.sentinels[0].expose(), "redis://sentinel-1:26379");
    assert_eq!(ha.sentinel_master.as_deref(), Some("mymaster"));
    assert_eq!(ha.key_prefix, "rate_limit");

    let EngineConfig::Postgres(db) = &config.stores["db"].engine else {
        panic!()
    };
    assert_eq!(
        (db.schema_name.as_str(), db.table_name.as_str()),
        ("limits", "state")
    );
    assert!(db.auto_create);
    assert_eq!((db.pool_min_size, db.pool_max_size), (Some(0), Some(16)));

    let EngineConfig::Nats(bus) = &config.stores["bus"].engine else {
        panic!()
    };
    assert_eq!(bus.token.as_ref().map(|t| t.expose()), Some("t0ken"));
    assert_eq!(bus.bucket_name, "rate-limits_v2");
    assert_eq!(bus.retry_interval, Some(Duration::from_millis(10)));
    assert_eq!(bus.max_retries, Some(50));

    let api = &config.limiters["api"];
    assert_eq!(api.rule.map(|r| r.capacity()), Some(20));
    assert_eq!(api.lease_ttl, Duration::from_secs(30));
    assert_eq!(api.timeout, Some(Duration::from_secs(5)));
    let login = &config.limiters["login"];
    assert_eq!(login.timeout, Some(Duration::ZERO), "0 = never wait");
    let Some(Rule::SlidingWindow(window)) = login.rule else {
        panic!()
    };
    assert_eq!(window.window_nanos(), 500_000_000);
    assert_eq!(window.precision(), 20);
    let Some(Rule::FixedWindow(daily)) = config.limiters["daily"].rule else {
        panic!()
    };
    assert_eq!(
        (daily.limit(), daily.period(), daily.utc_offset()),
        (1000, Some(Period::Day), 19_800)
    );
    let Some(Rule::FixedWindow(hourly)) = config.limiters["hourly"].rule else {
        panic!()
    };
    assert_eq!((hourly.period(), hourly.utc_offset()), (None, -28_800));
    assert_eq!(hourly.window_nanos(), 3_600_000_000_000);
    let Some(Rule::FixedWindow(minute)) = config.limiters["minute"].rule else {
        panic!()
    };
    assert_eq!(
        minute.windows(),
        Windows::Every {
            length: 60_000_000_000,
            phase: 0
        }
    );
    let Some(Rule::TokenBucket(events)) = config.limiters["events"].rule else {
        panic!()
    };
    assert_eq!(events.interval_nanos(), 5_000_000_000);
    assert_eq!(
        config.limiters["events"].timeout, None,
        "absent = wait forever"
    );
}

#[test]
fn an_empty_file_is_an_empty_configuration() {
    let config = parse("# nothing yet\n").unwrap();
    assert!(config.stores.is_empty() && config.limiters.is_empty());
}

// ---------------------------------------------------------------------------
// Structure and keys

#[test]
fn syntax_errors_name_their_line() {
    let found = issues("[stores.local]\nengine = \"memory\n");
    assert_eq!(found[0].line, Some(2));
    assert!(found[0].message.starts_with("invalid TOML"), "{found:?}");
    assert_eq!(found[0].path, "");
}

#[test]
fn unknown_top_level_key_suggests() {
    assert_issue(
        "[limiter.api]\nstore = \"x\"\n",
        "limiter",
        1,
        &["unknown key `limiter`", "did you mean `limiters`?"],
    );
}

#[test]
fn unknown_store_key_suggests() {
    let text = "[stores.cache]\nengine = \"redis\"\nurl = \"redis://c:6379\"\nkey_prefx = \"x\"\n";
    assert_issue(
        text,
        "stores.cache.key_prefx",
        4,
        &["did you mean `key_prefix`?"],
    );
}

#[test]
fn a_key_of_another_engine_says_so() {
    let text = "[stores.cache]\nengine = \"redis\"\nurl = \"redis://c:6379\"\ntoken = \"t\"\n";
    assert_issue(
        text,
        "stores.cache.token",
        4,
        &["in a redis store: it is a nats setting"],
    );
}

#[test]
fn unknown_engine_lists_the_valid_ones() {
    let text = "[stores.db]\nengine = \"postgresql\"\nurl = \"postgresql://db/x\"\n";
    assert_issue(
        text,
        "stores.db.engine",
        2,
        &[
            "unknown engine `postgresql`",
            "memory, redis, postgres, nats",
            "did you mean `postgres`?",
        ],
    );
}

#[test]
fn strategy_is_not_an_engine_alias() {
    // rate-sync rejects `strategy` in TOML too (it collides with its own argument).
    let text = "[stores.local]\nstrategy = \"memory\"\n";
    let found = issues(text);
    assert!(found
        .iter()
        .any(|i| i.path == "stores.local.engine"
            && i.message.contains("missing required key `engine`")));
    assert_eq!(found[0].line, Some(1));
}

#[test]
fn missing_url_points_at_the_table() {
    assert_issue(
        "\n[stores.cache]\nengine = \"redis\"\n",
        "stores.cache.url",
        2,
        &["missing required key `url`"],
    );
}

#[test]
fn url_scheme_must_fit_the_engine() {
    let text = "[stores.cache]\nengine = \"redis\"\nurl = \"postgresql://u:pw@db/app\"\n";
    assert_issue(
        text,
        "stores.cache.url",
        3,
        &["not usable by a redis store", "redis://, rediss://"],
    );
    let text = "[stores.db]\nengine = \"postgres\"\nurl = \"redis://cache\"\n";
    assert_issue(text, "stores.db.url", 3, &["postgres://, postgresql://"]);
    let text = "[stores.bus]\nengine = \"nats\"\nurl = \"nats://a:4222,http://b\"\n";
    assert_issue(text, "stores.bus.url", 3, &["server 2 of the list"]);
}

#[test]
fn a_postgres_url_names_a_known_sslmode() {
    let text = "[stores.db]\nengine = \"postgres\"\n\
                url = \"postgresql://u:pw@db/app?sslmode=verify\"\n";
    assert_issue(
        text,
        "stores.db.url",
        3,
        &["unknown `sslmode` `verify`", "verify-ca or verify-full"],
    );
    assert!(!issues(text)[0].message.contains("pw"));
    let text = "[stores.db]\nengine = \"postgres\"\n\
                url = \"postgresql://db/app?sslmode=verify-full&sslrootcert=/ca.pem\"\n";
    parse(text).expect("verify-full with a root certificate loads");
}

#[test]
fn memory_store_takes_only_an_empty_url() {
    let text = "[stores.local]\nengine = \"memory\"\nurl = \"redis://x\"\n";
    assert_issue(text, "stores.local.url", 3, &["memory store has no URL"]);
    let text = "[stores.local]\nengine = \"memory\"\nmax_keys = 0\n";
    assert_issue(text, "stores.local.max_keys", 3, &["positive integer"]);
}

#[test]
fn a_redis_cluster_may_name_several_seed_nodes() {
    let seeds = "[stores.c]\nengine = \"redis\"\ncluster = true\nurl = \"redis://a:7000, redis://b:7001\"\n";
    let config = parse(seeds).unwrap();
    assert_eq!(
        config.stores["c"].engine.location(),
        "redis://a:7000,redis://b:7001"
    );
    assert_issue(
        "[stores.c]\nengine = \"redis\"\nurl = \"redis://a:7000,http://b\"\n",
        "stores.c.url",
        3,
        &["server 2 of the list", "redis://"],
    );
}

#[test]
fn a_sentinel_url_names_several_sentinels_and_the_master() {
    let store = |url: &str| format!("[stores.c]\nengine = \"redis\"\nurl = \"{url}\"\n");
    parse(&store("redis+sentinel://:pw@s1:26379, s2/mymaster/2")).unwrap();
    assert_issue(
        &store("redis+sentinel://s1:26379,s2:26379"),
        "stores.c.url",
        3,
        &["names no master", "sentinel_master"],
    );
    parse(&format!(
        "{}sentinel_master = \"m\"\n",
        store("redis+sentinel://s1:26379")
    ))
    .unwrap();
    assert_issue(
        &store("redis+sentinel://s1:port/m"),
        "stores.c.url",
        3,
        &["invalid redis+sentinel:// URL"],
    );
    assert_issue(
        &store("redis+sentinel:///m"),
        "stores.c.url",
        3,
        &["names no sentinel host"],
    );
}

#[test]
fn store_settings_are_checked() {
    let redis = "[stores.c]\nengine = \"redis\"\nurl = \"redis://c\"\n";
    assert_issue(
        &format!("{redis}pool_min_size = 20\npool_max_size = 10\n"),
        "stores.c.pool_min_size",
        4,
        &["larger than pool_max_size"],
    );
    assert_issue(
        &format!("{redis}db = -1\n"),
        "stores.c.db",
        4,
        &["zero or positive, got -1"],
    );
    assert_issue(
        &format!("{redis}socket_timeout = 0\n"),
        "stores.c.socket_timeout",
        4,
        &["must be positive"],
    );
    assert_issue(
        &format!("{redis}cluster = \"yes\"\n"),
        "stores.c.cluster",
        4,
        &["expected a boolean"],
    );
    assert_issue(
        &format!("{redis}sentinels = [\"s1:26379\"]\n"),
        "stores.c.sentinel_master",
        1,
        &["missing required key `sentinel_master`"],
    );
    assert_issue(
        &format!("{redis}sentinels = [\"s1:26379\", 7]\nsentinel_master = \"m\"\n"),
        "stores.c.sentinels[1]",
        4,
        &["host:port"],
    );
    assert_issue(
        &format!("{redis}timing_margin_ms = -1\n"),
        "stores.c.timing_margin_ms",
        4,
        &["zero or positive"],
    );
    let pg = "[stores.p]\nengine = \"postgres\"\nurl = \"postgres://db/x\"\n";
    assert_issue(
        &format!("{pg}table_name = \"state; DROP TABLE users\"\n"),
        "stores.p.table_name",
        4,
        &["not a plain SQL identifier"],
    );
    let nats = "[stores.n]\nengine = \"nats\"\nurl = \"nats://n:4222\"\n";
    assert_issue(
        &format!("{nats}bucket_name = \"a.b\"\n"),
        "stores.n.bucket_name",
        4,
        &["not a valid bucket name"],
    );
    assert_issue(
        &format!("{nats}max_retries = 1.5\n"),
        "stores.n.max_retries",
        4,
        &["expected an integer, got the float 1.5"],
    );
}

#[test]
fn sections_must_be_tables() {
    assert_issue(
        "stores = 5\n",
        "stores",
        1,
        &["expected a table, got an integer"],
    );
    assert_issue(
        "[stores]\nlocal = \"memory\"\n",
        "stores.local",
        2,
        &["expected a table", "[stores.local]"],
    );
    let found = issues("[[limiters]]\nstore = \"x\"\n");
    assert_eq!(found[0].path, "limiters");
    assert!(found[0].message.contains("got an array"));
}

// ---------------------------------------------------------------------------
// Limiters

#[test]
fn unknown_store_lists_the_known_ones() {
    let text = format!("{STORE}[stores.cache]\nengine = \"memory\"\n[limiters.api]\nstore = \"prod\"\nrate_per_second = 1\n");
    assert_issue(
        &text,
        "limiters.api.store",
        6,
        &["unknown store `prod`", "local, cache"],
    );
    let text = format!("{STORE}[limiters.api]\nstore = \"locl\"\nrate_per_second = 1\n");
    assert_issue(&text, "limiters.api.store", 4, &["did you mean `local`?"]);
    assert_issue(
        "[limiters.api]\nstore = \"x\"\nrate_per_second = 1\n",
        "limiters.api.store",
        2,
        &["no stores are defined"],
    );
}

#[test]
fn rates_must_be_positive_and_finite() {
    for (value, needle) in [
        ("0", "must be positive, got 0"),
        ("-2.5", "must be positive, got -2.5"),
        ("nan", "finite"),
        ("inf", "finite"),
        ("\"fast\"", "expected a number, got the string \"fast\""),
    ] {
        assert_issue(
            &with_limiter(&format!("rate_per_second = {value}\n")),
            "limiters.api.rate_per_second",
            5,
            &[needle],
        );
    }
    assert_issue(
        &with_limiter("rate_per_second = 2e9\n"),
        "limiters.api.rate_per_second",
        5,
        &["at most"],
    );
}

#[test]
fn integers_are_integers() {
    assert_issue(
        &with_limiter("rate_per_second = 1\nburst = 2.5\n"),
        "limiters.api.burst",
        6,
        &["expected an integer, got the float 2.5"],
    );
    assert_issue(
        &with_limiter("rate_per_second = 1\nburst = 0\n"),
        "limiters.api.burst",
        6,
        &["positive integer, got 0"],
    );
    assert_issue(
        &with_limiter("rate_per_second = 1\nmax_concurrent = 5000000000\n"),
        "limiters.api.max_concurrent",
        6,
        &["at most 4294967295"],
    );
    assert_issue(
        &with_limiter("rate_per_second = 1\nburst = true\n"),
        "limiters.api.burst",
        6,
        &["got the boolean true"],
    );
}

#[test]
fn a_burst_the_clock_cannot_hold_is_refused() {
    assert_issue(
        &with_limiter("rate_per_second = 0.000001\nburst = 4000000000\n"),
        "limiters.api.burst",
        6,
        &["lower `burst`"],
    );
}

#[test]
fn algorithm_keys_do_not_mix() {
    let text = with_limiter(
        "algorithm = \"sliding_window\"\nlimit = 5\nwindow_seconds = 60\nrate_per_second = 1\n",
    );
    assert_issue(
        &text,
        "limiters.api.rate_per_second",
        8,
        &["token_bucket setting", "algorithm is sliding_window"],
    );
    let text = with_limiter("rate_per_second = 1\nlimit = 5\n");
    assert_issue(
        &text,
        "limiters.api.limit",
        6,
        &[
            "sliding_window or fixed_window setting",
            "token_bucket (the default)",
            "algorithm = \"sliding_window\" or \"fixed_window\"",
        ],
    );
    for (body, path, line, needles) in [
        (
            "algorithm = \"fixed_window\"\nlimit = 5\nperiod = \"day\"\nprecision = 10\n",
            "limiters.api.precision",
            8,
            &[
                "`precision` is a sliding_window setting",
                "algorithm is fixed_window",
            ][..],
        ),
        (
            "algorithm = \"sliding_window\"\nlimit = 5\nwindow_seconds = 1\nperiod = \"day\"\n",
            "limiters.api.period",
            8,
            &[
                "`period` is a fixed_window setting",
                "algorithm = \"fixed_window\"",
            ][..],
        ),
        (
            "rate_per_second = 1\nutc_offset = \"+01:00\"\n",
            "limiters.api.utc_offset",
            6,
            &["fixed_window setting", "token_bucket (the default)"][..],
        ),
        (
            "algorithm = \"fixed_window\"\nlimit = 5\nwindow_seconds = 1\nburst = 2\n",
            "limiters.api.burst",
            8,
            &["token_bucket setting", "algorithm is fixed_window"][..],
        ),
    ] {
        assert_issue(&with_limiter(body), path, line, needles);
    }
}

#[test]
fn sliding_window_needs_limit_and_window() {
    let text = with_limiter("algorithm = \"sliding_window\"\nlimit = 5\n");
    assert_issue(
        &text,
        "limiters.api.window_seconds",
        3,
        &["missing required key `window_seconds`"],
    );
    let text = with_limiter("algorithm = \"sliding_window\"\nlimit = 5\nwindow_seconds = 0\n");
    assert_issue(
        &text,
        "limiters.api.window_seconds",
        7,
        &["must be positive"],
    );
}

#[test]
fn sliding_window_precision_is_optional_and_bounded() {
    let config = parse(&with_limiter(
        "algorithm = \"sliding_window\"\nlimit = 5\nwindow_seconds = 60\n",
    ))
    .unwrap();
    let Some(Rule::SlidingWindow(sw)) = config.limiters["api"].rule else {
        panic!()
    };
    assert_eq!(sw.precision(), DEFAULT_PRECISION);
    for (value, needle) in [
        ("3", "must be at least 4, got 3"),
        ("1001", "must be at most 1000, got 1001"),
        ("10.5", "expected an integer, got the float 10.5"),
    ] {
        assert_issue(
            &with_limiter(&format!(
                "algorithm = \"sliding_window\"\nlimit = 5\nwindow_seconds = 60\nprecision = {value}\n"
            )),
            "limiters.api.precision",
            8,
            &[needle],
        );
    }
    let config = parse(&with_limiter(
        "algorithm = \"sliding_window\"\nlimit = 5\nwindow_seconds = 60\nprecision = \"${P:-4}\"\n",
    ))
    .unwrap();
    let Some(Rule::SlidingWindow(sw)) = config.limiters["api"].rule else {
        panic!()
    };
    assert_eq!(
        sw.precision(),
        4,
        "numbers from the environment are numbers"
    );
}

/// The fixed window of `body` (a `[limiters.api]` body), which must validate.
fn fixed(body: &str) -> ratesync::FixedWindow {
    let config = parse(&with_limiter(&format!(
        "algorithm = \"fixed_window\"\n{body}"
    )))
    .unwrap();
    match config.limiters["api"].rule {
        Some(Rule::FixedWindow(fw)) => fw,
        other => panic!("not a fixed window: {other:?}"),
    }
}

#[test]
fn fixed_windows_validate() {
    const SEC: u64 = 1_000_000_000;
    const HOUR: u64 = 3600 * SEC;
    // Epoch-aligned windows of any length.
    let fw = fixed("limit = 10\nwindow_seconds = 7\n");
    assert_eq!((fw.limit(), fw.period(), fw.utc_offset()), (10, None, 0));
    assert_eq!(
        fw.windows(),
        Windows::Every {
            length: 7 * SEC,
            phase: 0
        }
    );
    // With an offset, windows of a divisor of a day start at local midnight.
    let fw = fixed("limit = 10\nwindow_seconds = 7200\nutc_offset = \"+05:30\"\n");
    assert_eq!(fw.utc_offset(), 19_800);
    assert_eq!(fw.bounds(0).1, HOUR / 2, "midnight in India is 18:30 UTC");
    // Calendar periods, UTC unless said otherwise.
    for (period, expected) in [
        ("day", Period::Day),
        ("week", Period::Week),
        ("month", Period::Month),
    ] {
        let fw = fixed(&format!("limit = 3\nperiod = \"{period}\"\n"));
        assert_eq!((fw.period(), fw.utc_offset()), (Some(expected), 0));
    }
    for (offset, seconds) in [
        ("-08:00", -28_800),
        ("UTC", 0),
        ("Z", 0),
        ("+00:00", 0),
        ("${TZ_OFFSET:-+09:00}", 32_400),
    ] {
        let fw = fixed(&format!(
            "limit = 3\nperiod = \"day\"\nutc_offset = \"{offset}\"\n"
        ));
        assert_eq!(fw.utc_offset(), seconds, "{offset}");
    }
}

#[test]
fn fixed_window_errors_name_their_key() {
    let cases: &[(&str, &str, usize, &[&str])] = &[
        (
            "limit = 3\nperiod = \"daily\"\n",
            "limiters.api.period",
            7,
            &[
                "unknown period `daily`",
                "expected day, week or month",
                "did you mean `day`?",
            ],
        ),
        (
            "limit = 3\nperiod = \"fortnight\"\n",
            "limiters.api.period",
            7,
            &["unknown period `fortnight`; expected day, week or month"],
        ),
        (
            "limit = 3\nperiod = 1\n",
            "limiters.api.period",
            7,
            &["expected a string, got the integer 1"],
        ),
        (
            "limit = 3\nperiod = \"day\"\nwindow_seconds = 60\n",
            "limiters.api.period",
            7,
            &["`period` and `window_seconds` exclude each other"],
        ),
        (
            "limit = 3\n",
            "limiters.api.window_seconds",
            3,
            &[
                "missing required key `window_seconds` (or `period`",
                "fixed_window limiter",
            ],
        ),
        (
            "period = \"day\"\n",
            "limiters.api.limit",
            3,
            &["missing required key `limit` for a fixed_window limiter"],
        ),
        (
            "limit = 3\nwindow_seconds = 7\nutc_offset = \"+01:00\"\n",
            "limiters.api.window_seconds",
            7,
            &[
                "`window_seconds` = 7 does not divide a day",
                "without `utc_offset`",
            ],
        ),
        (
            "limit = 3\nwindow_seconds = 0\n",
            "limiters.api.window_seconds",
            7,
            &["must be positive, got 0"],
        ),
        (
            "limit = 3\nwindow_seconds = 2e9\n",
            "limiters.api.window_seconds",
            7,
            &["must be at most"],
        ),
        (
            "limit = 0\nperiod = \"week\"\n",
            "limiters.api.limit",
            6,
            &["positive integer, got 0"],
        ),
        (
            "limit = 3\nperiod = \"day\"\nutc_offset = \"+5:30\"\n",
            "limiters.api.utc_offset",
            8,
            &["expected a UTC offset such as \"+05:30\"", "got \"+5:30\""],
        ),
        (
            "limit = 3\nperiod = \"day\"\nutc_offset = \"+19:00\"\n",
            "limiters.api.utc_offset",
            8,
            &["beyond the largest UTC offset, ±18:00"],
        ),
        (
            "limit = 3\nperiod = \"day\"\nutc_offset = 5\n",
            "limiters.api.utc_offset",
            8,
            &["expected a string, got the integer 5"],
        ),
    ];
    for (body, path, line, needles) in cases {
        let text = with_limiter(&format!("algorithm = \"fixed_window\"\n{body}"));
        assert_issue(&text, path, *line, needles);
    }
    // An offset with an invalid window reports both, each at its key.
    let found = issues(&with_limiter(
        "algorithm = \"fixed_window\"\nlimit = 3\nperiod = \"yearly\"\nutc_offset = \"noon\"\n",
    ));
    let paths: Vec<_> = found.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(paths, ["limiters.api.period", "limiters.api.utc_offset"]);
}

#[test]
fn an_unknown_algorithm_lists_fixed_window() {
    assert_issue(
        &with_limiter("algorithm = \"fixed-window\"\n"),
        "limiters.api.algorithm",
        5,
        &[
            "expected token_bucket, sliding_window or fixed_window",
            "did you mean `fixed_window`?",
        ],
    );
}

#[test]
fn algorithm_must_be_known() {
    assert_issue(
        &with_limiter("algorithm = \"sliding-window\"\n"),
        "limiters.api.algorithm",
        5,
        &["unknown algorithm", "did you mean `sliding_window`?"],
    );
}

#[test]
fn a_limiter_needs_a_rate_or_a_cap() {
    assert_issue(
        &with_limiter(""),
        "limiters.api",
        3,
        &["needs `rate_per_second`", "`max_concurrent`"],
    );
    assert_issue(
        &with_limiter("burst = 5\n"),
        "limiters.api.burst",
        5,
        &["needs `rate_per_second`"],
    );
    assert_issue(
        &format!("{STORE}[limiters.api]\nrate_per_second = 1\n"),
        "limiters.api.store",
        3,
        &["missing required key `store`"],
    );
}

#[test]
fn timeouts_and_leases() {
    assert_issue(
        &with_limiter("rate_per_second = 1\ntimeout = -1\n"),
        "limiters.api.timeout",
        6,
        &["zero or positive, got -1"],
    );
    assert_issue(
        &with_limiter("rate_per_second = 1\ntimeout = 1e300\n"),
        "limiters.api.timeout",
        6,
        &["too long"],
    );
    assert_issue(
        &with_limiter("rate_per_second = 1\nlease_ttl = 5\n"),
        "limiters.api.lease_ttl",
        6,
        &["only applies", "max_concurrent"],
    );
    assert_issue(
        &with_limiter("max_concurrent = 2\nlease_ttl = 0\n"),
        "limiters.api.lease_ttl",
        6,
        &["must be positive"],
    );
}

#[test]
fn booleans_are_booleans() {
    assert_issue(
        &with_limiter("rate_per_second = 1\nfail_closed = \"true\"\n"),
        "limiters.api.fail_closed",
        6,
        &["write true without quotes"],
    );
    assert_issue(
        &with_limiter("rate_per_second = 1\nfail_closed = 1\n"),
        "limiters.api.fail_closed",
        6,
        &["expected a boolean"],
    );
    let text = with_limiter("rate_per_second = 1\nfail_closed = \"${STRICT:-false}\"\n");
    let strict = Config::from_toml_str_with_env(&text, "f", env(&[("STRICT", "true")])).unwrap();
    assert!(
        strict.limiters["api"].fail_closed,
        "booleans may come from the environment"
    );
    assert!(!parse(&text).unwrap().limiters["api"].fail_closed);
}

#[test]
fn unknown_limiter_key_suggests() {
    assert_issue(
        &with_limiter("rate_per_second = 1\nmax_concurent = 3\n"),
        "limiters.api.max_concurent",
        6,
        &["did you mean `max_concurrent`?"],
    );
}

#[test]
fn fastapi_networks_are_checked_one_by_one() {
    let text = "[fastapi]\ntrusted_proxy_networks = [\n  \"10.0.0.0/8\",\n  \"10.0.0.0/33\",\n]\n";
    assert_issue(
        text,
        "fastapi.trusted_proxy_networks[1]",
        4,
        &["longer than 32 bits"],
    );
    assert_issue(
        "[fastapi]\ntrusted_proxy_networks = \"10.0.0.0/8\"\n",
        "fastapi.trusted_proxy_networks",
        2,
        &["expected an array"],
    );
    assert_issue(
        "[fastapi]\ntrusted_proxies = []\n",
        "fastapi.trusted_proxies",
        2,
        &["unknown key"],
    );
}

#[test]
fn every_issue_is_reported_at_once() {
    let text = "\
[stores.cache]
engine = \"redis\"

[limiters.a]
store = \"cache\"
rate_per_second = -1

[limiters.b]
store = \"nope\"
algorithm = \"sliding_window\"
limit = 0
window_seconds = 1
";
    let found = issues(text);
    let at: Vec<_> = found.iter().map(|i| (i.path.as_str(), i.line)).collect();
    assert_eq!(
        at,
        [
            ("stores.cache.url", Some(1)),
            ("limiters.a.rate_per_second", Some(6)),
            ("limiters.b.store", Some(9)),
            ("limiters.b.limit", Some(11)),
        ]
    );
    let shown = parse(text).unwrap_err().to_string();
    assert!(
        shown.starts_with("rate-sync.toml:1: stores.cache.url: missing required key `url`"),
        "{shown}"
    );
    assert_eq!(shown.lines().count(), 4);
}

// ---------------------------------------------------------------------------
// Environment expansion

#[test]
fn unset_variables_are_named_with_their_key() {
    let text = "[stores.cache]\nengine = \"redis\"\nurl = \"redis://${REDIS_HOST}:6379\"\n";
    assert_issue(
        text,
        "stores.cache.url",
        3,
        &["`REDIS_HOST` is not set", "${REDIS_HOST:-default}"],
    );
    let ok = Config::from_toml_str_with_env(text, "f", env(&[("REDIS_HOST", "cache")])).unwrap();
    assert_eq!(ok.stores["cache"].engine.location(), "redis://cache:6379");
}

#[test]
fn expansion_forms() {
    let text = "[stores.c]\nengine = \"redis\"\nurl = \"redis://$HOST:${PORT:-6379}/${DB:-}\"\nkey_prefix = \"a$$b\"\npassword = \"${PW:-${FALLBACK_PW:-}}\"\n";
    let config =
        Config::from_toml_str_with_env(text, "f", env(&[("HOST", "h"), ("FALLBACK_PW", "pw")]))
            .unwrap();
    let EngineConfig::Redis(c) = &config.stores["c"].engine else {
        panic!()
    };
    assert_eq!(c.url.expose(), "redis://h:6379/");
    assert_eq!(c.key_prefix, "a$b");
    assert_eq!(c.password.as_ref().map(|p| p.expose()), Some("pw"));
    assert_issue(
        "[stores.c]\nengine = \"${ENGINE\"\n",
        "stores.c.engine",
        2,
        &["without a closing"],
    );
}

#[test]
fn table_names_expand_too() {
    let text = "[stores.\"${STORE:-local}\"]\nengine = \"memory\"\n[limiters.\"${TENANT}\"]\nstore = \"local\"\nrate_per_second = 1\n";
    let config = Config::from_toml_str_with_env(text, "f", env(&[("TENANT", "acme")])).unwrap();
    assert!(config.stores.contains_key("local") && config.limiters.contains_key("acme"));
    assert_issue(text, "limiters.\"${TENANT}\"", 3, &["`TENANT` is not set"]);
    let dup = "[stores.\"${A:-x}\"]\nengine = \"memory\"\n[stores.x]\nengine = \"memory\"\n";
    let found = issues(dup);
    assert!(found[0].message.contains("duplicate key `x`"), "{found:?}");
}

#[test]
fn numbers_from_the_environment_are_numbers_and_strings_stay_strings() {
    let text = "[stores.c]\nengine = \"redis\"\nurl = \"redis://c\"\npassword = \"${PW:-12345}\"\ndb = \"${DB:-3}\"\n[limiters.api]\nstore = \"c\"\nrate_per_second = \"${RATE:-2.5}\"\nburst = \"${BURST:-4}\"\n";
    let config = parse(text).unwrap();
    let EngineConfig::Redis(c) = &config.stores["c"].engine else {
        panic!()
    };
    assert_eq!(c.password.as_ref().map(|p| p.expose()), Some("12345"));
    assert_eq!(c.db, Some(3));
    assert_eq!(config.limiters["api"].rule.map(|r| r.capacity()), Some(4));
    let bad = Config::from_toml_str_with_env(text, "f", env(&[("BURST", "many")])).unwrap_err();
    assert_eq!(bad.issues[0].path, "limiters.api.burst");
    assert!(bad.issues[0]
        .message
        .contains("expected an integer, got the string \"many\""));
}

// ---------------------------------------------------------------------------
// Secrets

#[test]
fn secrets_never_appear_in_errors() {
    let text = "\
[stores.a]
engine = \"redis\"
url = \"redis://admin:hunter2@cache:notaport/0\"
password = [\"hunter2\"]

[stores.b]
engine = \"nats\"
url = \"hunter2\"
token = true

[stores.c]
engine = \"postgres\"
url = \"hunter2:x@db/app\"

[stores.d]
engine = \"redis\"
url = \"redis//:hunter2@cache\"
sentinels = [\"user:hunter2@s1:notaport\"]
sentinel_master = \"m\"
";
    let error = parse(text).unwrap_err();
    assert!(error.issues.len() >= 6, "{error:#?}");
    let shown = format!("{error}\n{error:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    let paths: Vec<_> = error.issues.iter().map(|i| i.path.as_str()).collect();
    for path in [
        "stores.a.url",
        "stores.a.password",
        "stores.b.url",
        "stores.b.token",
        "stores.c.url",
        "stores.d.url",
        "stores.d.sentinels[0]",
    ] {
        assert!(paths.contains(&path), "{path} not in {paths:?}");
    }
    // A secret in an environment variable stays out of messages as well.
    let text = "[stores.a]\nengine = \"redis\"\nurl = \"${URL}\"\n";
    let error =
        Config::from_toml_str_with_env(text, "f", env(&[("URL", "redis://u:hunter2@h:99999")]))
            .unwrap_err();
    assert!(!error.to_string().contains("hunter2"), "{error}");
}

// ---------------------------------------------------------------------------
// Builder

fn build_error(builder: ratesync::config::ConfigBuilder) -> Vec<(String, String)> {
    let error = builder.build().unwrap_err();
    assert_eq!(error.origin, "configuration");
    error
        .issues
        .into_iter()
        .map(|i| {
            assert_eq!(i.line, None);
            (i.path, i.message)
        })
        .collect()
}

fn file_error(text: &str) -> Vec<(String, String)> {
    issues(text)
        .into_iter()
        .map(|i| (i.path, i.message))
        .collect()
}

#[test]
fn builder_builds_what_the_file_says() {
    let config = Config::builder()
        .store("local", StoreBuilder::memory().option("max_keys", 10))
        .store(
            "cache",
            StoreBuilder::redis("redis://cache:6379/0").option("key_prefix", "rl"),
        )
        .store(
            "db",
            StoreBuilder::postgres("postgresql://db/app").option("auto_create", true),
        )
        .store("bus", StoreBuilder::nats("nats://a:4222,nats://b:4222"))
        .limiter(
            "api",
            LimiterBuilder::token_bucket("cache", 100.0)
                .burst(20)
                .max_concurrent(5)
                .lease_ttl(10.0)
                .timeout(2.0)
                .fail_closed(true),
        )
        .limiter(
            "login",
            LimiterBuilder::sliding_window("db", 5, 300.0)
                .timeout(1.0)
                .no_timeout(),
        )
        .limiter(
            "jobs",
            LimiterBuilder::new("bus").option("max_concurrent", 3),
        )
        .trusted_proxy_networks(["10.0.0.0/8"])
        .build()
        .unwrap();
    assert_eq!(config.stores.len(), 4);
    let api = &config.limiters["api"];
    assert_eq!(api.rule.map(|r| r.capacity()), Some(20));
    assert_eq!(api.lease_ttl, Duration::from_secs(10));
    assert_eq!(api.timeout, Some(Duration::from_secs(2)));
    assert!(api.fail_closed);
    assert_eq!(config.limiters["login"].timeout, None);
    assert!(config.limiters["jobs"].is_concurrency_only());
    assert_eq!(config.fastapi.trusted_proxy_networks, ["10.0.0.0/8"]);
}

#[test]
fn builder_fails_exactly_as_the_file() {
    let builder = Config::builder()
        .store(
            "cache",
            StoreBuilder::new("redis")
                .option("url", "http://x")
                .option("key_prefx", "a"),
        )
        .store("local", StoreBuilder::new("memroy"))
        .limiter(
            "api",
            LimiterBuilder::token_bucket("cache", -1.0)
                .burst(0)
                .option("limit", 3),
        )
        .limiter("login", LimiterBuilder::sliding_window("nope", 5, f64::NAN));
    let text = "\
[stores.cache]
engine = \"redis\"
url = \"http://x\"
key_prefx = \"a\"
[stores.local]
engine = \"memroy\"
[limiters.api]
store = \"cache\"
algorithm = \"token_bucket\"
rate_per_second = -1.0
burst = 0
limit = 3
[limiters.login]
store = \"nope\"
algorithm = \"sliding_window\"
limit = 5
window_seconds = nan
";
    let from_code = build_error(builder);
    assert_eq!(from_code.len(), 8, "{from_code:#?}");
    // Same issues; the file lists them by line, the builder in the order of its calls.
    let mut from_file = file_error(text);
    let mut from_code = from_code;
    from_file.sort();
    from_code.sort();
    assert_eq!(from_code, from_file);
}

#[test]
fn builder_builds_fixed_windows_and_precision() {
    let config = Config::builder()
        .store("local", StoreBuilder::memory())
        .limiter(
            "daily",
            LimiterBuilder::calendar("local", 3, Period::Day).utc_offset("+05:30"),
        )
        .limiter(
            "hourly",
            LimiterBuilder::fixed_window("local", 100, 3600.0).utc_offset("-08:00"),
        )
        .limiter("minute", LimiterBuilder::fixed_window("local", 60, 60.0))
        .limiter(
            "login",
            LimiterBuilder::sliding_window("local", 5, 300.0).precision(20),
        )
        .build()
        .unwrap();
    let rule = |id: &str| config.limiters[id].rule;
    let Some(Rule::FixedWindow(daily)) = rule("daily") else {
        panic!()
    };
    assert_eq!(
        (daily.limit(), daily.period(), daily.utc_offset()),
        (3, Some(Period::Day), 19_800)
    );
    let Some(Rule::FixedWindow(hourly)) = rule("hourly") else {
        panic!()
    };
    assert_eq!((hourly.period(), hourly.utc_offset()), (None, -28_800));
    assert!(matches!(rule("minute"), Some(Rule::FixedWindow(fw)) if fw.utc_offset() == 0));
    assert!(matches!(rule("login"), Some(Rule::SlidingWindow(sw)) if sw.precision() == 20));

    // And fails exactly as the file does.
    let builder = Config::builder()
        .store("local", StoreBuilder::memory())
        .limiter(
            "a",
            LimiterBuilder::calendar("local", 3, Period::Week)
                .option("window_seconds", 60.0)
                .utc_offset("+5"),
        )
        .limiter(
            "b",
            LimiterBuilder::fixed_window("local", 3, 7.0).utc_offset("+01:00"),
        )
        .limiter(
            "c",
            LimiterBuilder::sliding_window("local", 5, 1.0).precision(2),
        )
        .limiter(
            "d",
            LimiterBuilder::token_bucket("local", 1.0).precision(10),
        );
    let text = "\
[stores.local]
engine = \"memory\"
[limiters.a]
store = \"local\"
algorithm = \"fixed_window\"
limit = 3
period = \"week\"
window_seconds = 60.0
utc_offset = \"+5\"
[limiters.b]
store = \"local\"
algorithm = \"fixed_window\"
limit = 3
window_seconds = 7.0
utc_offset = \"+01:00\"
[limiters.c]
store = \"local\"
algorithm = \"sliding_window\"
limit = 5
window_seconds = 1.0
precision = 2
[limiters.d]
store = \"local\"
algorithm = \"token_bucket\"
rate_per_second = 1.0
precision = 10
";
    let mut from_code = build_error(builder);
    assert_eq!(from_code.len(), 5, "{from_code:#?}");
    let mut from_file = file_error(text);
    from_file.sort();
    from_code.sort();
    assert_eq!(from_code, from_file);
}

#[test]
fn builder_secrets_are_masked_too() {
    let error = Config::builder()
        .store("cache", StoreBuilder::redis("redis://u:hunter2@cache:bad"))
        .build()
        .unwrap_err();
    assert!(!error.to_string().contains("hunter2"), "{error}");
    assert_eq!(error.issues[0].path, "stores.cache.url");
}

// ---------------------------------------------------------------------------
// Files and discovery

#[test]
fn load_names_the_file_and_the_os_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let error = Config::load(&missing).unwrap_err();
    let shown = error.to_string();
    assert!(shown.starts_with(&missing.display().to_string()), "{shown}");
    assert!(
        shown.contains("cannot read") && shown.contains("os error"),
        "{shown}"
    );

    let file = dir.path().join("rate-sync.toml");
    std::fs::write(&file, ALL_ENGINES).unwrap();
    let config = Config::load(&file).unwrap();
    assert_eq!(config.source.as_deref(), Some(file.as_path()));

    std::fs::write(&file, "[stores.x]\nengine = 1\n").unwrap();
    let error = Config::load(&file).unwrap_err();
    assert_eq!(error.origin, file.display().to_string());
    assert!(error.to_string().contains(":2: stores.x.engine"), "{error}");
}

fn touch(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, "").unwrap();
}

#[test]
fn discovery_order() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    assert_eq!(
        discover_path_in(None, None, cwd).unwrap(),
        None,
        "no file is not an error"
    );

    touch(&cwd.join("config/rate-sync.toml"));
    assert_eq!(
        discover_path_in(None, None, cwd).unwrap(),
        Some(cwd.join("config/rate-sync.toml"))
    );
    touch(&cwd.join("rate-sync.toml"));
    assert_eq!(
        discover_path_in(None, None, cwd).unwrap(),
        Some(cwd.join("rate-sync.toml"))
    );

    touch(&cwd.join("env.toml"));
    let found = discover_path_in(None, Some("env.toml".as_ref()), cwd).unwrap();
    assert_eq!(
        found,
        Some(cwd.join("env.toml")),
        "the variable beats the working directory"
    );
    let found = discover_path_in(None, Some("".as_ref()), cwd).unwrap();
    assert_eq!(
        found,
        Some(cwd.join("rate-sync.toml")),
        "an empty variable counts as unset"
    );

    let explicit = cwd.join("explicit.toml");
    touch(&explicit);
    let found = discover_path_in(Some(&explicit), Some("env.toml".as_ref()), cwd).unwrap();
    assert_eq!(found, Some(explicit), "an explicit path beats everything");
}

#[test]
fn named_files_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    touch(&cwd.join("rate-sync.toml"));

    let error = discover_path_in(Some(Path::new("nope.toml")), None, cwd).unwrap_err();
    assert_eq!(error.origin, cwd.join("nope.toml").display().to_string());
    assert!(error.to_string().contains("does not exist"), "{error}");

    let error = discover_path_in(None, Some("gone.toml".as_ref()), cwd).unwrap_err();
    assert!(error.to_string().contains("RATE_SYNC_CONFIG"), "{error}");
}

// ---------------------------------------------------------------------------
// Hostile input (`docs/design.md#hostile-input`): any text gives Ok or Err, never a panic.

fn check(text: &str) {
    let _ = Config::from_toml_str_with_env(text, "fuzz", |name| {
        (name.len() % 2 == 0).then(|| "1".to_owned())
    });
}

/// Pieces that steer random edits towards interesting configurations.
const PIECES: &[&str] = &[
    "${",
    "}",
    "$",
    "$$",
    ":-",
    "\"",
    "'",
    "[",
    "]",
    "[[",
    "=",
    ".",
    ",",
    "\n",
    "-",
    "0",
    "nan",
    "inf",
    "1e999",
    "4294967296",
    "-1",
    "0.0",
    "true",
    "\"${X:-",
    "stores",
    "limiters",
    "burst",
    "rate_per_second",
    "algorithm = \"sliding_window\"",
    "algorithm = \"fixed_window\"",
    "period = \"month\"",
    "utc_offset = \"+05:30\"",
    "precision",
    "engine = \"nats\"",
    "url = ",
    "max_concurrent",
    "é",
    "\u{0}",
    "{ a = 1 }",
    "1979-05-27T07:32:00Z",
];

#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, usize),
    Duplicate(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 0usize..40).prop_map(|(at, len)| Edit::Delete(at, len)),
        (any::<usize>(), 0..PIECES.len()).prop_map(|(at, piece)| Edit::Insert(at, piece)),
        (any::<usize>(), 0usize..200).prop_map(|(at, len)| Edit::Duplicate(at, len)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for edit in edits {
        let n = chars.len().max(1);
        match *edit {
            Edit::Delete(at, len) => {
                let at = at % n;
                let end = (at + len).min(chars.len());
                chars.drain(at.min(end)..end);
            }
            Edit::Insert(at, piece) => {
                let at = at % (chars.len() + 1);
                chars.splice(at..at, PIECES[piece].chars());
            }
            Edit::Duplicate(at, len) => {
                let at = at % n;
                let end = (at + len).min(chars.len());
                let copy: Vec<char> = chars[at.min(end)..end].to_vec();
                chars.splice(at.min(end)..at.min(end), copy);
            }
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check(&text);
    }

    #[test]
    fn mutated_files_never_panic(
        base in prop_oneof![Just(COMPAT), Just(ALL_ENGINES)],
        edits in prop::collection::vec(edit(), 1..8),
    ) {
        check(&apply(base, &edits));
    }

    #[test]
    fn builder_options_never_panic(
        key in prop_oneof![
            prop::sample::select(&["rate_per_second", "burst", "limit", "window_seconds", "precision", "period", "utc_offset", "timeout", "lease_ttl", "max_concurrent", "algorithm"][..]).prop_map(String::from),
            ".*",
        ],
        number in any::<f64>(),
        int in any::<i64>(),
        text in ".*",
    ) {
        for value in [toml::Value::Float(number), toml::Value::Integer(int), toml::Value::String(text.clone())] {
            let _ = Config::builder()
                .store("s", StoreBuilder::memory())
                .limiter("l", LimiterBuilder::new("s").option(&key, value))
                .build();
        }
    }
}

#[test]
fn shadow_is_a_boolean_off_by_default() {
    let on = parse(&with_limiter("rate_per_second = 5.0\nshadow = true\n")).unwrap();
    assert!(on.limiters["api"].shadow);
    let off = parse(&with_limiter("rate_per_second = 5.0\n")).unwrap();
    assert!(!off.limiters["api"].shadow);
    assert_issue(
        &with_limiter("rate_per_second = 5.0\nshadow = \"yes\"\n"),
        "limiters.api.shadow",
        6,
        &["expected a boolean"],
    );
}

#[test]
fn the_http_table_is_named_http_or_fastapi_but_not_both() {
    let http = parse("[http]\ntrusted_proxy_networks = [\"10.0.0.0/8\"]\n").unwrap();
    assert_eq!(http.fastapi.trusted_proxy_networks, ["10.0.0.0/8"]);
    let fastapi = parse("[fastapi]\ntrusted_proxy_networks = [\"10.0.0.0/8\"]\n").unwrap();
    assert_eq!(
        fastapi.fastapi, http.fastapi,
        "[fastapi] is rate-sync's name"
    );
    assert_issue(
        "[http]\ntrusted_proxy_networks = [\"10.0.0.0/33\"]\n",
        "http.trusted_proxy_networks[0]",
        2,
        &["longer than 32 bits"],
    );
    assert_issue(
        "[http]\ntrusted_proxies = []\n",
        "http.trusted_proxies",
        2,
        &["unknown key `trusted_proxies` in [http]"],
    );
    assert_issue(
        "[http]\ntrusted_proxy_networks = [\"10.0.0.0/8\"]\n\n[fastapi]\ntrusted_proxy_networks = []\n",
        "fastapi",
        4,
        &["`[http]` and `[fastapi]` are the same table", "keep one"],
    );
    let built = Config::builder()
        .trusted_proxy_networks(["192.0.2.0/24"])
        .build()
        .unwrap();
    assert_eq!(built.fastapi.trusted_proxy_networks, ["192.0.2.0/24"]);
    let error = Config::builder()
        .trusted_proxy_networks(["proxy.internal"])
        .build()
        .unwrap_err();
    assert_eq!(
        error.issues[0].path, "http.trusted_proxy_networks[0]",
        "the builder writes the [http] table"
    );
}

/// `[[limiters.ID.overrides]]`: the limiter's table with the override's fields,
/// validated as a limiter (`docs/design.md#overrides`).
#[test]
fn overrides_are_the_limiter_with_some_fields_replaced() {
    let text = with_limiter(
        "algorithm = \"fixed_window\"\nlimit = 100\nperiod = \"day\"\n\
         [[limiters.api.overrides]]\nkeys = [\"acme\", \"globex\"]\nlimit = 1000\n\
         [[limiters.api.overrides]]\nkey_prefix = \"plan-pro:\"\nwindow_seconds = 3600\nmax_concurrent = 4\n",
    );
    let config = parse(&text).unwrap();
    let api = &config.limiters["api"];
    let [tenants, pro] = &api.overrides[..] else {
        panic!("two overrides: {:?}", api.overrides)
    };
    assert_eq!(tenants.keys, ["acme", "globex"]);
    let Some(ratesync::Rule::FixedWindow(fw)) = tenants.rule else {
        panic!("{tenants:?}")
    };
    assert_eq!(
        (fw.limit(), fw.period()),
        (1000, Some(ratesync::Period::Day))
    );
    let Some(ratesync::Rule::FixedWindow(fw)) = pro.rule else {
        panic!("{pro:?}")
    };
    // The override's window replaces the limiter's period.
    assert_eq!((fw.limit(), fw.period()), (100, None));
    assert_eq!(fw.window_nanos(), 3_600_000_000_000);
    assert_eq!(pro.max_concurrent.map(|n| n.get()), Some(4));
    assert!(pro.matches("plan-pro:42") && !pro.matches("plan-basic:42"));
}

#[test]
fn override_errors_name_the_override() {
    let table = "rate_per_second = 5.0\n[[limiters.api.overrides]]\n";
    let cases: &[(&str, &str, usize, &[&str])] = &[
        (
            "burst = 10\n",
            "limiters.api.overrides[0]",
            6,
            &["an override needs `keys`, `key_prefix` or both"],
        ),
        (
            "keys = [\"vip\"]\n",
            "limiters.api.overrides[0]",
            6,
            &["sets none of the rule fields"],
        ),
        (
            "keys = [\"vip\"]\nburst = 10\nfail_closed = true\n",
            "limiters.api.overrides[0].fail_closed",
            9,
            &["`fail_closed` is the limiter's own, the same for every key"],
        ),
        (
            "keys = [\"vip\"]\nlimit = 10\n",
            "limiters.api.overrides[0].limit",
            8,
            &["`limit` is a sliding_window or fixed_window setting"],
        ),
        (
            "keys = []\nburst = 2\n",
            "limiters.api.overrides[0].keys",
            7,
            &["must list at least one key"],
        ),
        (
            "key_prefix = \"\"\nburst = 2\n",
            "limiters.api.overrides[0].key_prefix",
            7,
            &["must not be empty"],
        ),
        (
            "keys = [\"vip\"]\nburst = 0\n",
            "limiters.api.overrides[0].burst",
            8,
            &["positive integer, got 0"],
        ),
    ];
    for (body, path, line, needles) in cases {
        assert_issue(
            &with_limiter(&format!("{table}{body}")),
            path,
            *line,
            needles,
        );
    }
}

#[test]
fn the_builder_adds_overrides_in_order() {
    use ratesync::OverrideBuilder;
    let config = Config::builder()
        .store("m", StoreBuilder::memory())
        .limiter(
            "api",
            LimiterBuilder::token_bucket("m", 10.0)
                .key_override(OverrideBuilder::keys(["vip"]).burst(20))
                .key_override(OverrideBuilder::key_prefix("pro:").rate_per_second(100.0)),
        )
        .build()
        .unwrap();
    let overrides = &config.limiters["api"].overrides;
    assert_eq!(overrides.len(), 2);
    assert_eq!(overrides[0].keys, ["vip"]);
    assert_eq!(overrides[1].key_prefix.as_deref(), Some("pro:"));
    let error = Config::builder()
        .store("m", StoreBuilder::memory())
        .limiter(
            "api",
            LimiterBuilder::token_bucket("m", 10.0)
                .key_override(OverrideBuilder::keys(["vip"]).option("store", "m")),
        )
        .build()
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("limiters.api.overrides[0].store"),
        "{error}"
    );
}

#[test]
fn a_postgres_pool_size_is_a_client_count_from_1_to_64() {
    // The engine opens exactly `pool_max_size` clients, else `pool_min_size`: a size
    // it would change is an error, not a silent clamp.
    let pg = "[stores.p]\nengine = \"postgres\"\nurl = \"postgres://db/x\"\n";
    assert_issue(
        &format!("{pg}pool_max_size = 65\n"),
        "stores.p.pool_max_size",
        4,
        &["at most 64", "got 65"],
    );
    assert_issue(
        &format!("{pg}pool_min_size = 100\n"),
        "stores.p.pool_min_size",
        4,
        &["at most 64", "got 100"],
    );
    assert_issue(
        &format!("{pg}pool_min_size = 0\n"),
        "stores.p.pool_min_size",
        4,
        &["at least 1", "`pool_max_size` is not set", "got 0"],
    );
    for fine in [
        "pool_max_size = 64\n",
        "pool_max_size = 1\n",
        "pool_min_size = 0\npool_max_size = 4\n",
        "pool_min_size = 64\n",
    ] {
        parse(&format!("{pg}{fine}")).unwrap_or_else(|e| panic!("{fine}: {e}"));
    }
    // Redis accepts and ignores the pool keys: no client count to bound.
    parse("[stores.c]\nengine = \"redis\"\nurl = \"redis://c\"\npool_max_size = 100\n").unwrap();
}
