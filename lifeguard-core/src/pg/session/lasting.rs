//! Which statements leave state on the session beyond their own transaction, read from
//! their tokens (see `tokens`): the leading keywords of each statement, the functions it
//! calls and, for `set_config`, its third argument.
//!
//! The text is all there is to go on before sending: a function or a `DO` block that calls
//! `set_config` inside is not seen here (the command tag after it runs is the backstop).

use super::tokens::{each_statement, Token};
use super::SessionFeature;

/// A statement's effect that outlives its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lasting {
    /// One that cannot work behind a transaction-mode pooler (refused there).
    Feature(SessionFeature),
    /// `PREPARE` or `DEALLOCATE`: the session's named prepared statements.
    Prepared,
    /// `DECLARE ... WITH HOLD`: a cursor that stays open after its transaction.
    HoldCursor,
    /// `CREATE TEMP ...`, `SELECT ... INTO TEMP`, or an object made in `pg_temp`.
    Temporary,
    /// `DISCARD`: drops the session's plans, temporary tables or prepared statements,
    /// including those of other callers sharing the connection.
    Discard,
    /// `LOAD`: a shared library stays loaded in the session.
    Load,
}

/// Calls `visit` with the lasting effect of each statement of `sql` that has one, in
/// order, until it returns true.
pub(super) fn each_lasting(sql: &str, mut visit: impl FnMut(Lasting) -> bool) {
    // Every statement is asked (the pool before sending, the connection after running):
    // most never name a lasting effect, and a scan for the words is far cheaper than
    // cutting the text into tokens.
    if mentions_a_clue(sql) {
        each_statement(sql, |tokens| lasting(tokens).is_some_and(&mut visit));
    }
}

/// Text that every statement with a lasting effect contains, in some word of it
/// (`reset` and `set_config` contain `set`, `temporary` and `pg_temp` contain `temp`).
const CLUES: [&[u8]; 9] = [
    b"set",
    b"listen",
    b"prepare",
    b"deallocate",
    b"hold",
    b"temp",
    b"advisory",
    b"discard",
    b"load",
];

/// Whether `sql` contains any of [`CLUES`], in any case, anywhere (literals and comments
/// included: this only rules statements out).
fn mentions_a_clue(sql: &str) -> bool {
    let bytes = sql.as_bytes();
    (0..bytes.len()).any(|at| {
        matches!(
            bytes[at] | 0x20,
            b's' | b'l' | b'p' | b'd' | b'h' | b't' | b'a'
        ) && CLUES.iter().any(|clue| {
            bytes
                .get(at..at + clue.len())
                .is_some_and(|text| text.eq_ignore_ascii_case(clue))
        })
    })
}

/// The lasting effect of one statement, if it has one.
fn lasting(tokens: &[Token<'_>]) -> Option<Lasting> {
    if let Some(call) = lasting_call(tokens) {
        return Some(call);
    }
    // A statement may open with parentheses (`(SELECT ...) UNION ...`).
    let lead = tokens
        .iter()
        .position(|t| *t != Token::Punct(b'('))
        .map_or(&[][..], |at| &tokens[at..]);
    let first = lead.first()?;
    let second = lead.get(1);
    let second_is = |kw: &str| second.is_some_and(|t| t.is(kw));
    let found = if first.is("set") {
        // LOCAL, TRANSACTION and CONSTRAINTS last only as long as the transaction.
        let scoped = ["local", "transaction", "constraints"]
            .iter()
            .any(|kw| second_is(kw));
        (!scoped).then_some(Lasting::Feature(SessionFeature::SessionSet))
    } else if first.is("reset") {
        Some(Lasting::Feature(SessionFeature::SessionSet))
    } else if first.is("listen") {
        Some(Lasting::Feature(SessionFeature::Listen))
    } else if first.is("prepare") {
        // PREPARE TRANSACTION ends a transaction; the session keeps nothing of it.
        (!second_is("transaction")).then_some(Lasting::Prepared)
    } else if first.is("deallocate") {
        Some(Lasting::Prepared)
    } else if first.is("declare") {
        holds_cursor(lead).then_some(Lasting::HoldCursor)
    } else if first.is("create") {
        creates_temporary(lead).then_some(Lasting::Temporary)
    } else if first.is("discard") {
        Some(Lasting::Discard)
    } else if first.is("load") {
        Some(Lasting::Load)
    } else {
        None
    };
    found.or_else(|| selects_into_temporary(lead).then_some(Lasting::Temporary))
}

/// A call of a session advisory lock function, or of `set_config` for the session.
fn lasting_call(tokens: &[Token<'_>]) -> Option<Lasting> {
    const LOCKS: [&str; 4] = [
        "pg_advisory_lock",
        "pg_advisory_lock_shared",
        "pg_try_advisory_lock",
        "pg_try_advisory_lock_shared",
    ];
    let calls = |at: usize| tokens.get(at + 1) == Some(&Token::Punct(b'('));
    tokens.iter().enumerate().find_map(|(at, t)| {
        if !calls(at) {
            None
        } else if LOCKS.iter().any(|f| t.names(f)) {
            Some(Lasting::Feature(SessionFeature::AdvisoryLock))
        } else if t.names("set_config") && !is_local_flag(argument(&tokens[at + 2..], 2)) {
            Some(Lasting::Feature(SessionFeature::SessionSet))
        } else {
            None
        }
    })
}

/// The tokens of argument `index` (from 0) of a call whose arguments start `args` (just
/// after its opening parenthesis); `None` when the call has fewer arguments or never closes.
fn argument<'t, 'a>(args: &'t [Token<'a>], index: usize) -> Option<&'t [Token<'a>]> {
    let mut depth = 0usize;
    let mut current = 0;
    let mut start = 0;
    for (at, t) in args.iter().enumerate() {
        match t {
            Token::Punct(b'(' | b'[') => depth += 1,
            Token::Punct(b')' | b']') if depth > 0 => depth -= 1,
            Token::Punct(b')') => return (current == index).then(|| &args[start..at]),
            Token::Punct(b',') if depth == 0 => {
                if current == index {
                    return Some(&args[start..at]);
                }
                current += 1;
                start = at + 1;
            }
            _ => {}
        }
    }
    None
}

/// Whether `set_config`'s third argument is plainly true (the setting is the
/// transaction's): `true`, or a string the server reads as true, optionally cast to
/// boolean. Anything else (`false`, a parameter, an expression) may last for the session.
fn is_local_flag(arg: Option<&[Token<'_>]>) -> bool {
    let Some((value, cast)) = arg.and_then(<[Token<'_>]>::split_first) else {
        return false;
    };
    let true_value = match value {
        Token::Word(_) => value.is("true"),
        Token::Str(s) => reads_true(s),
        _ => false,
    };
    let plain_cast = match cast {
        [] => true,
        [Token::Punct(b':'), Token::Punct(b':'), ty] => ty.is("bool") || ty.is("boolean"),
        _ => false,
    };
    true_value && plain_cast
}

/// Whether the server's boolean input reads `text` as true.
fn reads_true(text: &str) -> bool {
    let t = text.trim().to_ascii_lowercase();
    let prefix_of = |word: &str| !t.is_empty() && word.starts_with(t.as_str());
    prefix_of("true") || prefix_of("yes") || t == "on" || t == "1"
}

/// `DECLARE name ... WITH HOLD ... FOR query`: the options come before `FOR`.
fn holds_cursor(lead: &[Token<'_>]) -> bool {
    let options = lead.get(2..).unwrap_or(&[]);
    let end = options
        .iter()
        .position(|t| t.is("for"))
        .unwrap_or(options.len());
    options[..end]
        .windows(2)
        .any(|w| w[0].is("with") && w[1].is("hold"))
}

/// `CREATE [OR REPLACE] [LOCAL | GLOBAL] TEMP[ORARY] ...`, or a `CREATE` naming the
/// `pg_temp` schema.
fn creates_temporary(lead: &[Token<'_>]) -> bool {
    let mut rest = lead.get(1..).unwrap_or(&[]);
    if rest.len() >= 2 && rest[0].is("or") && rest[1].is("replace") {
        rest = &rest[2..];
    }
    if rest
        .first()
        .is_some_and(|t| t.is("local") || t.is("global"))
    {
        rest = &rest[1..];
    }
    let temp = rest.first().is_some_and(is_temp);
    temp || lead
        .windows(2)
        .any(|w| w[0].names("pg_temp") && w[1] == Token::Punct(b'.'))
}

/// `SELECT ... INTO [LOCAL | GLOBAL] TEMP[ORARY] [TABLE] name` (not `INSERT INTO temp`,
/// nor `SELECT ... INTO temp FROM`, which makes a table named "temp").
fn selects_into_temporary(tokens: &[Token<'_>]) -> bool {
    const CLAUSES: [&str; 13] = [
        "from",
        "where",
        "group",
        "having",
        "order",
        "limit",
        "offset",
        "union",
        "intersect",
        "except",
        "window",
        "for",
        "fetch",
    ];
    tokens.iter().enumerate().any(|(at, t)| {
        if !t.is("into") || (at > 0 && (tokens[at - 1].is("insert") || tokens[at - 1].is("merge")))
        {
            return false;
        }
        let mut rest = &tokens[at + 1..];
        if rest
            .first()
            .is_some_and(|t| t.is("local") || t.is("global"))
        {
            rest = &rest[1..];
        }
        let named_after = match rest.get(1) {
            Some(Token::Word(w)) => !CLAUSES.iter().any(|c| w.eq_ignore_ascii_case(c)),
            Some(Token::Quoted(_)) => true,
            _ => false,
        };
        rest.first().is_some_and(is_temp) && named_after
    })
}

fn is_temp(t: &Token<'_>) -> bool {
    t.is("temp") || t.is("temporary")
}

#[cfg(test)]
mod tests {
    use super::*;
    use SessionFeature::*;

    fn first(sql: &str) -> Option<Lasting> {
        let mut found = None;
        each_lasting(sql, |l| {
            found = Some(l);
            true
        });
        found
    }

    #[test]
    fn session_sets_and_resets() {
        let set = Some(Lasting::Feature(SessionSet));
        for sql in [
            "SET ROLE local_admin",
            "SET search_path TO localdata",
            "set session timezone to 'UTC'",
            "SET SESSION AUTHORIZATION local_admin",
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            "SET \"my.local\" = 1",
            "SET application_name = 'local'",
            "RESET search_path",
            "RESET ALL",
            "reset role",
            "BEGIN; SET LOCAL a.b = 1; SET statement_timeout = 5; COMMIT",
            "/* c */ SET x.y = 1",
        ] {
            assert_eq!(first(sql), set, "{sql}");
        }
        for sql in [
            "SET LOCAL search_path TO localdata",
            "SET LOCAL ROLE local_admin",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SET CONSTRAINTS ALL DEFERRED",
            "UPDATE t SET listen = 1, reset = 2",
            "ALTER ROLE r SET search_path = x",
            "CREATE FUNCTION f() RETURNS int SET search_path = x AS 'SELECT 1' LANGUAGE sql",
            "-- SET x = 1\nSELECT 1",
            "SELECT 'SET a = 1; RESET ALL'",
        ] {
            assert_eq!(first(sql), None, "{sql}");
        }
    }

    #[test]
    fn set_config_for_the_session_or_not() {
        let set = Some(Lasting::Feature(SessionSet));
        for sql in [
            "SELECT set_config('application_name', 'x', false)",
            "select SET_CONFIG('search_path', 'x', 'off')",
            "SELECT pg_catalog.set_config('role', 'r', $1)",
            "SELECT set_config('a.b', 'c', NOT true)",
            "SELECT set_config('a.b', f('x', 1), 1 = 2)",
            "SELECT \"set_config\"('a.b', 'c', false)",
            "SELECT 1 FROM t WHERE set_config('a.b', 'c', false) IS NOT NULL",
            "SELECT set_config('a.b', 'c')",
            "SELECT set_config('a.b', 'c', true",
        ] {
            assert_eq!(first(sql), set, "{sql}");
        }
        for sql in [
            "SELECT set_config('application_name', 'x', true)",
            "SELECT pg_catalog.set_config('statement_timeout', $1, true)",
            "SELECT set_config('a.b', f('x', 1), 'on')",
            "SELECT set_config('a.b', 'c', 't'::boolean)",
            "SELECT set_config('a.b', 'c', TRUE)",
            "SELECT 'set_config(''a'', ''b'', false)'",
            "SELECT current_setting('application_name')",
        ] {
            assert_eq!(first(sql), None, "{sql}");
        }
    }

    #[test]
    fn listen_prepare_cursors_discard_load() {
        assert_eq!(first("LISTEN jobs"), Some(Lasting::Feature(Listen)));
        assert_eq!(first("UNLISTEN jobs"), None);
        assert_eq!(first("PREPARE q AS SELECT 1"), Some(Lasting::Prepared));
        assert_eq!(first("DEALLOCATE ALL"), Some(Lasting::Prepared));
        assert_eq!(first("PREPARE TRANSACTION 'x'"), None);
        assert_eq!(
            first("DECLARE c NO SCROLL CURSOR WITH HOLD FOR SELECT 1"),
            Some(Lasting::HoldCursor)
        );
        assert_eq!(first("DECLARE with_hold CURSOR FOR SELECT 1"), None);
        assert_eq!(first("DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1"), None);
        assert_eq!(first("DECLARE c CURSOR FOR SELECT 'WITH HOLD'"), None);
        assert_eq!(first("DISCARD ALL"), Some(Lasting::Discard));
        assert_eq!(first("discard temp"), Some(Lasting::Discard));
        assert_eq!(first("LOAD 'auto_explain'"), Some(Lasting::Load));
    }

    #[test]
    fn temporary_objects_only() {
        for sql in [
            "CREATE TEMP TABLE t (a int)",
            "CREATE TEMPORARY TABLE t (a int)",
            "create local temporary table t (a int)",
            "CREATE GLOBAL TEMP TABLE t (a int)",
            "CREATE OR REPLACE TEMP VIEW v AS SELECT 1",
            "CREATE TEMP SEQUENCE s",
            "CREATE TABLE pg_temp.t (a int)",
            "SELECT * INTO TEMP TABLE t FROM src",
            "SELECT a INTO TEMPORARY t FROM src",
        ] {
            assert_eq!(first(sql), Some(Lasting::Temporary), "{sql}");
        }
        for sql in [
            "CREATE TABLE temperature (temp int)",
            "CREATE TABLE temp (a int)",
            "INSERT INTO temp VALUES (1)",
            "INSERT INTO temperature SELECT 1",
            "MERGE INTO temp t USING s ON true WHEN MATCHED THEN DO NOTHING",
            "SELECT a INTO temp FROM src",
            "SELECT temp FROM temperature",
            "CREATE INDEX ON t (temp)",
        ] {
            assert_eq!(first(sql), None, "{sql}");
        }
    }

    #[test]
    fn advisory_locks_for_the_session_only() {
        let lock = Some(Lasting::Feature(AdvisoryLock));
        for sql in [
            "SELECT pg_advisory_lock($1)",
            "select PG_TRY_ADVISORY_LOCK(1)",
            "SELECT pg_advisory_lock_shared(1, 2)",
            "SELECT pg_catalog.pg_try_advisory_lock_shared(1)",
            "SELECT $1, pg_advisory_lock($2)",
            "(SELECT pg_advisory_lock(1))",
        ] {
            assert_eq!(first(sql), lock, "{sql}");
        }
        for sql in [
            "SELECT pg_advisory_xact_lock(1)",
            "SELECT pg_try_advisory_xact_lock(1)",
            "SELECT pg_advisory_unlock(1)",
            "SELECT 'pg_advisory_lock(1)'",
            "SELECT E'it\\'s pg_advisory_lock(1)'",
            "SELECT pg_advisory_lock FROM t",
            "CREATE FUNCTION f() RETURNS void AS $body$ SELECT pg_advisory_lock(1) $body$ LANGUAGE sql",
        ] {
            assert_eq!(first(sql), None, "{sql}");
        }
    }

    #[test]
    fn every_statement_is_read() {
        let mut all = Vec::new();
        each_lasting(
            "SELECT 1; LISTEN a; SELECT pg_advisory_lock(1); DISCARD ALL",
            |l| {
                all.push(l);
                false
            },
        );
        assert_eq!(
            all,
            vec![
                Lasting::Feature(Listen),
                Lasting::Feature(AdvisoryLock),
                Lasting::Discard
            ]
        );
    }
}
