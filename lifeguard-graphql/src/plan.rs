//! From a selection to a plan: which model, which columns, which condition, order and page,
//! and which relations below it, each with its own plan. The plan is what runs one
//! statement per relation per level ([`crate::load`]).

use async_graphql::context::SelectionField;
use async_graphql::{Name, Value};
use lifeguard_core::query::Expr;

use crate::column;
use crate::limits::Limits;
use crate::model::{FieldRef, ModelInfo};
use crate::sql::{self, InputResult, OrderItem};

/// What to load for one model at one place in the document.
pub(crate) struct Plan {
    pub model: usize,
    /// SQL names of the columns to select, without duplicates.
    pub columns: Vec<&'static str>,
    pub cond: Expr,
    pub order: Vec<OrderItem>,
    /// Root lists: the page. Relations: the per-parent page, when one was asked for.
    pub limit: Option<u64>,
    pub offset: u64,
    pub children: Vec<Child>,
}

/// A relation selected under a plan, under its response key.
pub(crate) struct Child {
    pub key: String,
    pub relation: usize,
    pub plan: Plan,
}

/// How a field's arguments page its rows.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Paging {
    /// `limit`/`offset`, `limit` defaulting to the default page size (root lists).
    Page,
    /// `limit`/`offset` per parent, no limit unless asked (relation lists).
    PerParent,
    /// No arguments (to-one relations, by-key reads).
    None,
}

/// The models of the schema, as the planner needs them.
pub(crate) struct Planner<'a> {
    pub models: &'a [ModelInfo],
    pub limits: &'a Limits,
}

impl Planner<'_> {
    /// The plan for `model` selected by `fields` (several when the same response key is
    /// selected more than once: their selections merge), with `args`.
    pub(crate) fn plan<'f>(
        &self,
        model: usize,
        fields: &[SelectionField<'f>],
        args: &[(Name, Value)],
        paging: Paging,
    ) -> InputResult<Plan> {
        let info = &self.models[model];
        let arg = |name: &str| {
            args.iter()
                .find(|(n, _)| n.as_str() == name)
                .map(|(_, v)| v)
        };
        let cond = match arg("filter") {
            Some(f) => sql::filter(info, f)?,
            None => Expr::cust("TRUE"),
        };
        let order = sql::order(info, arg("orderBy"))?;
        let (limit, offset) = match paging {
            Paging::None => (None, 0),
            Paging::Page | Paging::PerParent => {
                let limit = match arg("limit") {
                    Some(Value::Null) | None if paging == Paging::Page => {
                        Some(self.limits.default_page_size)
                    }
                    Some(Value::Null) | None => None,
                    Some(v) => Some(self.page_size(v, "limit")?),
                };
                let offset = match arg("offset") {
                    Some(Value::Number(n)) => n
                        .as_u64()
                        .ok_or_else(|| "offset must not be negative".to_string())?,
                    _ => 0,
                };
                (limit, offset)
            }
        };
        let mut plan = Plan {
            model,
            columns: Vec::new(),
            cond,
            order,
            limit,
            offset,
            children: Vec::new(),
        };
        self.select(&mut plan, fields)?;
        Ok(plan)
    }

    /// A `limit`/`first` argument, within the page-size cap.
    pub(crate) fn page_size(&self, v: &Value, name: &str) -> InputResult<u64> {
        let n = match v {
            Value::Number(n) => n.as_u64(),
            _ => None,
        }
        .ok_or_else(|| format!("{name} must be a non-negative integer"))?;
        if n > self.limits.max_page_size {
            return Err(format!(
                "{name} {n} is above the maximum page size {}",
                self.limits.max_page_size
            ));
        }
        Ok(n)
    }

    /// Adds what `fields`' selection sets ask for to `plan`.
    pub(crate) fn select<'f>(
        &self,
        plan: &mut Plan,
        fields: &[SelectionField<'f>],
    ) -> InputResult<()> {
        let info = &self.models[plan.model];
        for key in info.key_columns() {
            push(&mut plan.columns, key.sql);
        }
        // Cursors are made of the order's values.
        for item in &plan.order {
            push(&mut plan.columns, item.column);
        }
        let mut groups: Vec<(String, usize, Vec<SelectionField<'f>>)> = Vec::new();
        for field in fields.iter().flat_map(|f| f.selection_set()) {
            if !included(&field)? || field.name().starts_with("__") {
                continue;
            }
            match info.fields.get(field.name()) {
                Some(FieldRef::Column(i)) => push(&mut plan.columns, info.columns[*i].sql),
                Some(FieldRef::Relation(r)) => {
                    let key = field.alias().unwrap_or(field.name()).to_owned();
                    match groups.iter_mut().find(|(k, _, _)| *k == key) {
                        // Validation makes a key's fields agree within one parent; a
                        // connection's `nodes` and `edges { node }` share rows but not
                        // their validation, and one plan cannot serve two arguments.
                        Some((_, _, same)) if !same_arguments(&same[0], &field)? => {
                            return Err(format!(
                                "{key} is selected twice with different arguments; give one another alias"
                            ));
                        }
                        Some((_, _, same)) => same.push(field),
                        None => groups.push((key, *r, vec![field])),
                    }
                }
                // Validation has refused unknown fields; nothing to load for the rest.
                None => {}
            }
        }
        for (key, r, same) in groups {
            let rel = &info.relations[r];
            push(&mut plan.columns, rel.parent_column);
            let args = same[0].arguments().map_err(|e| e.message)?;
            let paging = if rel.many() {
                Paging::PerParent
            } else {
                Paging::None
            };
            let child = self.plan(rel.target, &same, &args, paging)?;
            plan.children.push(Child {
                key,
                relation: r,
                plan: child,
            });
        }
        Ok(())
    }

    /// The rows the plan may load at most, counting every level: each relation list
    /// multiplies by its page; a list without a page counts the default page size per
    /// parent, but no more than a statement may return (`max_rows`, enforced when it runs).
    pub(crate) fn cost(&self, plan: &Plan, rows: u64) -> u64 {
        let info = &self.models[plan.model];
        plan.children.iter().fold(rows, |acc, child| {
            let rel = &info.relations[child.relation];
            let each = if rel.many() {
                child.plan.limit.unwrap_or(self.limits.default_page_size)
            } else {
                1
            };
            let mut level = rows.saturating_mul(each.max(1));
            if child.plan.limit.is_none() {
                level = level.min(self.limits.max_rows);
            }
            acc.saturating_add(self.cost(&child.plan, level))
        })
    }
}

fn push(columns: &mut Vec<&'static str>, c: &'static str) {
    if !columns.contains(&c) {
        columns.push(c);
    }
}

fn same_arguments(a: &SelectionField<'_>, b: &SelectionField<'_>) -> InputResult<bool> {
    let a = a.arguments().map_err(|e| e.message)?;
    let b = b.arguments().map_err(|e| e.message)?;
    Ok(a.len() == b.len() && a.iter().all(|arg| b.contains(arg)))
}

/// `@skip(if:)` and `@include(if:)`.
fn included(field: &SelectionField<'_>) -> InputResult<bool> {
    for d in field.directives().map_err(|e| e.message)? {
        let flag = d
            .arguments
            .iter()
            .find(|(n, _)| n.node.as_str() == "if")
            .map(|(_, v)| matches!(v.node, Value::Boolean(true)));
        match (d.name.node.as_str(), flag) {
            ("skip", Some(true)) | ("include", Some(false)) => return Ok(false),
            _ => {}
        }
    }
    Ok(true)
}

/// The condition for a by-key read: each key argument equals its column.
pub(crate) fn key_condition(info: &ModelInfo, args: &[(Name, Value)]) -> InputResult<Expr> {
    let mut cond = Expr::cust("TRUE");
    for key in info.key_columns() {
        let v = args
            .iter()
            .find(|(n, _)| n.as_str() == key.field)
            .map(|(_, v)| v)
            .ok_or_else(|| format!("missing {}", key.field))?;
        let p = column::param(key.kind, v).map_err(|e| format!("{}: {e}", key.field))?;
        cond = cond.and(
            Expr::cust(sql::column_sql(info, key.sql, key.kind))
                .append_sql(" = ")
                .append(p),
        );
    }
    Ok(cond)
}
