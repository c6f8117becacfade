//! Relay connections: a page of rows after (`first`/`after`) or before (`last`/`before`) a
//! keyset cursor, in any order the client asks for. A cursor is the order's signature and
//! the row's values for it, so it is refused under another order.

use std::sync::Arc;

use async_graphql::dynamic::{FieldValue, ResolverContext};
use async_graphql::{Name, Value};
use base64::Engine;
use lifeguard_core::query::Expr;

use crate::error::LoadError;
use crate::load::Node;
use crate::plan::Paging;
use crate::run;
use crate::schema::objects::Page;
use crate::schema::roots::{input, load, planner, Resolved};
use crate::schema::Shared;
use crate::sql::{self, OrderItem};

/// The `…Connection` root field of model `i`.
pub(crate) fn resolve(shared: &Shared, i: usize, ctx: &ResolverContext<'_>) -> Resolved {
    let field = ctx.ctx.field();
    let args = field.arguments().map_err(|e| input(e.message))?;
    let arg = |n: &str| {
        args.iter()
            .find(|(k, _)| k.as_str() == n)
            .map(|(_, v)| v)
            .filter(|v| !matches!(v, Value::Null))
    };
    let p = planner(shared);
    let (size, backward) =
        match (arg("first"), arg("last")) {
            (Some(_), Some(_)) => return Err(input(
                "first and last together: page forward (first, after) or backward (last, before)"
                    .into(),
            )),
            (None, None) => (shared.limits.default_page_size, false),
            (Some(v), None) => (p.page_size(v, "first").map_err(input)?, false),
            (None, Some(v)) => (p.page_size(v, "last").map_err(input)?, true),
        };
    // The rows under `nodes` and under `edges { node }` are the same rows.
    let mut selected = Vec::new();
    let mut wants_total = false;
    for f in field.selection_set() {
        match f.name() {
            "nodes" => selected.push(f),
            "edges" => selected.extend(f.selection_set().filter(|e| e.name() == "node")),
            "totalCount" => wants_total = true,
            _ => {}
        }
    }
    let list_args: Vec<(Name, Value)> = args
        .iter()
        .filter(|(k, _)| matches!(k.as_str(), "filter" | "orderBy"))
        .cloned()
        .collect();
    let mut plan = p.plan(i, &[], &list_args, Paging::None).map_err(input)?;
    p.select(&mut plan, &selected).map_err(input)?;
    let m = &shared.models[i];
    let total = if wants_total {
        Some(count(&sql::count_rows(m, plan.cond.clone()))?)
    } else {
        None
    };
    let order = plan.order.clone();
    let reversed: Vec<OrderItem> = order.iter().map(OrderItem::reversed).collect();
    let mut cond = plan.cond.clone();
    let after = arg("after")
        .map(|c| decode(&order, "after", c))
        .transpose()?;
    if let Some(values) = &after {
        cond = cond.and(sql::after(m, &order, values).map_err(input)?);
    }
    let before = arg("before")
        .map(|c| decode(&order, "before", c))
        .transpose()?;
    if let Some(values) = &before {
        // Before a row in one order is after it in the reverse order.
        cond = cond.and(sql::after(m, &reversed, values).map_err(input)?);
    }
    if backward {
        plan.order = reversed;
    }
    // One row more than the page tells whether another page lies beyond it.
    plan.limit = Some(size.saturating_add(1));
    let mut rows = load(shared, &plan, cond, size)?;
    let more = rows.len() as u64 > size;
    rows.truncate(usize::try_from(size).unwrap_or(usize::MAX));
    if backward {
        rows.reverse();
    }
    let edges = rows.into_iter().map(|n| (cursor(&order, &n), n)).collect();
    let (has_next, has_previous) = if backward {
        (before.is_some(), more)
    } else {
        (more, after.is_some())
    };
    Ok(Some(FieldValue::owned_any(Arc::new(Page {
        edges,
        has_next,
        has_previous,
        total,
    }))))
}

/// The order's signature and the row's values for it, as an opaque cursor.
fn cursor(order: &[OrderItem], node: &Node) -> String {
    let values: Vec<serde_json::Value> = order
        .iter()
        .map(|o| {
            node.get(o.column)
                .clone()
                .into_json()
                .unwrap_or(serde_json::Value::Null)
        })
        .collect();
    let body = serde_json::json!({ "o": signature(order), "v": values });
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(body.to_string())
}

fn signature(order: &[OrderItem]) -> String {
    order
        .iter()
        .map(|o| {
            format!(
                "{}:{}{}",
                o.column,
                if o.desc { 'd' } else { 'a' },
                if o.nulls_first { 'f' } else { 'l' }
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The values of a cursor made for the same order; `name` is the argument it came in.
fn decode(order: &[OrderItem], name: &str, cursor: &Value) -> Result<Vec<Value>, LoadError> {
    let bad = || input(format!("{name}: not a cursor of this connection and order"));
    let Value::String(cursor) = cursor else {
        return Err(bad());
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let body: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if body.get("o").and_then(|o| o.as_str()) != Some(signature(order).as_str()) {
        return Err(bad());
    }
    let values = body.get("v").and_then(|v| v.as_array()).ok_or_else(bad)?;
    values
        .iter()
        .map(|v| Value::from_json(v.clone()).map_err(|_| bad()))
        .collect()
}

fn count(stmt: &Expr) -> Result<i64, LoadError> {
    let mut text = String::new();
    let mut values = Vec::new();
    stmt.write(&mut text, &mut values);
    run::db(|db| {
        let row = db.query_one(&text, &lifeguard_core::query::as_params(&values))?;
        Ok(row.try_get::<_, i64>(0)?)
    })
    .unwrap_or_else(|| {
        Err(LoadError::Input(
            "the schema runs only through Schema::execute".into(),
        ))
    })
}
