//! The example service: a real service built on every Lifeguard crate, and the home of the
//! `lifeguard-bench` binary that speaks the shared benchmark harness's contract.
