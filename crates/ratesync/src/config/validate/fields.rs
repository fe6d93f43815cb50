//! Typed reads of one table's keys. Each read reports its own problem (with path and
//! line) and says whether the key was absent, invalid or valid, so that a bad value
//! is reported once and never cascades into "missing key" errors.
//!
//! Type rules, chosen for rate-sync compatibility:
//! - numbers also accept strings that spell a number (`"${RATE:-10.0}"`), because
//!   rate-sync converts every numeric-looking string after environment expansion;
//! - integers are never taken from floats (`burst = 2.5` is an error);
//! - booleans accept `"true"`/`"false"` only when the string came out of an
//!   environment reference, the one way to feed a boolean from the environment;
//! - strings stay strings (`password = "12345"`), and free-form names and secrets also
//!   accept a bare integer (`password = 12345`), which rate-sync passed through.

use std::time::Duration;

use super::super::error::{key_path, Issues};
use super::super::raw::{Item, Table, Value};
use super::suggest::did_you_mean;

/// The outcome of reading one key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Field<T> {
    Absent,
    /// Present but wrong; already reported.
    Invalid,
    Valid(T),
}

impl<T> Field<T> {
    pub fn ok(self) -> Option<T> {
        match self {
            Field::Valid(v) => Some(v),
            _ => None,
        }
    }

    pub fn is_absent(&self) -> bool {
        matches!(self, Field::Absent)
    }

    pub fn is_present(&self) -> bool {
        !self.is_absent()
    }

    /// The value, or `default` when absent or invalid (an invalid value has been
    /// reported, so the configuration is rejected anyway).
    pub fn or(self, default: T) -> T {
        self.ok().unwrap_or(default)
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Field<U> {
        match self {
            Field::Absent => Field::Absent,
            Field::Invalid => Field::Invalid,
            Field::Valid(v) => Field::Valid(f(v)),
        }
    }
}

/// One table being validated: its entries, its path and the line of its header.
pub(crate) struct Fields<'a> {
    pub table: &'a Table,
    pub path: String,
    pub line: Option<usize>,
}

impl<'a> Fields<'a> {
    pub fn new(table: &'a Table, path: String, line: Option<usize>) -> Self {
        Fields { table, path, line }
    }

    pub fn path(&self, key: &str) -> String {
        key_path(&self.path, key)
    }

    /// Line of `key` if present, else of the table.
    pub fn line(&self, key: &str) -> Option<usize> {
        self.table
            .entries
            .iter()
            .find(|e| e.key == key)
            .and_then(|e| e.key_line.or(e.item.line))
            .or(self.line)
    }

    /// Reports an issue about `key`, at its line.
    pub fn report(&self, issues: &mut Issues, key: &str, message: impl Into<String>) {
        issues.push(&self.path(key), self.line(key), message);
    }

    /// Reports an issue about the table itself, at its header.
    pub fn report_table(&self, issues: &mut Issues, message: impl Into<String>) {
        issues.push(&self.path, self.line, message);
    }

    /// Reports every key not in `allowed`. `elsewhere` may explain where such a key
    /// does belong (e.g. "it is a nats key").
    pub fn check_keys(
        &self,
        issues: &mut Issues,
        what: &str,
        allowed: &[&str],
        elsewhere: impl Fn(&str) -> Option<String>,
    ) {
        for entry in &self.table.entries {
            if allowed.contains(&entry.key.as_str()) {
                continue;
            }
            let mut message = format!("unknown key `{}` in {what}", entry.key);
            if let Some(hint) = elsewhere(&entry.key) {
                message.push_str(&format!(": {hint}"));
            } else if let Some(close) = did_you_mean(&entry.key, allowed.iter().copied()) {
                message.push_str(&format!("; did you mean `{close}`?"));
            } else {
                message.push_str(&format!("; expected one of: {}", allowed.join(", ")));
            }
            issues.push(
                &self.path(&entry.key),
                entry.key_line.or(entry.item.line),
                message,
            );
        }
    }

    pub fn missing(&self, issues: &mut Issues, key: &str, why: &str) {
        issues.push(
            &self.path(key),
            self.line,
            format!("missing required key `{key}`{why}"),
        );
    }

    fn value(&self, key: &str) -> Option<&'a Value> {
        self.table.get(key).map(|item: &Item| &item.value)
    }

    /// Reads a value through `convert`, which returns the error message.
    fn read<T>(
        &self,
        issues: &mut Issues,
        key: &str,
        convert: impl FnOnce(&'a Value) -> Result<T, String>,
    ) -> Field<T> {
        match self.value(key) {
            None => Field::Absent,
            Some(Value::Invalid) => Field::Invalid,
            Some(value) => match convert(value) {
                Ok(v) => Field::Valid(v),
                Err(message) => {
                    self.report(issues, key, message);
                    Field::Invalid
                }
            },
        }
    }

    /// A string that is a word of the format (engine, algorithm, store id).
    pub fn string(&self, issues: &mut Issues, key: &str) -> Field<&'a str> {
        self.read(issues, key, |value| match value {
            Value::String { text, .. } => Ok(text.as_str()),
            other => Err(format!("expected a string, got {}", describe(other))),
        })
    }

    /// A free-form name (key prefix, table name...): a string, or an integer taken
    /// as its decimal text.
    pub fn name(&self, issues: &mut Issues, key: &str) -> Field<String> {
        self.read(issues, key, |value| match value {
            Value::String { text, .. } => Ok(text.clone()),
            Value::Integer(i) => Ok(i.to_string()),
            other => Err(format!("expected a string, got {}", describe(other))),
        })
    }

    /// A secret (password, token), never echoed. Empty means "none", as in
    /// rate-sync's `password = "${REDIS_PASSWORD:-}"`.
    pub fn secret(&self, issues: &mut Issues, key: &str) -> Field<Option<String>> {
        self.read(issues, key, |value| match value {
            Value::String { text, .. } => Ok((!text.is_empty()).then(|| text.clone())),
            Value::Integer(i) => Ok(Some(i.to_string())),
            other => Err(format!("expected a string, got {}", other.type_name())),
        })
    }

    pub fn boolean(&self, issues: &mut Issues, key: &str) -> Field<bool> {
        self.read(issues, key, |value| match value {
            Value::Boolean(b) => Ok(*b),
            Value::String { text, substituted } => {
                let word = text.trim().to_ascii_lowercase();
                match (word.as_str(), substituted) {
                    ("true", true) => Ok(true),
                    ("false", true) => Ok(false),
                    ("true" | "false", false) => Err(format!(
                        "expected a boolean, got the string \"{text}\"; write {word} without quotes"
                    )),
                    _ => Err(format!(
                        "expected a boolean (true or false), got {}",
                        describe(value)
                    )),
                }
            }
            other => Err(format!(
                "expected a boolean (true or false), got {}",
                describe(other)
            )),
        })
    }

    /// A finite number; integers and numeric strings are accepted.
    pub fn number(&self, issues: &mut Issues, key: &str) -> Field<f64> {
        self.read(issues, key, |value| {
            let number = match value {
                Value::Integer(i) => *i as f64,
                Value::Float(f) => *f,
                Value::String { text, .. } => text
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| format!("expected a number, got {}", describe(value)))?,
                other => return Err(format!("expected a number, got {}", describe(other))),
            };
            if number.is_finite() {
                Ok(number)
            } else {
                Err(format!("expected a finite number, got {number}"))
            }
        })
    }

    /// A number that must be `> 0` (or `>= 0` when `zero_ok`).
    pub fn positive(&self, issues: &mut Issues, key: &str, zero_ok: bool) -> Field<f64> {
        match self.number(issues, key) {
            Field::Valid(n) if n < 0.0 || (n == 0.0 && !zero_ok) => {
                let bound = if zero_ok {
                    "zero or positive"
                } else {
                    "positive"
                };
                self.report(issues, key, format!("must be {bound}, got {n}"));
                Field::Invalid
            }
            other => other,
        }
    }

    /// An integer in `min..=max`; numeric strings are accepted, floats are not.
    pub fn integer(&self, issues: &mut Issues, key: &str, min: i64, max: i64) -> Field<i64> {
        self.read(issues, key, |value| {
            let int = match value {
                Value::Integer(i) => *i,
                Value::String { text, .. } => text
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| format!("expected an integer, got {}", describe(value)))?,
                other => return Err(format!("expected an integer, got {}", describe(other))),
            };
            if int < min {
                Err(match min {
                    0 => format!("must be zero or positive, got {int}"),
                    1 => format!("must be a positive integer, got {int}"),
                    _ => format!("must be at least {min}, got {int}"),
                })
            } else if int > max {
                Err(format!("must be at most {max}, got {int}"))
            } else {
                Ok(int)
            }
        })
    }

    /// An integer that fits a `u32`, at least `min`.
    pub fn u32(&self, issues: &mut Issues, key: &str, min: u32) -> Field<u32> {
        self.integer(issues, key, i64::from(min), i64::from(u32::MAX))
            .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
    }

    /// Seconds as a [`Duration`]: `> 0`, or `>= 0` when `zero_ok`.
    pub fn seconds(&self, issues: &mut Issues, key: &str, zero_ok: bool) -> Field<Duration> {
        match self.positive(issues, key, zero_ok) {
            Field::Valid(secs) => match Duration::try_from_secs_f64(secs) {
                Ok(d) if d.is_zero() && !zero_ok => {
                    self.report(
                        issues,
                        key,
                        format!("{secs} s is shorter than a nanosecond"),
                    );
                    Field::Invalid
                }
                Ok(d) => Field::Valid(d),
                Err(_) => {
                    self.report(issues, key, format!("{secs} s is too long"));
                    Field::Invalid
                }
            },
            Field::Absent => Field::Absent,
            Field::Invalid => Field::Invalid,
        }
    }
}

/// A value for an error message. Only used for keys that are never secret.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::String { text, .. } => {
            let shown: String = text.chars().take(40).collect();
            let more = if shown.len() < text.len() { "..." } else { "" };
            format!("the string {:?}{more}", shown)
        }
        Value::Integer(i) => format!("the integer {i}"),
        Value::Float(f) => format!("the float {f}"),
        Value::Boolean(b) => format!("the boolean {b}"),
        other => other.type_name().to_owned(),
    }
}
