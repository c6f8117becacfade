//! The root fields: per model a list, a by-key read and a connection on `Query`, and
//! create, update and delete (one and many) on `Mutation`. Each root field plans its whole
//! selection and loads it before its children resolve.

use std::sync::Arc;

use async_graphql::dynamic::{
    Field, FieldFuture, FieldValue, InputValue, ResolverContext, TypeRef,
};
use lifeguard_core::query::Expr;

use crate::error::LoadError;
use crate::load::{Loader, Node};
use crate::model::ModelInfo;
use crate::plan::{key_condition, Paging, Plan, Planner};
use crate::run;
use crate::schema::objects::list_arguments;
use crate::schema::{connection, Shared};
use crate::sql;

pub(crate) type Resolved = Result<Option<FieldValue<'static>>, LoadError>;

pub(crate) fn finish<'a>(result: Resolved) -> FieldFuture<'a> {
    run::field_ran();
    match result {
        Ok(v) => FieldFuture::Value(v),
        Err(e) => {
            let e = e.into_graphql();
            FieldFuture::new(std::future::ready(Err::<Option<FieldValue>, _>(e)))
        }
    }
}

/// The key arguments of a by-key field.
fn key_arguments(f: Field, m: &ModelInfo) -> Field {
    m.key_columns().fold(f, |f, k| {
        f.argument(InputValue::new(
            &k.field,
            TypeRef::named_nn(k.kind.scalar()),
        ))
    })
}

/// The query fields of model `i`.
pub(crate) fn query_fields(shared: &Arc<Shared>, i: usize) -> Vec<Field> {
    let m = &shared.models[i];
    let mut fields = Vec::new();
    let s = shared.clone();
    let list = Field::new(
        &m.plural,
        TypeRef::named_nn_list_nn(&m.type_name),
        move |ctx| finish(list(&s, i, &ctx)),
    )
    .description(format!(
        "{} rows, a page at a time (`limit` defaults to the page size).",
        m.type_name
    ));
    fields.push(list_arguments(list, m, "limit"));
    if m.key_columns().next().is_some() {
        let s = shared.clone();
        let one = Field::new(&m.singular, TypeRef::named(&m.type_name), move |ctx| {
            finish(by_key(&s, i, &ctx))
        })
        .description(format!("The {} row with this key, or null.", m.type_name));
        fields.push(key_arguments(one, m));
    }
    let s = shared.clone();
    let conn = Field::new(
        format!("{}Connection", m.plural),
        TypeRef::named_nn(format!("{}Connection", m.type_name)),
        move |ctx| finish(connection::resolve(&s, i, &ctx)),
    )
    .description(format!(
        "{} rows as a Relay connection with keyset cursors.",
        m.type_name
    ))
    .argument(InputValue::new("after", TypeRef::named(TypeRef::STRING)))
    .argument(InputValue::new("before", TypeRef::named(TypeRef::STRING)))
    .argument(InputValue::new("last", TypeRef::named(TypeRef::INT)));
    fields.push(list_arguments(conn, m, "first"));
    fields
}

pub(crate) fn planner(shared: &Shared) -> Planner<'_> {
    Planner {
        models: &shared.models,
        limits: &shared.limits,
    }
}

pub(crate) fn input(e: String) -> LoadError {
    LoadError::Input(e)
}

/// Plans the field being resolved (its arguments and whole selection) for model `i`.
fn plan_field(
    shared: &Shared,
    i: usize,
    ctx: &ResolverContext<'_>,
    paging: Paging,
) -> Result<Plan, LoadError> {
    let field = ctx.ctx.field();
    let args = field.arguments().map_err(|e| input(e.message))?;
    planner(shared)
        .plan(i, &[field], &args, paging)
        .map_err(input)
}

/// Loads `plan` from the rows `cond` selects, within the cost bound.
pub(crate) fn load(
    shared: &Shared,
    plan: &Plan,
    cond: Expr,
    rows: u64,
) -> Result<Vec<Arc<Node>>, LoadError> {
    let cost = planner(shared).cost(plan, rows);
    if cost > shared.limits.max_cost {
        return Err(LoadError::Cost {
            cost,
            max: shared.limits.max_cost,
        });
    }
    let m = &shared.models[plan.model];
    let stmt = sql::root(m, &plan.columns, cond, &plan.order, plan.limit, plan.offset);
    run::db(|db| {
        Loader {
            db,
            models: &shared.models,
            max_rows: shared.limits.max_rows,
        }
        .root(plan, stmt)
    })
    .unwrap_or_else(|| {
        Err(LoadError::Input(
            "the schema runs only through Schema::execute".into(),
        ))
    })
}

fn nodes(list: Vec<Arc<Node>>) -> FieldValue<'static> {
    FieldValue::list(list.into_iter().map(FieldValue::owned_any))
}

fn list(shared: &Shared, i: usize, ctx: &ResolverContext<'_>) -> Resolved {
    let plan = plan_field(shared, i, ctx, Paging::Page)?;
    let cond = plan.cond.clone();
    let rows = plan.limit.unwrap_or(shared.limits.default_page_size);
    Ok(Some(nodes(load(shared, &plan, cond, rows)?)))
}

fn by_key(shared: &Shared, i: usize, ctx: &ResolverContext<'_>) -> Resolved {
    let field = ctx.ctx.field();
    let args = field.arguments().map_err(|e| input(e.message))?;
    let m = &shared.models[i];
    let cond = key_condition(m, &args).map_err(input)?;
    let plan = planner(shared)
        .plan(i, &[field], &[], Paging::None)
        .map_err(input)?;
    let found = load(shared, &plan, cond, 1)?;
    Ok(found.into_iter().next().map(FieldValue::owned_any))
}

/// The mutation fields of model `i` (none for a read-only model).
pub(crate) fn mutation_fields(shared: &Arc<Shared>, i: usize) -> Vec<Field> {
    let m = &shared.models[i];
    if m.writer.is_none() {
        return Vec::new();
    }
    let Some((create_input, update_input)) = crate::schema::inputs::write_inputs(m) else {
        return Vec::new();
    };
    let (create_ty, update_ty) = (
        create_input.type_name().to_owned(),
        update_input.type_name().to_owned(),
    );
    let t = &m.type_name;
    let plural_t = crate::model::upper_first(&m.plural);
    let filter_ty = crate::schema::inputs::filter_name(t);
    let mut out = Vec::new();
    let s = shared.clone();
    out.push(
        Field::new(format!("create{t}"), TypeRef::named_nn(t), move |ctx| {
            finish(crate::mutation::create(&s, i, &ctx, false))
        })
        .description(format!(
            "Inserts one {t} through the ORM (hooks and validators run)."
        ))
        .argument(InputValue::new("data", TypeRef::named_nn(&create_ty))),
    );
    let s = shared.clone();
    out.push(
        Field::new(
            format!("create{plural_t}"),
            TypeRef::named_nn_list_nn(t),
            move |ctx| finish(crate::mutation::create(&s, i, &ctx, true)),
        )
        .description(format!(
            "Inserts several {t} rows, in the operation's transaction."
        ))
        .argument(InputValue::new(
            "data",
            TypeRef::named_nn_list_nn(&create_ty),
        )),
    );
    if m.key_columns().next().is_some() {
        let s = shared.clone();
        out.push(key_arguments(
            Field::new(format!("update{t}"), TypeRef::named(t), move |ctx| {
                finish(crate::mutation::update(&s, i, &ctx, true))
            })
            .description(format!(
                "Changes the {t} with this key; null when there is none."
            ))
            .argument(InputValue::new("data", TypeRef::named_nn(&update_ty))),
            m,
        ));
        let s = shared.clone();
        out.push(key_arguments(
            Field::new(format!("delete{t}"), TypeRef::named_nn(TypeRef::INT), move |ctx| {
                finish(crate::mutation::delete(&s, i, &ctx, true))
            })
            .description(format!("Deletes the {t} with this key (a soft delete where the model has one); the rows deleted, 0 or 1.")),
            m,
        ));
    }
    let s = shared.clone();
    out.push(
        Field::new(
            format!("update{plural_t}"),
            TypeRef::named_nn_list_nn(t),
            move |ctx| finish(crate::mutation::update(&s, i, &ctx, false)),
        )
        .description(format!(
            "Changes every {t} the filter matches (at most the maximum page size)."
        ))
        .argument(InputValue::new("filter", TypeRef::named_nn(&filter_ty)))
        .argument(InputValue::new("data", TypeRef::named_nn(&update_ty))),
    );
    let s = shared.clone();
    out.push(
        Field::new(format!("delete{plural_t}"), TypeRef::named_nn(TypeRef::INT), move |ctx| {
            finish(crate::mutation::delete(&s, i, &ctx, false))
        })
        .description(format!("Deletes every {t} the filter matches (at most the maximum page size); the rows deleted."))
        .argument(InputValue::new("filter", TypeRef::named_nn(&filter_ty))),
    );
    out
}

/// Loads the selection of the field being resolved for the rows `cond` selects (after a
/// write: the written rows), in key order.
pub(crate) fn reload(
    shared: &Shared,
    i: usize,
    ctx: &ResolverContext<'_>,
    cond: Expr,
    rows: u64,
) -> Result<Vec<Arc<Node>>, LoadError> {
    let field = ctx.ctx.field();
    let mut plan = planner(shared)
        .plan(i, &[field], &[], Paging::None)
        .map_err(input)?;
    plan.limit = None;
    load(shared, &plan, cond, rows)
}
