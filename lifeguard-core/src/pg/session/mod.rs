//! Session state that outlives a transaction: recognising it in SQL text, refusing it where a
//! transaction-mode pooler would hand it to other clients, and the session defaults a pool
//! applies per transaction and per request instead of at start-up.
//!
//! Behind PgBouncer in transaction mode ([`Prepare::Unnamed`](super::Prepare::Unnamed)) a
//! client holds a server connection only from the start of a transaction to its end. Whatever
//! a statement leaves on the session beyond that (a `LISTEN`, a session advisory lock, a `SET`
//! without `LOCAL`) stays on a server connection that the next transaction, of this client or
//! of another, may or may not get. Those statements are refused before anything is sent.
//!
//! A pool's own shared connections have the same problem at a finer grain: many callers'
//! requests are pipelined on one connection, so a statement that changes the session
//! ([`changes_session`], a wider set than the refused one: also `PREPARE`, `WITH HOLD`
//! cursors, temporary tables, `DISCARD`, `LOAD`) runs on a connection leased for it alone.

use std::time::Duration;

use crate::error::{Error, Result};
use lasting::each_lasting;
pub(crate) use lasting::Lasting;

mod lasting;
mod tokens;

/// A statement whose effect outlives its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionFeature {
    /// `LISTEN`: notifications arrive on the server connection that subscribed.
    Listen,
    /// `pg_advisory_lock`, `pg_try_advisory_lock` and their `_shared` forms.
    AdvisoryLock,
    /// `SET` without `LOCAL` (and `SET SESSION ...`), `RESET`, and `set_config` unless its
    /// third argument is plainly true: each lasts for the session.
    SessionSet,
}

impl SessionFeature {
    /// Why the feature cannot work behind a transaction-mode pooler, and what to do instead.
    fn refusal(self) -> String {
        let (what, why, instead) = match self {
            SessionFeature::Listen => (
                "LISTEN",
                "the subscription stays on whichever server connection ran it, so \
                 notifications reach another client or nobody",
                "listen on a direct connection (prepare=named, not through the pooler)",
            ),
            SessionFeature::AdvisoryLock => (
                "a session advisory lock (pg_advisory_lock, pg_try_advisory_lock)",
                "the lock stays with a server connection other clients' transactions get, \
                 and this client's unlock may run on another one",
                "use pg_advisory_xact_lock / pg_try_advisory_xact_lock inside a transaction, \
                 or a direct connection",
            ),
            SessionFeature::SessionSet => (
                "SET without LOCAL (or RESET, or set_config(.., false))",
                "the setting stays on a server connection other clients' transactions get, \
                 and this client's next transaction may run on another one",
                "use SET LOCAL (or set_config(name, value, true)) inside a transaction, or \
                 ALTER ROLE ... SET for a default",
            ),
        };
        format!(
            "{what} cannot work with prepare=unnamed (for a transaction-mode pooler such as \
             PgBouncer): {why}; {instead}"
        )
    }
}

/// Refuses `sql` when it uses a session feature; the mode's callers only.
pub(crate) fn refuse_session_features(sql: &str) -> Result<()> {
    match find_session_feature(sql) {
        Some(feature) => Err(refusal(feature)),
        None => Ok(()),
    }
}

/// The error for using `feature` in unnamed mode.
pub(crate) fn refusal(feature: SessionFeature) -> Error {
    Error::invalid_use(feature.refusal())
}

/// Whether any statement of `sql` leaves state on the session beyond its transaction, as
/// far as the text shows (see [`Lasting`]): a pool runs such a statement on a connection
/// of its own, never on one other callers share.
pub(crate) fn changes_session(sql: &str) -> bool {
    let mut found = false;
    each_lasting(sql, |_| {
        found = true;
        true
    });
    found
}

/// The first session feature any statement of `sql` uses, as far as the text shows: its
/// leading keywords and the functions it calls. String literals, quoted identifiers,
/// comments and dollar-quoted bodies are skipped, so a function defined there is not
/// mistaken for one called, and one called from inside a `DO` block or a function is not
/// seen.
pub(crate) fn find_session_feature(sql: &str) -> Option<SessionFeature> {
    let mut found = None;
    each_lasting(sql, |lasting| {
        if let Lasting::Feature(f) = lasting {
            found = Some(f);
        }
        found.is_some()
    });
    found
}

/// The session defaults a pool keeps without the `options` start-up parameter, which
/// transaction-mode poolers reject: `statement_timeout` is set local to each autocommit
/// request's implicit transaction, and both timeouts are set `LOCAL` in the `BEGIN` of each
/// transaction (in the same request, so it costs no round trip).
#[derive(Debug)]
pub(crate) struct LocalSession {
    /// `statement_timeout` in milliseconds, as the text `set_config` takes.
    statement_timeout: Option<String>,
    /// Appended to `BEGIN`: `; SET LOCAL ...` for each timeout.
    begin_suffix: String,
}

impl LocalSession {
    /// The defaults for these timeouts; `None` when neither is set.
    pub(crate) fn new(
        statement: Option<Duration>,
        idle_in_transaction: Option<Duration>,
    ) -> Option<LocalSession> {
        let millis = |t: Duration| t.as_millis().max(1).to_string();
        let mut begin_suffix = String::new();
        if let Some(t) = statement {
            begin_suffix.push_str(&format!("; SET LOCAL statement_timeout = {}", millis(t)));
        }
        if let Some(t) = idle_in_transaction {
            begin_suffix.push_str(&format!(
                "; SET LOCAL idle_in_transaction_session_timeout = {}",
                millis(t)
            ));
        }
        (statement.is_some() || idle_in_transaction.is_some()).then(|| LocalSession {
            statement_timeout: statement.map(millis),
            begin_suffix,
        })
    }

    /// The statement timeout in milliseconds, for `set_config('statement_timeout', .., true)`.
    pub(crate) fn statement_timeout(&self) -> Option<&str> {
        self.statement_timeout.as_deref()
    }

    /// What follows `BEGIN` in the same query string.
    pub(crate) fn begin_suffix(&self) -> &str {
        &self.begin_suffix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_listen_and_session_sets() {
        let f = find_session_feature;
        assert_eq!(f("LISTEN jobs"), Some(SessionFeature::Listen));
        assert_eq!(f("  listen \"a b\""), Some(SessionFeature::Listen));
        assert_eq!(f("SET search_path = app"), Some(SessionFeature::SessionSet));
        assert_eq!(
            f("set session timezone to 'UTC'"),
            Some(SessionFeature::SessionSet)
        );
        assert_eq!(f("SET ROLE admin"), Some(SessionFeature::SessionSet));
        assert_eq!(
            f("BEGIN; SET LOCAL a.b = 1; SET statement_timeout = 5; COMMIT"),
            Some(SessionFeature::SessionSet)
        );
        assert_eq!(f("SET LOCAL statement_timeout = 5"), None);
        assert_eq!(f("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"), None);
        assert_eq!(f("SET CONSTRAINTS ALL DEFERRED"), None);
        assert_eq!(f("UPDATE t SET listen = 1"), None);
        assert_eq!(f("UNLISTEN jobs"), None);
        assert_eq!(f("-- SET x = 1\nSELECT 1"), None);
        assert_eq!(f("/* LISTEN /* nested */ x */ SELECT 'SET a = 1'"), None);
    }

    #[test]
    fn finds_session_advisory_locks_only() {
        let f = find_session_feature;
        assert_eq!(
            f("SELECT pg_advisory_lock($1)"),
            Some(SessionFeature::AdvisoryLock)
        );
        assert_eq!(
            f("select PG_TRY_ADVISORY_LOCK(1)"),
            Some(SessionFeature::AdvisoryLock)
        );
        assert_eq!(
            f("SELECT pg_advisory_lock_shared(1, 2)"),
            Some(SessionFeature::AdvisoryLock)
        );
        assert_eq!(f("SELECT pg_advisory_xact_lock(1)"), None);
        assert_eq!(f("SELECT pg_try_advisory_xact_lock(1)"), None);
        assert_eq!(f("SELECT pg_advisory_unlock(1)"), None);
        assert_eq!(f("SELECT 'pg_advisory_lock(1)'"), None);
        assert_eq!(f("SELECT E'it\\'s pg_advisory_lock(1)'"), None);
        assert_eq!(
            f("CREATE FUNCTION f() RETURNS void AS $body$ SELECT pg_advisory_lock(1) $body$ LANGUAGE sql"),
            None
        );
        // A parameter is not a dollar quote: what follows it is still read.
        assert_eq!(
            f("SELECT $1, pg_advisory_lock($2)"),
            Some(SessionFeature::AdvisoryLock)
        );
    }

    #[test]
    fn tells_session_changes_for_the_pool() {
        for sql in [
            "SET a.b = 1",
            "SET LOCAL a.b = 1; SET c.d = 2",
            "SELECT set_config('a.b', 'c', false)",
            "CREATE TEMP TABLE t (a int)",
            "PREPARE q AS SELECT 1",
            "DISCARD ALL",
        ] {
            assert!(changes_session(sql), "{sql}");
        }
        for sql in [
            "SET LOCAL a.b = 1",
            "SELECT 1",
            "CREATE TABLE temperature (a int)",
        ] {
            assert!(!changes_session(sql), "{sql}");
        }
        // Unnamed mode refuses only what cannot work behind a transaction-mode pooler.
        assert!(refuse_session_features("CREATE TEMP TABLE t (a int)").is_ok());
        assert!(refuse_session_features("SELECT set_config('a.b', 'c', false)").is_err());
    }

    #[test]
    fn refusals_name_the_mode_and_the_way_out() {
        let e = refuse_session_features("LISTEN x").unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, Error::InvalidUse(_)));
        assert!(
            text.contains("prepare=unnamed") && text.contains("direct connection"),
            "{text}"
        );
    }

    #[test]
    fn local_session_defaults() {
        assert!(LocalSession::new(None, None).is_none());
        let l = LocalSession::new(Some(Duration::from_secs(30)), Some(Duration::from_secs(60)))
            .unwrap();
        assert_eq!(l.statement_timeout(), Some("30000"));
        assert_eq!(
            l.begin_suffix(),
            "; SET LOCAL statement_timeout = 30000; SET LOCAL idle_in_transaction_session_timeout = 60000"
        );
        assert_eq!(
            find_session_feature(&format!("BEGIN{}", l.begin_suffix())),
            None
        );
    }
}
