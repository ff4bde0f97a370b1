//! Parallel batch work whose results must be turned into Python objects.
//!
//! Making Python objects needs the GIL, so only the calling thread can do it. An earlier
//! design let `threads` pool workers encode while the calling thread converted: three busy
//! threads on two cores, and the paired 2-core scaling stalled at ~1.4×. Here the calling
//! thread is one of the `threads`: it claims chunks like a worker (GIL released), and
//! converts whatever the `threads - 1` pool workers have finished in between, so the cores are
//! never oversubscribed and `threads == 1` is the plain serial loop.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};

use pyo3::prelude::*;

/// Runs `work` over the chunks `bounds[i]..bounds[i + 1]` on the calling thread plus `threads - 1`
/// workers of `pool` (the global pool when `None`), and hands each chunk's result to `take`
/// on the calling thread, with the GIL, in completion order.
///
/// `work` gets a per-thread state `S` that lives for the whole call (a merge cache), made by
/// `init` and handed to `finish` at the end, on the thread that used it. When
/// `take` returns `Ok(false)` or an error, no new chunk is started, but every chunk below one
/// already started is still finished and taken first, so "the first failing item" is well
/// defined.
// Each argument is one role of the call (where, how wide, what units, per-thread state, the
// work, the hand-over); bundling them would only rename them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_chunks<R, S>(
    py: Python<'_>,
    pool: Option<&rayon::ThreadPool>,
    threads: usize,
    bounds: &[usize],
    init: impl Fn() -> S + Sync,
    work: impl Fn(Range<usize>, &mut S) -> R + Sync,
    finish: impl Fn(S) + Sync,
    mut take: impl FnMut(Range<usize>, R) -> PyResult<bool>,
) -> PyResult<()>
where
    R: Send,
    S: Send,
{
    let n_chunks = bounds.len().saturating_sub(1);
    let next = AtomicUsize::new(0);
    // Claims go up in order, so once a chunk is claimed every lower one is too.
    let claim = || {
        let c = next.fetch_add(1, Ordering::Relaxed);
        (c < n_chunks).then(|| bounds[c]..bounds[c + 1])
    };
    let stop = || next.store(n_chunks, Ordering::Relaxed);
    let workers = threads.saturating_sub(1).min(n_chunks.saturating_sub(1));
    let (tx, rx) = mpsc::channel::<(Range<usize>, R)>();
    // In a mutex only so that a closure run without the GIL may borrow it (Receiver isn't Sync).
    let rx = Mutex::new(rx);
    let (claim, work, init, finish) = (&claim, &work, &init, &finish);
    let drive = scope_fn(|s| -> PyResult<()> {
        for _ in 0..workers {
            let tx = tx.clone();
            s.spawn(move |_| {
                let mut state = init();
                while let Some(r) = claim() {
                    let out = work(r.clone(), &mut state);
                    // The receiver outlives the scope, so a send cannot fail.
                    let _ = tx.send((r, out));
                }
                finish(state);
            });
        }
        // Only the workers hold senders now: `recv` fails once they have all finished.
        drop(tx);
        let mut state = init();
        let mut result = Ok(());
        let mut give = |r: Range<usize>, out: R| {
            if result.is_ok() {
                match take(r, out) {
                    Ok(true) => return,
                    Ok(false) => {}
                    Err(e) => result = Err(e),
                }
            }
            stop();
        };
        loop {
            // Convert what is ready first: the workers' results wait on this thread only.
            let ready = rx.lock().ok().and_then(|r| r.try_recv().ok());
            if let Some((r, out)) = ready {
                give(r, out);
            } else if let Some(r) = claim() {
                let out = py.detach(|| work(r.clone(), &mut state));
                give(r, out);
            } else {
                let waited = py.detach(|| rx.lock().ok().and_then(|r| r.recv().ok()));
                match waited {
                    Some((r, out)) => give(r, out),
                    None => break,
                }
            }
        }
        finish(state);
        result
    });
    match pool {
        Some(p) => p.in_place_scope(drive),
        None => rayon::in_place_scope(drive),
    }
}

/// Pins a closure to one scope lifetime: a closure annotated `|s: &Scope<'_>|` would be
/// higher-ranked, and then every borrow it hands to `spawn` would have to be `'static`.
fn scope_fn<'s, T>(f: impl FnOnce(&rayon::Scope<'s>) -> T) -> impl FnOnce(&rayon::Scope<'s>) -> T {
    f
}
