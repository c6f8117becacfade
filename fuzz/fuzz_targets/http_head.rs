//! The own HTTP server's head reader: a head read in pieces of any size gives the same
//! request, or the same refusal, as the head read at once; nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lifeguard_router_ext::server::fuzz_head(data);
});
