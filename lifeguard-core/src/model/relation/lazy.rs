//! Lazy loading: the related rows of one model as a query to refine and run.

use super::def::Related;
use super::sql::{column, soft_delete_cond};
use crate::model::LifeModel;
use crate::query::{Expr, Select};

/// `parent.find_related::<R>()`.
pub(crate) fn find_related<M: Related<R>, R: LifeModel>(parent: &M) -> Select<R> {
    let def = M::def();
    let Some(key) = parent.related_key() else {
        return R::find().filter(Expr::cust("FALSE"));
    };
    let condition = match &def.via {
        None => def.target_column().append_sql(" = ").append(Expr::val(key)),
        Some(via) => def
            .target_column()
            .append_sql(" IN (SELECT ")
            .append(column(via.table, via.to_column))
            .append_sql(" FROM ")
            .append_sql(via.table)
            .append_sql(" WHERE ")
            .append(column(via.table, via.from_column))
            .append_sql(" = ")
            .append(Expr::val(key))
            .append(soft_delete_cond(via.table, via.soft_delete))
            .append_sql(")"),
    };
    R::find().filter(condition)
}
