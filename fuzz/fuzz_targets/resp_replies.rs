//! Redis replies as the cache's connection reader splits and decodes them (RESP2 and
//! RESP3, nested, truncated, garbled): errors, never a panic or an unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lifeguard_core::cache::redis::fuzz_replies(data);
});
