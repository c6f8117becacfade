//! The output types: one object per model (its columns and relations), its connection and
//! edge, and `PageInfo`. Their resolvers only read what the root field loaded.

use std::sync::Arc;

use async_graphql::dynamic::{Field, FieldFuture, FieldValue, InputValue, Object, TypeRef};
use async_graphql::Value;

use crate::column::Kind;
use crate::load::{Node, Related};
use crate::model::ModelInfo;
use crate::schema::inputs;

/// A page of a connection, as its root field loaded it.
pub(crate) struct Page {
    pub edges: Vec<(String, Arc<Node>)>,
    pub has_next: bool,
    pub has_previous: bool,
    pub total: Option<i64>,
}

/// The type of a column's field.
fn column_type(kind: Kind, nullable: bool) -> TypeRef {
    match (kind, nullable) {
        (Kind::Array(_), true) => TypeRef::named_list(kind.scalar()),
        (Kind::Array(_), false) => TypeRef::named_list_nn(kind.scalar()),
        (k, true) => TypeRef::named(k.scalar()),
        (k, false) => TypeRef::named_nn(k.scalar()),
    }
}

/// The response key of the field being resolved.
fn response_key<'a>(ctx: &'a async_graphql::dynamic::ResolverContext<'a>) -> &'a str {
    let item = &ctx.ctx.item.node;
    item.alias
        .as_ref()
        .map_or(item.name.node.as_str(), |a| a.node.as_str())
}

/// The model's object type.
pub(crate) fn model_object(models: &[ModelInfo], m: &ModelInfo) -> Object {
    let mut o = Object::new(&m.type_name).description(format!("A row of {}.", m.table));
    for c in &m.columns {
        let sql = c.sql;
        if let Some(enumeration) = &c.enumeration {
            let ty = if c.nullable {
                TypeRef::named(&enumeration.name)
            } else {
                TypeRef::named_nn(&enumeration.name)
            };
            let enumeration = enumeration.clone();
            o = o.field(Field::new(&c.field, ty, move |ctx| {
                // The row holds the stored form; the field answers its enum value.
                let value = ctx.parent_value.downcast_ref::<Arc<Node>>().and_then(|n| {
                    enumeration
                        .read(n.get(sql))
                        .map(|v| FieldValue::value(Value::Enum(async_graphql::Name::new(v))))
                });
                FieldFuture::Value(value)
            }));
            continue;
        }
        o = o.field(Field::new(
            &c.field,
            column_type(c.kind, c.nullable),
            move |ctx| {
                let value = ctx
                    .parent_value
                    .downcast_ref::<Arc<Node>>()
                    .map_or(Value::Null, |n| n.get(sql).clone());
                FieldFuture::Value(Some(FieldValue::value(value)))
            },
        ));
    }
    for rel in &m.relations {
        let target = &models[rel.target];
        let many = rel.many();
        let ty = if many {
            TypeRef::named_nn_list_nn(&target.type_name)
        } else {
            TypeRef::named(&target.type_name)
        };
        let mut f = Field::new(&rel.field, ty, move |ctx| {
            let related = ctx
                .parent_value
                .downcast_ref::<Arc<Node>>()
                .and_then(|n| n.related(response_key(&ctx)));
            let value = match related {
                Some(Related::Many(rows)) => Some(FieldValue::list(
                    rows.iter().map(|n| FieldValue::owned_any(n.clone())),
                )),
                Some(Related::One(Some(n))) => Some(FieldValue::owned_any(n.clone())),
                Some(Related::One(None)) => None,
                // Not planned (a field the planner skipped): an empty list or null.
                None if many => Some(FieldValue::list(Vec::<FieldValue>::new())),
                None => None,
            };
            FieldFuture::Value(value)
        });
        if many {
            f = list_arguments(f, target, "limit");
        }
        o = o.field(f);
    }
    o
}

/// `filter`, `orderBy`, and `limit` (or `first`) and `offset` on a list field.
pub(crate) fn list_arguments(f: Field, target: &ModelInfo, limit: &str) -> Field {
    let mut f = f.argument(InputValue::new(
        "filter",
        TypeRef::named(inputs::filter_name(&target.type_name)),
    ));
    if inputs::model_order(target).is_some() {
        f = f.argument(InputValue::new(
            "orderBy",
            TypeRef::named_nn_list(inputs::order_name(target)),
        ));
    }
    f = f.argument(InputValue::new(limit, TypeRef::named(TypeRef::INT)));
    if limit == "limit" {
        f = f.argument(InputValue::new("offset", TypeRef::named(TypeRef::INT)));
    }
    f
}

/// `PageInfo`, shared by every connection.
pub(crate) fn page_info() -> Object {
    let flag = |name: &'static str, pick: fn(&Page) -> bool| {
        Field::new(name, TypeRef::named_nn(TypeRef::BOOLEAN), move |ctx| {
            let v = ctx
                .parent_value
                .downcast_ref::<Arc<Page>>()
                .is_some_and(|p| pick(p));
            FieldFuture::Value(Some(FieldValue::value(v)))
        })
    };
    let cursor = |name: &'static str, first: bool| {
        Field::new(name, TypeRef::named(TypeRef::STRING), move |ctx| {
            let v = ctx.parent_value.downcast_ref::<Arc<Page>>().and_then(|p| {
                let edge = if first {
                    p.edges.first()
                } else {
                    p.edges.last()
                };
                edge.map(|(c, _)| FieldValue::value(c.clone()))
            });
            FieldFuture::Value(v)
        })
    };
    Object::new("PageInfo")
        .description("Where a page of a connection lies.")
        .field(flag("hasNextPage", |p| p.has_next))
        .field(flag("hasPreviousPage", |p| p.has_previous))
        .field(cursor("startCursor", true))
        .field(cursor("endCursor", false))
}

/// `AuthorConnection` and `AuthorEdge`.
pub(crate) fn connection(m: &ModelInfo) -> (Object, Object) {
    let edge_name = format!("{}Edge", m.type_name);
    let edge = Object::new(&edge_name)
        .description(format!("A {} row and its cursor.", m.type_name))
        .field(Field::new(
            "cursor",
            TypeRef::named_nn(TypeRef::STRING),
            |ctx| {
                let v = ctx
                    .parent_value
                    .downcast_ref::<(String, Arc<Node>)>()
                    .map(|(c, _)| FieldValue::value(c.clone()));
                FieldFuture::Value(v)
            },
        ))
        .field(Field::new("node", TypeRef::named_nn(&m.type_name), |ctx| {
            let v = ctx
                .parent_value
                .downcast_ref::<(String, Arc<Node>)>()
                .map(|(_, n)| FieldValue::owned_any(n.clone()));
            FieldFuture::Value(v)
        }));
    let page = |ctx: &async_graphql::dynamic::ResolverContext<'_>| {
        ctx.parent_value.downcast_ref::<Arc<Page>>().cloned()
    };
    let conn = Object::new(format!("{}Connection", m.type_name))
        .description(format!(
            "A page of {} rows (Relay connection).",
            m.type_name
        ))
        .field(Field::new(
            "edges",
            TypeRef::named_nn_list_nn(&edge_name),
            move |ctx| {
                let v = page(&ctx).map(|p| {
                    FieldValue::list(p.edges.iter().map(|e| FieldValue::owned_any(e.clone())))
                });
                FieldFuture::Value(v)
            },
        ))
        .field(Field::new(
            "nodes",
            TypeRef::named_nn_list_nn(&m.type_name),
            move |ctx| {
                let v = page(&ctx).map(|p| {
                    FieldValue::list(
                        p.edges
                            .iter()
                            .map(|(_, n)| FieldValue::owned_any(n.clone())),
                    )
                });
                FieldFuture::Value(v)
            },
        ))
        .field(Field::new(
            "pageInfo",
            TypeRef::named_nn("PageInfo"),
            move |ctx| FieldFuture::Value(page(&ctx).map(FieldValue::owned_any)),
        ))
        .field(Field::new(
            "totalCount",
            TypeRef::named_nn(TypeRef::INT),
            move |ctx| {
                let v = page(&ctx)
                    .and_then(|p| p.total)
                    .map(|t| FieldValue::value(i32::try_from(t).unwrap_or(i32::MAX)));
                FieldFuture::Value(v)
            },
        ));
    (conn, edge)
}
