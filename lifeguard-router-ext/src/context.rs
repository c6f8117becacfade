//! The framework-neutral core: [`Settings`], [`RequestContext`] parsed from any header list.

use std::time::{Duration, Instant};

use lifeguard_core::pool::{ConsistencyToken, ReadOptions, ReadPreference};

use crate::headers::HeaderNames;
use crate::problem::Problem;

/// The longest request id accepted (bytes). Longer ones are a `400`.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The largest `Lifeguard-Max-Staleness` / `Lifeguard-Timeout` accepted: one day in ms.
const MAX_MILLIS: u64 = 24 * 60 * 60 * 1000;

/// How a service reads and answers the `Lifeguard-*` headers.
///
/// ```
/// use std::time::Duration;
/// use lifeguard_core::pool::ReadPreference;
/// use lifeguard_router_ext::Settings;
/// let s = Settings {
///     default_preference: ReadPreference::Primary,
///     max_timeout: Some(Duration::from_secs(5)),
///     ..Settings::default()
/// };
/// assert!(!s.served_by);
/// ```
#[derive(Debug, Clone)]
pub struct Settings {
    /// Header names (defaults: `DESIGN.md` §4).
    pub names: HeaderNames,
    /// The read preference of a request that sends none.
    pub default_preference: ReadPreference,
    /// The database budget of a request that sends no `Lifeguard-Timeout`; `None`: only the
    /// pool's own statement timeout applies.
    pub default_timeout: Option<Duration>,
    /// A client's `Lifeguard-Timeout` is clamped to this: a client may shorten its budget,
    /// not lengthen it past the service's limit. Left `None`, [`Lifeguard::new`](crate::Lifeguard::new)
    /// sets it to the pool's statement timeout
    /// ([`PoolConfig::statement_timeout`](lifeguard_core::pool::PoolConfig::statement_timeout)),
    /// so a header cannot lift the server-side limit the pool puts on every statement.
    pub max_timeout: Option<Duration>,
    /// Send `Lifeguard-Served-By` (off by default: it reveals topology).
    pub served_by: bool,
    /// Install the coroutine-local [`scope`](crate::scope()) around handlers (on by default).
    pub coroutine_local: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            names: HeaderNames::default(),
            default_preference: ReadPreference::default(),
            default_timeout: None,
            max_timeout: None,
            served_by: false,
            coroutine_local: true,
        }
    }
}

/// What one request asked for through its headers: read preference, staleness bound,
/// consistency floor, request id and deadline.
///
/// Built with [`RequestContext::from_headers`] from any list of `(name, value)` pairs, so
/// every framework adapter shares one parser and one set of `400` answers.
///
/// ```
/// use lifeguard_core::pool::ReadPreference;
/// use lifeguard_router_ext::{RequestContext, Settings};
/// let s = Settings::default();
/// let ctx = RequestContext::from_headers(&s, [
///     ("lifeguard-read-preference", "primary"),
///     ("Lifeguard-Consistency-Token", "v1.7.1.10, v1.7.1.20"),
///     ("Lifeguard-Consistency-Token", "v1.7.1.18"),
///     ("Lifeguard-Request-Id", "abc-123"),
/// ])?;
/// assert_eq!(ctx.read_options().preference, ReadPreference::Primary);
/// assert_eq!(ctx.read_options().min_lsn.unwrap().lsn(), 0x20);
/// assert_eq!(ctx.request_id(), "abc-123");
///
/// let bad = RequestContext::from_headers(&s, [("Lifeguard-Max-Staleness", "soon")]);
/// assert_eq!(bad.unwrap_err().status, 400);
/// # Ok::<(), lifeguard_router_ext::Problem>(())
/// ```
#[derive(Debug, Clone)]
pub struct RequestContext {
    request_id: String,
    client_request_id: bool,
    read: ReadOptions,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
}

impl RequestContext {
    /// The context of a request that sent no `Lifeguard-*` header: the service defaults and
    /// a fresh request id.
    pub fn new(settings: &Settings) -> RequestContext {
        let timeout = settings.default_timeout;
        RequestContext {
            request_id: new_request_id(),
            client_request_id: false,
            read: ReadOptions::new(settings.default_preference),
            timeout,
            deadline: timeout.map(|t| Instant::now() + t),
        }
    }

    /// Parses the `Lifeguard-*` headers among `headers` (other headers are ignored; names
    /// match case-insensitively). Any malformed value is a `400` [`Problem`] naming the
    /// header; the deadline starts now.
    pub fn from_headers<'a, I>(settings: &Settings, headers: I) -> Result<RequestContext, Problem>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let names = &settings.names;
        let mut ctx = RequestContext::new(settings);
        let mut preference: Option<&str> = None;
        let mut staleness: Option<&str> = None;
        let mut timeout: Option<&str> = None;
        let mut request_id: Option<&str> = None;
        let mut tokens: Vec<&str> = Vec::new();
        for (name, value) in headers {
            let is = |n: &String| n.eq_ignore_ascii_case(name);
            if is(&names.consistency_token) {
                tokens.push(value);
            } else if is(&names.read_preference) {
                single(&mut preference, value, &names.read_preference)?;
            } else if is(&names.max_staleness) {
                single(&mut staleness, value, &names.max_staleness)?;
            } else if is(&names.timeout) {
                single(&mut timeout, value, &names.timeout)?;
            } else if is(&names.request_id) {
                single(&mut request_id, value, &names.request_id)?;
            }
        }
        if let Some(p) = preference {
            ctx.read.preference = p.trim().parse().map_err(|_| {
                Problem::invalid_header(
                    &names.read_preference,
                    "expected one of primary, primary-preferred, replica, replica-preferred, nearest",
                )
            })?;
        }
        if let Some(s) = staleness {
            let ms = millis(s).ok_or_else(|| {
                Problem::invalid_header(
                    &names.max_staleness,
                    format!("expected a whole number of milliseconds from 0 to {MAX_MILLIS}"),
                )
            })?;
            ctx.read = ctx.read.max_staleness(Duration::from_millis(ms));
        }
        if !tokens.is_empty() {
            let merged = ConsistencyToken::merge_all(tokens.iter().copied()).map_err(|_| {
                Problem::invalid_header(
                    &names.consistency_token,
                    "expected v1.<system-id>.<timeline>.<lsn hex>, comma-separated when several",
                )
            })?;
            if let Some(token) = merged {
                ctx.read = ctx.read.min_lsn(token);
            }
        }
        if let Some(t) = timeout {
            let ms = millis(t).filter(|ms| *ms > 0).ok_or_else(|| {
                Problem::invalid_header(
                    &names.timeout,
                    format!("expected a whole number of milliseconds from 1 to {MAX_MILLIS}"),
                )
            })?;
            let mut t = Duration::from_millis(ms);
            if let Some(max) = settings.max_timeout {
                t = t.min(max);
            }
            ctx.timeout = Some(t);
            ctx.deadline = Some(Instant::now() + t);
        }
        if let Some(id) = request_id {
            let id = id.trim();
            let visible = id.bytes().all(|b| b.is_ascii_graphic());
            if id.is_empty() || id.len() > MAX_REQUEST_ID_LEN || !visible {
                return Err(Problem::invalid_header(
                    &names.request_id,
                    format!("expected 1 to {MAX_REQUEST_ID_LEN} visible ASCII characters"),
                ));
            }
            ctx.request_id = id.to_string();
            ctx.client_request_id = true;
        }
        Ok(ctx)
    }

    /// Uses `id` (e.g. the framework's own request id) unless the client sent one.
    pub fn or_request_id(mut self, id: impl Into<String>) -> RequestContext {
        if !self.client_request_id {
            self.request_id = id.into();
        }
        self
    }

    /// The request id: the client's, or generated (a UUID v4).
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Whether the request id came from the client.
    pub fn request_id_from_client(&self) -> bool {
        self.client_request_id
    }

    /// Where this request's reads go: preference, staleness bound, consistency floor.
    pub fn read_options(&self) -> &ReadOptions {
        &self.read
    }

    /// The request's database budget (after clamping to [`Settings::max_timeout`]).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// When the request's database budget runs out.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

/// Records a single-valued header, refusing a second, different value.
fn single<'a>(slot: &mut Option<&'a str>, value: &'a str, name: &str) -> Result<(), Problem> {
    match slot {
        Some(prev) if prev.trim() != value.trim() => Err(Problem::invalid_header(
            name,
            "given more than once with different values",
        )),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

/// A whole number of milliseconds: ASCII digits only, at most one day.
fn millis(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || s.len() > 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|ms| *ms <= MAX_MILLIS)
}

/// A fresh request id: a version-4 UUID from the thread's CSPRNG (seeded once from the OS),
/// so a request costs no `getrandom` system call.
pub(crate) fn new_request_id() -> String {
    let bytes: [u8; 16] = rand::Rng::gen(&mut rand::thread_rng());
    let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    id.hyphenated().encode_lower(&mut text).to_owned()
}
