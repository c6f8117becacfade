//! `#[derive(LifeEnum)]`: a fieldless Rust enum as a column value, stored as a label (a
//! native PostgreSQL enum or any text column) or as an integer.

use proc_macro2::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Error, Expr, Fields, Lit, LitStr, Result};

/// How the enum is stored.
enum Repr {
    /// The variant's label: native PostgreSQL enums, `text`, `varchar`.
    Text,
    /// The variant's discriminant in an integer column.
    Int(&'static str),
}

/// The renaming rule for labels.
#[derive(Clone, Copy)]
enum Rename {
    Snake,
    Lower,
    Upper,
    Kebab,
    AsIs,
}

impl Rename {
    fn apply(self, ident: &str) -> String {
        let words = split_words(ident);
        match self {
            Rename::Snake => words.join("_"),
            Rename::Kebab => words.join("-"),
            Rename::Lower => ident.to_lowercase(),
            Rename::Upper => ident.to_uppercase(),
            Rename::AsIs => ident.to_owned(),
        }
    }
}

/// `HappyPath` -> ["happy", "path"].
fn split_words(ident: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for c in ident.chars() {
        if c.is_uppercase() || words.is_empty() {
            words.push(c.to_lowercase().collect());
        } else {
            if let Some(last) = words.last_mut() {
                last.push(c);
            }
        }
    }
    words
}

struct Variant {
    ident: syn::Ident,
    label: String,
    value: i64,
}

pub fn expand(input: &DeriveInput) -> Result<TokenStream> {
    let ident = &input.ident;
    let Data::Enum(data) = &input.data else {
        return Err(Error::new_spanned(
            ident,
            "#[derive(LifeEnum)] needs an enum with unit variants",
        ));
    };
    if !input.generics.params.is_empty() {
        return Err(Error::new_spanned(
            &input.generics,
            "#[derive(LifeEnum)] does not support generic enums",
        ));
    }
    let mut repr = Repr::Text;
    let mut rename = Rename::Snake;
    for attr in input
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("lifeguard"))
    {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("repr") {
                let v: LitStr = meta.value()?.parse()?;
                repr = match v.value().as_str() {
                    "text" => Repr::Text,
                    "i16" => Repr::Int("i16"),
                    "i32" => Repr::Int("i32"),
                    "i64" => Repr::Int("i64"),
                    _ => {
                        return Err(Error::new_spanned(
                            v,
                            "repr must be \"text\", \"i16\", \"i32\" or \"i64\"",
                        ))
                    }
                };
                Ok(())
            } else if meta.path.is_ident("rename_all") {
                let v: LitStr = meta.value()?.parse()?;
                rename = match v.value().as_str() {
                    "snake_case" => Rename::Snake,
                    "lowercase" => Rename::Lower,
                    "UPPERCASE" => Rename::Upper,
                    "kebab-case" => Rename::Kebab,
                    "none" => Rename::AsIs,
                    _ => return Err(Error::new_spanned(
                        v,
                        "rename_all must be \"snake_case\", \"lowercase\", \"UPPERCASE\", \"kebab-case\" or \"none\"",
                    )),
                };
                Ok(())
            } else {
                Err(meta.error(
                    "unknown #[lifeguard(...)] key for LifeEnum; expected repr or rename_all",
                ))
            }
        })?;
    }
    let mut variants = Vec::new();
    let mut next = 0i64;
    for v in &data.variants {
        if !matches!(v.fields, Fields::Unit) {
            return Err(Error::new_spanned(
                &v.fields,
                "#[derive(LifeEnum)] variants cannot carry fields",
            ));
        }
        let mut label = rename.apply(&v.ident.to_string());
        for attr in v.attrs.iter().filter(|a| a.path().is_ident("lifeguard")) {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("rename") {
                    let lit: LitStr = meta.value()?.parse()?;
                    if lit.value().is_empty() {
                        return Err(Error::new_spanned(lit, "a label cannot be empty"));
                    }
                    label = lit.value();
                    Ok(())
                } else {
                    Err(meta.error("unknown #[lifeguard(...)] key on a variant; expected rename"))
                }
            })?;
        }
        let value = match &v.discriminant {
            Some((_, Expr::Lit(lit))) => match &lit.lit {
                Lit::Int(i) => i.base10_parse::<i64>()?,
                other => {
                    return Err(Error::new(
                        other.span(),
                        "a discriminant must be an integer",
                    ))
                }
            },
            Some((_, Expr::Unary(u))) if matches!(u.op, syn::UnOp::Neg(_)) => match &*u.expr {
                Expr::Lit(syn::ExprLit {
                    lit: Lit::Int(i), ..
                }) => -i.base10_parse::<i64>()?,
                other => {
                    return Err(Error::new(
                        other.span(),
                        "a discriminant must be an integer",
                    ))
                }
            },
            Some((_, other)) => {
                return Err(Error::new(
                    other.span(),
                    "a discriminant must be an integer literal",
                ))
            }
            None => next,
        };
        next = value + 1;
        if variants.iter().any(|x: &Variant| x.label == label) {
            return Err(Error::new_spanned(
                &v.ident,
                format!("two variants have the label {label:?}"),
            ));
        }
        variants.push(Variant {
            ident: v.ident.clone(),
            label,
            value,
        });
    }
    if variants.is_empty() {
        return Err(Error::new_spanned(
            ident,
            "#[derive(LifeEnum)] needs at least one variant",
        ));
    }
    let name = ident.to_string();
    let idents: Vec<_> = variants.iter().map(|v| &v.ident).collect();
    let (to_sql, from_sql, accepts) = match repr {
        Repr::Text => {
            let labels: Vec<_> = variants.iter().map(|v| v.label.as_str()).collect();
            let bytes: Vec<_> = labels
                .iter()
                .map(|l| syn::LitByteStr::new(l.as_bytes(), ident.span()))
                .collect();
            (
                quote! {
                    let label: &str = match self { #( #ident::#idents => #labels, )* };
                    <&str as ::lifeguard_core::pg::ToSql>::to_sql(&label, ty, out)
                },
                quote! {
                    match raw {
                        #( #bytes => ::core::result::Result::Ok(#ident::#idents), )*
                        other => ::core::result::Result::Err(::std::format!(
                            "{:?} is not a {} label", ::std::string::String::from_utf8_lossy(other), #name
                        ).into()),
                    }
                },
                quote! { ::lifeguard_core::__private::accepts_label(ty) },
            )
        }
        Repr::Int(int) => {
            let int: syn::Type = syn::parse_str(int)?;
            let values: Vec<_> = variants
                .iter()
                .map(|v| syn::LitInt::new(&v.value.to_string(), ident.span()))
                .collect();
            (
                quote! {
                    let value: #int = match self { #( #ident::#idents => #values, )* };
                    <#int as ::lifeguard_core::pg::ToSql>::to_sql(&value, ty, out)
                },
                quote! {
                    match <#int as ::lifeguard_core::pg::FromSql>::from_sql(ty, raw)? {
                        #( #values => ::core::result::Result::Ok(#ident::#idents), )*
                        other => ::core::result::Result::Err(::std::format!(
                            "{} is not a {} value", other, #name
                        ).into()),
                    }
                },
                quote! { <#int as ::lifeguard_core::pg::ToSql>::accepts(ty) },
            )
        }
    };
    let input = from_input(ident, &variants, &repr);
    let err = quote! { ::std::boxed::Box<dyn ::std::error::Error + ::core::marker::Sync + ::core::marker::Send> };
    Ok(quote! {
        impl ::lifeguard_core::pg::ToSql for #ident {
            fn to_sql(
                &self,
                ty: &::lifeguard_core::pg::Type,
                out: &mut ::lifeguard_core::__private::BytesMut,
            ) -> ::core::result::Result<::lifeguard_core::pg::types::IsNull, #err> {
                #to_sql
            }

            fn accepts(ty: &::lifeguard_core::pg::Type) -> bool {
                #accepts
            }

            fn to_sql_checked(
                &self,
                ty: &::lifeguard_core::pg::Type,
                out: &mut ::lifeguard_core::__private::BytesMut,
            ) -> ::core::result::Result<::lifeguard_core::pg::types::IsNull, #err> {
                ::lifeguard_core::__private::checked_to_sql(self, ty, out)
            }
        }

        impl<'a> ::lifeguard_core::pg::FromSql<'a> for #ident {
            fn from_sql(
                ty: &::lifeguard_core::pg::Type,
                raw: &'a [u8],
            ) -> ::core::result::Result<Self, #err> {
                #from_sql
            }

            fn accepts(ty: &::lifeguard_core::pg::Type) -> bool {
                #accepts
            }
        }

        #input
    })
}

/// The forms a GraphQL enum value takes: `IN_STOCK` for a variant `InStock` or a label
/// `in_stock` / `in-stock`.
fn graphql_forms(v: &Variant) -> [String; 2] {
    let label = v
        .label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    let variant = split_words(&v.ident.to_string()).join("_").to_uppercase();
    [label, variant]
}

/// `FromInput` from the label, or a GraphQL enum value (see [`graphql_forms`]), or for an
/// integer-stored enum the stored integer; `InputEnum` (each variant's label, label form and
/// stored integer).
fn from_input(ident: &syn::Ident, variants: &[Variant], repr: &Repr) -> TokenStream {
    let lg = quote!(::lifeguard_core);
    let name = ident.to_string();
    // Labels win over GraphQL forms (a form of one variant may be another's label), then
    // each form goes to the first variant that gives it: a repeated pattern would be an
    // `unreachable_patterns` warning in the user's crate.
    let mut seen: std::collections::HashSet<String> =
        variants.iter().map(|v| v.label.clone()).collect();
    let arms: Vec<TokenStream> = variants
        .iter()
        .map(|v| {
            let forms: Vec<String> = graphql_forms(v)
                .into_iter()
                .filter(|f| seen.insert(f.clone()))
                .collect();
            let label = &v.label;
            let vident = &v.ident;
            quote!(#label #(| #forms)* => ::core::result::Result::Ok(#ident::#vident),)
        })
        .collect();
    let idents: Vec<&syn::Ident> = variants.iter().map(|v| &v.ident).collect();
    let wrong_kind = quote! {
        ::core::result::Result::Err(#lg::__private::not_a_label_kind(value, #name))
    };
    let not_a_string = match repr {
        Repr::Int(_) => {
            let values = variants.iter().map(|v| v.value);
            quote! {
                match value.as_i64() {
                    ::core::option::Option::Some(number) => match number {
                        #( #values => ::core::result::Result::Ok(#ident::#idents), )*
                        _ => ::core::result::Result::Err(
                            #lg::__private::not_a_value(number, #name),
                        ),
                    },
                    ::core::option::Option::None => #wrong_kind,
                }
            }
        }
        Repr::Text => wrong_kind,
    };
    let entries = variants.iter().map(|v| {
        let label = &v.label;
        let [name, _] = graphql_forms(v);
        let name = if crate::attr::graphql::is_graphql_name(&name) {
            quote!(::core::option::Option::Some(#name))
        } else {
            quote!(::core::option::Option::None)
        };
        let stored = match repr {
            Repr::Int(_) => {
                let value = v.value;
                quote!(::core::option::Option::Some(#value))
            }
            Repr::Text => quote!(::core::option::Option::None),
        };
        quote!(#lg::model::EnumVariant { label: #label, name: #name, stored: #stored })
    });
    quote! {
        impl #lg::model::FromInput for #ident {
            fn from_input(
                value: &#lg::__private::JsonValue,
            ) -> ::core::result::Result<Self, ::std::string::String> {
                let label = match value.as_str() {
                    ::core::option::Option::Some(label) => label,
                    ::core::option::Option::None => return #not_a_string,
                };
                match label {
                    #(#arms)*
                    other => ::core::result::Result::Err(#lg::__private::not_a_label(other, #name)),
                }
            }
        }

        impl #lg::model::InputEnum for #ident {
            const VARIANTS: &'static [#lg::model::EnumVariant] = &[#(#entries),*];
        }
    }
}
