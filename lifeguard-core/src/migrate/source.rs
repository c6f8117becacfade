//! Where migrations come from: the [`Migration`] trait, SQL migrations (embedded with
//! [`migrations!`](crate::migrations) or read from a directory), and their checksums.

use std::fmt;
use std::path::Path;

use crate::error::{Error, MigrateError, MigrateErrorKind, Result};
use crate::executor::Executor;
use crate::pg::Transaction;

/// The line that separates a SQL migration's up section from its optional down section.
pub const DOWN_MARKER: &str = "-- lifeguard:down";

/// One schema change, applied in its own transaction together with its tracking row.
///
/// SQL files become [`SqlMigration`]s; implement this trait for changes written in Rust
/// (data back-fills, anything that needs a loop). Versions order the migrations and must be
/// unique and positive; the name is for people (status output, error messages).
///
/// ```
/// use lifeguard_core::migrate::{Migration, Migrator};
/// use lifeguard_core::pg::Transaction;
/// use lifeguard_core::{Executor, Result};
///
/// struct BackfillDisplayNames;
///
/// impl Migration for BackfillDisplayNames {
///     fn version(&self) -> i64 { 3 }
///     fn name(&self) -> &str { "backfill_display_names" }
///     fn up(&self, tx: &Transaction<'_>) -> Result<()> {
///         for row in tx.query("SELECT id, email FROM users WHERE display_name IS NULL", &[])? {
///             let (id, email): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
///             let name = email.split('@').next().unwrap_or_default().to_owned();
///             tx.execute("UPDATE users SET display_name = $1 WHERE id = $2", &[&name, &id])?;
///         }
///         Ok(())
///     }
///     fn down(&self, tx: &Transaction<'_>) -> Result<()> {
///         tx.batch_execute("UPDATE users SET display_name = NULL")
///     }
/// }
///
/// let migrator = Migrator::new(lifeguard_core::migrations![
///     "0001_users.sql" => "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL)",
///     "0002_display_name.sql" => "ALTER TABLE users ADD COLUMN display_name text",
/// ])
/// .with(BackfillDisplayNames);
/// assert_eq!(migrator.migrations().len(), 3);
/// ```
pub trait Migration: Send + Sync {
    /// The version: unique, positive, and ordering the migrations.
    fn version(&self) -> i64;

    /// A short description, e.g. `create_users`.
    fn name(&self) -> &str;

    /// Applies the change. Runs inside a transaction that also records the migration; an
    /// error rolls both back.
    fn up(&self, tx: &Transaction<'_>) -> Result<()>;

    /// Reverts the change (for `Migrator::down`), in a transaction that also deletes the
    /// tracking row. An irreversible migration returns an error here and `false` from
    /// [`Migration::reversible`].
    fn down(&self, tx: &Transaction<'_>) -> Result<()>;

    /// Whether [`Migration::down`] can revert it; `Migrator::down` checks every migration it
    /// is about to revert before reverting any. Defaults to `true`.
    fn reversible(&self) -> bool {
        true
    }

    /// What the tracking table stores to notice that an applied migration was edited. SQL
    /// migrations hash their up section; the default for Rust migrations hashes the version
    /// and name, so override it (e.g. with a constant you bump) when a change to the code
    /// should be noticed.
    fn checksum(&self) -> String {
        checksum(&format!("rust:{}:{}", self.version(), self.name()))
    }
}

/// FNV-1a (64-bit) of `text` after normalizing line endings (`\r\n` and `\r` read as `\n`)
/// and trimming trailing whitespace, as 16 lowercase hex digits. Stable across platforms and
/// releases: it is what the tracking table stores.
///
/// ```
/// use lifeguard_core::migrate::checksum;
/// assert_eq!(checksum(""), "cbf29ce484222325");
/// assert_eq!(checksum("SELECT 1;\r\n"), checksum("SELECT 1;\n"));
/// assert_ne!(checksum("SELECT 1"), checksum("SELECT 2"));
/// ```
pub fn checksum(text: &str) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    let mut bytes = text.trim_end().bytes().peekable();
    while let Some(mut b) = bytes.next() {
        if b == b'\r' {
            if bytes.peek() == Some(&b'\n') {
                continue;
            }
            b = b'\n';
        }
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(PRIME);
    }
    format!("{hash:016x}")
}

/// A migration written in SQL: an up section and an optional down section after a line
/// [`DOWN_MARKER`] (`-- lifeguard:down`). Both sections run with the simple protocol, so
/// they may hold several `;`-separated statements (and no bind parameters).
///
/// ```
/// use lifeguard_core::migrate::{Migration, SqlMigration};
///
/// let m = SqlMigration::parse(
///     "0002_add_email.sql",
///     "ALTER TABLE users ADD COLUMN email text;\n-- lifeguard:down\nALTER TABLE users DROP COLUMN email;\n",
/// )?;
/// assert_eq!((m.version(), m.name()), (2, "add_email"));
/// assert_eq!(m.up_sql(), "ALTER TABLE users ADD COLUMN email text;\n");
/// assert_eq!(m.down_sql(), Some("ALTER TABLE users DROP COLUMN email;\n"));
/// # Ok::<(), lifeguard_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SqlMigration {
    version: i64,
    name: String,
    file: String,
    up: String,
    down: Option<String>,
    checksum: String,
}

impl SqlMigration {
    /// Parses a migration file: the version is the file name's leading digits
    /// (`0001_create_users.sql` is version 1), the name what follows them without
    /// separators and extension (`create_users`).
    ///
    /// # Errors
    ///
    /// [`MigrateErrorKind::Source`] naming the file when its name has no leading digits,
    /// the version is 0 or does not fit an `i64`, or the file has more than one down marker.
    pub fn parse(file_name: &str, sql: &str) -> Result<SqlMigration> {
        let (version, name) = parse_file_name(file_name)?;
        let mut sections = split_sections(sql);
        if sections.len() > 2 {
            return Err(Error::Migrate(
                MigrateError::new(
                    MigrateErrorKind::Source,
                    format!("migration file {file_name} has more than one `{DOWN_MARKER}` line"),
                )
                .version(version),
            ));
        }
        let down = (sections.len() == 2).then(|| sections.pop().unwrap_or_default());
        let up = sections.pop().unwrap_or_default();
        Ok(SqlMigration {
            version,
            name,
            file: file_name.to_owned(),
            checksum: checksum(&up),
            up,
            down,
        })
    }

    /// The file name it was parsed from.
    pub fn file_name(&self) -> &str {
        &self.file
    }

    /// The up section.
    pub fn up_sql(&self) -> &str {
        &self.up
    }

    /// The down section, when the file has one.
    pub fn down_sql(&self) -> Option<&str> {
        self.down.as_deref()
    }
}

impl fmt::Debug for SqlMigration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlMigration")
            .field("version", &self.version)
            .field("file", &self.file)
            .field("checksum", &self.checksum)
            .field("reversible", &self.down.is_some())
            .finish()
    }
}

impl Migration for SqlMigration {
    fn version(&self) -> i64 {
        self.version
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn up(&self, tx: &Transaction<'_>) -> Result<()> {
        run_sql(tx, &self.up)
    }

    fn down(&self, tx: &Transaction<'_>) -> Result<()> {
        match &self.down {
            Some(sql) => run_sql(tx, sql),
            None => Err(Error::Migrate(
                MigrateError::new(
                    MigrateErrorKind::Irreversible,
                    format!(
                        "migration {} ({}) cannot be reverted: {} has no `{DOWN_MARKER}` section",
                        self.version, self.name, self.file
                    ),
                )
                .version(self.version),
            )),
        }
    }

    fn reversible(&self) -> bool {
        self.down.is_some()
    }

    fn checksum(&self) -> String {
        self.checksum.clone()
    }
}

fn run_sql(tx: &Transaction<'_>, sql: &str) -> Result<()> {
    if sql.trim().is_empty() {
        return Ok(());
    }
    tx.batch_execute(sql)
}

/// Splits on lines that are exactly the down marker (surrounding whitespace allowed).
fn split_sections(sql: &str) -> Vec<String> {
    let mut sections = vec![String::new()];
    for line in sql.split_inclusive('\n') {
        if line.trim().eq_ignore_ascii_case(DOWN_MARKER) {
            sections.push(String::new());
        } else if let Some(current) = sections.last_mut() {
            current.push_str(line);
        }
    }
    sections
}

fn parse_file_name(file_name: &str) -> Result<(i64, String)> {
    let base = Path::new(file_name)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(file_name);
    let stem = base.strip_suffix(".sql").unwrap_or(base);
    let digits = stem.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(malformed(format!(
            "migration file {file_name} must start with its version, e.g. 0001_create_users.sql"
        )));
    }
    let version: i64 = stem[..digits]
        .parse()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| {
            malformed(format!(
                "migration file {file_name}: version {} is not between 1 and {}",
                &stem[..digits],
                i64::MAX
            ))
        })?;
    let name = stem[digits..].trim_start_matches(['_', '-', '.', ' ']);
    let name = if name.is_empty() { stem } else { name };
    Ok((version, name.to_owned()))
}

fn malformed(message: String) -> Error {
    Error::Migrate(MigrateError::new(MigrateErrorKind::Source, message))
}

/// Reads every `*.sql` file of `dir` (not recursing), sorted by file name, as
/// [`SqlMigration`]s: for tools that apply migrations shipped next to the binary rather than
/// embedded in it.
///
/// ```no_run
/// let migrations = lifeguard_core::migrate::load_dir("migrations")?;
/// for m in &migrations {
///     println!("{} {}", m.file_name(), if m.down_sql().is_some() { "reversible" } else { "" });
/// }
/// # Ok::<(), lifeguard_core::Error>(())
/// ```
///
/// # Errors
///
/// [`MigrateErrorKind::Source`] when the directory or a file cannot be read (the I/O error
/// is the source), or a file name or file is malformed (see [`SqlMigration::parse`]).
pub fn load_dir(dir: impl AsRef<Path>) -> Result<Vec<SqlMigration>> {
    let dir = dir.as_ref();
    let unreadable = |what: String, e: std::io::Error| {
        Error::Migrate(MigrateError::new(MigrateErrorKind::Source, what).caused_by(e))
    };
    let entries = std::fs::read_dir(dir).map_err(|e| {
        unreadable(
            format!("cannot read migration directory {}", dir.display()),
            e,
        )
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| unreadable(format!("cannot list {}", dir.display()), e))?
            .path();
        if path.is_file() && path.extension().is_some_and(|e| e == "sql") {
            files.push(path);
        }
    }
    files.sort();
    files
        .iter()
        .map(|path| {
            let sql = std::fs::read_to_string(path)
                .map_err(|e| unreadable(format!("cannot read migration {}", path.display()), e))?;
            let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
                malformed(format!(
                    "migration file name {} is not UTF-8",
                    path.display()
                ))
            })?;
            SqlMigration::parse(name, &sql)
        })
        .collect()
}

/// Builds the `&'static [(file name, SQL)]` list [`Migrator::new`](super::Migrator::new)
/// takes, with the SQL embedded at compile time.
///
/// Two forms: pairs of a file name and any string expression (usually `include_str!`), or a
/// directory (relative to the invoking source file, as for `include_str!`) followed by the
/// file names in it, each embedded with `include_str!(concat!(dir, "/", file))`.
///
/// ```
/// use lifeguard_core::migrate::Migrator;
///
/// const MIGRATIONS: &[(&str, &str)] = lifeguard_core::migrations![
///     "0001_init.sql" => "CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL)",
///     "0002_index.sql" => "CREATE INDEX notes_body_idx ON notes (body);\n-- lifeguard:down\nDROP INDEX notes_body_idx;",
/// ];
/// let migrator = Migrator::new(MIGRATIONS);
/// assert_eq!(migrator.migrations()[1].name(), "index");
/// ```
///
/// ```ignore
/// // Files next to the crate's `src/`: src/main.rs embeds ../migrations/*.sql.
/// const MIGRATIONS: &[(&str, &str)] =
///     lifeguard_core::migrations!("../migrations"; "0001_init.sql", "0002_index.sql");
/// ```
#[macro_export]
macro_rules! migrations {
    ($dir:literal; $($file:literal),* $(,)?) => {
        &[$(($file, ::core::include_str!(::core::concat!($dir, "/", $file)))),*]
    };
    ($($file:expr => $sql:expr),* $(,)?) => {
        &[$(($file, $sql)),*]
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert_eq!(
            parse_file_name("0001_create_users.sql").unwrap(),
            (1, "create_users".into())
        );
        assert_eq!(
            parse_file_name("dir/20240101120000-add.sql").unwrap(),
            (20_240_101_120_000, "add".into())
        );
        assert_eq!(parse_file_name("7.sql").unwrap(), (7, "7".into()));
        assert!(parse_file_name("init.sql").is_err());
        assert!(parse_file_name("0000_zero.sql").is_err());
        assert!(parse_file_name("99999999999999999999_big.sql").is_err());
    }

    #[test]
    fn sections() {
        let m = SqlMigration::parse(
            "1_a.sql",
            "CREATE TABLE a ();\n  -- LIFEGUARD:DOWN  \r\nDROP TABLE a;",
        )
        .unwrap();
        assert_eq!(m.up_sql(), "CREATE TABLE a ();\n");
        assert_eq!(m.down_sql(), Some("DROP TABLE a;"));
        assert!(m.reversible());
        // Only the up section counts for the checksum.
        let edited = SqlMigration::parse(
            "1_a.sql",
            "CREATE TABLE a ();\n-- lifeguard:down\nDROP TABLE IF EXISTS a;",
        )
        .unwrap();
        assert_eq!(m.checksum(), edited.checksum());
        let no_down = SqlMigration::parse("1_a.sql", "CREATE TABLE a ();").unwrap();
        assert!(!no_down.reversible());
        assert_eq!(m.checksum(), no_down.checksum());
        let Err(Error::Migrate(twice)) =
            SqlMigration::parse("1_a.sql", "x\n-- lifeguard:down\ny\n-- lifeguard:down\nz")
        else {
            panic!("two down markers are refused")
        };
        assert_eq!(
            (twice.kind, twice.version),
            (MigrateErrorKind::Source, Some(1))
        );
    }

    #[test]
    fn fnv_reference_values() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(checksum("a"), "af63dc4c8601ec8c");
        assert_eq!(checksum("foobar"), "85944171f73967e8");
        assert_eq!(checksum("a\r\nb"), checksum("a\nb"));
        assert_eq!(checksum("a\rb"), checksum("a\nb"));
        assert_eq!(checksum("a  \n\n"), checksum("a"));
    }

    #[test]
    fn macro_forms() {
        const LIST: &[(&str, &str)] =
            crate::migrations!["1_a.sql" => "SELECT 1", "2_b.sql" => "SELECT 2",];
        assert_eq!(LIST.len(), 2);
        const EMPTY: &[(&str, &str)] = crate::migrations![];
        assert!(EMPTY.is_empty());
        const DIR: &[(&str, &str)] = crate::migrations!(
            "../../migrations_test";
            "0001_create_widgets.sql",
            "0002_add_widget_color.sql",
        );
        assert_eq!(DIR[1].0, "0002_add_widget_color.sql");
        assert!(DIR[1].1.starts_with("ALTER TABLE widgets ADD COLUMN color"));
    }

    #[test]
    fn reads_a_directory() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations_test");
        let all = load_dir(dir).unwrap();
        let names: Vec<(i64, &str)> = all.iter().map(|m| (m.version(), m.name())).collect();
        assert_eq!(
            names,
            [
                (1, "create_widgets"),
                (2, "add_widget_color"),
                (3, "seed_widgets")
            ]
        );
        assert!(all.iter().all(|m| m.down_sql().is_some()));
        // The I/O error stays reachable as the source, not only as text.
        let Err(Error::Migrate(e)) = load_dir("/nonexistent/lifeguard") else {
            panic!("a missing directory is a migration source error")
        };
        assert_eq!(e.kind, MigrateErrorKind::Source);
        let io = e
            .source
            .as_deref()
            .and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(
            io.map(std::io::Error::kind),
            Some(std::io::ErrorKind::NotFound)
        );
        assert_eq!(
            e.to_string(),
            format!(
                "cannot read migration directory /nonexistent/lifeguard: {}",
                io.unwrap()
            )
        );
    }
}
