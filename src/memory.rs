//! Giving freed heap memory back to the operating system.
//!
//! glibc's `malloc` returns memory at the top of a heap when it is freed, but keeps
//! free pages in the middle of its heaps mapped: after a burst of short-lived
//! buffers (sled deserialising every page of a large backlog at start, or a flood
//! that was drained) the process keeps the RSS of its peak. `malloc_trim(0)` hands
//! every whole free page back (`madvise(MADV_DONTNEED)`; the heap stays usable).
//! The server calls [`release_free_memory`] once its data directory is loaded and
//! then every [`TRIM_EVERY`]. Measured holding 1 M × 100 B messages with a 64 MiB
//! cache: RSS after a restart 107 → 72 MiB (BENCHMARKS.md, the index step).
//!
//! Elsewhere than glibc on Linux (musl, macOS) this does nothing.

use std::time::Duration;

/// How often the server gives free memory back.
pub const TRIM_EVERY: Duration = Duration::from_secs(10);

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod glibc {
    // SAFETY (why this is sound): `malloc_trim` is glibc's documented, thread-safe
    // API (malloc(3)); it takes a size and touches only the allocator's own state
    // under its own locks, and it has this exact C signature in every glibc.
    extern "C" {
        fn malloc_trim(pad: usize) -> std::os::raw::c_int;
    }

    pub(super) fn trim() -> bool {
        // SAFETY: see above; the argument is a plain integer (no padding kept).
        unsafe { malloc_trim(0) != 0 }
    }
}

/// Gives the allocator's whole free pages back to the operating system; returns
/// whether any memory was released. It takes the allocator's locks while it walks
/// the free lists (not timed here), so the server runs it on a blocking thread.
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        glibc::trim()
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
