//! The SQL a plan runs: filters, orders, keyset cursors and the statements for a root list
//! and for one relation over all its parents. Every input value is a bound parameter.

use async_graphql::Value;
use lifeguard_core::query::{quote, Expr};

use crate::column::{self, Kind};
use crate::model::{ColumnInfo, ModelInfo, RelationInfo};

/// `"table"."column"`, cast to text where the column reads as text.
pub(crate) fn column_sql(model: &ModelInfo, sql: &str, kind: Kind) -> String {
    kind.sql(&format!("{}.{}", model.table, quote(sql)))
}

/// An input error, worded for the client.
pub(crate) type InputResult<T> = Result<T, String>;

/// The condition a filter input (`{name: {eq: ..}, and: [..], or: [..], not: {..}}`) stands for.
pub(crate) fn filter(model: &ModelInfo, value: &Value) -> InputResult<Expr> {
    let Value::Object(fields) = value else {
        return match value {
            Value::Null => Ok(Expr::cust("TRUE")),
            _ => Err("a filter is an object".into()),
        };
    };
    let mut out: Option<Expr> = None;
    let mut push = |e: Expr| {
        out = Some(match out.take() {
            Some(prev) => prev.and(e),
            None => e,
        })
    };
    for (name, v) in fields {
        match name.as_str() {
            "and" | "or" => {
                let items = as_list(v);
                let parts = items
                    .iter()
                    .map(|i| filter(model, i))
                    .collect::<InputResult<Vec<Expr>>>()?;
                let empty = if name.as_str() == "and" {
                    "TRUE"
                } else {
                    "FALSE"
                };
                let joined = parts.into_iter().reduce(|a, b| {
                    if name.as_str() == "and" {
                        a.and(b)
                    } else {
                        a.or(b)
                    }
                });
                push(joined.unwrap_or_else(|| Expr::cust(empty)));
            }
            "not" => {
                if !matches!(v, Value::Null) {
                    push(filter(model, v)?.not());
                }
            }
            field => {
                let column = model
                    .columns
                    .iter()
                    .find(|c| c.field == field)
                    .ok_or_else(|| format!("{} has no field {field}", model.type_name))?;
                if let Some(e) = column_filter(model, column, v)? {
                    push(e);
                }
            }
        }
    }
    Ok(out.unwrap_or_else(|| Expr::cust("TRUE")))
}

/// A single value where a list is expected is a one-item list (input coercion).
pub(crate) fn as_list(v: &Value) -> Vec<Value> {
    match v {
        Value::List(items) => items.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

fn column_filter(model: &ModelInfo, c: &ColumnInfo, ops: &Value) -> InputResult<Option<Expr>> {
    let Value::Object(ops) = ops else {
        return Ok(None);
    };
    let col = column_sql(model, c.sql, c.kind);
    let bad = |op: &str, e: String| format!("{}.{op}: {e}", c.field);
    // An enum column compares what it stores (a label or an integer).
    let stored = |v: &Value| -> InputResult<Value> {
        match (&c.enumeration, v) {
            (None, v) => Ok(v.clone()),
            (Some(_), Value::Null) => Ok(Value::Null),
            (Some(e), v) => e
                .stored(v)
                .ok_or_else(|| format!("{}: not a value of {}", c.field, e.name)),
        }
    };
    let mut out: Option<Expr> = None;
    for (op, v) in ops {
        let op = op.as_str();
        let e = match (op, v) {
            ("isNull", Value::Boolean(true)) => Expr::cust(format!("{col} IS NULL")),
            ("isNull", Value::Boolean(false)) => Expr::cust(format!("{col} IS NOT NULL")),
            (_, Value::Null) if op == "eq" => Expr::cust(format!("{col} IS NULL")),
            (_, Value::Null) if op == "ne" => Expr::cust(format!("{col} IS NOT NULL")),
            (_, Value::Null) => continue,
            ("eq" | "ne" | "gt" | "gte" | "lt" | "lte" | "like" | "ilike", v) => {
                let sql_op = match op {
                    "eq" => " = ",
                    "ne" => " IS DISTINCT FROM ",
                    "gt" => " > ",
                    "gte" => " >= ",
                    "lt" => " < ",
                    "lte" => " <= ",
                    "like" => " LIKE ",
                    _ => " ILIKE ",
                };
                let p = column::param(c.kind, &stored(v)?).map_err(|e| bad(op, e))?;
                Expr::cust(col.clone()).append_sql(sql_op).append(p)
            }
            ("in" | "nin", v) => {
                let items = as_list(v)
                    .iter()
                    .map(stored)
                    .collect::<InputResult<Vec<Value>>>()?;
                let p = column::list_param(c.kind, &items).map_err(|e| bad(op, e))?;
                let e = Expr::cust(col.clone())
                    .append_sql(" = ANY(")
                    .append(p)
                    .append_sql(")");
                if op == "in" {
                    e
                } else {
                    // NOT IN keeps NULLs out, as SQL does.
                    e.not()
                }
            }
            _ => return Err(format!("{}: unknown operator {op}", c.field)),
        };
        out = Some(match out.take() {
            Some(prev) => prev.and(e),
            None => e,
        });
    }
    Ok(out)
}

/// One `ORDER BY` item.
#[derive(Debug, Clone)]
pub(crate) struct OrderItem {
    pub column: &'static str,
    pub kind: Kind,
    pub desc: bool,
    pub nulls_first: bool,
}

impl OrderItem {
    /// The same column in the opposite direction, NULLs at the other end.
    pub(crate) fn reversed(&self) -> Self {
        Self {
            desc: !self.desc,
            nulls_first: !self.nulls_first,
            ..self.clone()
        }
    }

    fn sql(&self, model: &ModelInfo) -> String {
        format!(
            "{} {} NULLS {}",
            column_sql(model, self.column, self.kind),
            if self.desc { "DESC" } else { "ASC" },
            if self.nulls_first { "FIRST" } else { "LAST" }
        )
    }
}

/// The order an `orderBy` input (`[{name: DESC}, {id: ASC_NULLS_FIRST}]`) asks for, with the
/// primary key appended so that pages are stable.
pub(crate) fn order(model: &ModelInfo, value: Option<&Value>) -> InputResult<Vec<OrderItem>> {
    let mut items = Vec::new();
    for item in value.map(as_list).unwrap_or_default() {
        let Value::Object(fields) = item else {
            return Err("an orderBy item is an object".into());
        };
        if fields.len() != 1 {
            return Err("each orderBy item names exactly one field".into());
        }
        for (field, dir) in &fields {
            let c = model
                .columns
                .iter()
                .find(|c| c.field == field.as_str() && c.kind.ordered())
                .ok_or_else(|| format!("{} cannot be ordered by {field}", model.type_name))?;
            let dir = match dir {
                Value::Enum(n) => n.to_string(),
                Value::String(s) => s.clone(),
                _ => return Err(format!("orderBy.{field}: a direction")),
            };
            let (desc, nulls_first) = match dir.as_str() {
                "ASC" => (false, false),
                "DESC" => (true, true),
                "ASC_NULLS_FIRST" => (false, true),
                "ASC_NULLS_LAST" => (false, false),
                "DESC_NULLS_FIRST" => (true, true),
                "DESC_NULLS_LAST" => (true, false),
                other => return Err(format!("orderBy.{field}: unknown direction {other}")),
            };
            items.push(OrderItem {
                column: c.sql,
                kind: c.kind,
                desc,
                nulls_first,
            });
        }
    }
    for key in model.key_columns() {
        if !items.iter().any(|i| i.column == key.sql) {
            items.push(OrderItem {
                column: key.sql,
                kind: key.kind,
                desc: false,
                nulls_first: false,
            });
        }
    }
    Ok(items)
}

/// `a ASC NULLS LAST, b DESC NULLS FIRST`.
pub(crate) fn order_sql(model: &ModelInfo, items: &[OrderItem]) -> String {
    items
        .iter()
        .map(|i| i.sql(model))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rows strictly after the row whose order values are `values` (one per item, in order).
pub(crate) fn after(model: &ModelInfo, items: &[OrderItem], values: &[Value]) -> InputResult<Expr> {
    if values.len() != items.len() {
        return Err("the cursor does not belong to this order".into());
    }
    let mut alternatives: Vec<Expr> = Vec::new();
    let mut equal_so_far: Vec<Expr> = Vec::new();
    for (item, v) in items.iter().zip(values) {
        let col = column_sql(model, item.column, item.kind);
        let strictly = match (v, item.nulls_first) {
            // Nothing sorts after NULL in its own column when NULLs come last.
            (Value::Null, false) => None,
            (Value::Null, true) => Some(Expr::cust(format!("{col} IS NOT NULL"))),
            (v, nulls_first) => {
                let op = if item.desc { " < " } else { " > " };
                let p = column::param(item.kind, v)?;
                let cmp = Expr::cust(col.clone()).append_sql(op).append(p);
                Some(if nulls_first {
                    cmp
                } else {
                    cmp.or(Expr::cust(format!("{col} IS NULL")))
                })
            }
        };
        if let Some(s) = strictly {
            let branch = equal_so_far.iter().cloned().fold(s, |acc, e| e.and(acc));
            alternatives.push(branch);
        }
        equal_so_far.push(match v {
            Value::Null => Expr::cust(format!("{col} IS NULL")),
            v => Expr::cust(col.clone())
                .append_sql(" = ")
                .append(column::param(item.kind, v)?),
        });
    }
    Ok(alternatives
        .into_iter()
        .reduce(|a, b| a.or(b))
        .unwrap_or_else(|| Expr::cust("FALSE")))
}

/// The select list for `columns` (SQL names) of `model`.
pub(crate) fn select_list(model: &ModelInfo, columns: &[&'static str]) -> String {
    columns
        .iter()
        .map(|c| column_sql(model, c, model.kind_of(c).unwrap_or(Kind::Text)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The soft-delete condition, if the model has one.
fn live(model: &ModelInfo) -> Option<String> {
    model
        .soft_delete
        .map(|c| format!("{}.{} IS NULL", model.table, quote(c)))
}

/// `SELECT <columns> FROM <table> WHERE <cond> ORDER BY <order> LIMIT $ OFFSET $`.
pub(crate) fn root(
    model: &ModelInfo,
    columns: &[&'static str],
    cond: Expr,
    order: &[OrderItem],
    limit: Option<u64>,
    offset: u64,
) -> Expr {
    let mut e = Expr::cust(format!(
        "SELECT {} FROM {} WHERE ",
        select_list(model, columns),
        model.table
    ))
    .append(where_clause(model, cond))
    .append_sql(format!(" ORDER BY {}", order_sql(model, order)));
    if let Some(limit) = limit {
        e = e.append_sql(" LIMIT ").append(Expr::val(count(limit)));
    }
    if offset > 0 {
        e = e.append_sql(" OFFSET ").append(Expr::val(count(offset)));
    }
    e
}

/// `SELECT count(*) FROM <table> WHERE <cond>`.
pub(crate) fn count_rows(model: &ModelInfo, cond: Expr) -> Expr {
    Expr::cust(format!("SELECT count(*) FROM {} WHERE ", model.table))
        .append(where_clause(model, cond))
}

fn where_clause(model: &ModelInfo, cond: Expr) -> Expr {
    match live(model) {
        Some(live) => Expr::cust(live).and(cond),
        None => cond,
    }
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The rows of `rel`'s target for all parents at once: `keys` is one array parameter.
/// Each row carries its parent's key after the selected columns; with `page`, at most
/// `limit` rows per parent (after `offset`), numbered by a window in SQL.
#[allow(clippy::too_many_arguments)]
pub(crate) fn related(
    target: &ModelInfo,
    rel: &RelationInfo,
    columns: &[&'static str],
    keys: Expr,
    cond: Expr,
    order: &[OrderItem],
    page: Option<(u64, u64)>,
    max_rows: u64,
) -> Expr {
    let join = match &rel.def.via {
        Some(via) => {
            let live = via
                .soft_delete
                .map(|c| format!(" AND {}.{} IS NULL", via.table, quote(c)))
                .unwrap_or_default();
            format!(
                " INNER JOIN {} ON {}.{} = {}.{}{live}",
                via.table,
                via.table,
                quote(via.to_column),
                target.table,
                quote(rel.def.to_column)
            )
        }
        None => String::new(),
    };
    let filtered = Expr::cust(format!("{} = ANY(", rel.child_key))
        .append(keys)
        .append_sql(")")
        .and(where_clause(target, cond));
    let order_sql = order_sql(target, order);
    let from = format!(" FROM {}{join} WHERE ", target.table);
    let cols = select_list(target, columns);
    let e = match page {
        None => Expr::cust(format!("SELECT {cols}, {} AS __lg_key{from}", rel.child_key))
            .append(filtered)
            .append_sql(format!(" ORDER BY {order_sql}")),
        Some((limit, offset)) => Expr::cust(format!(
            "SELECT * FROM (SELECT {cols}, {key} AS __lg_key, row_number() OVER (PARTITION BY {key} ORDER BY {order_sql}) AS __lg_n{from}",
            key = rel.child_key
        ))
        .append(filtered)
        .append_sql(") AS __lg_page WHERE __lg_n > ")
        .append(Expr::val(count(offset)))
        .append_sql(" AND __lg_n <= ")
        .append(Expr::val(count(offset.saturating_add(limit))))
        .append_sql(" ORDER BY __lg_key, __lg_n"),
    };
    // One more row than allowed tells the loader the result is too large.
    e.append_sql(" LIMIT ")
        .append(Expr::val(count(max_rows.saturating_add(1))))
}
