//! The runner behind a `lifeguard-migrate` binary: argument parsing (by hand), the
//! commands, readable output and exit codes. A service builds its own binary by handing it
//! its embedded migrations and its models' [`TableSpec`]s:
//!
//! ```no_run
//! use lifeguard_core::migrate::{cli::Cli, Migrator};
//!
//! fn main() {
//!     let migrator = Migrator::new(lifeguard_core::migrations![
//!         "0001_notes.sql" => "CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL)",
//!     ]);
//!     std::process::exit(Cli::new(migrator).main());
//! }
//! ```
//!
//! ```text
//! lifeguard-migrate [--url URL] [--dir DIR] [--schema SCHEMA] up | down [N] | down --to VERSION | status | drift
//! ```
//!
//! The URL is `--url`, else `$DATABASE_URL`, else `$LIFEGUARD_PRIMARY_URL`. `--dir` reads
//! the `*.sql` files of a directory at run time instead of the embedded migrations;
//! `--schema` keeps the tracking table in that schema. Exit codes: [`EXIT_OK`],
//! [`EXIT_ERROR`], [`EXIT_USAGE`], [`EXIT_DRIFT`].

use std::io::Write;

use super::{Migrator, TableSpec};
use crate::error::{Error, Result};
use crate::pg::Connection;

/// Success (and, for `drift`, no differences).
pub const EXIT_OK: i32 = 0;
/// A database, migration or configuration error.
pub const EXIT_ERROR: i32 = 1;
/// The command line was malformed.
pub const EXIT_USAGE: i32 = 2;
/// `drift` found differences.
pub const EXIT_DRIFT: i32 = 3;

/// The usage text (`{bin}` is replaced by the program name).
pub const USAGE: &str = "\
usage: {bin} [--url URL] [--dir DIR] [--schema SCHEMA] COMMAND

commands:
  up                 apply every pending migration
  down [N]           revert the N most recent migrations (default 1)
  down --to VERSION  revert every migration above VERSION (0: all)
  status             list migrations: applied, pending, changed, unknown
  drift              compare the models with the live schema (exit 3 on differences)

options:
  --url URL          the database (default: $DATABASE_URL, then $LIFEGUARD_PRIMARY_URL)
  --dir DIR          read DIR/*.sql at run time instead of the embedded migrations
  --schema SCHEMA    keep the tracking table lifeguard_migrations in SCHEMA
";

#[derive(Debug, PartialEq, Eq)]
enum Command {
    Up,
    Down(usize),
    DownTo(i64),
    Status,
    Drift,
    Help,
}

#[derive(Debug, Default)]
struct Args {
    url: Option<String>,
    dir: Option<String>,
    schema: Option<String>,
    command: Option<Command>,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> std::result::Result<Args, String> {
    let mut parsed = Args::default();
    let mut words = Vec::new();
    let mut to: Option<i64> = None;
    let mut iter = args.into_iter();
    while let Some(arg) = iter.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| iter.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" | "help" => parsed.command = Some(Command::Help),
            "--url" => parsed.url = Some(value("--url")?),
            "--dir" => parsed.dir = Some(value("--dir")?),
            "--schema" => parsed.schema = Some(value("--schema")?),
            "--to" => {
                let v = value("--to")?;
                to = Some(
                    v.parse()
                        .map_err(|_| format!("--to needs a version number, got {v:?}"))?,
                );
            }
            f if f.starts_with('-') => return Err(format!("unknown option {f}")),
            _ => words.push(arg),
        }
    }
    if parsed.command == Some(Command::Help) {
        return Ok(parsed);
    }
    let mut words = words.into_iter();
    let command = match words.next().as_deref() {
        None => return Err("no command given".into()),
        Some("up") => Command::Up,
        Some("status") => Command::Status,
        Some("drift") => Command::Drift,
        Some("down") => match (to, words.next()) {
            (Some(_), Some(n)) => {
                return Err(format!("down takes N or --to VERSION, not both ({n})"))
            }
            (Some(v), None) => Command::DownTo(v),
            (None, None) => Command::Down(1),
            (None, Some(n)) => Command::Down(
                n.parse()
                    .map_err(|_| format!("down takes a count, got {n:?}"))?,
            ),
        },
        Some(other) => return Err(format!("unknown command {other:?}")),
    };
    if to.is_some() && !matches!(command, Command::DownTo(_)) {
        return Err("--to goes with down".into());
    }
    if let Some(extra) = words.next() {
        return Err(format!("unexpected argument {extra:?}"));
    }
    parsed.command = Some(command);
    Ok(parsed)
}

/// A `lifeguard-migrate` command line over a service's migrations and models.
///
/// ```
/// use lifeguard_core::migrate::cli::{Cli, EXIT_USAGE};
/// use lifeguard_core::migrate::Migrator;
///
/// let (mut out, mut err) = (Vec::new(), Vec::new());
/// let code = Cli::new(Migrator::default()).run(["bogus".to_string()], &mut out, &mut err);
/// assert_eq!(code, EXIT_USAGE);
/// assert!(String::from_utf8(err).unwrap().contains("unknown command"));
/// ```
#[derive(Debug, Clone)]
pub struct Cli {
    migrator: Migrator,
    tables: Vec<TableSpec>,
    program: String,
}

impl Cli {
    /// A command line applying `migrator`'s migrations (unless `--dir` is given).
    pub fn new(migrator: Migrator) -> Cli {
        Cli {
            migrator,
            tables: Vec::new(),
            program: "lifeguard-migrate".into(),
        }
    }

    /// The models `drift` compares with the database.
    pub fn tables(mut self, tables: impl IntoIterator<Item = TableSpec>) -> Cli {
        self.tables.extend(tables);
        self
    }

    /// The program name shown in the usage text.
    pub fn program(mut self, name: impl Into<String>) -> Cli {
        self.program = name.into();
        self
    }

    /// Runs with the process's arguments, printing to stdout and stderr; returns the exit
    /// code for `std::process::exit`.
    pub fn main(&self) -> i32 {
        let stdout = std::io::stdout();
        let stderr = std::io::stderr();
        self.run(
            std::env::args().skip(1),
            &mut stdout.lock(),
            &mut stderr.lock(),
        )
    }

    /// Runs one command line (`args` without the program name), writing results to `out`
    /// and errors to `err`; returns the exit code.
    pub fn run(
        &self,
        args: impl IntoIterator<Item = String>,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> i32 {
        let usage = USAGE.replace("{bin}", &self.program);
        let args = match parse_args(args) {
            Ok(a) => a,
            Err(e) => {
                let _ = write!(err, "{}: {e}\n\n{usage}", self.program);
                return EXIT_USAGE;
            }
        };
        if args.command == Some(Command::Help) {
            let _ = write!(out, "{usage}");
            return EXIT_OK;
        }
        match self.execute(&args, out) {
            Ok(code) => code,
            Err(e) => {
                let _ = writeln!(err, "{}: {e}", self.program);
                EXIT_ERROR
            }
        }
    }

    fn execute(&self, args: &Args, out: &mut dyn Write) -> Result<i32> {
        let url = args
            .url
            .clone()
            .or_else(|| env_nonempty("DATABASE_URL"))
            .or_else(|| env_nonempty("LIFEGUARD_PRIMARY_URL"))
            .ok_or_else(|| {
                Error::config(
                    "no database: pass --url or set DATABASE_URL or LIFEGUARD_PRIMARY_URL",
                )
            })?;
        let mut migrator = match &args.dir {
            Some(dir) => Migrator::from_dir(dir)?,
            None => self.migrator.clone(),
        };
        if let Some(schema) = &args.schema {
            migrator = migrator.schema(schema.clone());
        }
        let mut conn = Connection::open(&url)?;
        let io = |e: std::io::Error| Error::config(format!("cannot write output: {e}"));
        match args.command {
            Some(Command::Up) => {
                let runs = migrator.up(&mut conn)?;
                if runs.is_empty() {
                    writeln!(out, "nothing to apply: the database is up to date").map_err(io)?;
                }
                for r in &runs {
                    writeln!(out, "applied  {r}").map_err(io)?;
                }
                Ok(EXIT_OK)
            }
            Some(Command::Down(n)) => {
                let runs = migrator.down(&mut conn, n)?;
                print_reverted(out, &runs).map_err(io)?;
                Ok(EXIT_OK)
            }
            Some(Command::DownTo(v)) => {
                let runs = migrator.down_to(&mut conn, v)?;
                print_reverted(out, &runs).map_err(io)?;
                Ok(EXIT_OK)
            }
            Some(Command::Status) => {
                let status = migrator.status(&conn)?;
                write_status(out, &status).map_err(io)?;
                Ok(EXIT_OK)
            }
            Some(Command::Drift) => {
                if self.tables.is_empty() {
                    writeln!(
                        out,
                        "no models registered with this binary: nothing to compare"
                    )
                    .map_err(io)?;
                    return Ok(EXIT_OK);
                }
                let mut found = 0;
                for t in &self.tables {
                    let diffs = t.drift(&conn)?;
                    if diffs.is_empty() {
                        writeln!(out, "ok       {}", t.label()).map_err(io)?;
                    }
                    for d in &diffs {
                        writeln!(out, "DRIFT    {d}").map_err(io)?;
                    }
                    found += diffs.len();
                }
                if found == 0 {
                    Ok(EXIT_OK)
                } else {
                    writeln!(out, "{found} difference(s)").map_err(io)?;
                    Ok(EXIT_DRIFT)
                }
            }
            Some(Command::Help) | None => Ok(EXIT_OK),
        }
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn print_reverted(out: &mut dyn Write, runs: &[super::MigrationRun]) -> std::io::Result<()> {
    if runs.is_empty() {
        writeln!(out, "nothing to revert")?;
    }
    for r in runs {
        writeln!(out, "reverted {r}")?;
    }
    Ok(())
}

/// Writes `status` as an aligned table with a header.
///
/// ```
/// use lifeguard_core::migrate::{cli::write_status, MigrationStatus};
/// let rows = [MigrationStatus {
///     version: 1, name: "init".into(), applied_at: None, duration_ms: None, checksum_ok: true, known: true,
/// }];
/// let mut out = Vec::new();
/// write_status(&mut out, &rows).unwrap();
/// let text = String::from_utf8(out).unwrap();
/// assert!(text.lines().nth(1).unwrap().contains("init") && text.contains("pending"));
/// ```
///
/// # Errors
///
/// The writer's error.
pub fn write_status(out: &mut dyn Write, status: &[super::MigrationStatus]) -> std::io::Result<()> {
    if status.is_empty() {
        return writeln!(out, "no migrations");
    }
    let rows: Vec<[String; 5]> = status
        .iter()
        .map(|s| {
            [
                s.version.to_string(),
                s.name.clone(),
                s.state().as_str().to_owned(),
                s.applied_at
                    .map(|a| a.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                    .unwrap_or_default(),
                s.duration_ms.map(|d| format!("{d} ms")).unwrap_or_default(),
            ]
        })
        .collect();
    let header = ["version", "name", "state", "applied at", "took"];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: [&str; 5]| {
        format!(
            "{:>w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {:>w4$}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
            w4 = widths[4]
        )
        .trim_end()
        .to_owned()
    };
    writeln!(out, "{}", line(header))?;
    for r in &rows {
        writeln!(
            out,
            "{}",
            line([&r[0], &r[1], &r[2], &r[3], &r[4]].map(String::as_str))
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> std::result::Result<Args, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn commands() {
        assert_eq!(parse(&["up"]).unwrap().command, Some(Command::Up));
        assert_eq!(parse(&["down"]).unwrap().command, Some(Command::Down(1)));
        assert_eq!(
            parse(&["down", "3"]).unwrap().command,
            Some(Command::Down(3))
        );
        assert_eq!(
            parse(&["down", "--to", "0"]).unwrap().command,
            Some(Command::DownTo(0))
        );
        assert_eq!(
            parse(&["--to=2", "down"]).unwrap().command,
            Some(Command::DownTo(2))
        );
        let a = parse(&[
            "--url",
            "postgres://x",
            "status",
            "--dir=m",
            "--schema",
            "s",
        ])
        .unwrap();
        assert_eq!(a.command, Some(Command::Status));
        assert_eq!(a.url.as_deref(), Some("postgres://x"));
        assert_eq!(a.dir.as_deref(), Some("m"));
        assert_eq!(a.schema.as_deref(), Some("s"));
        assert_eq!(
            parse(&["drift", "--help"]).unwrap().command,
            Some(Command::Help)
        );
    }

    #[test]
    fn mistakes() {
        for bad in [
            &[][..],
            &["sideways"],
            &["down", "x"],
            &["down", "1", "--to", "2"],
            &["up", "--to", "2"],
            &["up", "extra"],
            &["--url"],
            &["--verbose", "up"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
