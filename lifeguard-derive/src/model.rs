//! `#[derive(LifeModel)]`: the column enum, the record, and every trait impl.

mod exposure;
mod record;
mod relations;
mod typed;

pub use record::expand_record;

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{DeriveInput, Error, Ident, LitStr, Result, Type, Visibility};

use crate::attr::{self, CacheAttr, Derive, Errors, GraphqlAttr, RelationAttr};
use crate::input::named_fields;
use crate::names::{camel_case, is_timestamp, option_inner, quote_ident, sql_type};

/// One stored field: a column.
struct Column<'a> {
    ident: &'a Ident,
    ty: &'a Type,
    vis: &'a Visibility,
    /// SQL name.
    name: String,
    /// Rust field name, unraw.
    field: String,
    variant: Ident,
    /// The typed column constant on the model (`COL_EMAIL`).
    typed: Ident,
    primary_key: bool,
    auto_increment: bool,
    nullable: bool,
    default_expr: Option<String>,
    sql_type: String,
    /// `#[lifeguard(graphql(...))]` on the field.
    graphql: Option<GraphqlAttr>,
}

/// What the struct attributes add: behaviour and relations.
struct Extras {
    /// The soft-delete column's SQL name.
    soft_delete: Option<String>,
    created_at: Option<String>,
    updated_at: Option<String>,
    hooks: bool,
    /// `#[lifeguard(cache)]`: the `CACHE` constant's value.
    cache: Option<TokenStream>,
    relations: Vec<RelationAttr>,
    /// `#[lifeguard(graphql(...))]` on the struct.
    graphql: Option<GraphqlAttr>,
}

/// Every field in declaration order.
enum Member<'a> {
    Stored(Column<'a>),
    Ignored { ident: &'a Ident, ty: &'a Type },
}

pub fn expand(input: &DeriveInput) -> Result<TokenStream> {
    let fields = named_fields(input, "LifeModel")?;
    let mut errors = Errors::default();
    let model = &input.ident;

    if input.generics.lt_token.is_some() || input.generics.where_clause.is_some() {
        errors.push(Error::new_spanned(
            &input.generics,
            "#[derive(LifeModel)] does not support generic structs: a model maps one table",
        ));
    }

    let sattrs = attr::struct_attrs(&input.attrs, Derive::LifeModel, &mut errors);
    if sattrs.table_name.is_none() {
        errors.push(Error::new_spanned(
            model,
            "#[derive(LifeModel)] needs the table: add #[lifeguard(table_name = \"...\")] \
             to the struct",
        ));
    }

    let mut members = Vec::new();
    let mut created_at: Option<(String, Span)> = None;
    let mut updated_at: Option<(String, Span)> = None;
    let mut by_name: HashMap<String, Span> = HashMap::new();
    let mut by_variant: HashMap<String, Span> = HashMap::new();
    let mut by_typed: HashMap<String, Span> = HashMap::new();
    for f in &fields.named {
        let ident = f.ident.as_ref().expect("named fields have names");
        let mut fattrs = attr::field_attrs(&f.attrs, Derive::LifeModel, &mut errors);
        if fattrs.ignore.is_some() {
            members.push(Member::Ignored { ident, ty: &f.ty });
            continue;
        }
        let field = ident.unraw().to_string();
        let (name, name_span) = match &fattrs.column_name {
            Some(lit) => (lit.value(), lit.span()),
            None => (field.clone(), ident.span()),
        };
        if by_name.insert(name.clone(), name_span).is_some() {
            errors.push(Error::new(
                name_span,
                format!("column `{name}` is declared twice"),
            ));
        }
        let variant_name = camel_case(&field);
        let variant = match syn::parse_str::<Ident>(&variant_name) {
            Ok(_) if !variant_name.starts_with(|c: char| c.is_ascii_digit()) => {
                Ident::new(&variant_name, ident.span())
            }
            _ => {
                errors.push(Error::new_spanned(
                    ident,
                    format!("cannot name a column variant after field `{field}`; rename the field"),
                ));
                continue;
            }
        };
        if by_variant
            .insert(variant_name.clone(), ident.span())
            .is_some()
        {
            errors.push(Error::new_spanned(
                ident,
                format!(
                    "field `{field}` gives the column variant `{variant_name}`, \
                     which another field already gives"
                ),
            ));
        }
        let Some(typed) = typed::const_name(ident, &field, &mut by_typed, &mut errors) else {
            continue;
        };
        for (key, span, slot) in [
            ("created_at", fattrs.created_at, &mut created_at),
            ("updated_at", fattrs.updated_at, &mut updated_at),
        ] {
            let Some(span) = span else { continue };
            if !is_timestamp(&f.ty) {
                errors.push(Error::new_spanned(
                    &f.ty,
                    format!(
                        "`{key}` needs a chrono `DateTime<Utc>` or `NaiveDateTime` field \
                         (optionally in an `Option`)"
                    ),
                ));
            } else if slot.is_some() {
                errors.push(Error::new(span, format!("only one field can be `{key}`")));
            } else {
                *slot = Some((name.clone(), span));
            }
        }
        let sql_type = match &fattrs.column_type {
            Some(lit) => lit.value(),
            None => sql_type(&f.ty),
        };
        members.push(Member::Stored(Column {
            ident,
            ty: &f.ty,
            vis: &f.vis,
            name,
            field,
            variant,
            typed,
            primary_key: fattrs.primary_key.is_some(),
            auto_increment: fattrs.auto_increment.is_some(),
            nullable: option_inner(&f.ty).is_some(),
            default_expr: fattrs.default_expr.as_ref().map(|l| l.value()),
            sql_type,
            graphql: fattrs.graphql.take().map(|(_, hints)| hints),
        }));
    }

    let columns: Vec<&Column> = members
        .iter()
        .filter_map(|m| match m {
            Member::Stored(c) => Some(c),
            Member::Ignored { .. } => None,
        })
        .collect();
    let keys: Vec<&Column> = columns.iter().copied().filter(|c| c.primary_key).collect();
    // A malformed attribute may be the intended key: report it alone.
    if keys.is_empty() && errors.is_empty() {
        errors.push(Error::new_spanned(
            model,
            "#[derive(LifeModel)] needs a primary key: mark one or more fields \
             #[lifeguard(primary_key)]",
        ));
    }
    // Soft delete: a nullable column, `deleted_at` unless named.
    let soft_delete = sattrs.soft_delete.as_ref().and_then(|sd| {
        let (name, span) = match &sd.column {
            Some(lit) => (lit.value(), lit.span()),
            None => ("deleted_at".to_owned(), sd.span),
        };
        match columns.iter().find(|c| c.name == name) {
            None => {
                errors.push(Error::new(
                    span,
                    format!(
                        "`soft_delete` needs a column `{name}`: add a field \
                         `{name}: Option<chrono::DateTime<chrono::Utc>>`, or name the column \
                         with `soft_delete = \"...\"`"
                    ),
                ));
                None
            }
            Some(c) if !c.nullable => {
                errors.push(Error::new_spanned(
                    c.ty,
                    format!(
                        "the soft-delete column `{name}` must be nullable (NULL means not \
                         deleted): use `Option<chrono::DateTime<chrono::Utc>>`"
                    ),
                ));
                None
            }
            Some(_) => Some(name),
        }
    });
    relations::check(model, &sattrs.relations, &columns, &mut errors);
    let cache = sattrs
        .cache
        .as_ref()
        .map(|attr| cache_hooks(attr, &columns, &mut errors));
    errors.finish()?;
    let table = sattrs.table_name.expect("checked above").value();
    let schema = sattrs.schema_name.map(|s| s.value());
    let extras = Extras {
        soft_delete,
        created_at: created_at.map(|(n, _)| n),
        updated_at: updated_at.map(|(n, _)| n),
        hooks: sattrs.hooks.is_some(),
        cache,
        relations: sattrs.relations,
        graphql: sattrs.graphql,
    };
    Ok(generate(
        input,
        &table,
        schema.as_deref(),
        &members,
        &columns,
        &keys,
        &extras,
    ))
}

fn generate(
    input: &DeriveInput,
    table: &str,
    schema: Option<&str>,
    members: &[Member],
    columns: &[&Column],
    keys: &[&Column],
    extras: &Extras,
) -> TokenStream {
    let model = &input.ident;
    let vis = &input.vis;
    let column_enum = format_ident!("{}Column", model);
    let record = format_ident!("{}Record", model);
    let lg = quote!(::lifeguard_core);

    // ---- constant SQL, built here so every statement is a literal ----
    let qualified = match schema {
        Some(s) => format!("{}.{}", quote_ident(s), quote_ident(table)),
        None => quote_ident(table),
    };
    let column_list = columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let key_where = keys
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} = ${}", quote_ident(&c.name), i + 1))
        .collect::<Vec<_>>()
        .join(" AND ");
    let force_delete_sql = format!("DELETE FROM {qualified} WHERE {key_where}");
    let touch = match &extras.updated_at {
        Some(u) => format!(", {} = now()", quote_ident(u)),
        None => String::new(),
    };
    let (find_sql, delete_sql, restore_sql) = match &extras.soft_delete {
        Some(sd) => {
            let sd = quote_ident(sd);
            (
                format!("SELECT {column_list} FROM {qualified} WHERE {key_where} AND {sd} IS NULL"),
                format!(
                    "UPDATE {qualified} SET {sd} = now(){touch} WHERE {key_where} AND {sd} IS NULL"
                ),
                {
                    let sql =
                        format!("UPDATE {qualified} SET {sd} = NULL{touch} WHERE {key_where}");
                    quote!(::core::option::Option::Some(#sql))
                },
            )
        }
        None => (
            format!("SELECT {column_list} FROM {qualified} WHERE {key_where}"),
            force_delete_sql.clone(),
            quote!(::core::option::Option::None),
        ),
    };
    let opt_str = |v: &Option<String>| match v {
        Some(s) => quote!(::core::option::Option::Some(#s)),
        None => quote!(::core::option::Option::None),
    };
    let soft_delete_tokens = opt_str(&extras.soft_delete);
    let created_at_tokens = opt_str(&extras.created_at);
    let updated_at_tokens = opt_str(&extras.updated_at);
    let schema_tokens = match schema {
        Some(s) => quote!(::core::option::Option::Some(#s)),
        None => quote!(::core::option::Option::None),
    };

    // ---- the column enum ----
    let variants: Vec<&Ident> = columns.iter().map(|c| &c.variant).collect();
    let variant_docs = columns
        .iter()
        .map(|c| format!("`{}` (field `{}`).", quote_ident(&c.name), c.field));
    let column_defs = columns.iter().map(|c| {
        let name = &c.name;
        let field = &c.field;
        let pk = c.primary_key;
        let auto = c.auto_increment;
        let nullable = c.nullable;
        let default_expr = match &c.default_expr {
            Some(d) => quote!(::core::option::Option::Some(#d)),
            None => quote!(::core::option::Option::None),
        };
        let sql_type = &c.sql_type;
        quote! {
            #lg::model::ColumnDef {
                name: #name,
                field: #field,
                primary_key: #pk,
                auto_increment: #auto,
                nullable: #nullable,
                default_expr: #default_expr,
                sql_type: #sql_type,
            }
        }
    });
    let enum_doc = format!("The columns of [`{model}`] (table `{qualified}`).");

    // ---- FromRow, by position in `COLUMNS` order ----
    let mut index = 0usize;
    let decode = members.iter().map(|m| match m {
        Member::Stored(c) => {
            let ident = c.ident;
            let ty = c.ty;
            let i = index;
            index += 1;
            quote_spanned! {ty.span()=>
                #ident: row.try_get::<_, #ty>(start + #i)?
            }
        }
        Member::Ignored { ident, ty } => quote_spanned! {ty.span()=>
            #ident: <#ty as ::core::default::Default>::default()
        },
    });
    let decode: Vec<TokenStream> = decode.collect();

    // ---- primary key ----
    let key_types: Vec<&Type> = keys.iter().map(|c| c.ty).collect();
    let key_idents: Vec<&Ident> = keys.iter().map(|c| c.ident).collect();
    let key_variants: Vec<&Ident> = keys.iter().map(|c| &c.variant).collect();
    let dyn_param = quote!(&(dyn #lg::pg::ToSql + ::core::marker::Sync));
    let single = keys.len() == 1;
    let (pk_type, model_key, key_params, key_condition, record_key) = if single {
        let ty = key_types[0];
        let ident = key_idents[0];
        let variant = key_variants[0];
        (
            quote!(#ty),
            quote_spanned!(ty.span()=> ::core::clone::Clone::clone(&self.#ident)),
            quote_spanned!(ty.span()=> ::std::vec![key as #dyn_param]),
            quote_spanned! {ty.span()=>
                #lg::query::ColumnExpr::eq(
                    #column_enum::#variant,
                    ::core::clone::Clone::clone(key),
                )
            },
            quote_spanned! {ty.span()=>
                self.#ident.as_ref().map(::core::clone::Clone::clone)
            },
        )
    } else {
        let idx: Vec<syn::Index> = (0..keys.len()).map(syn::Index::from).collect();
        let bindings: Vec<Ident> = (0..keys.len())
            .map(|i| format_ident!("__lifeguard_k{}", i))
            .collect();
        let first_variant = key_variants[0];
        let rest_variants = &key_variants[1..];
        let rest_idx = &idx[1..];
        (
            quote!((#(#key_types,)*)),
            quote!((#(::core::clone::Clone::clone(&self.#key_idents),)*)),
            quote!(::std::vec![#(&key.#idx as #dyn_param),*]),
            quote! {
                #lg::query::ColumnExpr::eq(
                    #column_enum::#first_variant,
                    ::core::clone::Clone::clone(&key.0),
                )
                #(.and(#lg::query::ColumnExpr::eq(
                    #column_enum::#rest_variants,
                    ::core::clone::Clone::clone(&key.#rest_idx),
                )))*
            },
            quote! {
                match (#(self.#key_idents.as_ref(),)*) {
                    (#(::core::option::Option::Some(#bindings),)*) => ::core::option::Option::Some(
                        (#(::core::clone::Clone::clone(#bindings),)*)
                    ),
                    _ => ::core::option::Option::None,
                }
            },
        )
    };

    let col_idents: Vec<&Ident> = columns.iter().map(|c| c.ident).collect();
    let record_items = record::items(
        &record::Record {
            model,
            vis,
            record: &record,
            column_enum: &column_enum,
            pk_type: &pk_type,
            key: record_key,
            hooks: extras.hooks,
        },
        columns,
        keys,
    );
    let relation_defs = relations::defs(&extras.relations);
    let related_impls = extras
        .relations
        .iter()
        .enumerate()
        .map(|(i, rel)| relations::related_impl(model, i, rel, columns));
    let typed_columns = typed::typed_columns(model, &column_enum, columns);
    let cache_const = extras.cache.as_ref().map(|hooks| {
        quote! {
            const CACHE: ::core::option::Option<#lg::cache::CacheHooks<Self>> =
                ::core::option::Option::Some(#hooks);
        }
    });

    let exposure_const = exposure::exposure_const(extras.graphql.as_ref(), columns);

    quote! {
        #[doc = #enum_doc]
        #[derive(
            ::core::fmt::Debug,
            ::core::clone::Clone,
            ::core::marker::Copy,
            ::core::cmp::PartialEq,
            ::core::cmp::Eq,
            ::core::hash::Hash,
        )]
        #vis enum #column_enum {
            #(
                #[doc = #variant_docs]
                #variants,
            )*
        }

        #[automatically_derived]
        impl #lg::model::ModelColumn for #column_enum {
            const ALL: &'static [Self] = &[#(Self::#variants),*];
            const TABLE: &'static str = #qualified;

            fn def(self) -> &'static #lg::model::ColumnDef {
                &<#model as #lg::model::LifeModel>::COLUMNS[self as usize]
            }
        }

        #[automatically_derived]
        impl #lg::model::FromRow for #model {
            #[inline]
            fn from_row(row: &#lg::pg::Row) -> #lg::Result<Self> {
                <Self as #lg::model::FromRow>::from_row_at(row, 0)
            }

            fn from_row_at(row: &#lg::pg::Row, start: usize) -> #lg::Result<Self> {
                ::core::result::Result::Ok(Self {
                    #(#decode,)*
                })
            }
        }

        #[automatically_derived]
        impl #lg::model::LifeModel for #model {
            type Column = #column_enum;
            type PrimaryKey = #pk_type;
            type Record = #record;

            const TABLE: &'static str = #table;
            const SCHEMA: ::core::option::Option<&'static str> = #schema_tokens;
            const COLUMNS: &'static [#lg::model::ColumnDef] = &[#(#column_defs),*];
            const QUALIFIED: &'static str = #qualified;
            const COLUMN_LIST: &'static str = #column_list;
            const FIND_BY_PK_SQL: &'static str = #find_sql;
            const DELETE_BY_PK_SQL: &'static str = #delete_sql;
            const SOFT_DELETE: ::core::option::Option<&'static str> = #soft_delete_tokens;
            const FORCE_DELETE_BY_PK_SQL: &'static str = #force_delete_sql;
            const RESTORE_BY_PK_SQL: ::core::option::Option<&'static str> = #restore_sql;
            const CREATED_AT: ::core::option::Option<&'static str> = #created_at_tokens;
            const UPDATED_AT: ::core::option::Option<&'static str> = #updated_at_tokens;
            const RELATIONS: &'static [#lg::model::RelationDef] = #relation_defs;
            #cache_const
            #exposure_const

            fn primary_key(&self) -> Self::PrimaryKey {
                #model_key
            }

            fn key_params(key: &Self::PrimaryKey) -> ::std::vec::Vec<#dyn_param> {
                #key_params
            }

            fn into_record(self) -> #record {
                #record {
                    #(#col_idents: #lg::model::ActiveValue::Unchanged(self.#col_idents),)*
                }
            }

            fn key_condition(key: &Self::PrimaryKey) -> #lg::query::Expr {
                #key_condition
            }
        }

        #record_items

        #typed_columns

        #(#related_impls)*
    }
}

/// The `CacheHooks` of `#[lifeguard(cache(..))]`: the settings, and how the key and the
/// tenant are written (a tenant column that does not exist is an error here).
fn cache_hooks(attr: &CacheAttr, columns: &[&Column], errors: &mut Errors) -> TokenStream {
    let lg = quote!(::lifeguard_core);
    let ttl = attr
        .ttl_ms
        .as_ref()
        .map_or_else(|| quote!(60_000u64), |lit| quote!(#lit));
    let mode = match attr.mode.as_ref().map(LitStr::value).as_deref() {
        Some("invalidate") => quote!(#lg::cache::CacheMode::Invalidate),
        _ => quote!(#lg::cache::CacheMode::Refresh),
    };
    let (tenant, write_tenant) = match &attr.tenant {
        None => (quote!(::core::option::Option::None), quote!(|_, _| {})),
        Some(lit) => match columns.iter().find(|c| c.name == lit.value()) {
            Some(c) => {
                let ident = c.ident;
                (
                    quote!(::core::option::Option::Some(#lit)),
                    quote!(|model, out| #lg::cache::KeyPart::write_key(&model.#ident, out)),
                )
            }
            None => {
                errors.push(Error::new_spanned(
                    lit,
                    format!(
                        "`cache(tenant = ..)` names no column `{}` of this model",
                        lit.value()
                    ),
                ));
                (quote!(::core::option::Option::None), quote!(|_, _| {}))
            }
        },
    };
    quote! {
        #lg::cache::CacheHooks {
            spec: #lg::cache::CacheSpec {
                ttl: ::core::time::Duration::from_millis(#ttl),
                mode: #mode,
                tenant: #tenant,
            },
            write_pk: |key, out| #lg::cache::KeyPart::write_key(key, out),
            write_tenant: #write_tenant,
        }
    }
}
