//! Relay's global object identification: every model with a key implements
//! `interface Node { nodeId: ID! }`, and `Query.node(nodeId:)` reads any such row back by it.
//!
//! The field is `nodeId`, not Relay's default `id`, because a model's own `id` column keeps
//! its name and type (`id: BigInt!`); Relay takes the name as a setting
//! (`nodeInterfaceIdField`), Apollo's cache keys by `__typename` and `id` as before. The
//! identifier is the type name and the key values, as JSON in unpadded base64url: opaque to
//! clients, stable across releases while the type keeps its name and key.

use std::sync::Arc;

use async_graphql::dynamic::{
    Field, FieldFuture, FieldValue, InputValue, Interface, InterfaceField, Object, ResolverContext,
    TypeRef,
};
use async_graphql::{Name, Value};
use base64::Engine;

use crate::error::LoadError;
use crate::load::Node;
use crate::model::ModelInfo;
use crate::plan::{key_condition, Paging};
use crate::schema::roots::{finish, load, planner, Resolved};
use crate::schema::{SchemaError, Shared};

/// The interface's name and its one field.
pub(crate) const NODE: &str = "Node";
const NODE_ID: &str = "nodeId";

/// Whether `m` implements `Node`: it needs a key to be read back by.
pub(crate) fn identifiable(m: &ModelInfo) -> bool {
    m.key_columns().next().is_some()
}

/// Refuses models whose names would clash with the interface or its field.
pub(crate) fn check(models: &[ModelInfo]) -> Result<(), SchemaError> {
    for m in models {
        if m.type_name == NODE {
            return Err(SchemaError(format!(
                "a model is named {NODE}, the Relay interface's name; rename it with graphql(name)"
            )));
        }
        if identifiable(m) && m.fields.contains_key(NODE_ID) {
            return Err(SchemaError(format!(
                "{}: a field is named {NODE_ID}, the global identifier's name; rename it with graphql(name)",
                m.type_name
            )));
        }
    }
    Ok(())
}

/// The `Node` interface.
pub(crate) fn interface() -> Interface {
    Interface::new(NODE)
        .description("A row that `node(nodeId:)` reads back by its global identifier.")
        .field(InterfaceField::new(NODE_ID, TypeRef::named_nn(TypeRef::ID)))
}

/// `o`, the object type of `m`, implementing `Node`.
pub(crate) fn implement(o: Object, m: &ModelInfo) -> Object {
    let type_name = m.type_name.clone();
    let keys: Vec<&'static str> = m.key_columns().map(|k| k.sql).collect();
    o.implement(NODE).field(
        Field::new(NODE_ID, TypeRef::named_nn(TypeRef::ID), move |ctx| {
            let id = ctx
                .parent_value
                .downcast_ref::<Arc<Node>>()
                .map(|n| FieldValue::value(encode(&type_name, &keys, n)));
            FieldFuture::Value(id)
        })
        .description("The row's global identifier (Relay).".to_owned()),
    )
}

fn encode(type_name: &str, keys: &[&'static str], node: &Node) -> String {
    let mut parts = vec![serde_json::Value::String(type_name.to_owned())];
    parts.extend(
        keys.iter()
            .map(|k| node.get(k).clone().into_json().unwrap_or_default()),
    );
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::Value::Array(parts).to_string())
}

/// The model an identifier names and its key, as by-key arguments.
fn decode(shared: &Shared, id: &str) -> Result<(usize, Vec<(Name, Value)>), String> {
    let bad = || format!("nodeId: {id:?} is not a global identifier of this schema");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(id)
        .map_err(|_| bad())?;
    let parts: Vec<serde_json::Value> = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let (type_name, values) = parts.split_first().ok_or_else(bad)?;
    let i = shared
        .models
        .iter()
        .position(|m| identifiable(m) && type_name.as_str() == Some(m.type_name.as_str()))
        .ok_or_else(bad)?;
    let keys: Vec<_> = shared.models[i].key_columns().collect();
    if keys.len() != values.len() {
        return Err(bad());
    }
    keys.iter()
        .zip(values)
        .map(|(k, v)| {
            Ok((
                Name::new(&k.field),
                Value::from_json(v.clone()).map_err(|_| bad())?,
            ))
        })
        .collect::<Result<_, String>>()
        .map(|args| (i, args))
}

/// `Query.node(nodeId: ID!): Node`.
pub(crate) fn root_field(shared: &Arc<Shared>) -> Field {
    let s = shared.clone();
    Field::new("node", TypeRef::named(NODE), move |ctx| {
        finish(read(&s, &ctx))
    })
    .description("The row with this global identifier, or null.")
    .argument(InputValue::new(NODE_ID, TypeRef::named_nn(TypeRef::ID)))
}

fn read(shared: &Shared, ctx: &ResolverContext<'_>) -> Resolved {
    let id = ctx
        .args
        .try_get(NODE_ID)
        .and_then(|v| v.string().map(str::to_owned))
        .map_err(|e| LoadError::Input(e.message))?;
    let (i, key) = decode(shared, &id).map_err(LoadError::Input)?;
    let m = &shared.models[i];
    let cond = key_condition(m, &key).map_err(LoadError::Input)?;
    // The selection's fragments on other types name no column of this one: the planner
    // loads only what this type has.
    let plan = planner(shared)
        .plan(i, &[ctx.ctx.field()], &[], Paging::None)
        .map_err(LoadError::Input)?;
    let found = load(shared, &plan, cond, 1)?;
    Ok(found
        .into_iter()
        .next()
        .map(|n| FieldValue::owned_any(n).with_type(m.type_name.clone())))
}
