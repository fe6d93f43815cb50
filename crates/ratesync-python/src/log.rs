//! The core's warnings as Python log records (`logging.getLogger("ratesync")`), so
//! that no failure is silent in a Python process (`docs/design.md#failure-policy`):
//! a store outage under fail-open, a lease that could not be released or renewed.
//!
//! The core reports through `tracing` and leaves the subscriber to the application.
//! Here the application is the Python process, so the extension installs one when it
//! is imported (unless the process has one already): it takes `WARN` and `ERROR`
//! events and hands them to a thread of its own, which logs them with the GIL.
//! Runtime threads never take the GIL for a log line, and an event never blocks: a
//! full queue drops it (and the next record says how many were dropped). The core
//! rate-limits its repeated warnings itself (a fail-open admission is logged once
//! per interval, the first at once), so an outage cannot flood the log.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

use pyo3::prelude::*;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata};

/// Records waiting for the logging thread; past this, events are dropped.
const QUEUE: usize = 256;

/// One event: Python's level number and the formatted message.
type Line = (u8, String);

/// The queue's sending end. Swapped (never freed) in a forked child, whose logging
/// thread is new: a lock here could be held by a parent thread at the fork.
static SENDER: AtomicPtr<SyncSender<Line>> = AtomicPtr::new(std::ptr::null_mut());
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Installs the subscriber (once per process) and starts the logging thread.
pub(crate) fn install() {
    start_thread();
    let _ = tracing::subscriber::set_global_default(Forward);
}

/// A forked child inherits the queue but not the thread that empties it.
pub(crate) fn after_fork_in_child() {
    start_thread();
}

fn start_thread() {
    let (sender, receiver) = sync_channel(QUEUE);
    let spawned = std::thread::Builder::new()
        .name("ratesync-log".to_owned())
        .spawn(move || forward(receiver));
    if spawned.is_ok() {
        let sender = Box::into_raw(Box::new(sender));
        // The previous sender (the parent's, in a child) is leaked on purpose: a
        // concurrent event may still be using it.
        SENDER.swap(sender, Ordering::AcqRel);
    }
}

/// The logging thread: each record to `logging.getLogger("ratesync")`.
fn forward(receiver: Receiver<Line>) {
    while let Ok((level, message)) = receiver.recv() {
        crate::runtime::attach_unless_shut_down(|py| {
            let logged = py
                .import("logging")
                .and_then(|logging| logging.call_method1("getLogger", ("ratesync",)))
                .and_then(|logger| logger.call_method1("log", (level, message)));
            if let Err(error) = logged {
                error.print(py);
            }
        });
    }
}

fn send(line: Line) {
    let sender = SENDER.load(Ordering::Acquire);
    // SAFETY: a sender, once stored, is never freed (see `start_thread`).
    let Some(sender) = (unsafe { sender.as_ref() }) else {
        return;
    };
    match sender.try_send(line) {
        Ok(()) => {}
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The subscriber: `WARN` and `ERROR` events, formatted as
/// `message (field=value, ...)`. Spans are not tracked (the core logs events).
struct Forward;

impl tracing::Subscriber for Forward {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_event() && *metadata.level() <= Level::WARN
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::WARN)
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut text = Text::default();
        event.record(&mut text);
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = write!(
                text.fields,
                "{}log_records_dropped={dropped}",
                text.separator()
            );
        }
        let message = match text.fields.is_empty() {
            true => text.message,
            false => format!("{} ({})", text.message, text.fields),
        };
        // Python's logging.ERROR and logging.WARNING.
        let level = if *event.metadata().level() == Level::ERROR {
            40
        } else {
            30
        };
        send((level, message));
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

/// An event's message and its other fields.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Text {
    fn separator(&self) -> &'static str {
        if self.fields.is_empty() {
            ""
        } else {
            ", "
        }
    }
}

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let separator = self.separator();
            let _ = write!(self.fields, "{separator}{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }
}
