//! GraphQL generated from Lifeguard models, executed on the request's `may` coroutine.
//!
//! [`Schema::builder`] registers models (`#[derive(LifeModel, LifeRecord)]`); the schema
//! has, per model, an object type with its columns and relations, a filter input (per
//! field `eq ne gt gte lt lte in nin like ilike isNull`, and `and`/`or`/`not`), an
//! `orderBy` (several fields, NULLs placement, the primary key breaking ties), a list
//! (`limit`/`offset`), a by-key read, a Relay connection (`first`/`after`, opaque keyset
//! cursors, `totalCount`), and create/update/delete mutations, one and many, through the
//! ORM so record hooks, validators, timestamps and soft delete apply.
//!
//! Validation, coercion and introspection are async-graphql's (its dynamic schema), driven
//! from the calling coroutine with no async runtime. Loading is Lifeguard's: the root
//! field plans its whole selection, then runs one statement for its rows and one per
//! relation per level for all parents at once (`key = ANY($1)`; a per-parent `limit` is a
//! window in SQL), so the number of statements does not grow with the number of rows.
//!
//! The [`Limits`] are on by default: document size and nesting, depth, fields, page
//! size, estimated rows, rows per statement.
//!
//! With the `router` feature, [`http::routes`] serves it over HTTP on
//! `lifeguard-router-ext`, with GraphiQL.

#![warn(missing_docs)]

mod column;
mod documents;
mod enumeration;
mod error;
#[cfg(feature = "router")]
pub mod graphiql;
#[cfg(feature = "router")]
pub mod http;
mod limits;
mod load;
mod model;
mod mutation;
mod plan;
mod run;
mod schema;
mod sql;
mod variables;

pub use async_graphql::{Request, Response, Variables};
pub use limits::Limits;
pub use schema::{Schema, SchemaBuilder, SchemaError};
