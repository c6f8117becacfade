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

/// Quotes an identifier for PostgreSQL, doubling embedded quotes.
pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Quotes each dot-separated part of `schema.table.column`.
pub fn quote_path(path: &str) -> String {
    path.split('.').map(quote).collect::<Vec<_>>().join(".")
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
