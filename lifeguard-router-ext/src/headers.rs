//! Header names: the defaults of `DESIGN.md` §4, configurable through [`HeaderNames`].

/// Default name of the request header choosing where reads go.
pub const READ_PREFERENCE: &str = "Lifeguard-Read-Preference";
/// Default name of the request header bounding replica staleness, in milliseconds.
pub const MAX_STALENESS: &str = "Lifeguard-Max-Staleness";
/// Default name of the consistency-token header (request: read at least this fresh;
/// response: sent after a committed write).
pub const CONSISTENCY_TOKEN: &str = "Lifeguard-Consistency-Token";
/// Default name of the request-id header (echoed, or generated when absent).
pub const REQUEST_ID: &str = "Lifeguard-Request-Id";
/// Default name of the request header giving the request's database budget in milliseconds.
pub const TIMEOUT: &str = "Lifeguard-Timeout";
/// Default name of the diagnostic response header naming the server kind that answered.
pub const SERVED_BY: &str = "Lifeguard-Served-By";

/// The names of the `Lifeguard-*` headers. Matching is case-insensitive (HTTP field names
/// are); responses use the spelling given here.
///
/// ```
/// use lifeguard_router_ext::HeaderNames;
/// let names = HeaderNames { request_id: "X-Request-Id".into(), ..HeaderNames::default() };
/// assert_eq!(names.read_preference, "Lifeguard-Read-Preference");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderNames {
    /// `primary | primary-preferred | replica | replica-preferred | nearest`.
    pub read_preference: String,
    /// Milliseconds; a replica further behind is not used for this request.
    pub max_staleness: String,
    /// `v1.<system-id>.<timeline>.<lsn hex>`; several values or comma lists: the newest.
    pub consistency_token: String,
    /// Visible ASCII, at most [`MAX_REQUEST_ID_LEN`](crate::MAX_REQUEST_ID_LEN) bytes.
    pub request_id: String,
    /// Milliseconds the request's database work may take (statement timeout budget).
    pub timeout: String,
    /// Response only: `primary` or `replica`; sent only when enabled.
    pub served_by: String,
}

impl Default for HeaderNames {
    fn default() -> Self {
        HeaderNames {
            read_preference: READ_PREFERENCE.into(),
            max_staleness: MAX_STALENESS.into(),
            consistency_token: CONSISTENCY_TOKEN.into(),
            request_id: REQUEST_ID.into(),
            timeout: TIMEOUT.into(),
            served_by: SERVED_BY.into(),
        }
    }
}

impl HeaderNames {
    /// Whether `name` is one of the request headers this crate reads.
    pub fn is_lifeguard_request_header(&self, name: &str) -> bool {
        [
            &self.read_preference,
            &self.max_staleness,
            &self.consistency_token,
            &self.request_id,
            &self.timeout,
        ]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name))
    }
}
