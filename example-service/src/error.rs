//! Errors as RFC 9457 problem details (`application/problem+json`).
//!
//! | cause | status |
//! | --- | --- |
//! | malformed JSON, a malformed query parameter or path id | `400` |
//! | no such row (soft-deleted books included) | `404` |
//! | unique violation (author email, live book ISBN) | `409` |
//! | JSON of the wrong shape, field validation, a missing referenced row, a check constraint | `422` |
//! | no eligible server (e.g. `replica` with every replica lagging), pool exhausted, server unreachable | `503` |
//! | the request's `Lifeguard-Timeout` ran out | `504` |
//! | anything else | `500`, details in the log only |

use std::sync::OnceLock;
use std::time::Duration;

use lifeguard_core::model::ValidationErrors;
use lifeguard_core::pool::WarnLimiter;
use lifeguard_core::Error;
use lifeguard_router_ext::{Reply, PROBLEM_JSON};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

/// A handler's failure, turned into a problem+json reply by [`ApiError::into_reply`].
#[derive(Debug)]
pub enum ApiError {
    /// `400`: the request is malformed (`detail` says how).
    BadRequest(String),
    /// `404`: no such resource.
    NotFound(String),
    /// `409`: a unique constraint (named) refused the write.
    Conflict(String),
    /// `422`: the request is well-formed but its content is invalid, field by field.
    Invalid(Vec<FieldProblem>),
    /// Any database error, mapped by kind.
    Db(Error),
}

/// One invalid field of a `422` (extension member `errors`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldProblem {
    /// The field (JSON name), or `body`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// The problem+json body every error has (RFC 9457); `errors` only on `422`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProblemBody {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// A short, fixed summary of the problem type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// This occurrence, in words.
    pub detail: String,
    /// The offending header, for a malformed `Lifeguard-*` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// The invalid fields of a `422`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldProblem>>,
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::Db(e)
    }
}

impl ApiError {
    /// `422` for one field.
    pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::Invalid(vec![FieldProblem {
            field: field.into(),
            message: message.into(),
        }])
    }

    /// The reply. Database details never reach the client; a `500` is logged.
    pub fn into_reply(self) -> Reply {
        let (status, kind, title, detail, errors) = match self {
            ApiError::BadRequest(d) => (400, "bad-request", "Bad request", d, None),
            ApiError::NotFound(d) => (404, "not-found", "Not found", d, None),
            ApiError::Conflict(d) => (409, "conflict", "Conflict", d, None),
            ApiError::Invalid(errors) => (
                422,
                "validation",
                "Validation failed",
                errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
                Some(errors),
            ),
            ApiError::Db(e) => return db_reply(e),
        };
        problem(status, kind, title, detail, errors)
    }
}

fn problem(
    status: u16,
    kind: &str,
    title: &str,
    detail: String,
    errors: Option<Vec<FieldProblem>>,
) -> Reply {
    let mut body = json!({
        "type": format!("urn:example-service:problem:{kind}"),
        "title": title,
        "status": status,
        "detail": detail,
    });
    if let Some(errors) = errors {
        body["errors"] = json!(errors);
    }
    Reply::with_body(
        status,
        PROBLEM_JSON,
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

fn validation(errors: &ValidationErrors) -> Vec<FieldProblem> {
    errors
        .errors()
        .iter()
        .map(|e| FieldProblem {
            field: e.field.to_string(),
            message: e.message.clone(),
        })
        .collect()
}

fn db_reply(e: Error) -> Reply {
    match e {
        Error::Validation(errors) => ApiError::Invalid(validation(&errors)).into_reply(),
        Error::NotFound => problem(
            404,
            "not-found",
            "Not found",
            "no such resource".into(),
            None,
        ),
        Error::UniqueViolation { .. } => {
            let what = match e.constraint() {
                Some("authors_email_key") => "an author with this email already exists",
                Some("books_isbn_key") => "a book with this ISBN already exists",
                _ => "the value must be unique",
            };
            problem(409, "conflict", "Conflict", what.into(), None)
        }
        Error::ForeignKeyViolation { .. } => {
            let (field, what) = match e.constraint() {
                Some(c) if c.contains("author") => ("author_id", "no such author"),
                Some(c) if c.contains("book") => ("book_id", "no such book"),
                _ => ("body", "a referenced row does not exist"),
            };
            ApiError::invalid(field, what).into_reply()
        }
        Error::CheckViolation { .. } | Error::NotNullViolation { .. } => {
            ApiError::invalid("body", "a value is out of range or missing").into_reply()
        }
        Error::Timeout(d) => problem(
            504,
            "timeout",
            "Database timeout",
            format!("the database did not answer within {} ms", d.as_millis()),
            None,
        ),
        Error::NoEligibleNode(_)
        | Error::PoolTimeout(_)
        | Error::Unavailable { .. }
        | Error::PoolClosed
        | Error::Connection(_) => {
            // An outage answers thousands of requests a second with this: one line a
            // second per kind of cause, with the count of the lines held back.
            static QUIET: OnceLock<WarnLimiter> = OnceLock::new();
            let quiet = QUIET.get_or_init(|| WarnLimiter::new(Duration::from_secs(1)));
            if let Some(suppressed) = quiet.admit(unavailable_kind(&e)) {
                tracing::warn!(error = %e, suppressed, "database unavailable");
            }
            problem(
                503,
                "unavailable",
                "Database unavailable",
                "no database server can take this request now; retry later".into(),
                None,
            )
        }
        other => {
            tracing::error!(error = %other, "request failed");
            problem(
                500,
                "internal",
                "Internal server error",
                "the request could not be completed".into(),
                None,
            )
        }
    }
}

/// The kind of an outage error, as the key its warnings are limited by.
fn unavailable_kind(e: &Error) -> &'static str {
    match e {
        Error::NoEligibleNode(_) => "no eligible server",
        Error::PoolTimeout(_) => "pool timeout",
        Error::Unavailable { .. } => "server unavailable",
        Error::PoolClosed => "pool closed",
        _ => "connection lost",
    }
}
