//! Drift: how a model's columns differ from the live table.

use std::fmt;

use super::ddl::TableSpec;
use crate::error::Result;
use crate::executor::Executor;
use crate::model::LifeModel;

/// A column as the model or the database describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnShape {
    /// The SQL type as written: the model's `sql_type`, or the database's `format_type`.
    pub sql_type: String,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// Whether the column has a default (a `DEFAULT`, an identity, a generated value; for the
    /// model: `default_expr` or `auto_increment`).
    pub has_default: bool,
}

impl fmt::Display for ColumnShape {
    /// `text NOT NULL`, `character varying NULL`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let null = if self.nullable { "NULL" } else { "NOT NULL" };
        write!(f, "{} {null}", self.sql_type)
    }
}

/// One way a model and its live table differ, from [`drift`]. Tables are named `table` or
/// `schema.table` as the model names them.
///
/// ```
/// use lifeguard_core::migrate::{ColumnShape, Difference};
/// let d = Difference::TypeMismatch {
///     table: "users".into(),
///     column: "email".into(),
///     model: ColumnShape { sql_type: "text".into(), nullable: false, has_default: false },
///     database: ColumnShape { sql_type: "character varying".into(), nullable: true, has_default: false },
/// };
/// assert_eq!(d.to_string(), "users.email: model says text NOT NULL, database has character varying NULL");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Difference {
    /// The table does not exist.
    MissingTable {
        /// The table.
        table: String,
    },
    /// The model has a column the table lacks.
    MissingColumn {
        /// The table.
        table: String,
        /// The column's SQL name.
        column: String,
        /// The model's column.
        model: ColumnShape,
    },
    /// The table has a column the model lacks.
    ExtraColumn {
        /// The table.
        table: String,
        /// The column's SQL name.
        column: String,
        /// The database's column.
        database: ColumnShape,
    },
    /// The types differ (after normalizing aliases such as `int8`/`bigint`).
    TypeMismatch {
        /// The table.
        table: String,
        /// The column's SQL name.
        column: String,
        /// The model's column.
        model: ColumnShape,
        /// The database's column.
        database: ColumnShape,
    },
    /// One side allows NULL, the other does not.
    NullabilityMismatch {
        /// The table.
        table: String,
        /// The column's SQL name.
        column: String,
        /// The model's column.
        model: ColumnShape,
        /// The database's column.
        database: ColumnShape,
    },
    /// One side has a default, the other does not.
    DefaultMismatch {
        /// The table.
        table: String,
        /// The column's SQL name.
        column: String,
        /// Whether the model declares one (`default_expr` or `auto_increment`).
        model: bool,
        /// Whether the database has one (default, identity or generated).
        database: bool,
    },
    /// The primary key columns differ.
    PrimaryKeyMismatch {
        /// The table.
        table: String,
        /// The model's key columns.
        model: Vec<String>,
        /// The database's key columns (empty: no primary key).
        database: Vec<String>,
    },
}

impl Difference {
    /// The table it concerns.
    pub fn table(&self) -> &str {
        match self {
            Difference::MissingTable { table }
            | Difference::MissingColumn { table, .. }
            | Difference::ExtraColumn { table, .. }
            | Difference::TypeMismatch { table, .. }
            | Difference::NullabilityMismatch { table, .. }
            | Difference::DefaultMismatch { table, .. }
            | Difference::PrimaryKeyMismatch { table, .. } => table,
        }
    }

    /// The column it concerns, if it concerns one.
    pub fn column(&self) -> Option<&str> {
        match self {
            Difference::MissingColumn { column, .. }
            | Difference::ExtraColumn { column, .. }
            | Difference::TypeMismatch { column, .. }
            | Difference::NullabilityMismatch { column, .. }
            | Difference::DefaultMismatch { column, .. } => Some(column),
            Difference::MissingTable { .. } | Difference::PrimaryKeyMismatch { .. } => None,
        }
    }
}

fn key(cols: &[String]) -> String {
    if cols.is_empty() {
        "no primary key".into()
    } else {
        format!("PRIMARY KEY ({})", cols.join(", "))
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::MissingTable { table } => {
                write!(
                    f,
                    "{table}: model says the table exists, database has no such table"
                )
            }
            Difference::MissingColumn {
                table,
                column,
                model,
            } => write!(
                f,
                "{table}.{column}: model says {model}, database has no such column"
            ),
            Difference::ExtraColumn {
                table,
                column,
                database,
            } => {
                write!(
                    f,
                    "{table}.{column}: model has no such column, database has {database}"
                )?;
                if !database.nullable && !database.has_default {
                    f.write_str(" (inserts through the model will fail)")?;
                }
                Ok(())
            }
            Difference::TypeMismatch {
                table,
                column,
                model,
                database,
            }
            | Difference::NullabilityMismatch {
                table,
                column,
                model,
                database,
            } => write!(
                f,
                "{table}.{column}: model says {model}, database has {database}"
            ),
            Difference::DefaultMismatch {
                table,
                column,
                model,
                database,
            } => {
                let says = |has: bool| if has { "a default" } else { "no default" };
                write!(
                    f,
                    "{table}.{column}: model says {}, database has {}",
                    says(*model),
                    says(*database)
                )
            }
            Difference::PrimaryKeyMismatch {
                table,
                model,
                database,
            } => write!(
                f,
                "{table}: model says {}, database has {}",
                key(model),
                key(database)
            ),
        }
    }
}

/// Compares model `M` with its live table and names every difference: a missing table
/// (then nothing else), missing and extra columns, type mismatches (aliases normalized:
/// `int4`/`integer`, `int8`/`bigint`, `timestamptz`/`timestamp with time zone`,
/// `varchar`/`character varying`, ...; a model type without modifiers matches any, so
/// `numeric` matches `numeric(10,2)`), nullability, default presence and the primary key.
///
/// An unqualified model's table is looked up through the session's `search_path`, as its
/// queries would find it.
///
/// ```no_run
/// # use lifeguard_core::LifeModel;
/// #[derive(Debug, Clone, LifeModel)]
/// #[lifeguard(table_name = "users")]
/// pub struct User { #[lifeguard(primary_key, auto_increment)] pub id: i64, pub email: String }
///
/// # fn demo(db: &impl lifeguard_core::Executor) -> lifeguard_core::Result<()> {
/// for d in lifeguard_core::migrate::drift::<User>(db)? {
///     eprintln!("drift: {d}"); // users.email: model says text NOT NULL, database has character varying NULL
/// }
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// The database's error when the catalog cannot be read.
pub fn drift<M: LifeModel>(db: &(impl Executor + ?Sized)) -> Result<Vec<Difference>> {
    drift_spec(&TableSpec::of::<M>(), db)
}

const CATALOG_SQL: &str = "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), \
       a.attnotnull, a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '', \
       COALESCE(a.attnum = ANY (i.indkey), false) \
     FROM pg_attribute a \
     LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary \
     WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
     ORDER BY a.attnum";

struct LiveColumn {
    name: String,
    shape: ColumnShape,
    primary_key: bool,
}

pub(crate) fn drift_spec(
    spec: &TableSpec,
    db: &(impl Executor + ?Sized),
) -> Result<Vec<Difference>> {
    let table = spec.label();
    let exists: bool = db
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&spec.qualified()])?
        .try_get(0)?;
    if !exists {
        return Ok(vec![Difference::MissingTable { table }]);
    }
    let live = db
        .query(CATALOG_SQL, &[&spec.qualified()])?
        .iter()
        .map(|r| {
            let not_null: bool = r.try_get(2)?;
            Ok(LiveColumn {
                name: r.try_get(0)?,
                shape: ColumnShape {
                    sql_type: r.try_get(1)?,
                    nullable: !not_null,
                    has_default: r.try_get(3)?,
                },
                primary_key: r.try_get(4)?,
            })
        })
        .collect::<Result<Vec<LiveColumn>>>()?;

    let mut out = Vec::new();
    for c in spec.columns() {
        let model = ColumnShape {
            sql_type: c.sql_type.to_owned(),
            nullable: c.nullable && !c.primary_key,
            has_default: c.default_expr.is_some() || c.auto_increment,
        };
        let column = c.name.to_owned();
        let Some(db_col) = live.iter().find(|l| l.name == c.name) else {
            out.push(Difference::MissingColumn {
                table: table.clone(),
                column,
                model,
            });
            continue;
        };
        let database = db_col.shape.clone();
        if !types_match(&model.sql_type, &database.sql_type) {
            out.push(Difference::TypeMismatch {
                table: table.clone(),
                column: column.clone(),
                model: model.clone(),
                database: database.clone(),
            });
        }
        if model.nullable != database.nullable {
            out.push(Difference::NullabilityMismatch {
                table: table.clone(),
                column: column.clone(),
                model: model.clone(),
                database: database.clone(),
            });
        }
        if model.has_default != database.has_default {
            out.push(Difference::DefaultMismatch {
                table: table.clone(),
                column,
                model: model.has_default,
                database: database.has_default,
            });
        }
    }
    for l in &live {
        if !spec.columns().iter().any(|c| c.name == l.name) {
            out.push(Difference::ExtraColumn {
                table: table.clone(),
                column: l.name.clone(),
                database: l.shape.clone(),
            });
        }
    }
    let model_pk: Vec<String> = spec
        .columns()
        .iter()
        .filter(|c| c.primary_key)
        .map(|c| c.name.to_owned())
        .collect();
    let db_pk: Vec<String> = live
        .iter()
        .filter(|l| l.primary_key)
        .map(|l| l.name.clone())
        .collect();
    let mut a = model_pk.clone();
    let mut b = db_pk.clone();
    a.sort();
    b.sort();
    if a != b {
        out.push(Difference::PrimaryKeyMismatch {
            table,
            model: model_pk,
            database: db_pk,
        });
    }
    Ok(out)
}

/// Whether a model's type and the database's agree: equal after normalization, or the
/// model's has no modifiers and the base types agree (`numeric` vs `numeric(10,2)`).
pub(crate) fn types_match(model: &str, database: &str) -> bool {
    let (m, d) = (canonical_type(model), canonical_type(database));
    if m == d {
        return true;
    }
    let base = |t: &str| {
        let arrays = t.ends_with("[]");
        let t = t.trim_end_matches("[]");
        let b = t.split('(').next().unwrap_or(t).to_owned();
        (b, arrays)
    };
    !m.contains('(') && base(&m) == base(&d)
}

/// A type name in one canonical spelling: lowercase, single spaces, aliases resolved
/// (`int4` -> `integer`, `timestamptz` -> `timestamp with time zone`, `_int4` and
/// `int4[3]` -> `integer[]`, serial types to their integer type), modifiers kept and moved
/// after the name (`timestamp(3) with time zone` -> `timestamp with time zone(3)`), a schema
/// prefix and quotes dropped.
///
/// ```
/// use lifeguard_core::migrate::canonical_type;
/// assert_eq!(canonical_type("INT8"), "bigint");
/// assert_eq!(canonical_type("varchar(20)"), "character varying(20)");
/// assert_eq!(canonical_type("timestamptz"), canonical_type("timestamp with time zone"));
/// assert_eq!(canonical_type("_int4"), "integer[]");
/// assert_eq!(canonical_type("app.\"Mood\""), "mood");
/// ```
pub fn canonical_type(t: &str) -> String {
    let lower = t.trim().to_ascii_lowercase().replace('"', "");
    if let Some(inner) = lower.strip_suffix(']') {
        if let Some(open) = inner.rfind('[') {
            return format!("{}[]", canonical_type(&inner[..open]));
        }
    }
    if let Some(inner) = lower.strip_prefix('_') {
        if !inner.is_empty() && !inner.contains(' ') {
            return format!("{}[]", canonical_type(inner));
        }
    }
    // Pull the modifiers out of wherever they are.
    let (mut rest, mut mods) = (lower.clone(), String::new());
    if let (Some(open), Some(close)) = (lower.find('('), lower.find(')')) {
        if open < close {
            mods = lower[open..=close]
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            rest = format!("{} {}", &lower[..open], &lower[close + 1..]);
        }
    }
    let words = rest.split_whitespace().collect::<Vec<_>>().join(" ");
    let base = match words.as_str() {
        "int2" | "smallint" | "smallserial" | "serial2" => "smallint",
        "int" | "int4" | "integer" | "serial" | "serial4" => "integer",
        "int8" | "bigint" | "bigserial" | "serial8" => "bigint",
        "float4" | "real" => "real",
        "float8" | "double precision" | "float" => "double precision",
        "bool" | "boolean" => "boolean",
        "varchar" | "character varying" | "char varying" => "character varying",
        "char" | "character" | "bpchar" => "character",
        "timestamptz" | "timestamp with time zone" => "timestamp with time zone",
        "timestamp" | "timestamp without time zone" => "timestamp without time zone",
        "timetz" | "time with time zone" => "time with time zone",
        "time" | "time without time zone" => "time without time zone",
        "decimal" | "numeric" => "numeric",
        "varbit" | "bit varying" => "bit varying",
        other => other.rsplit('.').next().unwrap_or(other),
    };
    format!("{base}{mods}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_spellings() {
        for (a, b) in [
            ("int4", "integer"),
            ("serial", "integer"),
            ("INT8", "bigint"),
            ("float8", "double precision"),
            ("bool", "boolean"),
            ("timestamptz", "timestamp with time zone"),
            ("timestamp", "timestamp without time zone"),
            ("timestamp(3) with time zone", "timestamptz(3)"),
            ("varchar(100)", "character varying(100)"),
            ("numeric(10, 2)", "decimal(10,2)"),
            ("text[]", "_text"),
            ("int4[3]", "integer[]"),
            ("orm_test.orm_test_mood", "orm_test_mood"),
        ] {
            assert_eq!(canonical_type(a), canonical_type(b), "{a} vs {b}");
        }
        assert_ne!(canonical_type("text"), canonical_type("character varying"));
        assert_ne!(canonical_type("timestamp"), canonical_type("timestamptz"));
        assert_ne!(canonical_type("int4"), canonical_type("int8"));
    }

    #[test]
    fn lenient_modifiers() {
        assert!(types_match("numeric", "numeric(10,2)"));
        assert!(types_match("varchar", "character varying(20)"));
        assert!(!types_match("numeric(12,2)", "numeric(10,2)"));
        assert!(!types_match("text", "character varying(20)"));
        assert!(!types_match("integer", "integer[]"));
        assert!(types_match("text[]", "text[]"));
    }
}
