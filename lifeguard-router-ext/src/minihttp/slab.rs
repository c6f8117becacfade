//! Per-connection storage for dynamic header lines handed to may_minihttp 0.1.11 as
//! `&'static str`.
//!
//! # The invariant this relies on (may_minihttp `=0.1.11`, pinned in Cargo.toml)
//!
//! `Response::header(&'static str)` stores the reference in the `Response`, which
//! `http_server::each_connection_loop` passes by value to `response::encode` right after
//! `HttpService::call` returns; `encode` copies the bytes into the connection's output
//! buffer and drops the `Response`. Nothing else keeps the reference. Requests on one
//! connection are handled strictly one after another in that connection's coroutine, and
//! may_minihttp makes one service per connection (`HttpServiceFactory::new_service`), so
//! one service value (and the one slab it owns) never serves two requests at once.
//!
//! Hence a line written into the slab during one `call` is read (by `encode`) before the
//! next `call` on the same service begins, and that next `call` is the first thing that
//! overwrites the bytes. The memory itself is never freed (slabs are leaked once and
//! recycled through a free list), so a stale reference could at worst read newer header
//! bytes, never freed memory; with the invariant above no stale reference is ever read.
//!
//! Memory: `SLAB_BYTES` per connection open at the peak, reused afterwards; not per request
//! (which is why `Box::leak` per header is not an option).

use std::ptr::NonNull;
use std::sync::Mutex;

/// Bytes of header lines one response may carry in the slab.
pub(crate) const SLAB_BYTES: usize = 4096;

struct FreeSlab(NonNull<u8>);
// SAFETY: a free slab is plain bytes owned by the free list; whoever pops it owns it.
unsafe impl Send for FreeSlab {}

static FREE: Mutex<Vec<FreeSlab>> = Mutex::new(Vec::new());

/// A leaked, recycled byte buffer owned by one service value (one connection).
pub(crate) struct HeaderSlab {
    base: NonNull<u8>,
    used: usize,
}

// SAFETY: the slab exclusively owns its bytes (like a `Box<[u8]>`); every method that
// touches them takes `&mut self`.
unsafe impl Send for HeaderSlab {}
// SAFETY: `&HeaderSlab` gives access to nothing.
unsafe impl Sync for HeaderSlab {}

impl HeaderSlab {
    /// A slab from the free list, or a newly leaked one.
    pub(crate) fn acquire() -> HeaderSlab {
        let recycled = FREE.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let base = match recycled {
            Some(FreeSlab(p)) => p,
            None => {
                let raw = Box::into_raw(vec![0u8; SLAB_BYTES].into_boxed_slice());
                // SAFETY: `Box::into_raw` never returns null.
                unsafe { NonNull::new_unchecked(raw.cast::<u8>()) }
            }
        };
        HeaderSlab { base, used: 0 }
    }

    /// Forgets every line written so far. Call only at the start of `HttpService::call`:
    /// the previous response on this connection has been encoded by then.
    pub(crate) fn reset(&mut self) {
        self.used = 0;
    }

    /// Writes `name: value` and returns it as the `&'static str` may_minihttp wants, or
    /// `None` when the slab is full. Valid until the next [`HeaderSlab::reset`] (see the
    /// module docs for why that is enough).
    pub(crate) fn line(&mut self, name: &str, value: &str) -> Option<&'static str> {
        let len = name.len() + 2 + value.len();
        if len > SLAB_BYTES - self.used {
            return None;
        }
        let start = self.used;
        // SAFETY: `start + len <= SLAB_BYTES`, the allocation's size; the range is disjoint
        // from every line handed out since the last reset, so no live `&str` aliases it
        // (lines from before the reset are dead: module invariant).
        let line = unsafe {
            let dst = self.base.as_ptr().add(start);
            std::ptr::copy_nonoverlapping(name.as_ptr(), dst, name.len());
            std::ptr::copy_nonoverlapping(b": ".as_ptr(), dst.add(name.len()), 2);
            std::ptr::copy_nonoverlapping(value.as_ptr(), dst.add(name.len() + 2), value.len());
            let bytes: &'static [u8] = std::slice::from_raw_parts(dst, len);
            // The bytes are two `&str`s and ASCII ": ", hence UTF-8.
            std::str::from_utf8_unchecked(bytes)
        };
        self.used += len;
        Some(line)
    }
}

impl Drop for HeaderSlab {
    fn drop(&mut self) {
        FREE.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(FreeSlab(self.base));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_written_and_bounded() {
        let mut slab = HeaderSlab::acquire();
        let a = slab.line("A", "1");
        let b = slab.line("Bb", "22");
        assert_eq!(a, Some("A: 1"));
        assert_eq!(b, Some("Bb: 22"));
        let big = "x".repeat(SLAB_BYTES);
        assert_eq!(slab.line("C", &big), None);
        slab.reset();
        assert_eq!(slab.line("D", "4"), Some("D: 4"));
    }
}
