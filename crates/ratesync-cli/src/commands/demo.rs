//! `ratesync demo`: workers hitting limiters, live, with the achieved rate beside the
//! configured one. The first thing a newcomer runs, so it needs no file.

mod builtin;
mod view;
mod worker;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ratesync::{Config, Registry};
use tokio::task::JoinSet;
use tokio::time::Instant;

use self::builtin::Drives;
use self::view::{Live, Row};
use self::worker::Stats;
use super::parse_positive_seconds;
use crate::failure::{exit, Failure};
use crate::{load, output};

/// How often the live view is refreshed.
const REFRESH: Duration = Duration::from_millis(250);

/// Show workers hitting limiters live, with the achieved rate against the configured one.
///
/// Uses the discovered configuration file (driving only its limiters on memory
/// stores), or a built-in one when there is none. Ends by itself.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How long to run, in seconds.
    #[arg(long, value_name = "S", default_value = "5", value_parser = parse_positive_seconds)]
    pub duration: Duration,
}

pub async fn run(explicit: Option<&Path>, args: Args) -> Result<u8, Failure> {
    let Plan {
        registry,
        drives,
        origin,
    } = match load::discover(explicit)? {
        Some(config) => from_file(config)?,
        None => {
            let (config, drives) = builtin::config()?;
            Plan {
                registry: Registry::from_config(config)?,
                drives,
                origin: "built-in demo configuration (no rate-sync.toml found)".to_owned(),
            }
        }
    };
    output::note(format_args!(
        "{origin}: driving {} limiter(s) for {} s",
        drives.len(),
        args.duration.as_secs_f64()
    ));

    let base = Instant::now();
    let mut workers = JoinSet::new();
    let mut rows = Vec::new();
    for (name, drive) in drives {
        let limiter = registry.limiter(&name)?;
        let keep_log = matches!(
            limiter.config().rule,
            Some(ratesync::Rule::SlidingWindow(_) | ratesync::Rule::FixedWindow(_))
        );
        let stats = Arc::new(Stats::new(base, keep_log));
        for _ in 0..drive.workers {
            workers.spawn(worker::work(limiter.clone(), drive, stats.clone()));
        }
        rows.push(Row {
            limiter,
            drive,
            stats,
        });
    }

    let live = Live::new(&rows, args.duration);
    let deadline = base + args.duration;
    loop {
        let next = Instant::now() + REFRESH;
        if next >= deadline {
            tokio::time::sleep_until(deadline).await;
            break;
        }
        tokio::time::sleep_until(next).await;
        live.update(&rows, base.elapsed());
    }
    // Snapshot before stopping: an aborted `acquire` consumes nothing, but the
    // figures must describe the run as it was at the deadline.
    let figures: Vec<_> = rows.iter().map(Row::figures).collect();
    workers.abort_all();
    live.finish();
    output::print(view::final_table(&rows, &figures))?;
    Ok(exit::OK)
}

/// What the demo drives, and where its configuration comes from.
struct Plan {
    registry: Registry,
    drives: Drives,
    origin: String,
}

/// The limiters of a file that live in memory stores: the demo never loads a
/// shared store, where its traffic would count against real clients.
fn from_file(config: Config) -> Result<Plan, Failure> {
    let origin = config
        .source
        .as_ref()
        .map_or_else(|| "configuration".to_owned(), |p| p.display().to_string());
    let mut drives = Drives::new();
    for (name, limiter) in &config.limiters {
        let engine = config.stores[&limiter.store].engine.engine_name();
        if engine == "memory" {
            let drive = builtin::drive_for(limiter.max_concurrent.map(|m| m.get()));
            drives.push((name.clone(), drive));
        } else {
            output::note(format_args!(
                "note: skipping `{name}`: its store `{}` uses the {engine} engine; \
                 the demo drives memory stores only",
                limiter.store
            ));
        }
    }
    if drives.is_empty() {
        return Err(Failure::config(format!(
            "{origin} has no limiter on a memory store to demo \
             (use `ratesync bench --limiter NAME` to drive a shared store)"
        )));
    }
    let registry = load::registry_for(&config, drives.iter().map(|(n, _)| n.as_str()))?;
    Ok(Plan {
        registry,
        drives,
        origin,
    })
}
