//! `ratesync status`: the current decision of one or every limiter, consuming nothing.

use std::path::Path;

use ratesync::{AcquireError, Decision, DeniedBy, Limiter};
use serde_json::{json, Value};

use crate::failure::{exit, Failure};
use crate::{load, output};

/// Show the current state of one limiter, or of all, without consuming anything.
///
/// With --json: one object for a named limiter, an array of them otherwise, each
/// with `limiter`, `key`, `algorithm`, `rule` (in words), `shadow` (whether it is in
/// shadow mode), `allowed`, `limit`, `remaining`, `retry_after_s`, `reset_after_s`
/// and `denied_by` ("rate", "concurrency" or null).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The limiter's id; default: every limiter of the configuration.
    pub limiter: Option<String>,

    /// Key whose state to show; default: the limiter-wide key.
    #[arg(long, value_name = "K")]
    pub key: Option<String>,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(explicit: Option<&Path>, args: Args) -> Result<u8, Failure> {
    let config = load::require(explicit)?;
    let registry = match &args.limiter {
        Some(name) => load::registry_for(&config, [name.as_str()])?,
        None => load::registry_of_available(&config)?,
    };
    let key = args.key.as_deref().unwrap_or("");
    let mut states = Vec::new();
    let mut unavailable = false;
    for limiter in registry.limiters() {
        match limiter.key(key).state().await {
            Ok(decision) => states.push((limiter, decision)),
            // Listing every limiter: report the ones whose store is down, show the rest.
            Err(err @ AcquireError::StoreUnavailable { .. }) if args.limiter.is_none() => {
                output::note(format_args!("note: {err}"));
                unavailable = true;
            }
            Err(err) => return Err(err.into()),
        }
    }
    if args.json {
        let objects: Vec<Value> = states.iter().map(|(l, d)| to_json(l, key, d)).collect();
        match (&args.limiter, objects.as_slice()) {
            (Some(_), [one]) => output::json(one)?,
            _ => output::json(&Value::Array(objects))?,
        }
    } else {
        print_table(&states, key)?;
    }
    Ok(if unavailable {
        exit::UNAVAILABLE
    } else {
        exit::OK
    })
}

fn to_json(limiter: &Limiter, key: &str, d: &Decision) -> Value {
    json!({
        "limiter": limiter.name(),
        "key": key,
        "algorithm": output::algorithm(limiter.config()),
        "rule": output::limit(limiter.config()),
        "shadow": limiter.config().shadow,
        "allowed": d.allowed(),
        "limit": d.limit(),
        "remaining": d.remaining(),
        "retry_after_s": d.retry_after().as_secs_f64(),
        "reset_after_s": d.reset_after().as_secs_f64(),
        "denied_by": d.denied_by().map(denied_by),
    })
}

fn denied_by(by: DeniedBy) -> &'static str {
    match by {
        DeniedBy::Rate => "rate",
        DeniedBy::Concurrency => "concurrency",
    }
}

fn print_table(states: &[(&Limiter, Decision)], key: &str) -> Result<(), Failure> {
    let mut table = output::table([
        "limiter",
        "rule",
        "allowed",
        "remaining",
        "retry after",
        "reset after",
    ]);
    for (limiter, d) in states {
        table.add_row([
            limiter.name().to_owned(),
            output::limit_now(limiter.config()),
            match d.denied_by() {
                None if d.allowed() => "yes".to_owned(),
                Some(by) => format!("no ({})", denied_by(by)),
                None => "no".to_owned(),
            },
            output::remaining(limiter.config(), d),
            format!("{:.3} s", d.retry_after().as_secs_f64()),
            format!("{:.3} s", d.reset_after().as_secs_f64()),
        ]);
    }
    if !key.is_empty() {
        output::print(format_args!("key `{key}`"))?;
    }
    output::print(table)?;
    if states.iter().any(|(l, _)| l.engine_name() == "memory") {
        output::note("note: memory stores keep state inside one process: this shows a fresh state");
    }
    Ok(())
}
