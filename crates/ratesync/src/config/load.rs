//! Reading a configuration file: text, parse, expand, validate.

use std::path::Path;

use super::error::{ConfigError, Issues};
use super::types::Config;
use super::{parse, validate};

impl Config {
    /// Parses and validates `text` (the contents of a `rate-sync.toml`), expanding
    /// environment references from the process environment. `origin` names the text
    /// in error messages, usually the file name.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str_with_env(text, origin, |name| std::env::var(name).ok())
    }

    /// [`Config::from_toml_str`] with environment variables looked up by `env`
    /// (tests, or embedding applications with their own settings source).
    pub fn from_toml_str_with_env(
        text: &str,
        origin: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut issues = Issues::default();
        match parse::parse(text, &env, &mut issues) {
            Some(root) => validate::validate(&root, issues, origin),
            None => issues.finish(origin, Config::default),
        }
    }

    /// Reads and validates the file at `path`; the returned [`Config::source`] is `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigError::single(
                &origin,
                "",
                format!("cannot read the configuration file: {error}"),
            )
        })?;
        let mut config = Config::from_toml_str(&text, &origin)?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }
}
