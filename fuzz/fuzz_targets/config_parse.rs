//! Connection strings, URL and key=value forms. A parse error must never quote the password.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeguard_core::pg::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = text.parse::<Config>() {
        // Debug output redacts the password; rendering it must not panic either.
        let _ = format!("{config:?}");
    }
});
