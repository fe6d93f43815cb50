//! The one validation of a configuration tree, shared by the file and the builder:
//! every issue is collected, and a [`Config`] exists only when there are none.

mod fields;
mod formats;
mod limiter;
mod store;
mod suggest;

use indexmap::IndexMap;

use super::error::{key_path, ConfigError, Issues};
use super::raw::{Item, Table, Value};
use super::types::{Config, FastApiConfig};
use fields::Fields;

const TOP_LEVEL_KEYS: &[&str] = &["stores", "limiters", "http", "fastapi"];

/// The names of the HTTP table: `[http]`, and `[fastapi]`, its name in rate-sync
/// files, which the Rust HTTP layer reads too. A file holds one or the other.
const HTTP_TABLES: [&str; 2] = ["http", "fastapi"];

/// Validates `root`, adding to the issues already found (e.g. by environment
/// expansion); fails if there are any.
pub(crate) fn validate(
    root: &Table,
    mut issues: Issues,
    origin: &str,
) -> Result<Config, ConfigError> {
    let root_fields = Fields::new(root, String::new(), None);
    root_fields.check_keys(&mut issues, "the configuration", TOP_LEVEL_KEYS, |_| None);

    let store_tables = sections(root, "stores", "store", &mut issues);
    let store_ids: Vec<&str> = store_tables.iter().map(|(id, _)| id.as_str()).collect();
    let mut stores = IndexMap::new();
    for (id, fields) in &store_tables {
        if let Some(config) = store::store(fields, &mut issues) {
            stores.insert(id.clone(), config);
        }
    }

    let mut limiters = IndexMap::new();
    for (id, fields) in sections(root, "limiters", "limiter", &mut issues) {
        if let Some(config) = limiter::limiter(&fields, &store_ids, &mut issues) {
            limiters.insert(id, config);
        }
    }

    let fastapi = http(root, &mut issues);
    issues.finish(origin, || Config {
        source: None,
        stores,
        limiters,
        fastapi,
    })
}

/// The `[stores.ID]` or `[limiters.ID]` tables, by id, in order.
fn sections<'a>(
    root: &'a Table,
    key: &str,
    what: &str,
    issues: &mut Issues,
) -> Vec<(String, Fields<'a>)> {
    let Some(section) = as_table(root.get(key), key, None, issues) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in &section.entries {
        let path = key_path(key, &entry.key);
        let line = entry.key_line.or(entry.item.line);
        if entry.key.trim().is_empty() {
            issues.push(&path, line, format!("a {what} id must not be empty"));
            continue;
        }
        let hint = format!(" (write it as [{path}])");
        if let Some(table) = as_table(Some(&entry.item), &path, Some(&hint), issues) {
            out.push((entry.key.clone(), Fields::new(table, path, line)));
        }
    }
    out
}

/// `item` as a table, reporting any other type.
fn as_table<'a>(
    item: Option<&'a Item>,
    path: &str,
    hint: Option<&str>,
    issues: &mut Issues,
) -> Option<&'a Table> {
    match item.map(|i| (&i.value, i.line)) {
        None | Some((Value::Invalid, _)) => None,
        Some((Value::Table(table), _)) => Some(table),
        Some((other, line)) => {
            issues.push(
                path,
                line,
                format!(
                    "expected a table, got {}{}",
                    other.type_name(),
                    hint.unwrap_or("")
                ),
            );
            None
        }
    }
}

/// The `[http]` table (or `[fastapi]`): settings of the HTTP integrations, the
/// Rust layer's and FastAPI's alike.
fn http(root: &Table, issues: &mut Issues) -> FastApiConfig {
    let mut config = FastApiConfig::default();
    let [http, fastapi] = HTTP_TABLES.map(|name| root.get(name));
    if let (Some(_), Some(alias)) = (http, fastapi) {
        issues.push(
            "fastapi",
            alias.line,
            "`[http]` and `[fastapi]` are the same table under two names \
             (`[fastapi]` is rate-sync's): keep one",
        );
    }
    for name in HTTP_TABLES {
        http_table(root, name, &mut config, issues);
    }
    config
}

/// Reads the HTTP table `name` of `root`, if present, into `config`.
fn http_table(root: &Table, name: &str, config: &mut FastApiConfig, issues: &mut Issues) {
    let line = root.get(name).and_then(|i| i.line);
    let Some(table) = as_table(root.get(name), name, None, issues) else {
        return;
    };
    let f = Fields::new(table, name.to_owned(), line);
    f.check_keys(
        issues,
        &format!("[{name}]"),
        &["trusted_proxy_networks"],
        |_| None,
    );
    let items = match table.get("trusted_proxy_networks").map(|i| &i.value) {
        None | Some(Value::Invalid) => return,
        Some(Value::Array(items)) => items,
        Some(other) => {
            f.report(
                issues,
                "trusted_proxy_networks",
                format!(
                    "expected an array of CIDR strings, got {}",
                    other.type_name()
                ),
            );
            return;
        }
    };
    for (i, item) in items.iter().enumerate() {
        let path = format!("{}[{i}]", f.path("trusted_proxy_networks"));
        match &item.value {
            Value::String { text, .. } => match formats::check_cidr(text) {
                Ok(()) => config.trusted_proxy_networks.push(text.trim().to_owned()),
                Err(message) => issues.push(&path, item.line, message),
            },
            Value::Invalid => {}
            other => issues.push(
                &path,
                item.line,
                format!(
                    "expected a CIDR string such as \"10.0.0.0/8\", got {}",
                    other.type_name()
                ),
            ),
        }
    }
}
