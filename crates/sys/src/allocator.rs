//! The process's allocator: mimalloc, tuned to give freed memory back promptly.
//!
//! A burst of large request bodies (16 × 13 MiB in flight) takes hundreds of MiB. mimalloc
//! purges freed pages after a short delay (10 ms, ×10 for arenas), but only when the thread
//! that owns them runs the allocator again, and an idle worker never does; so most of a burst
//! stayed resident long after it. Two settings make an idle gateway look idle:
//! [`return_memory_promptly`] commits arena memory only as it is used, and
//! [`collect_if_due`], run by the async runtime whenever a worker goes idle, lets that worker
//! take back what other threads freed of its memory and run its due purges. Purging at once
//! (`MIMALLOC_PURGE_DELAY=0`) would return memory sooner still, but costs a system call per
//! freed page on the request path (about 40% more CPU per request at concurrency 1 in the
//! benchmark), so the delays keep mimalloc's defaults. The `MIMALLOC_*` variables always win.

use std::cell::Cell;
use std::ffi::c_long;
use std::time::{Duration, Instant};

use libmimalloc_sys::mi_option_t;

/// The allocator the binary installs as `#[global_allocator]`.
pub use mimalloc::MiMalloc as Allocator;

// Option number from `mi_option_e` in the mimalloc v3 header vendored by libmimalloc-sys
// 0.1.49 (pinned exactly in Cargo.toml); the crate exports constants only for older options.
/// `mi_option_arena_eager_commit`: commit a whole arena up front (default 2: on overcommit
/// systems).
const ARENA_EAGER_COMMIT: mi_option_t = 4;

/// What [`return_memory_promptly`] sets, with the environment variable that overrides each.
const PROMPT_RETURN: [(mi_option_t, &str, c_long); 1] =
    [(ARENA_EAGER_COMMIT, "MIMALLOC_ARENA_EAGER_COMMIT", 0)];

/// Makes the allocator commit arena memory only as it is used, unless the environment sets
/// that option itself. Call it first thing in `main`.
pub fn return_memory_promptly() {
    for (option, variable, value) in PROMPT_RETURN {
        if std::env::var_os(variable).is_some() {
            continue;
        }
        // SAFETY: `mi_option_set` only stores a value in mimalloc's option table; the option
        // number exists in the pinned header, and any value is accepted.
        unsafe { libmimalloc_sys::mi_option_set(option, value) };
    }
}

/// How often one thread collects its heap in [`collect_if_due`].
const COLLECT_EVERY: Duration = Duration::from_secs(1);

thread_local! {
    static LAST_COLLECT: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Collects the calling thread's heap — processes the blocks other threads freed into it and
/// purges pages left empty — at most once per second per thread. Meant for a runtime's
/// "thread park" hook: memory freed across threads (a request body read by one worker and
/// dropped by another) is otherwise returned only when its owning thread allocates again,
/// which an idle worker never does. Costs one clock read when not due.
pub fn collect_if_due() {
    let now = Instant::now();
    let due = LAST_COLLECT.with(|last| match last.get() {
        Some(t) if now.duration_since(t) < COLLECT_EVERY => false,
        _ => {
            last.set(Some(now));
            true
        }
    });
    if due {
        // SAFETY: `mi_collect` only walks and trims the calling thread's own heap.
        unsafe { libmimalloc_sys::mi_collect(false) };
    }
}

/// The current value of the options [`return_memory_promptly`] sets, in its order (for
/// tests and diagnostics).
pub fn prompt_return_options() -> [c_long; 1] {
    // SAFETY: `mi_option_get` reads mimalloc's option table; the number exists.
    PROMPT_RETURN.map(|(option, _, _)| unsafe { libmimalloc_sys::mi_option_get(option) })
}
