//! SQL expressions with bound parameters: the pieces filters, orders and SET lists are made of.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use crate::model::ModelColumn;
use crate::pg::ToSql;

/// A parameter value owned by a query.
pub type Value = Arc<dyn ToSql + Sync + Send>;

/// A SQL fragment whose values travel as parameters, never as text.
///
/// ```
/// use lifeguard_core::query::Expr;
///
/// let e = Expr::cust_with_values("lower(email) = $1", [Expr::val("a@b.c".to_string())])
///     .and(Expr::cust("active"));
/// assert_eq!(e.to_sql_string(), "(lower(email) = $1) AND (active)");
/// ```
#[derive(Clone, Default)]
pub struct Expr {
    pieces: Vec<Piece>,
}

#[derive(Clone)]
enum Piece {
    Sql(Cow<'static, str>),
    Param(Value),
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_sql_string())
    }
}

impl Expr {
    /// Raw SQL, taken as written (no values).
    pub fn cust(sql: impl Into<Cow<'static, str>>) -> Expr {
        Expr {
            pieces: vec![Piece::Sql(sql.into())],
        }
    }

    /// Raw SQL with `$1`, `$2`, ... referring to `values` (renumbered when the query is
    /// built). A `$n` past the end of `values` is kept as text.
    pub fn cust_with_values(sql: &str, values: impl IntoIterator<Item = Expr>) -> Expr {
        let values: Vec<Expr> = values.into_iter().collect();
        let mut out = Expr::default();
        let mut rest = sql;
        while let Some(at) = rest.find('$') {
            let digits = rest[at + 1..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            let n: Option<usize> = rest[at + 1..at + 1 + digits].parse().ok();
            match n.and_then(|n| n.checked_sub(1)).and_then(|i| values.get(i)) {
                Some(value) => {
                    out.push_sql(rest[..at].to_owned());
                    out.pieces.extend(value.pieces.iter().cloned());
                }
                None => out.push_sql(rest[..at + 1 + digits].to_owned()),
            }
            rest = &rest[at + 1 + digits..];
        }
        out.push_sql(rest.to_owned());
        out
    }

    /// A bound value.
    pub fn val<V: ToSql + Sync + Send + 'static>(value: V) -> Expr {
        Expr {
            pieces: vec![Piece::Param(Arc::new(value))],
        }
    }

    /// A quoted identifier (a column name, possibly qualified by dots).
    pub fn ident(name: &str) -> Expr {
        Expr::cust(quote_path(name))
    }

    /// `self AND other`.
    pub fn and(self, other: Expr) -> Expr {
        Expr::infix(self, " AND ", other)
    }

    /// `self OR other`.
    pub fn or(self, other: Expr) -> Expr {
        Expr::infix(self, " OR ", other)
    }

    /// `NOT (self)`.
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Expr {
        Expr::cust("NOT (").append(self).append_sql(")")
    }

    /// `(left) op (right)`, for operators the column helpers do not cover.
    pub fn infix(left: Expr, op: &'static str, right: Expr) -> Expr {
        Expr::cust("(")
            .append(left)
            .append_sql(")")
            .append_sql(op)
            .append_sql("(")
            .append(right)
            .append_sql(")")
    }

    /// Appends another expression.
    pub fn append(mut self, other: Expr) -> Expr {
        self.pieces.extend(other.pieces);
        self
    }

    /// Appends raw SQL.
    pub fn append_sql(mut self, sql: impl Into<Cow<'static, str>>) -> Expr {
        self.push_sql(sql);
        self
    }

    fn push_sql(&mut self, sql: impl Into<Cow<'static, str>>) {
        let sql = sql.into();
        if !sql.is_empty() {
            self.pieces.push(Piece::Sql(sql));
        }
    }

    /// Writes the SQL into `sql`, numbering its values after those already in `params`.
    pub fn write(&self, sql: &mut String, params: &mut Vec<Value>) {
        for piece in &self.pieces {
            match piece {
                Piece::Sql(s) => sql.push_str(s),
                Piece::Param(v) => {
                    params.push(v.clone());
                    sql.push('$');
                    sql.push_str(&params.len().to_string());
                }
            }
        }
    }

    /// Writes the SQL into `sql`, borrowing its values into `params` and numbering them
    /// after those already there (for statements that mix borrowed parameters in).
    pub fn write_borrowed<'a>(
        &'a self,
        sql: &mut String,
        params: &mut Vec<&'a (dyn ToSql + Sync)>,
    ) {
        for piece in &self.pieces {
            match piece {
                Piece::Sql(s) => sql.push_str(s),
                Piece::Param(v) => {
                    params.push(&**v);
                    sql.push('$');
                    sql.push_str(&params.len().to_string());
                }
            }
        }
    }

    /// The SQL text with its placeholders numbered from `$1` (for logs and tests).
    pub fn to_sql_string(&self) -> String {
        let mut sql = String::new();
        self.write(&mut sql, &mut Vec::new());
        sql
    }

    /// Whether the expression carries no SQL at all.
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }
}

/// Quotes one identifier for PostgreSQL, taken as a name and never as SQL: `users` ->
/// `"users"`, an embedded `"` doubled, a `.` kept inside the name.
///
/// A NUL byte is kept, not dropped (which would name another object): no statement can
/// carry one, so the statement is refused when it is sent (`Error::InvalidUse`).
///
/// ```
/// use lifeguard_core::query::quote;
/// assert_eq!(quote("users"), r#""users""#);
/// assert_eq!(quote(r#"a"b"#), r#""a""b""#);
/// assert_eq!(quote("app.users"), r#""app.users""#);
/// ```
pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Quotes a possibly qualified name, `schema.table` or `table.column`, part by part: a part
/// that is already a well-formed quoted identifier (`"App"`, `"my.schema"`, `"a""b"`) is
/// kept as written, and any other part is quoted with [`quote`], so a stray `"` can never
/// end the identifier early.
///
/// ```
/// use lifeguard_core::query::quote_path;
/// assert_eq!(quote_path("app.users"), r#""app"."users""#);
/// assert_eq!(quote_path(r#""app"."users""#), r#""app"."users""#);
/// assert_eq!(quote_path(r#""my.schema".users"#), r#""my.schema"."users""#);
/// assert_eq!(quote_path(r#"we"ird.t"#), r#""we""ird"."t""#);
/// ```
pub fn quote_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 4);
    let mut rest = path;
    loop {
        // Each part ends where the next `.` is, or at the end of the path.
        let end = match quoted_part(rest) {
            Some(len) => {
                out.push_str(&rest[..len]);
                len
            }
            None => {
                let end = rest.find('.').unwrap_or(rest.len());
                out.push_str(&quote(&rest[..end]));
                end
            }
        };
        match rest[end..].strip_prefix('.') {
            Some(next) => {
                out.push('.');
                rest = next;
            }
            None => return out,
        }
    }
}

/// The length of the quoted identifier `s` starts with, when one does and a `.` or the end
/// follows it.
fn quoted_part(s: &str) -> Option<usize> {
    let body = s.strip_prefix('"')?;
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '"' {
            continue;
        }
        if chars.next_if(|&(_, c)| c == '"').is_some() {
            continue;
        }
        let len = 1 + i + 1;
        return (len == s.len() || s[len..].starts_with('.')).then_some(len);
    }
    None
}

/// Several conditions joined by `AND` ([`Condition::all`]) or `OR` ([`Condition::any`]).
///
/// ```
/// use lifeguard_core::query::{Condition, Expr};
/// let c = Condition::any().add(Expr::cust("a")).add(Expr::cust("b"));
/// assert_eq!(Expr::from(c).to_sql_string(), "((a) OR (b))");
/// assert_eq!(Expr::from(Condition::all()).to_sql_string(), "TRUE");
/// ```
#[derive(Clone, Debug, Default)]
pub struct Condition {
    any: bool,
    items: Vec<Expr>,
}

impl Condition {
    /// Every condition must hold (`TRUE` when empty).
    pub fn all() -> Condition {
        Condition {
            any: false,
            items: Vec::new(),
        }
    }

    /// Any condition may hold (`FALSE` when empty).
    pub fn any() -> Condition {
        Condition {
            any: true,
            items: Vec::new(),
        }
    }

    /// Adds a condition.
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, e: impl Into<Expr>) -> Condition {
        self.items.push(e.into());
        self
    }

    /// Adds a condition when there is one.
    pub fn add_option(self, e: Option<impl Into<Expr>>) -> Condition {
        match e {
            Some(e) => self.add(e),
            None => self,
        }
    }
}

impl From<Condition> for Expr {
    fn from(c: Condition) -> Expr {
        if c.items.is_empty() {
            return Expr::cust(if c.any { "FALSE" } else { "TRUE" });
        }
        let glue = if c.any { " OR " } else { " AND " };
        let mut out = Expr::cust("(");
        for (i, item) in c.items.into_iter().enumerate() {
            if i > 0 {
                out = out.append_sql(glue);
            }
            out = out.append_sql("(").append(item).append_sql(")");
        }
        out.append_sql(")")
    }
}

/// Comparison helpers on a model's columns: `user::Column::Email.eq("a@b.c")`.
///
/// Values are bound as parameters and checked against the column's type by the server's
/// statement description: a wrong type is an `Error::Encode` naming the parameter.
pub trait ColumnExpr: ModelColumn {
    /// The column, qualified by its table: `"users"."email"`.
    fn expr(self) -> Expr {
        Expr::cust(format!("{}.{}", Self::TABLE, quote(self.name())))
    }

    /// `col = value`.
    fn eq<V: ToSql + Sync + Send + 'static>(self, v: V) -> Expr {
        self.expr().append_sql(" = ").append(Expr::val(v))
    }
    /// `col <> value`.
    fn ne<V: ToSql + Sync + Send + 'static>(self, v: V) -> Expr {
        self.expr().append_sql(" <> ").append(Expr::val(v))
    }
    /// `col > value`.
    fn gt<V: ToSql + Sync + Send + 'static>(self, v: V) -> Expr {
        self.expr().append_sql(" > ").append(Expr::val(v))
    }
    /// `col >= value`.
    fn gte<V: ToSql + Sync + Send + 'static>(self, v: V) -> Expr {
        self.expr().append_sql(" >= ").append(Expr::val(v))
    }
    /// `col < value`.
    fn lt<V: ToSql + Sync + Send + 'static>(self, v: V) -> Expr {
        self.expr().append_sql(" < ").append(Expr::val(v))
    }
    /// `col <= value`.
    fn lte<V: ToSql + Sync + Send + 'static>(self, v: V) -> Expr {
        self.expr().append_sql(" <= ").append(Expr::val(v))
    }
    /// `col BETWEEN low AND high`.
    fn between<V: ToSql + Sync + Send + 'static>(self, low: V, high: V) -> Expr {
        self.expr()
            .append_sql(" BETWEEN ")
            .append(Expr::val(low))
            .append_sql(" AND ")
            .append(Expr::val(high))
    }
    /// `col = ANY($n)`: one array parameter, so every list length shares one statement.
    fn is_in<V, I>(self, values: I) -> Expr
    where
        I: IntoIterator<Item = V>,
        Vec<V>: ToSql + Sync + Send + 'static,
    {
        let list: Vec<V> = values.into_iter().collect();
        self.expr()
            .append_sql(" = ANY(")
            .append(Expr::val(list))
            .append_sql(")")
    }
    /// `col <> ALL($n)`.
    fn is_not_in<V, I>(self, values: I) -> Expr
    where
        I: IntoIterator<Item = V>,
        Vec<V>: ToSql + Sync + Send + 'static,
    {
        let list: Vec<V> = values.into_iter().collect();
        self.expr()
            .append_sql(" <> ALL(")
            .append(Expr::val(list))
            .append_sql(")")
    }
    /// `col LIKE pattern`.
    fn like(self, pattern: impl Into<String>) -> Expr {
        self.expr()
            .append_sql(" LIKE ")
            .append(Expr::val(pattern.into()))
    }
    /// `col ILIKE pattern` (case-insensitive).
    fn ilike(self, pattern: impl Into<String>) -> Expr {
        self.expr()
            .append_sql(" ILIKE ")
            .append(Expr::val(pattern.into()))
    }
    /// `col IS NULL`.
    fn is_null(self) -> Expr {
        self.expr().append_sql(" IS NULL")
    }
    /// `col IS NOT NULL`.
    fn is_not_null(self) -> Expr {
        self.expr().append_sql(" IS NOT NULL")
    }
    /// `col + value`, e.g. for `ActiveValue::Expr` counters.
    fn add<V: ToSql + Sync + Send + 'static>(self, v: V) -> Expr {
        Expr::cust(quote(self.name()))
            .append_sql(" + ")
            .append(Expr::val(v))
    }
    /// `col - value`.
    fn sub<V: ToSql + Sync + Send + 'static>(self, v: V) -> Expr {
        Expr::cust(quote(self.name()))
            .append_sql(" - ")
            .append(Expr::val(v))
    }
}

impl<C: ModelColumn> ColumnExpr for C {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_takes_the_whole_text_as_one_name() {
        assert_eq!(quote("users"), r#""users""#);
        assert_eq!(quote(r#"we"ird"#), r#""we""ird""#);
        assert_eq!(quote("app.users"), r#""app.users""#);
        assert_eq!(quote(""), r#""""#);
        // Kept, so the statement is refused when sent rather than naming a shorter object.
        assert_eq!(quote("a\0b"), "\"a\0b\"");
    }

    #[test]
    fn quote_path_quotes_unquoted_parts() {
        assert_eq!(quote_path("users"), r#""users""#);
        assert_eq!(quote_path("app.users"), r#""app"."users""#);
        assert_eq!(quote_path("app.users.id"), r#""app"."users"."id""#);
    }

    #[test]
    fn quote_path_keeps_parts_already_quoted() {
        // A model's QUALIFIED name passes through unchanged instead of being quoted twice.
        assert_eq!(quote_path(r#""app"."users""#), r#""app"."users""#);
        assert_eq!(quote_path(r#""App".users"#), r#""App"."users""#);
        assert_eq!(quote_path(r#"app."Users""#), r#""app"."Users""#);
        assert_eq!(quote_path(r#""a""b".c"#), r#""a""b"."c""#);
        // A dot inside a quoted part is part of the name, not a separator.
        assert_eq!(quote_path(r#""my.schema".users"#), r#""my.schema"."users""#);
    }

    #[test]
    fn quote_path_never_lets_a_stray_quote_end_a_name() {
        // Not well-formed quoted identifiers: quoted as text, so the SQL stays one name.
        assert_eq!(quote_path(r#"we"ird.t"#), r#""we""ird"."t""#);
        assert_eq!(quote_path(r#""open.t"#), r#""""open"."t""#);
        assert_eq!(quote_path(r#""a"b"#), r#""""a""b""#);
        assert_eq!(
            quote_path(r#"x"; DROP TABLE t; --"#),
            r#""x""; DROP TABLE t; --""#
        );
        assert_eq!(quote_path(r#""a"."#), r#""a"."""#);
    }
}
