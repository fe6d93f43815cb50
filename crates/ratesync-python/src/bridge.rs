//! A tokio future as a future of the caller's event loop (`Pending`, asyncio's
//! protocol; `src/pending.rs`).
//!
//! The work runs on the extension's runtime. Its result goes into the loop's
//! [`Inbox`]; the loop settles the futures of a whole batch of results in one
//! callback. Runtime threads never take the GIL to hand a result back: on Unix the
//! inbox wakes the loop by writing one byte to a socket the loop watches
//! (`add_reader`), and only when the inbox goes from empty to non-empty. Taking the
//! GIL from a runtime thread per result would make every result wait for the loop
//! thread to let go of the GIL (up to the 5 ms switch interval under load), which
//! capped network-engine throughput far below what the engines deliver from Rust.
//! Loops without `add_reader` (Windows' proactor) are woken with
//! `call_soon_threadsafe`, once per batch.
//!
//! The other way round, the calls a loop makes during one iteration go to the
//! runtime together: the first queues a flush with `call_soon`, which hands them all
//! over as one tokio task, with one wake-up of the runtime (`docs/design.md#python`).
//! Handed over one by one, about every other call woke a runtime worker from the
//! loop's thread (a syscall, and on a busy machine a context switch of the loop's
//! thread). The batch's task polls its calls together and delivers those that are
//! answered by the same wake-up to the inbox together: answers that arrive together
//! (the store decides queued calls as one operation) wake one task, not one each.
//!
//! When the future is cancelled (a cancelled task, `asyncio.wait_for`), the
//! tokio task is aborted: a waiting acquire that is dropped consumes nothing
//! (`docs/design.md#waiting`). A result that arrives for a future cancelled meanwhile
//! is dropped without being converted, which releases any concurrency slot it holds.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;

use futures::future::{AbortHandle, Abortable, BoxFuture};
use futures::stream::{FuturesUnordered, StreamExt};
use parking_lot::Mutex;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::pending::Pending;

/// Turns a finished result into the future's value (or exception), on the loop.
type Settle = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

/// A result waiting for its loop: the future it settles, and how to convert it.
struct Delivery {
    future: Py<Pending>,
    settle: Settle,
}

/// Results waiting for their loop.
struct Inbox {
    ready: Mutex<Vec<Delivery>>,
    wake: Wake,
}

/// How a runtime thread tells the loop that the inbox has results.
enum Wake {
    /// The write end of a socket pair whose read end the loop watches.
    #[cfg(unix)]
    Socket {
        write: std::os::unix::net::UnixStream,
        read: std::os::unix::net::UnixStream,
    },
    /// `event_loop.call_soon_threadsafe(drain)`, with the GIL.
    CallSoon {
        event_loop: Py<PyAny>,
        drain: std::sync::OnceLock<Py<PyAny>>,
    },
}

impl Inbox {
    fn deliver(&self, deliveries: &mut Vec<Delivery>) {
        let was_empty = {
            let mut ready = self.ready.lock();
            let was_empty = ready.is_empty();
            ready.append(deliveries);
            was_empty
        };
        // A non-empty inbox already has a wake-up on its way: the drain that it
        // triggers takes these results too.
        if was_empty {
            self.wake();
        }
    }

    fn wake(&self) {
        match &self.wake {
            #[cfg(unix)]
            Wake::Socket { write, .. } => {
                // A full socket buffer (WouldBlock) means the loop has wake-ups
                // pending already; nothing is lost.
                let _ = std::io::Write::write(&mut &*write, &[1]);
            }
            Wake::CallSoon { event_loop, drain } => {
                let Some(drain) = drain.get() else { return };
                crate::runtime::attach_unless_shut_down(|py| {
                    // A closed loop (its `asyncio.run` ended) has nobody waiting.
                    let _ = event_loop.call_method1(py, "call_soon_threadsafe", (drain,));
                });
            }
        }
    }

    /// Settles every result that has arrived. Runs on the loop's thread.
    fn drain(&self, py: Python<'_>) {
        #[cfg(unix)]
        if let Wake::Socket { read, .. } = &self.wake {
            // Consume the wake-ups first: a result delivered after this point finds
            // the inbox empty or taken below, and wakes the loop again.
            let mut sink = [0u8; 256];
            while matches!(std::io::Read::read(&mut &*read, &mut sink), Ok(n) if n > 0) {}
        }
        let batch = std::mem::take(&mut *self.ready.lock());
        // A permit dropped below (its future was cancelled) sends its release from
        // the extension's runtime, like every other call into the core.
        let _runtime = crate::runtime::handle().enter();
        for Delivery { future, settle } in batch {
            // Converted and handed to its waiting task here, at once: the drain is a
            // callback of the loop, outside every task (`src/pending.rs`). A future
            // cancelled meanwhile stays cancelled; dropping `settle` unconverted
            // drops its permit, which gives back its slot.
            Pending::complete(future.bind(py), settle);
        }
    }
}

/// The callback the loop runs when the inbox has results.
#[pyclass(frozen, module = "ratesync._native")]
struct Drain(Arc<Inbox>);

#[pymethods]
impl Drain {
    fn __call__(&self, py: Python<'_>) {
        self.0.drain(py);
    }
}

/// How many calls of one iteration wait for its flush at most: when that many are
/// queued they go to the runtime at once (`docs/design.md#python`). With every call
/// of an iteration handed over at its end, the store's round trip only starts once
/// the loop's thread has run all of them, and the two never overlap; in parts, the
/// store decides the first while the loop runs the others, and the tasks settle
/// into cohorts that keep both busy.
const HAND_OVER_AT: usize = 16;

/// One call on the runtime: its result for the loop, or `None` when it was aborted.
type Call = BoxFuture<'static, Option<Delivery>>;

/// Calls made on a loop during one iteration, handed to the runtime together.
type Outbox = Arc<Mutex<Vec<Call>>>;

/// The callback that hands an outbox's calls to the runtime, scheduled with
/// `call_soon` by the first call of an iteration: it runs once the tasks that were
/// ready have all made their calls.
#[pyclass(frozen, module = "ratesync._native")]
struct Flush {
    outbox: Outbox,
    inbox: Arc<Inbox>,
}

#[pymethods]
impl Flush {
    fn __call__(&self) {
        let calls = std::mem::take(&mut *self.outbox.lock());
        if !calls.is_empty() {
            crate::runtime::handle().spawn(run_batch(self.inbox.clone(), calls));
        }
    }
}

/// Runs one flush's calls as one tokio task: a call's answer wakes the task (once
/// for answers that arrive together), and the results of one poll go to the inbox
/// together.
async fn run_batch(inbox: Arc<Inbox>, calls: Vec<Call>) {
    let mut calls: FuturesUnordered<Call> = calls.into_iter().collect();
    let mut answered = Vec::new();
    std::future::poll_fn(|cx| {
        let poll = loop {
            match calls.poll_next_unpin(cx) {
                Poll::Ready(Some(Some(delivery))) => answered.push(delivery),
                Poll::Ready(Some(None)) => {}
                Poll::Ready(None) => break Poll::Ready(()),
                Poll::Pending => break Poll::Pending,
            }
        };
        if !answered.is_empty() {
            inbox.deliver(&mut answered);
        }
        poll
    })
    .await
}

/// One event loop's end of the bridge. `ratesync._bridge` keeps one per loop.
#[pyclass(frozen, module = "ratesync._native")]
pub(crate) struct LoopBridge {
    event_loop: Py<PyAny>,
    /// The loop's `call_soon`, looked up once.
    call_soon: Py<PyAny>,
    /// Calls waiting for the flush, and the flush.
    outbox: Outbox,
    flush: Py<Flush>,
}

#[pymethods]
impl LoopBridge {
    /// Connects a bridge to `event_loop` (registers its reader or its fallback).
    #[new]
    fn new(event_loop: &Bound<'_, PyAny>) -> PyResult<Self> {
        let py = event_loop.py();
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            let (read, write) = std::os::unix::net::UnixStream::pair()?;
            read.set_nonblocking(true)?;
            write.set_nonblocking(true)?;
            let fd = read.as_raw_fd();
            let inbox = Arc::new(Inbox {
                ready: Mutex::new(Vec::new()),
                wake: Wake::Socket { write, read },
            });
            let drain = Py::new(py, Drain(inbox.clone()))?;
            match event_loop.call_method1("add_reader", (fd, drain)) {
                Ok(_) => return Self::with_inbox(event_loop, inbox),
                Err(error)
                    if error.is_instance_of::<pyo3::exceptions::PyNotImplementedError>(py) => {}
                Err(error) => return Err(error),
            }
        }
        Self::with_call_soon(event_loop)
    }
}

impl LoopBridge {
    fn with_call_soon(event_loop: &Bound<'_, PyAny>) -> PyResult<Self> {
        let py = event_loop.py();
        let inbox = Arc::new(Inbox {
            ready: Mutex::new(Vec::new()),
            wake: Wake::CallSoon {
                event_loop: event_loop.clone().unbind(),
                drain: std::sync::OnceLock::new(),
            },
        });
        // The callback holds the inbox weakly: the inbox holds the callback.
        let drain = Py::new(py, WeakDrain(Arc::downgrade(&inbox)))?.into_any();
        if let Wake::CallSoon { drain: slot, .. } = &inbox.wake {
            let _ = slot.set(drain);
        }
        Self::with_inbox(event_loop, inbox)
    }

    fn with_inbox(event_loop: &Bound<'_, PyAny>, inbox: Arc<Inbox>) -> PyResult<Self> {
        let outbox = Outbox::default();
        let flush = Flush {
            outbox: outbox.clone(),
            inbox,
        };
        Ok(LoopBridge {
            event_loop: event_loop.clone().unbind(),
            call_soon: event_loop.getattr("call_soon")?.unbind(),
            flush: Py::new(event_loop.py(), flush)?,
            outbox,
        })
    }

    /// Queues `call` for the runtime, in this iteration's batch.
    fn submit(&self, py: Python<'_>, call: Call) {
        let (first, full) = {
            let mut calls = self.outbox.lock();
            calls.push(call);
            (calls.len() == 1, calls.len() >= HAND_OVER_AT)
        };
        if full {
            // The calls so far start now, while the loop runs the iteration's other
            // tasks; the flush already queued takes the rest.
            self.flush.get().__call__();
            return;
        }
        if first && self.call_soon.call1(py, (&self.flush,)).is_err() {
            // A closed loop schedules nothing: hand the calls over at once.
            self.flush.get().__call__();
        }
    }
}

/// The fallback's callback.
#[pyclass(frozen, module = "ratesync._native")]
struct WeakDrain(std::sync::Weak<Inbox>);

#[pymethods]
impl WeakDrain {
    fn __call__(&self, py: Python<'_>) {
        if let Some(inbox) = self.0.upgrade() {
            inbox.drain(py);
        }
    }
}

/// The bridge of the event loop running on this thread (`RuntimeError` without
/// one), looked up here, once per call that needs one (`docs/design.md#python`):
/// the bridge used last on this thread is kept, and is the right one while its
/// loop runs on this thread (asyncio's loops say so in `_thread_id`), which spares
/// asking asyncio for the running loop (on Python 3.11 a `getpid` system call per
/// call). Otherwise, and for loops without `_thread_id`, the running loop is
/// asked for, and a loop seen for the first time gets its bridge from
/// `ratesync._bridge`, which keeps one per loop.
pub(crate) fn current(py: Python<'_>) -> PyResult<Bound<'_, LoopBridge>> {
    let last = LAST.with_borrow(|last| last.as_ref().map(|bridge| bridge.clone_ref(py)));
    if let Some(last) = &last {
        let runs_on = last.get().event_loop.getattr(py, intern!(py, "_thread_id"));
        // SAFETY: a plain query of the calling thread's id (`threading.get_ident()`).
        let here = unsafe { pyo3::ffi::PyThread_get_thread_ident() };
        if runs_on.is_ok_and(|id| id.extract::<std::os::raw::c_ulong>(py).ok() == Some(here)) {
            return Ok(last.clone_ref(py).into_bound(py));
        }
    }
    static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let event_loop = GET_RUNNING_LOOP
        .import(py, "asyncio", "get_running_loop")?
        .call0()?;
    if let Some(last) = last {
        if last.get().event_loop.is(&event_loop) {
            return Ok(last.into_bound(py));
        }
    }
    let bridge = py
        .import(intern!(py, "ratesync._bridge"))?
        .getattr(intern!(py, "of"))?
        .call1((event_loop,))?
        .cast_into::<LoopBridge>()?;
    LAST.set(Some(bridge.clone().unbind()));
    Ok(bridge)
}

thread_local! {
    /// The bridge this thread used last.
    static LAST: std::cell::RefCell<Option<Py<LoopBridge>>> = const { std::cell::RefCell::new(None) };
}

/// In a forked child: the loop that was running keeps its `_thread_id`, but it and
/// its bridge belong to the parent (`ratesync._bridge` gives the child new ones).
pub(crate) fn after_fork_in_child() {
    LAST.set(None);
}

/// Where a call's first poll is made (`docs/design.md#python`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum FirstPoll {
    /// Here, on the calling thread: the store may answer at once (the memory
    /// engine decides in this process), and then no thread hop and no future.
    Here,
    /// On the runtime: the store will be asked over the network, so a poll here
    /// would only start the call (send it, arm its timers, wake the runtime) on
    /// the event loop's thread, the busiest of the process.
    OnRuntime,
}

impl FirstPoll {
    /// Where to poll first a call on `limiter`.
    pub(crate) fn of(limiter: &ratesync::Limiter) -> Self {
        match limiter.engine_name() {
            "memory" => FirstPoll::Here,
            _ => FirstPoll::OnRuntime,
        }
    }
}

/// Runs `work`, the one way every call of the package runs
/// (`docs/design.md#python`): with [`FirstPoll::Here`], its first poll is made
/// here, in the runtime's context, and when it completes there (a store that
/// answers at once, the memory engine) its `convert`ed result comes back directly,
/// without a thread hop or a future. Otherwise it goes on on the runtime:
/// `on_loop`, as a `Pending` of the running loop (its bridge is looked up only
/// then); otherwise (the blocking API), by blocking this thread with the GIL
/// released.
pub(crate) fn run<T, F, C>(
    py: Python<'_>,
    on_loop: bool,
    first_poll: FirstPoll,
    work: F,
    convert: C,
) -> PyResult<Py<PyAny>>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
    C: FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
{
    let handle = crate::runtime::handle();
    let mut work = Box::pin(work);
    if first_poll == FirstPoll::Here {
        let _runtime = handle.enter();
        if let Some(output) = futures::FutureExt::now_or_never(work.as_mut()) {
            return convert(py, output);
        }
    }
    match on_loop {
        true => spawn(&current(py)?, work, convert).map(Bound::unbind),
        false => {
            let output = py.detach(|| handle.block_on(work));
            convert(py, output)
        }
    }
}

/// Runs `work` on the runtime; returns a future (`Pending`) of the bridge's loop that
/// gets its result (`convert`ed on the loop's thread) or its exception.
fn spawn<'py, T, F, C>(
    bridge: &Bound<'py, LoopBridge>,
    work: F,
    convert: C,
) -> PyResult<Bound<'py, PyAny>>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
    C: FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
{
    let py = bridge.py();
    let bridge = bridge.get();
    let (abort, registration) = AbortHandle::new_pair();
    let future = Bound::new(py, Pending::new(bridge.event_loop.clone_ref(py), abort))?;
    let future_ref = future.clone().unbind();
    bridge.submit(
        py,
        Box::pin(async move {
            // An aborted call (its future was cancelled) stops at its next poll and
            // drops what it holds, which consumes nothing.
            let output = Abortable::new(work, registration).await.ok()?;
            Some(Delivery {
                future: future_ref,
                settle: Box::new(move |py| convert(py, output)),
            })
        }),
    );
    Ok(future.into_any())
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<LoopBridge>()
}
