//! The process's allocator: mimalloc, tuned to give freed memory back promptly.
//!
//! A burst of large request bodies (16 × 13 MiB in flight) takes hundreds of MiB; with the
//! allocator's defaults most of it stays resident long after the burst (freed pages are
//! purged only after a delay, and only when the allocator runs again). A gateway that sits
//! idle after a burst should look idle: [`return_memory_promptly`] purges freed pages at once
//! and commits arena memory only as it is used. An operator who prefers mimalloc's own
//! defaults (or other values) sets the `MIMALLOC_*` variables, which always win.

use std::cell::Cell;
use std::ffi::c_long;
use std::time::{Duration, Instant};

use libmimalloc_sys::mi_option_t;

/// The allocator the binary installs as `#[global_allocator]`.
pub use mimalloc::MiMalloc as Allocator;

// Option numbers from `mi_option_e` in the mimalloc v3 header vendored by libmimalloc-sys
// 0.1.49 (pinned exactly in Cargo.toml); the crate exports constants only for older options.
/// `mi_option_arena_eager_commit`: commit a whole arena up front (default 2: on overcommit
/// systems).
const ARENA_EAGER_COMMIT: mi_option_t = 4;
/// `mi_option_purge_delay`: milliseconds before freed memory is purged (default 10).
const PURGE_DELAY: mi_option_t = 15;
/// `mi_option_arena_purge_mult`: multiplier of the purge delay for arenas (default 10).
const ARENA_PURGE_MULT: mi_option_t = 24;

/// What [`return_memory_promptly`] sets, with the environment variable that overrides each.
const PROMPT_RETURN: [(mi_option_t, &str, c_long); 3] = [
    (PURGE_DELAY, "MIMALLOC_PURGE_DELAY", 0),
    (ARENA_PURGE_MULT, "MIMALLOC_ARENA_PURGE_MULT", 0),
    (ARENA_EAGER_COMMIT, "MIMALLOC_ARENA_EAGER_COMMIT", 0),
];

/// Makes the allocator purge freed memory at once and commit arena memory only as it is
/// used, except for options the environment sets itself. Call it first thing in `main`.
pub fn return_memory_promptly() {
    for (option, variable, value) in PROMPT_RETURN {
        if std::env::var_os(variable).is_some() {
            continue;
        }
        // SAFETY: `mi_option_set` only stores a value in mimalloc's option table; every
        // option number above exists in the pinned header, and any value is accepted.
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
pub fn prompt_return_options() -> [c_long; 3] {
    // SAFETY: `mi_option_get` reads mimalloc's option table; the numbers exist.
    PROMPT_RETURN.map(|(option, _, _)| unsafe { libmimalloc_sys::mi_option_get(option) })
}
