//! One level of a batched load: the query for every parent's children at once, and the
//! regrouping of its rows by parent.

use std::any::TypeId;
use std::collections::{HashMap, HashSet};

use crate::error::Result;
use crate::executor::Executor;
use crate::model::relation::def::Related;
use crate::model::relation::sql::{column, model_columns};
use crate::model::shapes::{cached, remember, Kind, Order};
use crate::model::LifeModel;
use crate::query::{as_params, IntoOrderExpr, Select};

/// Orders by `M`'s primary key, so the first loaded child of a parent is always the same one.
fn order_by_key<M: LifeModel>(mut select: Select<M>) -> Select<M> {
    for c in M::COLUMNS.iter().filter(|c| c.primary_key) {
        select = select.order_by_asc(column(M::QUALIFIED, c.name).into_order_expr());
    }
    select
}

/// Loads the `R`s of every parent with one query; one group per parent, in order. When
/// `select` is `R::find()` as it comes, the statement is cached. [`Order::ByChildKey`]
/// is for a level that keeps only a parent's first child: the rows are ordered by the
/// children's primary key to make that pick stable. [`Order::AsSent`] leaves them as the
/// server sends them (as from SeaORM's and Diesel's loaders); a caller wanting an order
/// asks for it with [`Many::query`](super::Many::query).
pub(super) fn load_groups<P, R, E>(
    db: &E,
    select: &Select<R>,
    order: Order,
    parents: &[P],
) -> Result<Vec<Vec<R>>>
where
    P: Related<R>,
    R: LifeModel,
    E: Executor + ?Sized,
{
    let keys: Vec<Option<P::Key>> = parents.iter().map(Related::related_key).collect();
    let mut seen = HashSet::new();
    let unique: Vec<P::Key> = keys
        .iter()
        .flatten()
        .filter(|k| seen.insert(*k))
        .cloned()
        .collect();
    if unique.is_empty() {
        return Ok(parents.iter().map(|_| Vec::new()).collect());
    }
    let distinct = unique.len();
    let def = P::def();
    // A direct relation's key is one of the child's own columns; only a junction's key
    // has to be selected as well.
    let own_key = match def.via {
        None => R::COLUMNS.iter().position(|c| c.name == def.to_column),
        Some(_) => None,
    };
    // An unrefined level's text depends only on the two types and the order; its one
    // parameter is the key array.
    let shape = select.is_plain().then(|| {
        let kind = Kind::Load {
            parent: TypeId::of::<P>(),
            order,
        };
        (TypeId::of::<R>(), kind, 0)
    });
    let rows = match shape.and_then(cached) {
        Some(sql) => {
            let keys = P::keys_param(unique);
            let mut params = Vec::with_capacity(1);
            keys.write_borrowed(&mut String::new(), &mut params);
            db.query(sql, &params)?
        }
        None => {
            let extra_key = own_key.is_none().then(|| def.key_expr());
            let mut query = select
                .clone()
                .columns(model_columns::<R>().chain(extra_key))
                .filter(
                    def.key_expr()
                        .append_sql(" = ANY(")
                        .append(P::keys_param(unique))
                        .append_sql(")"),
                );
            if let Some(via) = &def.via {
                query = query.join_sql(def.via_join_from_target(via));
            }
            if order == Order::ByChildKey {
                query = order_by_key(query);
            }
            let (sql, params) = query.build();
            // Only the key array may be a parameter of a cached text.
            if let (Some(key), 1) = (shape, params.len()) {
                remember(key, sql.clone());
            }
            db.query(&sql, &as_params(&params))?
        }
    };

    // One parent's children usually come together (an index scan on the key returns them
    // so, and rows written together sort together): one hash look-up per run of equal
    // parent keys, not per row. A key that comes back after another joins its group.
    let key_at = own_key.unwrap_or(R::COLUMNS.len());
    let per_group = rows.len().div_ceil(distinct);
    let mut groups: Vec<Vec<R>> = Vec::with_capacity(distinct);
    let mut group_of: HashMap<P::Key, usize> = HashMap::with_capacity(distinct);
    let mut run: Option<(P::Key, usize)> = None;
    for row in &rows {
        let Some(key) = row.try_get::<_, Option<P::Key>>(key_at)? else {
            continue;
        };
        let model = R::from_row(row)?;
        let index = match &run {
            Some((k, i)) if *k == key => *i,
            _ => {
                let next = groups.len();
                let i = *group_of.entry(key.clone()).or_insert(next);
                if i == next {
                    groups.push(Vec::with_capacity(per_group));
                }
                run = Some((key, i));
                i
            }
        };
        groups[index].push(model);
    }
    // Hand each group over without a copy unless several parents share the key.
    let wanted: Vec<Option<usize>> = keys
        .iter()
        .map(|k| k.as_ref().and_then(|k| group_of.get(k).copied()))
        .collect();
    let mut uses = vec![0usize; groups.len()];
    for i in wanted.iter().flatten() {
        uses[*i] += 1;
    }
    Ok(wanted
        .into_iter()
        .map(|i| match i {
            None => Vec::new(),
            Some(i) => {
                uses[i] -= 1;
                if uses[i] == 0 {
                    std::mem::take(&mut groups[i])
                } else {
                    groups[i].clone()
                }
            }
        })
        .collect())
}
