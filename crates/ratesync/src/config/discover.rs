//! Which configuration file to read (`docs/design.md#configuration-files`): the explicit path, then
//! `RATE_SYNC_CONFIG`, then `./rate-sync.toml`, then `./config/rate-sync.toml`.
//!
//! A path the user named (explicitly or through the variable) must exist: silently
//! falling back to another file, as rate-sync does, would run with the wrong limits.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::error::ConfigError;
use super::types::Config;

/// The environment variable naming the configuration file.
pub const CONFIG_ENV_VAR: &str = "RATE_SYNC_CONFIG";

/// The file names tried, relative to the working directory, when neither an explicit
/// path nor the variable is given.
pub const DEFAULT_LOCATIONS: [&str; 2] = ["rate-sync.toml", "config/rate-sync.toml"];

impl Config {
    /// Loads the configuration file found by [`discover_path`]; `Ok(None)` when there
    /// is none (not an error: configuration may come from code).
    pub fn discover(explicit: Option<&Path>) -> Result<Option<Config>, ConfigError> {
        discover_path(explicit)?.map(Config::load).transpose()
    }
}

/// The configuration file to use, from the process environment and working directory.
pub fn discover_path(explicit: Option<&Path>) -> Result<Option<PathBuf>, ConfigError> {
    let env = std::env::var_os(CONFIG_ENV_VAR);
    // Without a working directory only relative lookups are impossible; `.` then
    // fails them the same way the OS would.
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    discover_path_in(explicit, env.as_deref(), &cwd)
}

/// [`discover_path`] with its inputs given: `env` is the value of `RATE_SYNC_CONFIG`
/// (empty counts as unset, as in rate-sync) and relative paths resolve against `cwd`.
pub fn discover_path_in(
    explicit: Option<&Path>,
    env: Option<&OsStr>,
    cwd: &Path,
) -> Result<Option<PathBuf>, ConfigError> {
    if let Some(path) = explicit {
        let path = cwd.join(path);
        return must_exist(path, "the configuration file given");
    }
    if let Some(value) = env.filter(|v| !v.is_empty()) {
        let path = cwd.join(value);
        return must_exist(path, &format!("{CONFIG_ENV_VAR} names a file that"));
    }
    Ok(DEFAULT_LOCATIONS
        .iter()
        .map(|name| cwd.join(name))
        .find(|path| path.exists()))
}

fn must_exist(path: PathBuf, what: &str) -> Result<Option<PathBuf>, ConfigError> {
    match path.try_exists() {
        Ok(true) => Ok(Some(path)),
        Ok(false) => Err(ConfigError::single(
            path.display().to_string(),
            "",
            format!("{what} does not exist"),
        )),
        Err(error) => Err(ConfigError::single(
            path.display().to_string(),
            "",
            format!("{what} cannot be checked: {error}"),
        )),
    }
}
