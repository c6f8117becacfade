//! SQL fragments shared by the lazy, join-based and batched paths.

use crate::model::LifeModel;
use crate::query::{quote, Expr};

/// `table.column`, quoted.
pub(super) fn column(table: &str, column: &str) -> Expr {
    Expr::cust(format!("{table}.{}", quote(column)))
}

/// ` AND table.deleted_at IS NULL`, or nothing.
pub(super) fn soft_delete_cond(table: &str, soft_delete: Option<&str>) -> Expr {
    match soft_delete {
        Some(c) => Expr::cust(format!(" AND {table}.{} IS NULL", quote(c))),
        None => Expr::default(),
    }
}

/// Every column of `M`, qualified: `"t"."a", "t"."b"`.
pub(super) fn model_columns<M: LifeModel>() -> impl Iterator<Item = Expr> {
    M::COLUMNS.iter().map(|c| column(M::QUALIFIED, c.name))
}
