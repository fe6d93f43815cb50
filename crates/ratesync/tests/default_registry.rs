//! The process-wide default registry behind `ratesync::acquire("api")`: loaded from
//! the discovered file (here `RATE_SYNC_CONFIG`) on first use. One test in this file,
//! because it sets a process-wide environment variable.

use std::io::Write;

#[tokio::test]
async fn one_liners_use_the_discovered_configuration() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        file,
        "[stores.mem]\nengine = \"memory\"\n\n[limiters.api]\nstore = \"mem\"\nrate_per_second = 1.0\nburst = 2\n"
    )
    .unwrap();
    // SAFETY: the only test in this binary; nothing else reads the environment
    // concurrently.
    unsafe { std::env::set_var("RATE_SYNC_CONFIG", file.path()) };

    let permit = ratesync::try_acquire("api").await.expect("first unit");
    assert_eq!(permit.decision().remaining(), 1);
    ratesync::try_acquire("api").await.expect("second unit");
    let refused = ratesync::try_acquire("api").await.unwrap_err();
    assert!(matches!(
        refused,
        ratesync::DefaultAcquireError::Acquire(ratesync::AcquireError::Denied { .. })
    ));
    let unknown = ratesync::acquire("nope").await.unwrap_err();
    assert!(
        unknown.to_string().contains("no limiter named `nope`"),
        "{unknown}"
    );

    // An application can replace the default registry with one built in code.
    let config = ratesync::Config::builder()
        .store("m", ratesync::StoreBuilder::memory())
        .limiter(
            "api",
            ratesync::LimiterBuilder::token_bucket("m", 1.0).burst(5),
        )
        .build()
        .unwrap();
    ratesync::set_default_registry(ratesync::Registry::from_config(config).unwrap());
    let permit = ratesync::try_acquire("api").await.unwrap();
    assert_eq!(permit.decision().remaining(), 4);
}
