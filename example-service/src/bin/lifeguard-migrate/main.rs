//! `lifeguard-migrate`: applies, reverts and reports the database migrations, and compares
//! the models with the live schema.
//!
//! ```text
//! lifeguard-migrate [--url URL] [--dir DIR] [--schema SCHEMA] up | down [N] | down --to VERSION | status | drift
//! ```
//!
//! The URL is `--url`, else `$DATABASE_URL`, else `$LIFEGUARD_PRIMARY_URL`. `--dir` reads
//! `DIR/*.sql` at run time (sorted by name; the version is the leading digits, an optional
//! down section follows a line `-- lifeguard:down`). Without it the binary applies the
//! migrations embedded in it: `example_service_migrations`, empty until the example
//! service has a schema. Exit codes: 0 ok, 1 error, 2 usage, 3 `drift` found differences.
//!
//! Everything but the wiring lives in `lifeguard_core::migrate::cli`, so another service
//! builds the same tool over its own migrations and models in a few lines.

use lifeguard_core::migrate::cli::Cli;
use lifeguard_core::migrate::{Migrator, TableSpec};

/// The migrations compiled into the binary. The example service adds its files here with
/// `lifeguard_core::migrations!("../../migrations"; "0001_....sql", ...)` and calls
/// `lifeguard_core::migrate::startup_migrations(&pool, &migrator)` at start-up.
fn example_service_migrations() -> Migrator {
    Migrator::new(lifeguard_core::migrations![])
}

/// The models `drift` checks: `TableSpec::of::<Model>()` for each of the service's models.
fn example_service_tables() -> Vec<TableSpec> {
    Vec::new()
}

fn main() {
    may::config().set_workers(1);
    let cli = Cli::new(example_service_migrations()).tables(example_service_tables());
    std::process::exit(cli.main());
}
