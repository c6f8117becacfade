//! The relation attributes: their checks, the model's `RELATIONS` list and one
//! `impl Related<Target>` each.

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Error, Ident, LitStr, Path};

use super::Column;
use crate::attr::{Errors, RelationAttr, RelationKind};
use crate::names::option_inner;

/// A path as written, without the spaces tokens print with (`crate::blog::Post`).
fn path_text(path: &Path) -> String {
    quote!(#path).to_string().replace(' ', "")
}

/// Checks what can be checked here: `from` names a column of this model, and no model is
/// the target twice. The other models' columns are checked at compile time by constant
/// assertions ([`related_impl`]).
pub(super) fn check(
    model: &Ident,
    relations: &[RelationAttr],
    columns: &[&Column],
    errors: &mut Errors,
) {
    let mut targets: HashMap<String, Span> = HashMap::new();
    for rel in relations {
        if !columns.iter().any(|c| c.name == rel.from.value()) {
            errors.push(Error::new_spanned(
                &rel.from,
                format!(
                    "`from` names no column of `{model}`: `{}` is not one of {}",
                    rel.from.value(),
                    columns
                        .iter()
                        .map(|c| format!("`{}`", c.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let target_text = path_text(&rel.target);
        if targets
            .insert(target_text.clone(), rel.target.span())
            .is_some()
        {
            errors.push(Error::new_spanned(
                &rel.target,
                format!(
                    "`{model}` is related to `{target_text}` twice; a model has one relation \
                     to each other model"
                ),
            ));
        }
    }
}

/// The value of `LifeModel::RELATIONS`: one `RelationDef` per attribute, in declaration
/// order, all constants (the other models' tables are their `QUALIFIED` constants).
pub(super) fn defs(relations: &[RelationAttr]) -> TokenStream {
    let lg = quote!(::lifeguard_core);
    let defs = relations.iter().map(|rel| {
        let target = &rel.target;
        let to_model = path_text(target);
        let (from, to) = (rel.from.value(), rel.to.value());
        let kind = match rel.kind {
            RelationKind::HasMany => quote!(HasMany),
            RelationKind::HasOne => quote!(HasOne),
            RelationKind::BelongsTo => quote!(BelongsTo),
            RelationKind::HasManyThrough => quote!(ManyToMany),
        };
        let via = match &rel.via {
            Some((via, via_from, via_to)) => {
                let (via_from, via_to) = (via_from.value(), via_to.value());
                quote! {
                    ::core::option::Option::Some(#lg::model::ViaDef {
                        table: <#via as #lg::model::LifeModel>::QUALIFIED,
                        from_column: #via_from,
                        to_column: #via_to,
                        soft_delete: <#via as #lg::model::LifeModel>::SOFT_DELETE,
                    })
                }
            }
            None => quote!(::core::option::Option::None),
        };
        // Spanned on the attribute: a target that is no model is reported there.
        quote_spanned! {rel.key.span()=>
            #lg::model::RelationDef {
                kind: #lg::model::RelationKind::#kind,
                to_model: #to_model,
                from_table: <Self as #lg::model::LifeModel>::QUALIFIED,
                from_column: #from,
                to_table: <#target as #lg::model::LifeModel>::QUALIFIED,
                to_column: #to,
                via: #via,
            }
        }
    });
    quote!(&[#(#defs),*])
}

/// `impl Related<Target> for Model` for the relation at `index` of `RELATIONS`, and
/// constant checks that the other models have the columns the relation names.
pub(super) fn related_impl(
    model: &Ident,
    index: usize,
    rel: &RelationAttr,
    columns: &[&Column],
) -> TokenStream {
    let lg = quote!(::lifeguard_core);
    let target = &rel.target;
    let from = rel.from.value();
    let to = rel.to.value();
    let column = columns
        .iter()
        .find(|c| c.name == from)
        .expect("`from` was checked against the columns");
    let field = column.ident;
    let (key_ty, related_key) = match option_inner(column.ty) {
        Some(inner) => (inner, quote!(::core::clone::Clone::clone(&self.#field))),
        None => (
            column.ty,
            quote!(::core::option::Option::Some(::core::clone::Clone::clone(&self.#field))),
        ),
    };
    let target_text = path_text(target);
    let check = |owner: &Path, lit: &LitStr, key: &str| {
        let msg = format!(
            "{} `{}`: `{}` has no column `{}` (`{key}` names an SQL column)",
            rel.kind.key(),
            model,
            path_text(owner),
            lit.value()
        );
        let name = lit.value();
        quote_spanned! {lit.span()=>
            const _: () = ::core::assert!(
                #lg::model::has_column(<#owner as #lg::model::LifeModel>::COLUMNS, #name),
                #msg
            );
        }
    };
    let mut checks = vec![check(target, &rel.to, "to")];
    if let Some((via, via_from, via_to)) = &rel.via {
        checks.push(check(via, via_from, "via_from"));
        checks.push(check(via, via_to, "via_to"));
    }
    let doc = format!(
        "`{}({target_text}, from = \"{from}\", to = \"{to}\")`",
        rel.kind.key()
    );
    quote_spanned! {rel.key.span()=>
        #[doc = #doc]
        #[automatically_derived]
        impl #lg::model::Related<#target> for #model {
            type Key = #key_ty;

            fn def() -> #lg::model::RelationDef {
                <Self as #lg::model::LifeModel>::RELATIONS[#index]
            }

            fn related_key(&self) -> ::core::option::Option<#key_ty> {
                #related_key
            }

            fn keys_param(keys: ::std::vec::Vec<#key_ty>) -> #lg::query::Expr {
                #lg::query::Expr::val(keys)
            }
        }

        #(#checks)*
    }
}
