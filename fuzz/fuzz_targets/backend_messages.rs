//! The backend-message reader and row decoding: framing, every message body, rows read as
//! scalars, text and arrays. Any of it may fail; none of it may panic or abort.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lifeguard_core::pg::fuzz_backend_messages(data);
});
