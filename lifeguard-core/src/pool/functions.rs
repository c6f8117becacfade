//! Which function calls a read may contain.
//!
//! `SELECT f()` reads like a read, but `f` may write, take an advisory lock or change a
//! setting; such a statement must run on the primary and must not run twice. A statement
//! stays a read only when every function it calls is a built-in known not to write
//! ([`READ_ONLY`]) or one the application declared with
//! [`declare_read_only_functions`]. Anything else costs a replica, never a duplicate write.

use std::collections::HashSet;
use std::sync::{OnceLock, PoisonError, RwLock};

/// Words that may stand before `(` without calling a function: keywords, type names
/// with a modifier (`numeric(10, 2)`), and the built-ins that neither write nor lock.
/// Lowercase and sorted, for a binary search.
const READ_ONLY: &[&str] = &[
    "abs",
    "age",
    "all",
    "and",
    "any",
    "array",
    "array_agg",
    "array_append",
    "array_cat",
    "array_dims",
    "array_fill",
    "array_length",
    "array_lower",
    "array_ndims",
    "array_position",
    "array_positions",
    "array_prepend",
    "array_remove",
    "array_to_string",
    "array_upper",
    "as",
    "ascii",
    "avg",
    "between",
    "bit",
    "bit_length",
    "bool_and",
    "bool_or",
    "btrim",
    "by",
    "cardinality",
    "case",
    "cast",
    "ceil",
    "ceiling",
    "char",
    "char_length",
    "character",
    "chr",
    "clock_timestamp",
    "coalesce",
    "col_description",
    "concat",
    "concat_ws",
    "count",
    "cume_dist",
    "current_database",
    "current_date",
    "current_schema",
    "current_setting",
    "date_bin",
    "date_part",
    "date_trunc",
    "daterange",
    "decimal",
    "decode",
    "dense_rank",
    "distinct",
    "div",
    "else",
    "encode",
    "every",
    "except",
    "exists",
    "exp",
    "extract",
    "filter",
    "first_value",
    "float",
    "floor",
    "format",
    "format_type",
    "from",
    "gen_random_uuid",
    "generate_series",
    "generate_subscripts",
    "greatest",
    "group",
    "has_schema_privilege",
    "has_table_privilege",
    "hashtext",
    "having",
    "ilike",
    "in",
    "inet_client_addr",
    "inet_client_port",
    "inet_server_addr",
    "inet_server_port",
    "initcap",
    "int4range",
    "int8range",
    "intersect",
    "interval",
    "is",
    "isempty",
    "isfinite",
    "join",
    "json_agg",
    "json_array_elements",
    "json_array_elements_text",
    "json_array_length",
    "json_build_array",
    "json_build_object",
    "json_each",
    "json_each_text",
    "json_extract_path",
    "json_extract_path_text",
    "json_object_agg",
    "json_object_keys",
    "json_typeof",
    "jsonb_agg",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "jsonb_array_length",
    "jsonb_build_array",
    "jsonb_build_object",
    "jsonb_each",
    "jsonb_each_text",
    "jsonb_extract_path",
    "jsonb_extract_path_text",
    "jsonb_insert",
    "jsonb_object_agg",
    "jsonb_object_keys",
    "jsonb_path_exists",
    "jsonb_path_match",
    "jsonb_path_query",
    "jsonb_path_query_first",
    "jsonb_pretty",
    "jsonb_set",
    "jsonb_strip_nulls",
    "jsonb_typeof",
    "justify_interval",
    "lag",
    "last_value",
    "lateral",
    "lead",
    "least",
    "left",
    "length",
    "like",
    "ln",
    "log",
    "lower",
    "lower_inf",
    "lpad",
    "ltrim",
    "make_date",
    "make_interval",
    "make_timestamp",
    "make_timestamptz",
    "materialized",
    "max",
    "md5",
    "min",
    "mod",
    "mode",
    "not",
    "now",
    "nth_value",
    "ntile",
    "nullif",
    "num_nonnulls",
    "num_nulls",
    "numeric",
    "numrange",
    "obj_description",
    "octet_length",
    "on",
    "or",
    "over",
    "overlay",
    "percent_rank",
    "percentile_cont",
    "percentile_disc",
    "pg_backend_pid",
    "pg_column_size",
    "pg_conf_load_time",
    "pg_current_snapshot",
    "pg_current_wal_insert_lsn",
    "pg_current_wal_lsn",
    "pg_database_size",
    "pg_encoding_to_char",
    "pg_get_constraintdef",
    "pg_get_expr",
    "pg_get_indexdef",
    "pg_get_serial_sequence",
    "pg_get_userbyid",
    "pg_has_role",
    "pg_is_in_recovery",
    "pg_last_wal_receive_lsn",
    "pg_last_wal_replay_lsn",
    "pg_last_xact_replay_timestamp",
    "pg_notification_queue_usage",
    "pg_postmaster_start_time",
    "pg_relation_size",
    "pg_size_pretty",
    "pg_sleep",
    "pg_snapshot_xmax",
    "pg_snapshot_xmin",
    "pg_table_is_visible",
    "pg_total_relation_size",
    "pg_typeof",
    "pg_wal_lsn_diff",
    "pi",
    "plainto_tsquery",
    "position",
    "power",
    "quote_ident",
    "quote_literal",
    "quote_nullable",
    "random",
    "range",
    "range_merge",
    "rank",
    "recursive",
    "regexp_match",
    "regexp_matches",
    "regexp_replace",
    "regexp_split_to_array",
    "regexp_split_to_table",
    "repeat",
    "replace",
    "returning",
    "reverse",
    "right",
    "round",
    "row",
    "row_number",
    "row_to_json",
    "rows",
    "rpad",
    "rtrim",
    "select",
    "sha256",
    "sign",
    "similar",
    "some",
    "split_part",
    "sqrt",
    "starts_with",
    "statement_timestamp",
    "stddev",
    "string_agg",
    "string_to_array",
    "string_to_table",
    "strpos",
    "substr",
    "substring",
    "sum",
    "tablesample",
    "then",
    "time",
    "timestamp",
    "timestamptz",
    "timezone",
    "to_char",
    "to_date",
    "to_json",
    "to_jsonb",
    "to_number",
    "to_regclass",
    "to_regtype",
    "to_timestamp",
    "to_tsquery",
    "to_tsvector",
    "transaction_timestamp",
    "translate",
    "trim",
    "trunc",
    "ts_headline",
    "ts_rank",
    "tsrange",
    "tstzrange",
    "union",
    "unnest",
    "upper",
    "upper_inf",
    "using",
    "uuid_send",
    "values",
    "varbit",
    "varchar",
    "variance",
    "version",
    "websearch_to_tsquery",
    "when",
    "where",
    "width_bucket",
    "window",
    "with",
    "within",
];

fn declared() -> &'static RwLock<HashSet<String>> {
    static DECLARED: OnceLock<RwLock<HashSet<String>>> = OnceLock::new();
    DECLARED.get_or_init(|| RwLock::new(HashSet::new()))
}

/// Declares functions of your schema that neither write nor take locks (PostgreSQL's
/// `STABLE` and `IMMUTABLE` functions qualify), so that a `SELECT` calling them is still a
/// read: routed by the read preference and retried after a connection error. Any other
/// function call sends the statement to the primary, once. Names are matched as
/// PostgreSQL folds unquoted identifiers (case-insensitively), without the schema; the
/// declaration holds for the whole process, like the function's volatility holds for the
/// whole database.
///
/// ```
/// use lifeguard_core::pool::declare_read_only_functions;
///
/// declare_read_only_functions(["order_total", "visible_to"]);
/// ```
pub fn declare_read_only_functions<S: AsRef<str>>(names: impl IntoIterator<Item = S>) {
    let mut set = declared().write().unwrap_or_else(PoisonError::into_inner);
    set.extend(names.into_iter().map(|n| n.as_ref().to_ascii_lowercase()));
}

/// Whether `name` (an identifier before `(`) may stand in a read.
fn is_read_only(name: &[u8], quoted: bool) -> bool {
    let mut lower = [0u8; 64];
    let Some(buf) = lower.get_mut(..name.len()) else {
        return false;
    };
    buf.copy_from_slice(name);
    if !quoted {
        buf.make_ascii_lowercase();
    }
    let Ok(name) = std::str::from_utf8(buf) else {
        return false;
    };
    if !quoted && READ_ONLY.binary_search(&name).is_ok() {
        return true;
    }
    let set = declared().read().unwrap_or_else(PoisonError::into_inner);
    !set.is_empty() && set.contains(name)
}

/// Whether `sql` calls a function that is neither a known read-only built-in nor
/// declared read-only. String literals, quoted identifiers, comments, dollar quotes and
/// the type after `::` are skipped; a schema-qualified call is judged by its last name.
pub(crate) fn calls_unknown_function(sql: &str) -> bool {
    let s = sql.as_bytes();
    let mut i = 0;
    // Names before `(` that are not calls: the type after `::`, an alias's column list
    // after `AS`, and a CTE's column list (`r(n) AS (...)`).
    let (mut after_cast, mut after_as) = (false, false);
    while i < s.len() {
        let c = s[i];
        match c {
            b'\'' => i = skip_quoted(s, i, b'\''),
            b'"' => {
                let end = skip_quoted(s, i, b'"');
                let name = &s[i + 1..end.saturating_sub(1).max(i + 1)];
                if followed_by_paren(s, end) && !is_read_only(name, true) {
                    return true;
                }
                i = end;
            }
            b'-' if s.get(i + 1) == Some(&b'-') => {
                i = s[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(s.len(), |p| i + p);
            }
            b'/' if s.get(i + 1) == Some(&b'*') => {
                i = find(s, i + 2, b"*/").map_or(s.len(), |p| p + 2);
            }
            b'$' => i = skip_dollar(s, i),
            b':' if s.get(i + 1) == Some(&b':') => {
                after_cast = true;
                i += 2;
                continue;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let start = i;
                while i < s.len() && is_ident(s[i]) {
                    i += 1;
                }
                let name = &s[start..i];
                // `E'..'` and friends are string prefixes, not names.
                if s.get(i) == Some(&b'\'') && name.len() <= 2 {
                    continue;
                }
                let defines = after_as || names_a_query(s, i);
                after_as = name.eq_ignore_ascii_case(b"as");
                if !after_cast && !defines && followed_by_paren(s, i) && !is_read_only(name, false)
                {
                    return true;
                }
                after_cast = false;
                continue;
            }
            c if c.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            _ => i += 1,
        }
        (after_cast, after_as) = (false, false);
    }
    false
}

/// Whether the name ending at `i` is a CTE's with a column list: `(..) AS [NOT]
/// [MATERIALIZED] (` follows.
fn names_a_query(s: &[u8], i: usize) -> bool {
    let mut j = skip_space(s, i);
    if s.get(j) != Some(&b'(') {
        return false;
    }
    let Some(close) = s[j..].iter().position(|&b| b == b')') else {
        return false;
    };
    j = skip_space(s, j + close + 1);
    let mut word = |w: &[u8]| {
        let found = s
            .get(j..j + w.len())
            .is_some_and(|x| x.eq_ignore_ascii_case(w))
            && !s.get(j + w.len()).copied().is_some_and(is_ident);
        if found {
            j = skip_space(s, j + w.len());
        }
        found
    };
    if !word(b"as") {
        return false;
    }
    word(b"not");
    word(b"materialized");
    s.get(j) == Some(&b'(')
}

fn skip_space(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && s[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

fn followed_by_paren(s: &[u8], i: usize) -> bool {
    s.get(skip_space(s, i)) == Some(&b'(')
}

/// Past a literal or quoted identifier opened at `start` (a doubled quote escapes it; a
/// backslash does in an `E'..'` string).
fn skip_quoted(s: &[u8], start: usize, quote: u8) -> usize {
    let escapes = quote == b'\'' && start > 0 && s[start - 1].eq_ignore_ascii_case(&b'e');
    let mut i = start + 1;
    while i < s.len() {
        if escapes && s[i] == b'\\' {
            i += 2;
            continue;
        }
        if s[i] == quote {
            if s.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    s.len()
}

/// Past a dollar-quoted string opened at `start`, or past a `$1` parameter.
fn skip_dollar(s: &[u8], start: usize) -> usize {
    let mut end = start + 1;
    while end < s.len() && (s[end].is_ascii_alphanumeric() || s[end] == b'_') {
        end += 1;
    }
    if s.get(end) != Some(&b'$') || s[start + 1..end].first().is_some_and(u8::is_ascii_digit) {
        return end;
    }
    let tag = &s[start..=end];
    find(s, end + 1, tag).map_or(s.len(), |p| p + tag.len())
}

fn find(s: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    s.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_for_its_binary_search() {
        assert!(READ_ONLY.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn unknown_calls_are_found_and_known_ones_pass() {
        for read in [
            "SELECT count(*) FROM t WHERE id = ANY($1)",
            "SELECT * FROM (SELECT 1) AS s JOIN u ON (s.a = u.a)",
            "SELECT lower(name), coalesce(a, b)::numeric(10, 2) FROM t",
            "SELECT CAST(a AS varchar(20)) FROM t WHERE EXISTS (SELECT 1)",
            "SELECT 'f(x)', \"col\" FROM t -- g(y)\n",
            "SELECT $$ h(z) $$, $tag$ k() $tag$ /* m() */",
            "SELECT row_number() OVER (PARTITION BY a ORDER BY b) FROM t",
            "WITH RECURSIVE r(n) AS (VALUES (1)) SELECT * FROM r",
            "SELECT E'it\\'s f()' FROM t",
            "SELECT x FROM unnest($1::int8[]) AS u(x)",
            "WITH a(n) AS NOT MATERIALIZED (SELECT 1), b AS (SELECT 2) SELECT * FROM a, b",
        ] {
            assert!(!calls_unknown_function(read), "{read}");
        }
        for call in [
            "SELECT fn_that_writes()",
            "SELECT pg_advisory_lock(1)",
            "select set_config('a', 'b', false)",
            "SELECT app.audit (42)",
            "SELECT \"Audit\"(1)",
            "SELECT nextval('s')",
            "SELECT txid_current()",
            "SELECT f(x) AS y FROM t",
            "WITH a AS (SELECT audit(1)) SELECT * FROM a",
        ] {
            assert!(calls_unknown_function(call), "{call}");
        }
    }

    #[test]
    fn declared_functions_stay_reads() {
        let sql = "SELECT lifeguard_unit_total($1)";
        assert!(calls_unknown_function(sql));
        declare_read_only_functions(["Lifeguard_Unit_Total"]);
        assert!(!calls_unknown_function(sql));
    }
}
