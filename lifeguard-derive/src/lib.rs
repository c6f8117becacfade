//! Procedural macros for Lifeguard: `#[derive(LifeModel, LifeRecord, ...)]`.
//!
//! The generated code names `lifeguard_core` paths only, so a user depends on
//! `lifeguard-core` and this crate and nothing else. The derives arrive with the ORM issue.
