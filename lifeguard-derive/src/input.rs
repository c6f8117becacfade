//! Shape checks shared by the derives.

use quote::quote;
use syn::{Data, DeriveInput, Error, Fields, FieldsNamed, Result};

/// The named fields of a struct, or an error spanned on what is not one.
pub fn named_fields<'a>(input: &'a DeriveInput, derive: &str) -> Result<&'a FieldsNamed> {
    let ident = &input.ident;
    let msg = format!("#[derive({derive})] needs a struct with named fields");
    match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(named) => Ok(named),
            Fields::Unnamed(unnamed) => Err(Error::new_spanned(
                unnamed,
                format!("{msg}; tuple structs are not supported"),
            )),
            Fields::Unit => Err(Error::new_spanned(
                ident,
                format!("{msg}; unit structs are not supported"),
            )),
        },
        Data::Enum(e) => {
            let token = e.enum_token;
            Err(Error::new_spanned(
                quote!(#token #ident),
                format!("{msg}; enums are not supported"),
            ))
        }
        Data::Union(u) => {
            let token = u.union_token;
            Err(Error::new_spanned(
                quote!(#token #ident),
                format!("{msg}; unions are not supported"),
            ))
        }
    }
}
