//! RFC 9457 problem details, the one shape every rejection of this crate takes.

use std::fmt;

/// Media type of a problem-details body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem: what went wrong, safe to show the client (never internals).
///
/// ```
/// use lifeguard_router_ext::Problem;
/// let p = Problem::invalid_header("Lifeguard-Max-Staleness", "expected a whole number of milliseconds");
/// assert_eq!(p.status, 400);
/// let body: serde_json::Value = serde_json::from_slice(&p.to_json()).unwrap();
/// assert_eq!(body["header"], "Lifeguard-Max-Staleness");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// HTTP status.
    pub status: u16,
    /// The problem type URI (`type` member).
    pub type_uri: &'static str,
    /// Short, fixed summary of the problem type (`title` member).
    pub title: &'static str,
    /// This occurrence, in words (`detail` member). Never contains client input verbatim.
    pub detail: String,
    /// The offending header, when a header is to blame (extension member `header`).
    pub header: Option<String>,
}

impl Problem {
    /// `400`: a header's value is malformed. `detail` says what was expected.
    pub fn invalid_header(header: &str, detail: impl Into<String>) -> Problem {
        let detail = format!("{header}: {}", detail.into());
        Problem {
            status: 400,
            type_uri: "urn:lifeguard:problem:invalid-header",
            title: "Invalid request header",
            detail,
            header: Some(header.to_string()),
        }
    }

    /// A problem of another kind (framing, size, routing, server failure).
    pub fn new(
        status: u16,
        type_uri: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Problem {
        Problem {
            status,
            type_uri,
            title,
            detail: detail.into(),
            header: None,
        }
    }

    /// `500` with nothing about the cause: the details go to the log, not the client.
    pub fn internal() -> Problem {
        Problem::new(
            500,
            "urn:lifeguard:problem:internal",
            "Internal server error",
            "the request could not be completed",
        )
    }

    /// The `application/problem+json` body.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::json!({
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        });
        if let Some(h) = &self.header {
            v["header"] = serde_json::Value::String(h.clone());
        }
        serde_json::to_vec(&v).unwrap_or_default()
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.title, self.detail)
    }
}

impl std::error::Error for Problem {}
