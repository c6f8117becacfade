//! The change set a model derives, `{Model}Record`, with its `LifeRecord` impl; and
//! `#[derive(LifeRecord)]`, which only checks that the model derives `LifeModel`.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, Ident, Result, Type, Visibility};

use super::Column;
use crate::input::named_fields;
use crate::names::quote_ident;

/// What the record shares with its model.
pub(super) struct Record<'a> {
    pub model: &'a Ident,
    /// The model's visibility, which the record takes.
    pub vis: &'a Visibility,
    /// `{Model}Record`.
    pub record: &'a Ident,
    pub column_enum: &'a Ident,
    pub pk_type: &'a TokenStream,
    /// The body of `LifeRecord::primary_key`: the key from the record's fields.
    pub key: TokenStream,
    /// `#[lifeguard(hooks)]`: the record's writes run its `RecordHooks` impl.
    pub hooks: bool,
}

/// The record struct and its impls: `Default`, `Clone`, `Debug`, `LifeRecord`,
/// `From<Model>`.
pub(super) fn items(r: &Record, columns: &[&Column], keys: &[&Column]) -> TokenStream {
    let Record {
        model,
        vis,
        record,
        column_enum,
        pk_type,
        key: record_key,
        hooks,
    } = r;
    let lg = quote!(::lifeguard_core);
    let col_idents: Vec<&Ident> = columns.iter().map(|c| c.ident).collect();
    let col_vis: Vec<&Visibility> = columns.iter().map(|c| c.vis).collect();
    let col_types: Vec<&Type> = columns.iter().map(|c| c.ty).collect();
    let col_field_names: Vec<&str> = columns.iter().map(|c| c.field.as_str()).collect();
    let record_field_docs = columns
        .iter()
        .map(|c| format!("Column `{}`.", quote_ident(&c.name)));
    let record_doc = format!(
        "The change set of [`{model}`]: every stored field as an \
         [`ActiveValue`](::lifeguard_core::model::ActiveValue). Insert, update, save or \
         delete it with [`LifeRecord`](::lifeguard_core::model::LifeRecord)."
    );
    let field_count = columns.len();
    let record_fields = columns.iter().map(|c| {
        let ident = c.ident;
        let ty = c.ty;
        let variant = &c.variant;
        quote_spanned!(ty.span()=> (#column_enum::#variant, self.#ident.field()))
    });
    let record_clone = columns.iter().map(|c| {
        let ident = c.ident;
        let ty = c.ty;
        quote_spanned!(ty.span()=> #ident: ::core::clone::Clone::clone(&self.#ident))
    });
    let key_unchanged = keys.iter().map(|c| {
        let ident = c.ident;
        quote!(::core::matches!(self.#ident, #lg::model::ActiveValue::Unchanged(_)))
    });
    let record_name = record.to_string();
    let input_impl = input_record(record, columns);
    let hook_methods = if *hooks {
        quote! {
            const __LIFEGUARD_HOOKS: bool = true;

            fn __lifeguard_before(&mut self, op: #lg::__private::WriteOp) -> #lg::Result<()> {
                #lg::__private::run_before::<Self>(self, op)
            }

            fn __lifeguard_after(
                &self,
                done: #lg::__private::WriteDone<'_, #model>,
            ) -> #lg::Result<()> {
                #lg::__private::run_after::<Self>(self, done)
            }
        }
    } else {
        TokenStream::new()
    };

    quote! {
        #[doc = #record_doc]
        #vis struct #record {
            #(
                #[doc = #record_field_docs]
                #col_vis #col_idents: #lg::model::ActiveValue<#col_types>,
            )*
        }

        #[automatically_derived]
        impl ::core::default::Default for #record {
            fn default() -> Self {
                Self {
                    #(#col_idents: #lg::model::ActiveValue::NotSet,)*
                }
            }
        }

        #[automatically_derived]
        impl ::core::clone::Clone for #record {
            fn clone(&self) -> Self {
                Self {
                    #(#record_clone,)*
                }
            }
        }

        /// Shows which fields are set, not their values (which need not be `Debug`).
        #[automatically_derived]
        impl ::core::fmt::Debug for #record {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                struct State<'a, T>(&'a #lg::model::ActiveValue<T>);
                impl<T> ::core::fmt::Debug for State<'_, T> {
                    fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                        match self.0 {
                            #lg::model::ActiveValue::NotSet => f.write_str("NotSet"),
                            #lg::model::ActiveValue::Set(_) => f.write_str("Set(..)"),
                            #lg::model::ActiveValue::Unchanged(_) => f.write_str("Unchanged(..)"),
                            #lg::model::ActiveValue::Expr(e) => {
                                f.write_str("Expr(")?;
                                ::core::fmt::Debug::fmt(e, f)?;
                                f.write_str(")")
                            }
                        }
                    }
                }
                f.debug_struct(#record_name)
                    #(.field(#col_field_names, &State(&self.#col_idents)))*
                    .finish()
            }
        }

        #[automatically_derived]
        impl #lg::model::LifeRecord for #record {
            type Model = #model;

            type Fields<'a> = [(#column_enum, #lg::model::Field<'a>); #field_count];

            fn fields(&self) -> Self::Fields<'_> {
                [#(#record_fields),*]
            }

            fn primary_key(&self) -> ::core::option::Option<#pk_type> {
                #record_key
            }

            fn key_unchanged(&self) -> bool {
                #(#key_unchanged)&&*
            }

            #hook_methods
        }

        #input_impl

        #[automatically_derived]
        impl ::core::convert::From<#model> for #record {
            fn from(model: #model) -> Self {
                <#model as #lg::model::LifeModel>::into_record(model)
            }
        }
    }
}

/// `InputRecord` for the record: each column's field type goes through the autoref probe of
/// `__private`, so a type without `FromInput` compiles and reports `NotWritable`. Plain
/// `quote!` (call-site spans) keeps lints on the user's crate away from the probe calls.
fn input_record(record: &Ident, columns: &[&Column]) -> TokenStream {
    let lg = quote!(::lifeguard_core);
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let types: Vec<&Type> = columns.iter().map(|c| c.ty).collect();
    let idents: Vec<&Ident> = columns.iter().map(|c| c.ident).collect();
    quote! {
        #[automatically_derived]
        impl #lg::model::InputRecord for #record {
            fn accepts_input(column: &str) -> bool {
                #[allow(unused_imports)]
                use #lg::__private::{Fallback as _, ViaFromInput as _};
                match column {
                    #(#names => (&&#lg::__private::Probe::<#types>::NEW).input_accepts(),)*
                    _ => false,
                }
            }

            fn set_input(
                &mut self,
                column: &str,
                value: &#lg::__private::JsonValue,
            ) -> ::core::result::Result<(), #lg::model::InputError> {
                #[allow(unused_imports)]
                use #lg::__private::{Fallback as _, ViaFromInput as _};
                match column {
                    #(#names => {
                        self.#idents = #lg::model::ActiveValue::Set(
                            (&&#lg::__private::Probe::<#types>::NEW).input_parse(value)?,
                        );
                        ::core::result::Result::Ok(())
                    })*
                    _ => ::core::result::Result::Err(#lg::model::InputError::UnknownColumn),
                }
            }

            fn input_enum(
                column: &str,
            ) -> ::core::option::Option<&'static [#lg::model::EnumVariant]> {
                #[allow(unused_imports)]
                use #lg::__private::{NoEnum as _, ViaEnum as _};
                match column {
                    #(#names => (&&#lg::__private::Probe::<#types>::NEW).input_enum(),)*
                    _ => ::core::option::Option::None,
                }
            }
        }
    }
}

/// `#[derive(LifeRecord)]`: the record comes from `LifeModel`; this only checks the model
/// derives it, so a forgotten `LifeModel` reads as a missing trait, not a missing type.
pub fn expand_record(input: &DeriveInput) -> Result<TokenStream> {
    named_fields(input, "LifeRecord")?;
    if input.generics.lt_token.is_some() {
        // LifeModel reports generics itself.
        return Ok(TokenStream::new());
    }
    let model = &input.ident;
    Ok(quote_spanned! {model.span()=>
        const _: () = {
            fn __lifeguard_record_needs_derive_life_model<
                T: ::lifeguard_core::model::LifeModel,
            >() {
            }
            let _ = __lifeguard_record_needs_derive_life_model::<#model>;
        };
    })
}
