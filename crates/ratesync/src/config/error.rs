//! Configuration errors: every problem found in one file, each with where it is.

use std::fmt;

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Table path of the offending key, e.g. `limiters.api.rate_per_second`
    /// (empty for problems of the whole file, such as a TOML syntax error).
    pub path: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// What is wrong and, where possible, how to fix it.
    pub message: String,
}

/// A configuration that was rejected as a whole (nothing of it is registered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, or `"configuration"` for the builder.
    pub origin: String,
    /// Every problem found, not only the first, sorted by line when printed.
    pub issues: Vec<ConfigIssue>,
}

impl ConfigError {
    /// An error with a single issue.
    pub fn single(
        origin: impl Into<String>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            origin: origin.into(),
            issues: vec![ConfigIssue {
                path: path.into(),
                line: None,
                message: message.into(),
            }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(&self.origin)?;
            if let Some(line) = issue.line {
                write!(f, ":{line}")?;
            }
            if !issue.path.is_empty() {
                write!(f, ": {}", issue.path)?;
            }
            write!(f, ": {}", issue.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Collects every issue of one configuration, so that all are reported at once.
#[derive(Debug, Default)]
pub(crate) struct Issues {
    list: Vec<ConfigIssue>,
}

impl Issues {
    pub fn push(&mut self, path: &str, line: Option<usize>, message: impl Into<String>) {
        self.list.push(ConfigIssue {
            path: path.to_owned(),
            line,
            message: message.into(),
        });
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// `Ok(value)` when nothing was reported, otherwise every issue, in file order.
    pub fn finish<T>(mut self, origin: &str, value: impl FnOnce() -> T) -> Result<T, ConfigError> {
        // Expansion and validation find issues in separate passes; a stable sort by
        // line interleaves them and keeps the builder's (line-less) order.
        self.list.sort_by_key(|issue| issue.line);
        if self.list.is_empty() {
            Ok(value())
        } else {
            Err(ConfigError {
                origin: origin.to_owned(),
                issues: self.list,
            })
        }
    }
}

/// `prefix.key`, quoting `key` as TOML would when it is not a bare key
/// (`limiters."api.v2".burst`), so the path can be pasted back into the file.
pub(crate) fn key_path(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}
