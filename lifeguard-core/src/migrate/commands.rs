//! The commands of a migration tool (`up`, `down`, `status`, `drift`) and the reports they
//! return, whose text is what `lifeguard-migrate` prints. A service's own binary parses its
//! command line into a [`Command`], runs it over its embedded migrations and its models'
//! [`TableSpec`]s, and prints the [`Report`]:
//!
//! ```no_run
//! use lifeguard_core::migrate::commands::Command;
//! use lifeguard_core::migrate::{Migrator, TableSpec};
//! use lifeguard_core::pg::Connection;
//!
//! let migrator = Migrator::new(lifeguard_core::migrations![
//!     "0001_notes.sql" => "CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL)",
//! ]);
//! let tables: Vec<TableSpec> = Vec::new();
//! let mut conn = Connection::open("postgres://postgres@127.0.0.1:55432/lifeguard")?;
//! let report = Command::Up.run(&migrator, &tables, &mut conn)?;
//! print!("{report}"); // applied  1 notes (4 ms)
//! # Ok::<(), lifeguard_core::Error>(())
//! ```

use std::fmt;

use super::{Difference, Exclusive, MigrationRun, MigrationStatus, Migrator, TableSpec};
use crate::error::Result;

/// One migration command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Applies every pending migration ([`Migrator::up`]).
    Up,
    /// Reverts the N most recently applied migrations ([`Migrator::down`]).
    Down(usize),
    /// Reverts every migration above a version, 0 for all ([`Migrator::down_to`]).
    DownTo(i64),
    /// Lists the migrations the code or the database knows ([`Migrator::status`]).
    Status,
    /// Compares each model's table with the live schema ([`TableSpec::drift`]).
    Drift,
}

impl Command {
    /// Runs the command: the migration commands with `migrator`, `drift` over `tables`.
    ///
    /// # Errors
    ///
    /// What the [`Migrator`] method or [`TableSpec::drift`] reports.
    pub fn run(
        self,
        migrator: &Migrator,
        tables: &[TableSpec],
        conn: impl Exclusive,
    ) -> Result<Report> {
        Ok(match self {
            Command::Up => Report::Applied(migrator.up(conn)?),
            Command::Down(n) => Report::Reverted(migrator.down(conn, n)?),
            Command::DownTo(version) => Report::Reverted(migrator.down_to(conn, version)?),
            Command::Status => Report::Status(migrator.status(conn.exclusive())?),
            Command::Drift => Report::Drift(
                tables
                    .iter()
                    .map(|t| {
                        Ok(TableDrift {
                            table: t.label(),
                            differences: t.drift(conn.exclusive())?,
                        })
                    })
                    .collect::<Result<_>>()?,
            ),
        })
    }
}

/// What a [`Command`] did or found. Its `Display` is the text a migration tool prints, one
/// line each, every line ended by a newline.
///
/// ```
/// use lifeguard_core::migrate::commands::{Report, TableDrift};
/// use lifeguard_core::migrate::{Difference, MigrationStatus};
///
/// assert_eq!(Report::Applied(vec![]).to_string(), "nothing to apply: the database is up to date\n");
/// let rows = vec![MigrationStatus {
///     version: 1, name: "init".into(), applied_at: None, duration_ms: None, checksum_ok: true, known: true,
/// }];
/// let text = Report::Status(rows).to_string();
/// assert!(text.lines().nth(1).unwrap().contains("init") && text.contains("pending"));
/// let drift = Report::Drift(vec![TableDrift {
///     table: "notes".into(),
///     differences: vec![Difference::MissingTable { table: "notes".into() }],
/// }]);
/// assert_eq!(drift.differences(), 1);
/// assert!(drift.to_string().starts_with("DRIFT    notes: model says the table exists"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// `up`: the migrations applied, in order (none: the database was up to date).
    Applied(Vec<MigrationRun>),
    /// `down`: the migrations reverted, newest first.
    Reverted(Vec<MigrationRun>),
    /// `status`: every migration the code or the database knows, by version.
    Status(Vec<MigrationStatus>),
    /// `drift`: each model's table with its differences (no tables: no model was given).
    Drift(Vec<TableDrift>),
}

/// One model's table in a `drift` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDrift {
    /// `schema.table` or `table`, unquoted ([`TableSpec::label`]).
    pub table: String,
    /// How the live table differs from the model (none: it matches).
    pub differences: Vec<Difference>,
}

impl Report {
    /// How many differences a `drift` report found; 0 for the other reports.
    pub fn differences(&self) -> usize {
        match self {
            Report::Drift(tables) => tables.iter().map(|t| t.differences.len()).sum(),
            _ => 0,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Report::Applied(runs) if runs.is_empty() => {
                writeln!(f, "nothing to apply: the database is up to date")
            }
            Report::Applied(runs) => runs.iter().try_for_each(|r| writeln!(f, "applied  {r}")),
            Report::Reverted(runs) if runs.is_empty() => writeln!(f, "nothing to revert"),
            Report::Reverted(runs) => runs.iter().try_for_each(|r| writeln!(f, "reverted {r}")),
            Report::Status(status) => write_status(f, status),
            Report::Drift(tables) if tables.is_empty() => writeln!(
                f,
                "no models registered with this binary: nothing to compare"
            ),
            Report::Drift(tables) => {
                for t in tables {
                    if t.differences.is_empty() {
                        writeln!(f, "ok       {}", t.table)?;
                    }
                    for d in &t.differences {
                        writeln!(f, "DRIFT    {d}")?;
                    }
                }
                match self.differences() {
                    0 => Ok(()),
                    found => writeln!(f, "{found} difference(s)"),
                }
            }
        }
    }
}

/// `status` as an aligned table with a header.
fn write_status(f: &mut fmt::Formatter<'_>, status: &[MigrationStatus]) -> fmt::Result {
    if status.is_empty() {
        return writeln!(f, "no migrations");
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
    writeln!(f, "{}", line(header))?;
    for r in &rows {
        writeln!(
            f,
            "{}",
            line([&r[0], &r[1], &r[2], &r[3], &r[4]].map(String::as_str))
        )?;
    }
    Ok(())
}
