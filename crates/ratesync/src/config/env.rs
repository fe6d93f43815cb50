//! Environment expansion in configuration strings
//! (`docs/design.md#environment-expansion`): `${VAR}`, `$VAR`, `${VAR:-default}` (the
//! default may be empty and may itself contain references) and `$$` for a literal `$`.
//!
//! Pure: variables come from a lookup function, so tests never touch the process
//! environment. Unlike rate-sync, an unset variable without a default is an error
//! rather than being left in place as literal text that later fails somewhere obscure.

use std::fmt;

/// The result of expanding one string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    pub text: String,
    /// Whether any variable reference was replaced (`$$` does not count). Only such
    /// strings may stand for booleans: `fail_closed = "${STRICT:-false}"`.
    pub substituted: bool,
}

/// Why a string could not be expanded. Never contains the string itself, which may
/// be a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvError {
    /// `${NAME}` or `$NAME` with `NAME` unset and no default.
    Unset(String),
    /// `${` without its closing `}`.
    Unterminated,
    /// `${}` or `${1X}`: not a variable name.
    BadName,
    /// `${VAR:+x}`, `${VAR-x}` and the like: only `:-` is supported.
    Unsupported(String),
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvError::Unset(name) => write!(
                f,
                "environment variable `{name}` is not set; set it or give a default with `${{{name}:-default}}`"
            ),
            EnvError::Unterminated => f.write_str("`${` without a closing `}`"),
            EnvError::BadName => f.write_str(
                "`${...}` must contain a variable name (letters, digits, `_`, not starting with a digit)",
            ),
            EnvError::Unsupported(name) => write!(
                f,
                "unsupported expansion of `{name}`: only `${{VAR}}`, `$VAR` and `${{VAR:-default}}` are supported (write `$$` for a literal `$`)"
            ),
        }
    }
}

/// Expands every reference in `input`, looking variables up with `lookup`.
/// A variable set to the empty string counts as set (as in rate-sync), except that
/// `${VAR:-default}` uses the default for it, as POSIX shells do.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Expanded, EnvError> {
    let mut out = Expanded {
        text: String::with_capacity(input.len()),
        substituted: false,
    };
    expand_into(input, lookup, &mut out)?;
    Ok(out)
}

fn expand_into(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut Expanded,
) -> Result<(), EnvError> {
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        out.text.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.text.push('$');
            rest = tail;
        } else if let Some(braced) = after.strip_prefix('{') {
            let close = matching_brace(braced).ok_or(EnvError::Unterminated)?;
            expand_braced(&braced[..close], lookup, out)?;
            rest = &braced[close + 1..];
        } else {
            let len = name_len(after);
            if len == 0 {
                // A lone `$` (before a space, a digit, the end...) is literal text.
                out.text.push('$');
                rest = after;
            } else {
                let name = &after[..len];
                let value = lookup(name).ok_or_else(|| EnvError::Unset(name.to_owned()))?;
                out.text.push_str(&value);
                out.substituted = true;
                rest = &after[len..];
            }
        }
    }
    out.text.push_str(rest);
    Ok(())
}

/// Expands the inside of `${...}`.
fn expand_braced(
    inner: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut Expanded,
) -> Result<(), EnvError> {
    let len = name_len(inner);
    if len == 0 {
        return Err(EnvError::BadName);
    }
    let (name, operator) = inner.split_at(len);
    let value = lookup(name);
    if operator.is_empty() {
        out.text
            .push_str(&value.ok_or_else(|| EnvError::Unset(name.to_owned()))?);
        out.substituted = true;
        return Ok(());
    }
    let Some(default) = operator.strip_prefix(":-") else {
        return Err(EnvError::Unsupported(name.to_owned()));
    };
    match value {
        Some(value) if !value.is_empty() => out.text.push_str(&value),
        // The default is only expanded when used, so a nested reference in an
        // unused default cannot fail.
        _ => expand_into(default, lookup, out)?,
    }
    out.substituted = true;
    Ok(())
}

/// Length of the variable name at the start of `s` (0 if there is none).
fn name_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    match bytes.first() {
        Some(b) if b.is_ascii_alphabetic() || *b == b'_' => bytes
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
            .count(),
        _ => 0,
    }
}

/// Index of the `}` closing a `${` whose inside starts `s`, counting nested `${`.
fn matching_brace(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("cache".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn ok(input: &str) -> String {
        expand(input, &env).unwrap().text
    }

    #[test]
    fn forms() {
        assert_eq!(ok("redis://${HOST}:6379"), "redis://cache:6379");
        assert_eq!(ok("redis://$HOST:6379"), "redis://cache:6379");
        assert_eq!(ok("${MISSING:-fallback}"), "fallback");
        assert_eq!(ok("${MISSING:-}"), "");
        assert_eq!(ok("${EMPTY:-d}"), "d");
        assert_eq!(ok("${EMPTY}"), "");
        assert_eq!(ok("${MISSING:-${HOST}}"), "cache");
        assert_eq!(ok("${HOST:-${MISSING}}"), "cache");
        assert_eq!(ok("pa$$word $ 5$ $1"), "pa$word $ 5$ $1");
        assert!(!expand("pa$$", &env).unwrap().substituted);
        assert!(expand("${MISSING:-x}", &env).unwrap().substituted);
    }

    #[test]
    fn errors() {
        assert_eq!(
            expand("${MISSING}", &env),
            Err(EnvError::Unset("MISSING".into()))
        );
        assert_eq!(
            expand("$MISSING/x", &env),
            Err(EnvError::Unset("MISSING".into()))
        );
        assert_eq!(expand("${HOST", &env), Err(EnvError::Unterminated));
        assert_eq!(expand("${}", &env), Err(EnvError::BadName));
        assert_eq!(
            expand("${HOST:+x}", &env),
            Err(EnvError::Unsupported("HOST".into()))
        );
    }
}
