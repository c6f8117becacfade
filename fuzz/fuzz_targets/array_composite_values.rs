//! Binary array and composite values as a server sends them: the size check, then `FromSql`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lifeguard_core::pg::types::fuzz_value(data);
});
