//! The typed column constants: `User::COL_EMAIL`, one per stored field.
//!
//! The names take a `COL_` prefix because the model's own namespace also holds
//! `LifeModel`'s constants, and two of those (`CREATED_AT`, `UPDATED_AT`) are among the
//! most common column names: a bare `User::CREATED_AT` constant would shadow the trait's,
//! and refusing such fields would reject most models. No `LifeModel` item starts with
//! `COL_`, so no field can collide with one.

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Error, Ident};

use super::Column;
use crate::attr::Errors;
use crate::names::quote_ident;

/// The prefix of every typed column constant.
const PREFIX: &str = "COL_";

/// `COL_` and the field name in upper case; `None` (with the error recorded on the field)
/// when that is not an identifier or another field already gives it (`aB` and `Ab`).
pub(super) fn const_name(
    ident: &Ident,
    field: &str,
    seen: &mut HashMap<String, Span>,
    errors: &mut Errors,
) -> Option<Ident> {
    let name = format!("{PREFIX}{}", field.to_uppercase());
    if syn::parse_str::<Ident>(&name).is_err() {
        errors.push(Error::new_spanned(
            ident,
            format!("cannot name a typed column constant `{name}` after field `{field}`; rename the field"),
        ));
        return None;
    }
    if seen.insert(name.clone(), ident.span()).is_some() {
        errors.push(Error::new_spanned(
            ident,
            format!(
                "field `{field}` gives the typed column constant `{name}`, \
                 which another field already gives"
            ),
        ));
        return None;
    }
    Some(Ident::new(&name, ident.span()))
}

/// `impl User { pub const COL_EMAIL: TypedColumn<UserColumn, String> = ...; }`, each
/// constant with its field's visibility and its field's type as written.
pub(super) fn typed_columns(
    model: &Ident,
    column_enum: &Ident,
    columns: &[&Column],
) -> TokenStream {
    let lg = quote!(::lifeguard_core);
    let consts = columns.iter().map(|c| {
        let vis = c.vis;
        let ty = c.ty;
        let name = &c.typed;
        let variant = &c.variant;
        let doc = format!(
            "Column `{}` (field `{}`), typed: its comparisons take values of the field's \
             type ([`TypedColumn`]({lg}::query::TypedColumn)); `{column_enum}::{variant}` \
             is the untyped column.",
            quote_ident(&c.name),
            c.field,
            lg = "::lifeguard_core",
        );
        // Spanned on the type: an error about it points at the field.
        quote_spanned! {ty.span()=>
            #[doc = #doc]
            #vis const #name: #lg::query::TypedColumn<#column_enum, #ty> =
                #lg::query::TypedColumn::new(#column_enum::#variant);
        }
    });
    quote! {
        // Every field gets one whether or not the crate uses it.
        #[allow(dead_code)]
        impl #model {
            #(#consts)*
        }
    }
}
