//! Hot reload (`docs/design.md#hot-reload`): a configuration file followed through
//! the platform's file-system events (polling where there are none), each valid edit
//! applied as a whole, each invalid one refused with the error `ratesync check` gives
//! and logged, while the running limits stay.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use notify::{Event, EventKind, PollWatcher, RecommendedWatcher, RecursiveMode, Watcher};
use parking_lot::RwLock;

use crate::config::{Config, ConfigError};
use crate::error::Error;
use crate::limiter::Limiter;
use crate::registry::Registry;

/// How long the file must be quiet before it is read: an editor's save is several
/// events (write, rename, metadata), and the file is read once they are done.
const SETTLE: Duration = Duration::from_millis(100);

/// How often the file is read where the platform gives no events.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// A [`Registry`] that follows its configuration file ([`Registry::watch`]).
/// Handles taken from it ([`WatchedRegistry::limiter`]) follow every reload; so do
/// the HTTP layers built on them. Dropping it stops the watching; the registry it
/// held stays as it last was.
pub struct WatchedRegistry {
    current: Arc<RwLock<Registry>>,
    _watch: ConfigWatch,
}

impl Registry {
    /// Builds the configuration file at `path` and follows it: a valid edit is
    /// applied within about a second, atomically for the whole file
    /// ([`Registry::reloaded`]: limiters keep their keys' state where the algorithm
    /// is unchanged; added ones appear; removed ones refuse new calls with
    /// [`crate::AcquireError::NotConfigured`], their permits valid until released; a
    /// changed store reconnects). An invalid edit is logged (`tracing`, error level)
    /// with the error `ratesync check` gives, and changes nothing. Every reload is
    /// counted in `ratesync_config_reloads_total{result="applied"|"rejected"}`.
    pub fn watch(path: impl AsRef<Path>) -> Result<WatchedRegistry, Error> {
        let (mut watch, config) = ConfigWatch::open(path.as_ref())?;
        let current = Arc::new(RwLock::new(Registry::from_config(config)?));
        let cell = current.clone();
        watch.follow(move |after| {
            let mut registry = cell.write();
            let before = registry.config().clone();
            *registry = registry.reloaded(&before, after)?;
            Ok(())
        })?;
        Ok(WatchedRegistry {
            current,
            _watch: watch,
        })
    }
}

impl WatchedRegistry {
    /// The registry as of the last reload.
    pub fn registry(&self) -> Registry {
        self.current.read().clone()
    }

    /// The limiter named `name`: a handle that follows reloads.
    pub fn limiter(&self, name: &str) -> Result<Limiter, Error> {
        self.current.read().limiter(name)
    }
}

impl std::fmt::Debug for WatchedRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WatchedRegistry")
            .field(&*self.current.read())
            .finish()
    }
}

/// Follows a configuration file on a thread of its own: each edit that validates and
/// differs from the last one applied is handed to `apply`; an edit that does not
/// validate, or that `apply` refuses, is logged and counted, and the last one applied
/// stays. Used by [`Registry::watch`] and the Python package's
/// `load_config(watch=True)`. Dropping it stops the thread.
pub struct ConfigWatch {
    /// Holds the event source; dropping it ends the thread.
    _watcher: Box<dyn Watcher + Send>,
    /// What the thread starts from, until [`ConfigWatch::follow`] starts it.
    waiting: Option<Waiting>,
}

struct Waiting {
    path: PathBuf,
    events: Receiver<notify::Result<Event>>,
    text: String,
    config: Config,
}

impl ConfigWatch {
    /// Reads `path` and starts watching it: the configuration it holds now, from
    /// which the caller builds what [`ConfigWatch::follow`] will then change. Edits
    /// made in between are not missed: their events wait.
    pub fn open(path: &Path) -> Result<(ConfigWatch, Config), Error> {
        let path = path.to_path_buf();
        let origin = path.display().to_string();
        let (events, received) = mpsc::channel();
        let watcher = watcher(&path, events).map_err(|error| {
            Error::Config(ConfigError::single(
                &origin,
                "",
                format!("cannot watch the configuration file: {error}"),
            ))
        })?;
        let text = std::fs::read_to_string(&path).map_err(|error| {
            ConfigError::single(
                &origin,
                "",
                format!("cannot read the configuration file: {error}"),
            )
        })?;
        let config = parse(&text, &path)?;
        let waiting = Waiting {
            path,
            events: received,
            text,
            config: config.clone(),
        };
        let watch = ConfigWatch {
            _watcher: watcher,
            waiting: Some(waiting),
        };
        Ok((watch, config))
    }

    /// Starts handing each later edit to `apply`, on a thread of its own. Once.
    pub fn follow(
        &mut self,
        apply: impl FnMut(Config) -> Result<(), Error> + Send + 'static,
    ) -> Result<(), Error> {
        let Some(waiting) = self.waiting.take() else {
            return Ok(());
        };
        let origin = waiting.path.display().to_string();
        std::thread::Builder::new()
            .name("ratesync-config-watch".to_owned())
            .spawn(move || follow(waiting, apply))
            .map(drop)
            .map_err(|error| {
                Error::Config(ConfigError::single(
                    origin,
                    "",
                    format!("cannot watch the configuration file: {error}"),
                ))
            })
    }
}

/// The configuration of file `path` holding `text`.
fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let mut config = Config::from_toml_str(text, &path.display().to_string())?;
    config.source = Some(path.to_path_buf());
    Ok(config)
}

/// A watcher of the directory of `path` (editors replace a file by renaming another
/// over it, which a watch on the file itself would miss) sending its events to
/// `events`: the platform's, else polling.
fn watcher(
    path: &Path,
    events: mpsc::Sender<notify::Result<Event>>,
) -> notify::Result<Box<dyn Watcher + Send>> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let native = RecommendedWatcher::new(events.clone(), notify::Config::default()).and_then(
        |mut watcher| {
            watcher.watch(&directory, RecursiveMode::NonRecursive)?;
            Ok(watcher)
        },
    );
    match native {
        Ok(watcher) => Ok(Box::new(watcher)),
        Err(error) => {
            tracing::warn!(%error, "no file-system events for the configuration file; polling it");
            let config = notify::Config::default()
                .with_poll_interval(POLL_INTERVAL)
                .with_compare_contents(true);
            let mut watcher = PollWatcher::new(events, config)?;
            watcher.watch(path, RecursiveMode::NonRecursive)?;
            Ok(Box::new(watcher))
        }
    }
}

/// The watching thread: waits for changes of `path` (its own reads are file events
/// too, and are not changes), lets them settle, then reads the file; a text already
/// seen, applied or refused, is not looked at again, so a broken file is reported
/// once, not at every event. Ends when the watcher is dropped.
fn follow(waiting: Waiting, mut apply: impl FnMut(Config) -> Result<(), Error>) {
    let Waiting {
        path,
        events,
        text,
        config: mut applied,
    } = waiting;
    let path = path.as_path();
    let events = &events;
    let mut seen = Some(text);
    let name = path.file_name();
    let origin = path.display().to_string();
    let a_change = |event: &notify::Result<Event>| match event {
        Ok(event) => {
            !matches!(event.kind, EventKind::Access(_))
                && (event.paths.is_empty() || event.paths.iter().any(|p| p.file_name() == name))
        }
        Err(_) => true,
    };
    loop {
        match events.recv() {
            Ok(event) if a_change(&event) => {}
            Ok(_) => continue,
            Err(_) => return,
        }
        loop {
            match events.recv_timeout(SETTLE) {
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        let text = std::fs::read_to_string(path);
        let unchanged = match (&text, &seen) {
            (Ok(text), Some(seen)) => text == seen,
            (Err(_), None) => true,
            _ => false,
        };
        if unchanged {
            continue;
        }
        seen = text.as_ref().ok().cloned();
        let loaded = match text {
            Ok(text) => parse(&text, path),
            Err(error) => Err(ConfigError::single(
                &origin,
                "",
                format!("cannot read the configuration file: {error}"),
            )),
        };
        // An edit that changes nothing the configuration says (a comment).
        if loaded.as_ref().is_ok_and(|config| *config == applied) {
            continue;
        }
        let outcome = loaded.map_err(Error::from).and_then(|config| {
            apply(config.clone())?;
            Ok(config)
        });
        match outcome {
            Ok(config) => {
                applied = config;
                metrics::counter!("ratesync_config_reloads_total", "result" => "applied")
                    .increment(1);
                tracing::info!(path = %path.display(), "configuration reloaded");
            }
            Err(error) => {
                metrics::counter!("ratesync_config_reloads_total", "result" => "rejected")
                    .increment(1);
                tracing::error!(
                    path = %path.display(),
                    "configuration reload refused, the running limits stay: {error}"
                );
            }
        }
    }
}
