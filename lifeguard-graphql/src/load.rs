//! Runs a plan: one statement for the root rows, then one per relation per level for all
//! the parents of that level at once (`key = ANY($1)`), whatever the number of parents.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::Value;
use lifeguard_core::query::{as_params, Expr};
use lifeguard_core::Executor;

use crate::column;
use crate::error::LoadError;
use crate::model::ModelInfo;
use crate::plan::Plan;
use crate::sql;

/// One loaded row: its selected columns, and the related rows under each response key.
#[derive(Debug, Default)]
pub(crate) struct Node {
    values: Vec<(&'static str, Value)>,
    children: Vec<(String, Related)>,
}

/// The rows a relation field resolves to.
#[derive(Debug)]
pub(crate) enum Related {
    Many(Vec<Arc<Node>>),
    One(Option<Arc<Node>>),
}

impl Node {
    /// The value of column `sql` (null when it was not selected).
    pub(crate) fn get(&self, sql: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.values
            .iter()
            .find(|(c, _)| *c == sql)
            .map_or(&NULL, |(_, v)| v)
    }

    /// The rows under response key `key`.
    pub(crate) fn related(&self, key: &str) -> Option<&Related> {
        self.children.iter().find(|(k, _)| k == key).map(|(_, r)| r)
    }
}

/// Runs statements, counting rows against the request's bound.
pub(crate) struct Loader<'a> {
    pub db: &'a dyn Executor,
    pub models: &'a [ModelInfo],
    /// Rows per statement at most.
    pub max_rows: u64,
}

impl Loader<'_> {
    /// The root rows `stmt` selects, with everything `plan` nests below them.
    pub(crate) fn root(&self, plan: &Plan, stmt: Expr) -> Result<Vec<Arc<Node>>, LoadError> {
        let rows = self.query(&stmt)?;
        let nodes = self.nodes(plan, &rows, false)?;
        Ok(nodes.into_iter().map(|(n, _)| Arc::new(n)).collect())
    }

    fn query(&self, stmt: &Expr) -> Result<Vec<lifeguard_core::pg::Row>, LoadError> {
        let mut text = String::new();
        let mut values = Vec::new();
        stmt.write(&mut text, &mut values);
        let rows = self.db.query(&text, &as_params(&values))?;
        if rows.len() as u64 > self.max_rows {
            return Err(LoadError::TooManyRows(self.max_rows));
        }
        Ok(rows)
    }

    /// Decodes `rows` into nodes (each with its link key when `linked`) and loads their
    /// relations, one statement per relation.
    fn nodes(
        &self,
        plan: &Plan,
        rows: &[lifeguard_core::pg::Row],
        linked: bool,
    ) -> Result<Vec<(Node, String)>, LoadError> {
        let mut nodes = Vec::with_capacity(rows.len());
        for row in rows {
            let mut values = Vec::with_capacity(plan.columns.len());
            for (i, c) in plan.columns.iter().enumerate() {
                values.push((*c, column::decode(row, i)?));
            }
            let link = if linked {
                link_key(&column::decode(row, plan.columns.len())?)
            } else {
                String::new()
            };
            nodes.push((
                Node {
                    values,
                    children: Vec::new(),
                },
                link,
            ));
        }
        let owner = &self.models[plan.model];
        for child in &plan.children {
            let rel = &owner.relations[child.relation];
            let target = &self.models[rel.target];
            let mut keys: Vec<Value> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for (n, _) in &nodes {
                let v = n.get(rel.parent_column);
                if !matches!(v, Value::Null) && seen.insert(link_key(v)) {
                    keys.push(v.clone());
                }
            }
            let mut grouped: HashMap<String, Vec<Arc<Node>>> = HashMap::new();
            if !keys.is_empty() {
                let keys = column::list_param(rel.key_kind, &keys).map_err(LoadError::Input)?;
                // An offset alone pages too: every row after it.
                let page = match (child.plan.limit, child.plan.offset) {
                    (None, 0) => None,
                    (limit, offset) => Some((limit.unwrap_or(u64::MAX), offset)),
                };
                let stmt = sql::related(
                    target,
                    rel,
                    &child.plan.columns,
                    keys,
                    child.plan.cond.clone(),
                    &child.plan.order,
                    page,
                    self.max_rows,
                );
                let rows = self.query(&stmt)?;
                for (node, link) in self.nodes(&child.plan, &rows, true)? {
                    grouped.entry(link).or_default().push(Arc::new(node));
                }
            }
            for (n, _) in &mut nodes {
                let mine = grouped
                    .get(&link_key(n.get(rel.parent_column)))
                    .cloned()
                    .unwrap_or_default();
                let related = if rel.many() {
                    Related::Many(mine)
                } else {
                    Related::One(mine.into_iter().next())
                };
                n.children.push((child.key.clone(), related));
            }
        }
        Ok(nodes)
    }
}

/// A key as text, the same for a BigInt (sent as a string) and an Int of equal value.
fn link_key(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}
