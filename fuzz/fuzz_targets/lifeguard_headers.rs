//! The `Lifeguard-*` request headers: the input is split into header lines `name: value`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeguard_router_ext::{RequestContext, Settings};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let headers: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim(), value.trim()))
        .collect();
    let settings = Settings::default();
    if let Ok(ctx) = RequestContext::from_headers(&settings, headers) {
        let _ = (ctx.request_id(), ctx.read_options(), ctx.timeout(), ctx.deadline());
    }
});
