//! Errors as GraphQL reports them: a short message and a machine code in
//! `extensions.code`, with the SQLSTATE and constraint where PostgreSQL gave them. Server
//! messages of other kinds are not passed on (they may name internals).

use async_graphql::{ErrorExtensions, Value};
use lifeguard_core::Error;

/// Why loading or writing failed.
#[derive(Debug)]
pub(crate) enum LoadError {
    Db(Error),
    /// An argument the engine's validation let through but the column cannot take.
    Input(String),
    /// A statement returned more rows than a request may load.
    TooManyRows(u64),
    /// The plan may load more rows than a request may.
    Cost {
        cost: u64,
        max: u64,
    },
    /// Validation errors from the record's validators, by GraphQL field name.
    Invalid(Vec<(String, String)>),
}

impl From<Error> for LoadError {
    fn from(e: Error) -> LoadError {
        LoadError::Db(e)
    }
}

impl LoadError {
    /// The GraphQL error.
    pub(crate) fn into_graphql(self) -> async_graphql::Error {
        match self {
            LoadError::Input(m) => coded(m, "BAD_USER_INPUT"),
            LoadError::TooManyRows(max) => coded(
                format!("the result has more than {max} rows at one level; ask for fewer with limit or filter"),
                "RESULT_TOO_LARGE",
            ),
            LoadError::Cost { cost, max } => coded(
                format!("the query may load {cost} rows, more than the {max} allowed; lower the limits"),
                "COST_LIMIT",
            ),
            LoadError::Invalid(fields) => {
                let list: Vec<Value> = fields
                    .iter()
                    .map(|(f, m)| {
                        let mut o = async_graphql::indexmap::IndexMap::new();
                        o.insert(async_graphql::Name::new("field"), Value::String(f.clone()));
                        o.insert(async_graphql::Name::new("message"), Value::String(m.clone()));
                        Value::Object(o)
                    })
                    .collect();
                async_graphql::Error::new("validation failed").extend_with(|_, e| {
                    e.set("code", "VALIDATION");
                    e.set("fields", Value::List(list.clone()));
                })
            }
            LoadError::Db(e) => db_error(&e),
        }
    }
}

fn coded(message: impl Into<String>, code: &'static str) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code))
}

/// A database error, with what a client may act on.
fn db_error(e: &Error) -> async_graphql::Error {
    // The client gets a summary; the log keeps the cause (error texts carry no secrets).
    tracing::warn!(error = %e, "graphql: a database call failed");
    let (message, code, sqlstate, constraint) = match e {
        Error::UniqueViolation { constraint, .. } => (
            "a row with this value already exists".to_owned(),
            "UNIQUE_VIOLATION",
            Some("23505".to_owned()),
            constraint.clone(),
        ),
        Error::ForeignKeyViolation { constraint, .. } => (
            "the row refers to a row that does not exist, or is referred to".to_owned(),
            "FOREIGN_KEY_VIOLATION",
            Some("23503".to_owned()),
            constraint.clone(),
        ),
        Error::NotNullViolation { column, .. } => (
            format!(
                "{} must not be null",
                column.as_deref().unwrap_or("a column")
            ),
            "NOT_NULL_VIOLATION",
            Some("23502".to_owned()),
            None,
        ),
        Error::CheckViolation { constraint, .. } => (
            "a check constraint refused the row".to_owned(),
            "CHECK_VIOLATION",
            Some("23514".to_owned()),
            constraint.clone(),
        ),
        Error::Timeout(_) | Error::PoolTimeout(_) => (
            "the request ran out of time".to_owned(),
            "TIMEOUT",
            None,
            None,
        ),
        Error::NotFound => ("not found".to_owned(), "NOT_FOUND", None, None),
        Error::Unavailable { .. }
        | Error::NoEligibleNode(_)
        | Error::PoolClosed
        | Error::Connection(_) => (
            "no database server can answer the request now".to_owned(),
            "UNAVAILABLE",
            None,
            None,
        ),
        Error::Validation(v) => (v.to_string(), "VALIDATION", None, None),
        other => (
            "the database could not answer".to_owned(),
            "DATABASE_ERROR",
            other.sqlstate().map(str::to_owned),
            None,
        ),
    };
    async_graphql::Error::new(message).extend_with(move |_, ext| {
        ext.set("code", code);
        if let Some(s) = &sqlstate {
            ext.set("sqlstate", s.as_str());
        }
        if let Some(c) = &constraint {
            ext.set("constraint", c.as_str());
        }
    })
}
