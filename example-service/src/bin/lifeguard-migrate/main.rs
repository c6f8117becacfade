//! `lifeguard-migrate`: applies, reverts and reports the example service's migrations, and
//! compares its models with the live schema.
//!
//! ```text
//! lifeguard-migrate [--url URL] [--dir DIR] [--schema SCHEMA] up | down [N] | down --to VERSION | status | drift
//! ```
//!
//! The URL is `--url`, else `$DATABASE_URL`, else `$LIFEGUARD_PRIMARY_URL`. Without `--dir`
//! the binary applies the migrations compiled into it: the service's own
//! ([`example_service::MIGRATIONS`], `example-service/migrations/*.sql`), which the service
//! also applies at start-up. `--dir` reads `DIR/*.sql` at run time instead (sorted by name;
//! the version is the leading digits, an optional down section follows a line
//! `-- lifeguard:down`). `drift` compares the service's models (authors, books, reviews,
//! world, fortune) with their tables. Exit codes: 0 ok, 1 error, 2 usage, 3 `drift` found
//! differences.
//!
//! The tracking table lives in `--schema` (else in the first schema of the `search_path`),
//! and the migrations create their tables unqualified, in the first schema of the URL's
//! `search_path`. The service keeps both in `$LIFEGUARD_SCHEMA` (default `example`), so to
//! act on its schema pass `--schema example` and a URL with
//! `?options=-c%20search_path%3Dexample,public`.
//!
//! The commands and their output are `lifeguard_core::migrate::commands`; this binary adds
//! the command line, the connection and the exit codes.

mod args;

use std::io::Write;

use args::{Args, Invocation, USAGE};
use example_service::models::{Author, Book, Review};
use example_service::techempower::{Fortune, World};
use lifeguard_core::migrate::commands::Report;
use lifeguard_core::migrate::{Migrator, TableSpec};
use lifeguard_core::pg::Connection;
use lifeguard_core::{Error, Result};

/// Success (and, for `drift`, no differences).
const EXIT_OK: i32 = 0;
/// A database, migration or configuration error.
const EXIT_ERROR: i32 = 1;
/// The command line was malformed.
const EXIT_USAGE: i32 = 2;
/// `drift` found differences.
const EXIT_DRIFT: i32 = 3;

const PROGRAM: &str = "lifeguard-migrate";

fn main() {
    may::config().set_workers(1);
    std::process::exit(run(std::env::args().skip(1)));
}

fn run(args: impl IntoIterator<Item = String>) -> i32 {
    let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
    let (mut out, mut err) = (stdout.lock(), stderr.lock());
    let args = match args::parse(args) {
        Ok(Invocation::Run(args)) => args,
        Ok(Invocation::Help) => {
            let _ = write!(out, "{USAGE}");
            return EXIT_OK;
        }
        Err(e) => {
            let _ = write!(err, "{PROGRAM}: {e}\n\n{USAGE}");
            return EXIT_USAGE;
        }
    };
    let report = match execute(&args) {
        Ok(report) => report,
        Err(e) => {
            let _ = writeln!(err, "{PROGRAM}: {e}");
            return EXIT_ERROR;
        }
    };
    if let Err(e) = write!(out, "{report}").and_then(|()| out.flush()) {
        let _ = writeln!(err, "{PROGRAM}: cannot write output: {e}");
        return EXIT_ERROR;
    }
    match report.differences() {
        0 => EXIT_OK,
        _ => EXIT_DRIFT,
    }
}

fn execute(args: &Args) -> Result<Report> {
    let url = args
        .url
        .clone()
        .or_else(|| env_nonempty("DATABASE_URL"))
        .or_else(|| env_nonempty("LIFEGUARD_PRIMARY_URL"))
        .ok_or_else(|| {
            Error::config("no database: pass --url or set DATABASE_URL or LIFEGUARD_PRIMARY_URL")
        })?;
    let mut migrator = match &args.dir {
        Some(dir) => Migrator::from_dir(dir)?,
        None => Migrator::new(example_service::MIGRATIONS),
    };
    if let Some(schema) = &args.schema {
        migrator = migrator.schema(schema.clone());
    }
    let mut conn = Connection::open(&url)?;
    args.command.run(&migrator, &tables(), &mut conn)
}

/// The service's models, as `drift` compares them.
fn tables() -> [TableSpec; 5] {
    [
        TableSpec::of::<Author>(),
        TableSpec::of::<Book>(),
        TableSpec::of::<Review>(),
        TableSpec::of::<World>(),
        TableSpec::of::<Fortune>(),
    ]
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}
