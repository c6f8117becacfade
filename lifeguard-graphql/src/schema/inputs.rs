//! The input types: a filter per scalar and per model, the order, and the create and update
//! inputs.

use async_graphql::dynamic::{Enum, InputObject, InputValue, TypeRef};

use crate::column::Kind;
use crate::model::ModelInfo;

/// The direction enum every `orderBy` item uses.
pub(crate) const DIRECTION: &str = "OrderDirection";

/// `OrderDirection`: `ASC` and `DESC` put NULLs where PostgreSQL does (last, first).
pub(crate) fn direction() -> Enum {
    Enum::new(DIRECTION)
        .description(
            "How a field orders rows. ASC puts NULLs last and DESC first, as PostgreSQL does.",
        )
        .items([
            "ASC",
            "DESC",
            "ASC_NULLS_FIRST",
            "ASC_NULLS_LAST",
            "DESC_NULLS_FIRST",
            "DESC_NULLS_LAST",
        ])
}

/// The filter input of one scalar, e.g. `IntFilter`.
pub(crate) fn scalar_filter(scalar: &str, ordered: bool, text: bool) -> InputObject {
    let list = TypeRef::named_nn_list(scalar);
    let mut f = InputObject::new(filter_name(scalar))
        .description(format!(
            "Conditions on a {scalar} field; all of them must hold."
        ))
        .field(InputValue::new("eq", TypeRef::named(scalar)))
        .field(InputValue::new("ne", TypeRef::named(scalar)));
    if ordered {
        for op in ["gt", "gte", "lt", "lte"] {
            f = f.field(InputValue::new(op, TypeRef::named(scalar)));
        }
    }
    if scalar != "JSON" && scalar != "Boolean" {
        f = f
            .field(InputValue::new("in", list.clone()))
            .field(InputValue::new("nin", list));
    }
    if text {
        f = f
            .field(InputValue::new("like", TypeRef::named(scalar)))
            .field(InputValue::new("ilike", TypeRef::named(scalar)));
    }
    f.field(InputValue::new("isNull", TypeRef::named(TypeRef::BOOLEAN)))
}

/// `IntFilter` for `Int`.
pub(crate) fn filter_name(scalar: &str) -> String {
    format!("{scalar}Filter")
}

/// Every scalar filter the columns of `models` need, once each.
pub(crate) fn scalar_filters(models: &[ModelInfo]) -> Vec<InputObject> {
    let mut seen: Vec<&'static str> = Vec::new();
    let mut out = Vec::new();
    for c in models.iter().flat_map(|m| &m.columns) {
        if matches!(c.kind, Kind::Array(_)) {
            continue;
        }
        let scalar = c.kind.scalar();
        if !seen.contains(&scalar) {
            seen.push(scalar);
            out.push(scalar_filter(
                scalar,
                c.kind.ordered(),
                c.kind == Kind::Text,
            ));
        }
    }
    // An array column can only be tested for NULL.
    if models
        .iter()
        .flat_map(|m| &m.columns)
        .any(|c| matches!(c.kind, Kind::Array(_)))
    {
        out.push(
            InputObject::new("ListFilter")
                .description("Conditions on a list field.")
                .field(InputValue::new("isNull", TypeRef::named(TypeRef::BOOLEAN))),
        );
    }
    out
}

/// The enum types of `LifeEnum` columns, and a filter for each.
pub(crate) fn enums(models: &[ModelInfo]) -> Vec<(Enum, InputObject)> {
    models
        .iter()
        .flat_map(|m| &m.columns)
        .filter_map(|c| c.enumeration.as_ref())
        .map(|e| {
            let name = &e.name;
            let t = Enum::new(name)
                .description(format!("The values of {name}."))
                .items(e.names());
            (t, scalar_filter(name, false, false))
        })
        .collect()
}

/// The type a column's filter and inputs use: its enum, or its scalar.
fn value_type(c: &crate::model::ColumnInfo) -> &str {
    c.enumeration
        .as_ref()
        .map_or(c.kind.scalar(), |e| e.name.as_str())
}

/// `AuthorFilter`: a condition per field, and `and`, `or`, `not`.
pub(crate) fn model_filter(m: &ModelInfo) -> InputObject {
    let name = filter_name(&m.type_name);
    let mut f = InputObject::new(&name)
        .description(format!(
            "Which {} rows; every condition given must hold.",
            m.type_name
        ))
        .field(InputValue::new("and", TypeRef::named_nn_list(&name)))
        .field(InputValue::new("or", TypeRef::named_nn_list(&name)))
        .field(InputValue::new("not", TypeRef::named(&name)));
    for c in &m.columns {
        let ty = match c.kind {
            Kind::Array(_) => "ListFilter".to_owned(),
            _ => filter_name(value_type(c)),
        };
        f = f.field(InputValue::new(&c.field, TypeRef::named(ty)));
    }
    f
}

/// `AuthorOrderBy`: one field and its direction per item (`@oneOf`).
pub(crate) fn model_order(m: &ModelInfo) -> Option<InputObject> {
    let mut o = InputObject::new(order_name(m))
        .description(format!(
            "One field to order {} rows by; list several for ties. The primary key breaks the last ties.",
            m.type_name
        ))
        .oneof();
    let mut any = false;
    for c in m.columns.iter().filter(|c| c.kind.ordered()) {
        o = o.field(InputValue::new(&c.field, TypeRef::named(DIRECTION)));
        any = true;
    }
    any.then_some(o)
}

/// `AuthorOrderBy`.
pub(crate) fn order_name(m: &ModelInfo) -> String {
    format!("{}OrderBy", m.type_name)
}

/// The field's input type: its enum or scalar, a list for arrays.
fn input_type(c: &crate::model::ColumnInfo, required: bool) -> TypeRef {
    match (c.kind, required) {
        (Kind::Array(_), true) => TypeRef::named_list_nn(c.kind.scalar()),
        (Kind::Array(_), false) => TypeRef::named_list(c.kind.scalar()),
        (_, true) => TypeRef::named_nn(value_type(c)),
        (_, false) => TypeRef::named(value_type(c)),
    }
}

/// `AuthorCreateInput` (fields the database cannot fill in are required) and
/// `AuthorUpdateInput` (every field optional); `None` when nothing is writable.
pub(crate) fn write_inputs(m: &ModelInfo) -> Option<(InputObject, InputObject)> {
    let writable: Vec<_> = m.columns.iter().filter(|c| c.writable).collect();
    if writable.is_empty() {
        return None;
    }
    let mut create = InputObject::new(format!("{}CreateInput", m.type_name))
        .description(format!("A new {} row.", m.type_name));
    let mut update = InputObject::new(format!("{}UpdateInput", m.type_name)).description(format!(
        "The fields of a {} row to change; absent fields stay.",
        m.type_name
    ));
    for c in writable {
        create = create.field(InputValue::new(
            &c.field,
            input_type(c, !c.optional_on_insert),
        ));
        update = update.field(InputValue::new(&c.field, input_type(c, false)));
    }
    Some((create, update))
}
