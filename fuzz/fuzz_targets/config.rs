//! Any bytes as a `rate-sync.toml`: the loader answers Ok or a ConfigError, never a
//! panic. Environment lookups answer for some names and not others, so expansion,
//! defaults and the "unset variable" error are all reached.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ratesync::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Config::from_toml_str_with_env(text, "fuzz", |name| {
        (name.len() % 2 == 0).then(|| "1".to_owned())
    });
});
