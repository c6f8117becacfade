//! What the schema knows of one registered model, without its Rust type: names, exposed
//! columns, relations (resolved to other registered models), and its writer (the ORM
//! monomorphised for the type, see [`crate::mutation`]).

use std::collections::HashMap;

use lifeguard_core::model::{InputRecord, LifeModel, RelationDef, RelationKind};

use crate::column::Kind;
use crate::enumeration::Enumeration;
use crate::mutation::Writer;

/// One column as the schema shows it.
#[derive(Debug, Clone)]
pub(crate) struct ColumnInfo {
    /// SQL name, unquoted.
    pub sql: &'static str,
    /// GraphQL field name.
    pub field: String,
    pub kind: Kind,
    pub nullable: bool,
    pub primary_key: bool,
    /// The insert may leave it out (serial, default, timestamps).
    pub optional_on_insert: bool,
    /// Offered in the create and update inputs.
    pub writable: bool,
    /// For a `LifeEnum` column: its GraphQL enum type.
    pub enumeration: Option<Enumeration>,
}

/// One relation field.
#[derive(Debug, Clone)]
pub(crate) struct RelationInfo {
    pub field: String,
    pub def: RelationDef,
    /// Index of the target in the schema's model list.
    pub target: usize,
    /// The owner's column whose value links the rows.
    pub parent_column: &'static str,
    /// The child query's column that holds that value (qualified SQL).
    pub child_key: String,
    /// The kind of `child_key` (the array parameter's element type).
    pub key_kind: Kind,
}

impl RelationInfo {
    /// Whether the field is a list.
    pub(crate) fn many(&self) -> bool {
        matches!(
            self.def.kind,
            RelationKind::HasMany | RelationKind::ManyToMany
        )
    }
}

/// What a selected field of a model's object type is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FieldRef {
    Column(usize),
    Relation(usize),
}

/// A registered model.
pub(crate) struct ModelInfo {
    /// The Rust type's name (last path segment), as relation attributes name it.
    pub rust_name: &'static str,
    /// GraphQL object type name.
    pub type_name: String,
    /// Root field names: one row, a list, a connection.
    pub singular: String,
    pub plural: String,
    /// `"schema"."table"`, quoted.
    pub table: &'static str,
    pub columns: Vec<ColumnInfo>,
    /// Every column the model stores (exposed or not): relations may link through hidden ones.
    pub stored: Vec<(&'static str, Kind)>,
    pub soft_delete: Option<&'static str>,
    pub relations: Vec<RelationInfo>,
    pub fields: HashMap<String, FieldRef>,
    pub raw_relations: &'static [RelationDef],
    pub writer: Option<Writer>,
}

impl ModelInfo {
    /// The entry for `M`; relations are resolved once every model is registered.
    pub(crate) fn of<M: LifeModel>(writer: Option<Writer>) -> ModelInfo
    where
        M::Record: InputRecord,
    {
        let exposure = M::EXPOSURE;
        let rust_name = last_segment(std::any::type_name::<M>());
        let type_name = exposure.name.unwrap_or(rust_name).to_owned();
        let singular = lower_first(&type_name);
        let mut plural = pluralize(&singular);
        if plural == singular {
            plural.push_str("List");
        }
        let read_only = exposure.read_only;
        let columns: Vec<ColumnInfo> = M::COLUMNS
            .iter()
            .filter_map(|c| {
                let hint = exposure.field(c.name);
                if hint.is_some_and(|h| h.skip) {
                    return None;
                }
                let field = hint
                    .and_then(|h| h.name)
                    .map_or_else(|| camel(c.field), str::to_owned);
                let auto = c.auto_increment
                    || c.default_expr.is_some()
                    || M::CREATED_AT == Some(c.name)
                    || M::UPDATED_AT == Some(c.name)
                    || M::SOFT_DELETE == Some(c.name);
                let writable = !read_only
                    && !hint.is_some_and(|h| h.read_only)
                    && M::SOFT_DELETE != Some(c.name)
                    && writer.as_ref().is_some_and(|w| (w.accepts)(c.name));
                let kind = Kind::of(c.sql_type);
                let enumeration = <M::Record as InputRecord>::input_enum(c.name).and_then(|v| {
                    Enumeration::of(format!("{type_name}{}", upper_first(&field)), kind, v)
                });
                Some(ColumnInfo {
                    sql: c.name,
                    field,
                    kind,
                    enumeration,
                    nullable: c.nullable,
                    primary_key: c.primary_key,
                    optional_on_insert: auto || c.nullable,
                    writable,
                })
            })
            .collect();
        let fields = columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.field.clone(), FieldRef::Column(i)))
            .collect();
        ModelInfo {
            rust_name,
            type_name,
            singular,
            plural,
            table: M::QUALIFIED,
            stored: M::COLUMNS
                .iter()
                .map(|c| (c.name, Kind::of(c.sql_type)))
                .collect(),
            columns,
            soft_delete: M::SOFT_DELETE,
            relations: Vec::new(),
            fields,
            raw_relations: M::RELATIONS,
            writer: if read_only { None } else { writer },
        }
    }

    /// The kind of a stored column.
    pub(crate) fn kind_of(&self, sql: &str) -> Option<Kind> {
        self.stored.iter().find(|(n, _)| *n == sql).map(|(_, k)| *k)
    }

    /// The primary-key columns (exposed or not), in key order.
    pub(crate) fn key_columns(&self) -> impl Iterator<Item = &ColumnInfo> {
        self.columns.iter().filter(|c| c.primary_key)
    }
}

/// `a::b::Author<X>` -> `Author`.
pub(crate) fn last_segment(path: &'static str) -> &'static str {
    let base = path.split('<').next().unwrap_or(path);
    base.rsplit("::").next().unwrap_or(base).trim()
}

/// `author_id` -> `authorId`.
pub(crate) fn camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' && !out.is_empty() {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// `BookReview` -> `bookReview`.
pub(crate) fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map_or_else(String::new, |f| {
        f.to_lowercase().chain(chars).collect::<String>()
    })
}

/// `Author` -> `Authors`, `Category` -> `Categories`, `Box` -> `Boxes` (English, roughly).
pub(crate) fn pluralize(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    if lower.ends_with('y')
        && !lower.ends_with("ay")
        && !lower.ends_with("ey")
        && !lower.ends_with("oy")
    {
        format!("{}ies", &s[..s.len() - 1])
    } else if ["s", "x", "z", "ch", "sh"]
        .iter()
        .any(|e| lower.ends_with(e))
    {
        format!("{s}es")
    } else {
        format!("{s}s")
    }
}

/// `id` -> `Id`.
pub(crate) fn upper_first(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map_or_else(String::new, |f| {
        f.to_uppercase().chain(chars).collect::<String>()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_graphql_conventions() {
        assert_eq!(camel("author_id"), "authorId");
        assert_eq!(camel("_private"), "_private");
        assert_eq!(pluralize("category"), "categories");
        assert_eq!(pluralize("key"), "keys");
        assert_eq!(pluralize("box"), "boxes");
        assert_eq!(pluralize("author"), "authors");
        assert_eq!(lower_first("BookReview"), "bookReview");
        assert_eq!(last_segment("crate::blog::Post"), "Post");
    }
}
