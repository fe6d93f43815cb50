//! The unvalidated configuration tree both front ends produce: the TOML file (with
//! lines, after environment expansion) and the builder (without lines). Validation
//! runs on this tree only, so the file and the code can never disagree.

/// A value and the 1-based line it was written on, when it came from a file.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub value: Value,
    pub line: Option<usize>,
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// `substituted`: an environment reference was replaced in it (see `env`).
    String {
        text: String,
        substituted: bool,
    },
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Datetime,
    Array(Vec<Item>),
    Table(Table),
    /// A value whose problem was already reported (e.g. an unset environment
    /// variable): present, so it is not "missing", but never validated further.
    Invalid,
}

impl Value {
    /// The TOML name of the value's type, for "expected X, got Y" messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::String { .. } => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Boolean(_) => "a boolean",
            Value::Datetime => "a datetime",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
            Value::Invalid => "an invalid value",
        }
    }
}

/// A table's entries in file (or call) order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: String,
    /// Line of the key itself (where "unknown key" points).
    pub key_line: Option<usize>,
    pub item: Item,
}

impl Table {
    pub fn get(&self, key: &str) -> Option<&Item> {
        self.entries.iter().find(|e| e.key == key).map(|e| &e.item)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

/// Converts a value built in code (the builder) into the tree, without lines.
pub(crate) fn from_toml(value: toml::Value) -> Item {
    let value = match value {
        toml::Value::String(text) => Value::String {
            text,
            substituted: false,
        },
        toml::Value::Integer(i) => Value::Integer(i),
        toml::Value::Float(f) => Value::Float(f),
        toml::Value::Boolean(b) => Value::Boolean(b),
        toml::Value::Datetime(_) => Value::Datetime,
        toml::Value::Array(items) => Value::Array(items.into_iter().map(from_toml).collect()),
        toml::Value::Table(table) => Value::Table(table_from_entries(table)),
    };
    Item { value, line: None }
}

/// A table from `(key, value)` pairs in the order given.
pub(crate) fn table_from_entries(
    entries: impl IntoIterator<Item = (String, toml::Value)>,
) -> Table {
    Table {
        entries: entries
            .into_iter()
            .map(|(key, value)| Entry {
                key,
                key_line: None,
                item: from_toml(value),
            })
            .collect(),
    }
}
