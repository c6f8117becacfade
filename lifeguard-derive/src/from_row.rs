//! `#[derive(FromRow)]`: decode a row by column name.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{parse_quote, DeriveInput, Result};

use crate::attr::{self, Derive, Errors};
use crate::input::named_fields;

pub fn expand(input: &DeriveInput) -> Result<TokenStream> {
    let fields = named_fields(input, "FromRow")?;
    let mut errors = Errors::default();
    attr::struct_attrs(&input.attrs, Derive::FromRow, &mut errors);

    let generic = !input.generics.params.is_empty();
    let mut generics = input.generics.clone();
    let mut inits = Vec::new();
    for f in &fields.named {
        let ident = f.ident.as_ref().expect("named fields have names");
        let ty = &f.ty;
        let fattrs = attr::field_attrs(&f.attrs, Derive::FromRow, &mut errors);
        if fattrs.ignore.is_some() {
            if generic {
                generics
                    .make_where_clause()
                    .predicates
                    .push(parse_quote!(#ty: ::core::default::Default));
            }
            inits.push(quote_spanned! {ty.span()=>
                #ident: <#ty as ::core::default::Default>::default()
            });
            continue;
        }
        let name = match &fattrs.column_name {
            Some(lit) => lit.value(),
            None => ident.unraw().to_string(),
        };
        if generic {
            generics
                .make_where_clause()
                .predicates
                .push(parse_quote!(#ty: for<'__lifeguard_row> ::lifeguard_core::pg::FromSql<'__lifeguard_row>));
        }
        inits.push(quote_spanned! {ty.span()=>
            #ident: row.try_get::<_, #ty>(#name)?
        });
    }
    errors.finish()?;

    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics ::lifeguard_core::model::FromRow for #ident #ty_generics #where_clause {
            fn from_row(row: &::lifeguard_core::pg::Row) -> ::lifeguard_core::Result<Self> {
                ::core::result::Result::Ok(Self {
                    #(#inits,)*
                })
            }
        }
    })
}
