//! The example service: a real service on Lifeguard that a reader can take in in ten
//! minutes and copy. It is also the home of the `lifeguard-bench` binary that speaks the
//! shared benchmark harness's contract, and of `lifeguard-migrate`.
//!
//! # What it does
//!
//! A small library domain ([`models`]: authors write books, readers review books) over REST
//! ([`api`]), the TechEmpower database endpoints ([`techempower`]), an OpenAPI document
//! ([`openapi`]), Prometheus metrics and health checks. The schema is created by the SQL
//! migrations in `example-service/migrations/` at start-up, and a few authors are seeded.
//!
//! | method and path | what |
//! | --- | --- |
//! | `GET /authors?q=&page=&per_page=` | authors by name, paged (`{items, page, per_page, total}`) |
//! | `POST /authors` | create (`201` + `Location`; `409` on a taken email) |
//! | `GET /authors/{id}` | an author with their books (eager-loaded) |
//! | `PATCH /authors/{id}`, `DELETE /authors/{id}` | change, delete (cascades to books) |
//! | `GET /books?author_id=&q=&year=&page=&per_page=` | live books, filtered and paged |
//! | `POST /books`, `GET/PATCH/DELETE /books/{id}` | books; `GET` includes author and reviews; `DELETE` is a soft delete |
//! | `GET/POST /books/{id}/reviews` | reviews of a book |
//! | `GET /shelf?limit=` | the newest authors with their books and the books' reviews (3 statements) |
//! | `GET /db`, `/queries?q=`, `/fortunes`, `/updates?q=` | TechEmpower, formats as the benchmark harness checks them |
//! | `POST /graphql`, `GET /graphql` | the models as GraphQL ([`graphql`]); GraphiQL for a browser, the SDL at `/graphql/schema.graphql` |
//! | `GET /openapi.json` | the OpenAPI 3.1 document |
//! | `GET /metrics`, `/health/live`, `/health/ready` | operations |
//! | `GET /debug/where` | `{"in_recovery", "port"}` of the server that ran the read (only with `LIFEGUARD_DEBUG_ENDPOINTS=1`) |
//!
//! Errors are `application/problem+json` ([`error`]). Every request may send the
//! `Lifeguard-*` headers (read preference, staleness, consistency token, timeout, request
//! id; see `lifeguard-router-ext`); a write's response carries the consistency token that
//! makes the client's next read see it, even on a replica.
//!
//! # Running it
//!
//! `scripts/run` starts the local PostgreSQL primary, replica and Redis, builds the
//! service and serves on `http://127.0.0.1:8080`. Configuration is in [`config`].
//!
//! # Shutdown
//!
//! On SIGTERM or SIGINT the binary stops accepting connections, waits (at most
//! `LIFEGUARD_SHUTDOWN_GRACE_MS`) for the requests already in handlers, closes the pool
//! and exits 0. Neither HTTP server has a drain of its own, so "graceful" means exactly that:
//! no new connections, handlers that started finish, open keep-alive connections are then
//! closed without a response to anything they send later.

#![warn(missing_docs)]

pub mod api;
pub mod app;
pub mod config;
pub mod error;
pub mod graphql;
pub mod http;
pub mod models;
pub mod openapi;
pub mod seed;
pub mod techempower;

pub use app::{migrator, service, start, Running, MIGRATIONS};
pub use config::AppConfig;
