//! `LifeModel::EXPOSURE` from the `graphql(...)` hints of the struct and its fields.

use proc_macro2::TokenStream;
use quote::quote;

use super::Column;
use crate::attr::GraphqlAttr;

/// The `EXPOSURE` constant, or nothing when no hint is written (the trait's default,
/// `Exposure::DEFAULT`, applies then).
pub(super) fn exposure_const(model: Option<&GraphqlAttr>, columns: &[&Column]) -> TokenStream {
    let hinted: Vec<(&Column, &GraphqlAttr)> = columns
        .iter()
        .filter_map(|c| c.graphql.as_ref().map(|g| (*c, g)))
        .collect();
    if model.is_none() && hinted.is_empty() {
        return TokenStream::new();
    }
    let lg = quote!(::lifeguard_core);
    let name_tokens = |g: Option<&GraphqlAttr>| match g.and_then(|g| g.name.as_ref()) {
        Some(lit) => quote!(::core::option::Option::Some(#lit)),
        None => quote!(::core::option::Option::None),
    };
    let name = name_tokens(model);
    let read_only = model.is_some_and(|g| g.read_only.is_some());
    let fields = hinted.iter().map(|(c, g)| {
        let column = &c.name;
        let name = name_tokens(Some(g));
        let skip = g.skip.is_some();
        let read_only = g.read_only.is_some();
        quote! {
            #lg::model::FieldExposure {
                column: #column,
                name: #name,
                skip: #skip,
                read_only: #read_only,
            }
        }
    });
    quote! {
        const EXPOSURE: #lg::model::Exposure = #lg::model::Exposure {
            name: #name,
            read_only: #read_only,
            fields: &[#(#fields),*],
        };
    }
}
