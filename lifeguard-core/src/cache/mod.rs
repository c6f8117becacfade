//! Redis: the coroutine-native client ([`redis`]) under Lifeguard's cache-aside layer.
//!
//! Enabled by the `cache` cargo feature (on by default).

pub mod redis;
