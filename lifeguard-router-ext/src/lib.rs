//! Router extension: request context from `Lifeguard-*` headers, the per-request executor,
//! a BRRTRouter-shaped middleware and a `may_minihttp` adapter.
//!
//! Owns everything HTTP-facing; `lifeguard-core` knows nothing of HTTP. Built in the router issue.
