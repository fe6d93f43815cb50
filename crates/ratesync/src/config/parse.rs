//! TOML text to the unvalidated tree: syntax errors with their line, every key and
//! value with its line, environment references expanded in string values and in
//! keys (so table names such as `[limiters."${TENANT}"]` work, as in rate-sync).

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::env::{self, EnvError};
use super::error::{key_path, Issues};
use super::raw::{Entry, Item, Table, Value};

/// Looks an environment variable up.
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Parses `text`; `None` (with issues reported) when it is not valid TOML.
pub(crate) fn parse(text: &str, env: EnvLookup<'_>, issues: &mut Issues) -> Option<Table> {
    let lines = Lines::new(text);
    let (root, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        let mut seen = Vec::new();
        for error in errors {
            let line = error.span().map(|span| lines.line(span.start));
            let message = format!("invalid TOML: {}", error.message());
            // Recovery can report the same problem more than once.
            if !seen.contains(&(line, message.clone())) {
                issues.push("", line, message.clone());
                seen.push((line, message));
            }
        }
        return None;
    }
    let converter = Converter { lines: &lines, env };
    Some(converter.table(root.get_ref(), "", issues))
}

struct Converter<'a> {
    lines: &'a Lines,
    env: EnvLookup<'a>,
}

impl Converter<'_> {
    fn table(&self, table: &DeTable<'_>, path: &str, issues: &mut Issues) -> Table {
        let mut entries: Vec<_> = table.iter().collect();
        // The parser's map is sorted by key; the configuration keeps file order.
        entries.sort_by_key(|(key, _)| key.span().start);
        let mut out = Table::default();
        for (key, value) in entries {
            let key_line = self.line_of(key);
            let name = match env::expand(key.get_ref(), self.env) {
                Ok(expanded) => expanded.text,
                Err(error) => {
                    let at = key_path(path, key.get_ref());
                    issues.push(&at, Some(key_line), format!("in this key: {error}"));
                    continue;
                }
            };
            let child_path = key_path(path, &name);
            if out.contains(&name) {
                issues.push(
                    &child_path,
                    Some(key_line),
                    format!("duplicate key `{name}` after environment expansion"),
                );
                continue;
            }
            let item = self.item(value, &child_path, issues);
            out.entries.push(Entry {
                key: name,
                key_line: Some(key_line),
                item,
            });
        }
        out
    }

    fn item(&self, value: &Spanned<DeValue<'_>>, path: &str, issues: &mut Issues) -> Item {
        let line = Some(self.line_of(value));
        let value = match value.get_ref() {
            DeValue::String(text) => match env::expand(text, self.env) {
                Ok(expanded) => Value::String {
                    text: expanded.text,
                    substituted: expanded.substituted,
                },
                Err(error) => {
                    issues.push(path, line, env_message(&error));
                    Value::Invalid
                }
            },
            DeValue::Integer(int) => match i64::from_str_radix(int.as_str(), int.radix()) {
                Ok(int) => Value::Integer(int),
                Err(_) => {
                    issues.push(path, line, "integer out of range");
                    Value::Invalid
                }
            },
            // An unparsable float (impossible after a successful parse) becomes NaN,
            // which every numeric key rejects.
            DeValue::Float(float) => Value::Float(float.as_str().parse().unwrap_or(f64::NAN)),
            DeValue::Boolean(b) => Value::Boolean(*b),
            DeValue::Datetime(_) => Value::Datetime,
            DeValue::Array(array) => Value::Array(
                array
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.item(item, &format!("{path}[{i}]"), issues))
                    .collect(),
            ),
            DeValue::Table(table) => Value::Table(self.table(table, path, issues)),
        };
        Item { value, line }
    }

    fn line_of<T>(&self, spanned: &Spanned<T>) -> usize {
        self.lines.line(spanned.span().start)
    }
}

fn env_message(error: &EnvError) -> String {
    match error {
        EnvError::Unset(_) => error.to_string(),
        _ => format!("invalid environment reference: {error}"),
    }
}

/// Byte offset to 1-based line number.
struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Lines { starts }
    }

    fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&start| start <= offset).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_one_based() {
        let lines = Lines::new("a\nbc\n\nd");
        assert_eq!(lines.line(0), 1);
        assert_eq!(lines.line(2), 2);
        assert_eq!(lines.line(5), 3);
        assert_eq!(lines.line(6), 4);
        assert_eq!(lines.line(1000), 4);
    }
}
