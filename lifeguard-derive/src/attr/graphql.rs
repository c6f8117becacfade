//! `graphql(...)` inside `#[lifeguard(...)]`: how generated APIs expose a model and its
//! fields.

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::{Error, LitStr, Result};

use super::{flag, key_name, one_of, string};

/// `graphql(name = "Writer", read_only)` on the struct, `graphql(skip)`,
/// `graphql(name = "fullName")` or `graphql(read_only)` on a field.
#[derive(Default)]
pub struct GraphqlAttr {
    pub name: Option<LitStr>,
    pub read_only: Option<Span>,
    pub skip: Option<Span>,
}

/// Whether `name` is a GraphQL name (`/[_A-Za-z][_0-9A-Za-z]*/`) not reserved for
/// introspection (`__`).
pub(crate) fn is_graphql_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        && !name.starts_with("__")
}

/// `graphql(...)`: `on_field` decides the keys (`name`, `read_only`, and `skip` on a field).
pub(super) fn graphql(meta: &ParseNestedMeta, on_field: bool) -> Result<GraphqlAttr> {
    let keys: &[&str] = if on_field {
        &["name", "skip", "read_only"]
    } else {
        &["name", "read_only"]
    };
    let usage = if on_field {
        "write `graphql(skip)`, `graphql(name = \"fullName\")` or `graphql(read_only)`"
    } else {
        "write `graphql(name = \"Writer\", read_only)`"
    };
    if !meta.input.peek(syn::token::Paren) {
        return Err(Error::new_spanned(
            &meta.path,
            format!("`graphql` takes its hints in parentheses: {usage}"),
        ));
    }
    let mut out = GraphqlAttr::default();
    meta.parse_nested_meta(|inner| {
        let key = key_name(&inner);
        match key.as_str() {
            "name" => {
                string(&inner, "name", &mut out.name)?;
                match &out.name {
                    Some(lit) if !is_graphql_name(&lit.value()) => Err(Error::new_spanned(
                        lit,
                        "`name` must be a GraphQL name: letters, digits and `_`, not starting \
                         with a digit or `__`",
                    )),
                    _ => Ok(()),
                }
            }
            "read_only" => flag(&inner, "read_only", &mut out.read_only),
            "skip" if on_field => flag(&inner, "skip", &mut out.skip),
            "skip" => Err(Error::new_spanned(
                &inner.path,
                "`graphql(skip)` belongs on a field: a model is exposed once registered",
            )),
            _ => Err(Error::new_spanned(
                &inner.path,
                format!(
                    "unknown `graphql` hint `{key}`; expected one of {}",
                    one_of(keys)
                ),
            )),
        }
    })?;
    if let Some(skip) = out.skip {
        if out.name.is_some() || out.read_only.is_some() {
            return Err(Error::new(
                skip,
                "`skip` hides the field: `name` and `read_only` do not apply to it",
            ));
        }
    }
    Ok(out)
}
