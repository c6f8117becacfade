//! Consistency tokens as clients send them back (`Lifeguard-Consistency-Token`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeguard_core::pool::ConsistencyToken;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(token) = text.parse::<ConsistencyToken>() {
        // What parses must print back to something that parses to the same token.
        let again: ConsistencyToken = token.to_string().parse().expect("a printed token parses");
        assert_eq!(again, token);
        let _ = token.merge(&again);
    }
});
