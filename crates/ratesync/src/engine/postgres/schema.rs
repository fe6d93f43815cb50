//! Names of a store's objects in PostgreSQL, and the migration SQL that creates them.
//!
//! Everything lives in `schema_name` and is named from `table_name`: the table itself,
//! its expiry index (`<table>_expiry`) and one function per operation
//! (`<table>_acquire`, `_refund`, `_renew`, `_release`, `_reset`, `_cleanup`; and
//! `_token_bucket` and `_expiry_at`, which the acquire function's expressions inline). Identifiers are
//! always double-quoted (quotes doubled), so any name PostgreSQL accepts works, unicode
//! and quotes included. PostgreSQL silently truncates identifiers to 63 bytes: a
//! `schema_name` or `table_name` longer than that is refused with a clear error, and
//! a derived name that would not fit is shortened to a prefix of the table name plus a
//! hash of the whole, so two long table names never share their functions.
//!
//! rate-sync keeps its state in a table of another shape under the same default name:
//! when the store cannot be used because of it, [`rate_sync_table_error`] says so by
//! name and how to get ratesync's table instead.

use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use crate::config::PostgresConfig;
use crate::store::StoreError;

/// PostgreSQL's identifier limit (NAMEDATALEN - 1), in bytes.
const MAX_IDENTIFIER: usize = 63;

const MIGRATION: &str = include_str!("sql/migrate.sql");

/// The quoted, schema-qualified names of one store's objects.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    /// The configured names, unquoted (for catalog look-ups).
    pub schema_name: String,
    pub table_name: String,
    pub schema: String,
    pub table: String,
    pub acquire: String,
    pub refund: String,
    pub renew: String,
    pub release: String,
    pub reset: String,
    pub cleanup: String,
    /// The token bucket's decision and a written row's expiry: SQL functions the
    /// acquire function inlines.
    token_bucket: String,
    expiry: String,
    /// Unqualified: an index lives in its table's schema.
    expiry_index: String,
    /// The LISTEN/NOTIFY channel for releases (unquoted: it is passed as a value).
    pub channel: String,
    /// The advisory lock key that serialises migrations of this table.
    lock: i64,
    /// Whether the schema must be created (anything but `public`).
    create_schema: bool,
    /// Where the functions read "now".
    pub clock: SqlClock,
}

/// Where the functions read "now": the server's `clock_timestamp()`, or (tests only)
/// a clock the test sets, passed to each call as its last parameter.
#[derive(Debug, Clone, Default)]
pub(crate) enum SqlClock {
    #[default]
    Server,
    #[cfg(feature = "testing")]
    Pinned(crate::testing::PinnedClock),
}

impl SqlClock {
    /// The pinned time as the extra last parameter of a call, if the clock is pinned.
    pub fn pinned_micros(&self) -> Option<i64> {
        match self {
            SqlClock::Server => None,
            #[cfg(feature = "testing")]
            SqlClock::Pinned(clock) => Some(clock.micros() as i64),
        }
    }
}

impl Names {
    pub fn new(config: &PostgresConfig, clock: SqlClock) -> Result<Self, StoreError> {
        let schema = &config.schema_name;
        let table = &config.table_name;
        for (key, name) in [("schema_name", schema), ("table_name", table)] {
            if name.is_empty() || name.contains('\0') {
                return Err(StoreError::Backend(format!(
                    "postgres `{key}` must be a non-empty name without NUL characters"
                )));
            }
            if name.len() > MAX_IDENTIFIER {
                return Err(StoreError::Backend(format!(
                    "postgres `{key}` is {} bytes long; PostgreSQL names are at most {MAX_IDENTIFIER} bytes",
                    name.len()
                )));
            }
        }
        let qualified = |name: &str| format!("{}.{}", quote_ident(schema), quote_ident(name));
        let hash = fnv1a(format!("{schema}\0{table}").as_bytes());
        Ok(Names {
            schema_name: schema.clone(),
            table_name: table.clone(),
            schema: quote_ident(schema),
            table: qualified(table),
            acquire: qualified(&derived(table, "_acquire")),
            refund: qualified(&derived(table, "_refund")),
            renew: qualified(&derived(table, "_renew")),
            release: qualified(&derived(table, "_release")),
            reset: qualified(&derived(table, "_reset")),
            cleanup: qualified(&derived(table, "_cleanup")),
            token_bucket: qualified(&derived(table, "_token_bucket")),
            expiry: qualified(&derived(table, "_expiry_at")),
            expiry_index: quote_ident(&derived(table, "_expiry")),
            channel: format!("ratesync_{hash:016x}"),
            lock: hash as i64,
            create_schema: schema != "public",
            clock,
        })
    }

    /// The migration SQL as one transaction, serialised by the advisory lock;
    /// `unlogged` creates the table UNLOGGED.
    pub fn migration(&self, unlogged: bool) -> String {
        format!(
            "BEGIN;\n\n-- Concurrent migrations of this table run one after the other.\n{}\n\n{}\nCOMMIT;\n",
            self.lock_sql(),
            self.migration_body(unlogged)
        )
    }

    /// The statement that takes the migration lock (held until the transaction ends).
    pub fn lock_sql(&self) -> String {
        format!("SELECT pg_advisory_xact_lock({});", self.lock)
    }

    /// The statements of the migration, without the transaction and lock around them.
    pub fn migration_body(&self, unlogged: bool) -> String {
        let create_schema = if self.create_schema {
            format!("CREATE SCHEMA IF NOT EXISTS {};", self.schema)
        } else {
            "-- (schema public exists already)".to_owned()
        };
        let (now_param, now) = match self.clock {
            SqlClock::Server => ("", "v_real"),
            #[cfg(feature = "testing")]
            SqlClock::Pinned(_) => (", p_now bigint", "p_now"),
        };
        let sql = MIGRATION
            .replace("@lock@", &self.lock.to_string())
            .replace("@create_schema@", &create_schema)
            .replace("@unlogged@", if unlogged { "UNLOGGED " } else { "" })
            .replace("@table_literal@", &quote_literal(&self.table))
            .replace("@table@", &self.table)
            .replace("@expiry_index@", &self.expiry_index)
            .replace("@acquire@", &self.acquire)
            .replace("@refund@", &self.refund)
            .replace("@renew@", &self.renew)
            .replace("@release@", &self.release)
            .replace("@reset@", &self.reset)
            .replace("@cleanup@", &self.cleanup)
            .replace("@token_bucket@", &self.token_bucket)
            .replace("@expiry@", &self.expiry)
            .replace("@now_param@", now_param)
            .replace("@now@", now)
            .replace("@version@", &format!("'{}'", self.version()));
        // Function bodies are dollar-quoted; the tag must not occur in the text, which
        // holds the (user-chosen) names.
        let tag = (0u32..)
            .map(|n| format!("$rs{n}$"))
            .find(|tag| !sql.contains(tag.as_str()))
            .expect("some tag is unused");
        sql.replace("@body@", &tag)
    }
}

impl Names {
    /// The schema version the migration writes as the table's comment: a hash of the
    /// migration's text (and of the clock it reads), so any change to it is applied
    /// again.
    pub fn version(&self) -> String {
        let pinned = if self.clock.pinned_micros().is_some() {
            " pinned"
        } else {
            ""
        };
        format!(
            "ratesync schema {:016x}{pinned}",
            fnv1a(MIGRATION.as_bytes())
        )
    }
}

/// `text` as an escape string literal (`E'...'`, quotes and backslashes doubled):
/// the same meaning whatever `standard_conforming_strings` says.
fn quote_literal(text: &str) -> String {
    format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// `name` as a quoted identifier: `"` around it, inner quotes doubled.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `table` + `suffix` when it fits in 63 bytes; otherwise a prefix of `table` (cut at
/// a character boundary), `_`, 8 hex digits of a hash of `table`, and `suffix`.
fn derived(table: &str, suffix: &str) -> String {
    if table.len() + suffix.len() <= MAX_IDENTIFIER {
        return format!("{table}{suffix}");
    }
    let mut cut = MAX_IDENTIFIER - suffix.len() - 9;
    while !table.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}_{:08x}{suffix}",
        &table[..cut],
        fnv1a(table.as_bytes()) as u32
    )
}

/// FNV-1a, 64 bits: stable across builds and processes (std's hashers are not).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether a failed statement means the store's objects are missing: its table, its
/// schema or its functions.
pub(crate) fn is_missing_object(code: &SqlState) -> bool {
    *code == SqlState::UNDEFINED_TABLE
        || *code == SqlState::UNDEFINED_FUNCTION
        || *code == SqlState::INVALID_SCHEMA_NAME
        || *code == SqlState::UNDEFINED_OBJECT
}

/// rate-sync's default `table_name`, which ratesync keeps as its own default.
const RATE_SYNC_DEFAULT_TABLE: &str = "rate_limiter_state";

/// The columns that tell rate-sync's state table (one row per limiter, `group_id`),
/// in both the shape its engine creates and the one its docs show, from any table
/// of ratesync's.
const RATE_SYNC_COLUMNS: [&str; 2] = ["group_id", "last_acquisition_at"];

/// The store's table, when it exists, else the table of rate-sync's shape most likely
/// to be the one this store replaces (its schema, rate-sync's default name first).
/// `$3` false: the store's table only.
const FIND_TABLE: &str = "\
    SELECT n.nspname::text, c.relname::text, \
           ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a \
                  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                  ORDER BY a.attnum) \
      FROM pg_catalog.pg_class c \
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p') \
       AND ((n.nspname = $1 AND c.relname = $2) \
            OR ($3 AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a \
                                WHERE a.attrelid = c.oid AND NOT a.attisdropped \
                                  AND a.attname = 'last_acquisition_at'))) \
     ORDER BY (n.nspname = $1 AND c.relname = $2) DESC, n.nspname = $1 DESC, \
              c.relname = $4 DESC, n.nspname, c.relname \
     LIMIT 1";

/// When rate-sync's table is why the store cannot be used, the error that says so and
/// how to get ratesync's: the store's table is rate-sync's (the two share their
/// default name), or, with `beside`, the store's table is missing and one of
/// rate-sync's is there (ratesync does not read it). `None` otherwise, or when the
/// catalog cannot be read: the caller's error stands.
pub(crate) async fn rate_sync_table_error(
    client: &Client,
    names: &Names,
    beside: bool,
) -> Option<StoreError> {
    let params: [&(dyn ToSql + Sync); 4] = [
        &names.schema_name,
        &names.table_name,
        &beside,
        &RATE_SYNC_DEFAULT_TABLE,
    ];
    let row = client.query_opt(FIND_TABLE, &params).await.ok()??;
    let (schema, table, columns): (String, String, Vec<String>) = (
        row.try_get(0).ok()?,
        row.try_get(1).ok()?,
        row.try_get(2).ok()?,
    );
    if !RATE_SYNC_COLUMNS
        .iter()
        .all(|needed| columns.iter().any(|c| c == needed))
    {
        return None;
    }
    let found = format!("{}.{}", quote_ident(&schema), quote_ident(&table));
    let columns = columns.join(", ");
    let not_carried = "rate-sync's state is not carried over: every key starts as never seen \
                       (limits restart from full)";
    let message = if schema == names.schema_name && table == names.table_name {
        let shared = if table == RATE_SYNC_DEFAULT_TABLE {
            format!(" (rate-sync and ratesync both default to \"{RATE_SYNC_DEFAULT_TABLE}\")")
        } else {
            String::new()
        };
        format!(
            "table {found} was not created by ratesync: it is rate-sync's table (columns \
             {columns}), and ratesync keeps its state in a table of another shape, which \
             cannot take the same name{shared}. Set the store's `table_name` to a free \
             name (for example \"ratesync_state\") and create ratesync's table there with \
             `ratesync migrate` (`ratesync migrate --print` shows its SQL) or `auto_create \
             = true`; or, once no rate-sync process uses it, drop rate-sync's table and do \
             the same under this name. {not_carried}"
        )
    } else {
        format!(
            "table {} does not exist; {found} is rate-sync's table (columns {columns}), \
             which ratesync does not read. Create ratesync's table with `ratesync migrate` \
             (`ratesync migrate --print` shows its SQL), or set `auto_create = true` on the \
             store. {not_carried}",
            names.table
        )
    };
    Some(StoreError::Backend(message))
}

/// The migration SQL for a store (what `ratesync migrate --print` shows): one
/// idempotent transaction creating the schema (unless `public`), the table, its index
/// and its functions. `unlogged` makes the table UNLOGGED
/// (`docs/engines/postgres.md#unlogged`).
pub fn migration_sql(config: &PostgresConfig, unlogged: bool) -> Result<String, StoreError> {
    Ok(Names::new(config, SqlClock::Server)?.migration(unlogged))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_fit() {
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
        let long = "é".repeat(31); // 62 bytes
        let name = derived(&long, "_release");
        assert!(name.len() <= MAX_IDENTIFIER && name.ends_with("_release"));
        assert_ne!(derived(&long, "_reset"), derived(&"é".repeat(30), "_reset"));
        assert_eq!(derived("t", "_acquire"), "t_acquire");
    }

    #[test]
    fn migration_has_no_placeholder_left_and_a_free_tag() {
        let config = PostgresConfig {
            url: crate::config::secret::SecretUrl::new("postgresql://x@h/db".to_owned()),
            schema_name: "s$rs0$".to_owned(),
            table_name: "t\"x".to_owned(),
            auto_create: true,
            pool_min_size: None,
            pool_max_size: None,
            timing_margin_ms: None,
        };
        let sql = migration_sql(&config, true).unwrap();
        let placeholder = sql.split('@').skip(1).step_by(2).find(|name| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        });
        assert_eq!(placeholder, None, "a placeholder is left");
        assert!(sql.contains("CREATE UNLOGGED TABLE IF NOT EXISTS \"s$rs0$\".\"t\"\"x\""));
        assert!(sql.contains("AS $rs1$"));
    }
}
