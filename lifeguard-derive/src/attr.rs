//! Parsing of `#[lifeguard(...)]` attributes, with errors spanned on what is wrong.

use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Attribute, Error, Expr, ExprLit, Lit, LitStr, Path, Result, Token};

pub(crate) mod graphql;

use graphql::graphql;
pub use graphql::GraphqlAttr;

/// Which derive reads the attributes: decides the keys it accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Derive {
    LifeModel,
    FromRow,
}

impl Derive {
    fn name(self) -> &'static str {
        match self {
            Derive::LifeModel => "LifeModel",
            Derive::FromRow => "FromRow",
        }
    }
}

const STRUCT_KEYS: &[&str] = &[
    "table_name",
    "schema_name",
    "soft_delete",
    "hooks",
    "cache",
    "has_many",
    "has_one",
    "belongs_to",
    "has_many_through",
    "graphql",
];
const MODEL_FIELD_KEYS: &[&str] = &[
    "primary_key",
    "auto_increment",
    "column_name",
    "ignore",
    "default_expr",
    "column_type",
    "created_at",
    "updated_at",
    "graphql",
];

/// The kind of a relation attribute.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RelationKind {
    HasMany,
    HasOne,
    BelongsTo,
    HasManyThrough,
}

impl RelationKind {
    pub fn key(self) -> &'static str {
        match self {
            RelationKind::HasMany => "has_many",
            RelationKind::HasOne => "has_one",
            RelationKind::BelongsTo => "belongs_to",
            RelationKind::HasManyThrough => "has_many_through",
        }
    }

    fn example(self) -> &'static str {
        match self {
            RelationKind::HasMany => "has_many(Post, from = \"id\", to = \"author_id\")",
            RelationKind::HasOne => "has_one(Profile, from = \"id\", to = \"user_id\")",
            RelationKind::BelongsTo => "belongs_to(Author, from = \"author_id\", to = \"id\")",
            RelationKind::HasManyThrough => {
                "has_many_through(Tag, via = BookTag, from = \"id\", via_from = \"book_id\", \
                 via_to = \"tag_id\", to = \"id\")"
            }
        }
    }
}

/// `has_many(Post, from = "id", to = "author_id")` and its kin.
pub struct RelationAttr {
    pub kind: RelationKind,
    /// The attribute's key, for error spans.
    pub key: Path,
    pub target: Path,
    pub from: LitStr,
    pub to: LitStr,
    /// `has_many_through` only: the junction model and its two columns.
    pub via: Option<(Path, LitStr, LitStr)>,
}

/// `cache` or `cache(ttl_ms = 60000, mode = "invalidate", tenant = "tenant_id")`.
pub struct CacheAttr {
    pub ttl_ms: Option<syn::LitInt>,
    pub mode: Option<LitStr>,
    pub tenant: Option<LitStr>,
}

/// `soft_delete` or `soft_delete = "removed_at"`.
pub struct SoftDeleteAttr {
    pub span: Span,
    pub column: Option<LitStr>,
}
const ROW_FIELD_KEYS: &[&str] = &["column_name", "ignore"];

/// `#[lifeguard(...)]` on the struct.
#[derive(Default)]
pub struct StructAttrs {
    pub table_name: Option<LitStr>,
    pub schema_name: Option<LitStr>,
    pub soft_delete: Option<SoftDeleteAttr>,
    pub hooks: Option<Span>,
    pub cache: Option<CacheAttr>,
    pub relations: Vec<RelationAttr>,
    pub graphql: Option<GraphqlAttr>,
}

/// `#[lifeguard(...)]` on a field.
#[derive(Default)]
pub struct FieldAttrs {
    pub primary_key: Option<Span>,
    pub auto_increment: Option<Span>,
    pub ignore: Option<Span>,
    pub column_name: Option<LitStr>,
    pub default_expr: Option<LitStr>,
    pub column_type: Option<LitStr>,
    pub created_at: Option<Span>,
    pub updated_at: Option<Span>,
    pub graphql: Option<(Span, GraphqlAttr)>,
}

/// Collects errors so one expansion reports every problem it finds.
#[derive(Default)]
pub struct Errors(Option<Error>);

impl Errors {
    pub fn push(&mut self, e: Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub fn finish(self) -> Result<()> {
        match self.0 {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn key_name(meta: &ParseNestedMeta) -> String {
    match meta.path.get_ident() {
        Some(i) => i.to_string(),
        None => meta.path.to_token_stream().to_string().replace(' ', ""),
    }
}

fn one_of(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A flag key (`primary_key`): no value allowed.
fn flag(meta: &ParseNestedMeta, name: &str, slot: &mut Option<Span>) -> Result<()> {
    let path = &meta.path;
    if meta.input.peek(Token![=]) {
        let eq: Token![=] = meta.input.parse()?;
        let value: Expr = meta.input.parse()?;
        return Err(Error::new_spanned(
            quote!(#path #eq #value),
            format!("`{name}` is a flag and takes no value: write `{name}` alone"),
        ));
    }
    if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
        let rest: TokenStream = meta.input.parse()?;
        return Err(Error::new_spanned(
            quote!(#path #rest),
            format!("`{name}` is a flag and takes no arguments: write `{name}` alone"),
        ));
    }
    if slot.is_some() {
        return Err(Error::new_spanned(path, format!("duplicate `{name}`")));
    }
    *slot = Some(path.span());
    Ok(())
}

/// A string key (`column_name = "email"`).
fn string(meta: &ParseNestedMeta, name: &str, slot: &mut Option<LitStr>) -> Result<()> {
    let path = &meta.path;
    if !meta.input.peek(Token![=]) {
        return Err(Error::new_spanned(
            path,
            format!("`{name}` needs a string value: `{name} = \"...\"`"),
        ));
    }
    let value: Expr = meta.value()?.parse()?;
    let lit = match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => s,
        other => {
            return Err(Error::new_spanned(
                other,
                format!("`{name}` expects a string literal: `{name} = \"...\"`"),
            ))
        }
    };
    if lit.value().is_empty() {
        return Err(Error::new_spanned(
            &lit,
            format!("`{name}` must not be empty"),
        ));
    }
    if lit.value().contains('\0') {
        return Err(Error::new_spanned(
            &lit,
            format!("`{name}` must not contain a NUL character"),
        ));
    }
    if slot.is_some() {
        return Err(Error::new_spanned(path, format!("duplicate `{name}`")));
    }
    *slot = Some(lit);
    Ok(())
}

/// `soft_delete` alone or `soft_delete = "column"`.
fn soft_delete(meta: &ParseNestedMeta, slot: &mut Option<SoftDeleteAttr>) -> Result<()> {
    let span = meta.path.span();
    let column = if meta.input.peek(Token![=]) {
        let mut lit = None;
        string(meta, "soft_delete", &mut lit)?;
        lit
    } else if meta.input.is_empty() || meta.input.peek(Token![,]) {
        None
    } else {
        let path = &meta.path;
        let rest: TokenStream = meta.input.parse()?;
        return Err(Error::new_spanned(
            quote!(#path #rest),
            "`soft_delete` takes no arguments: write `soft_delete` (column `deleted_at`) or \
             `soft_delete = \"column\"`",
        ));
    };
    if slot.is_some() {
        return Err(Error::new_spanned(&meta.path, "duplicate `soft_delete`"));
    }
    *slot = Some(SoftDeleteAttr { span, column });
    Ok(())
}

/// `cache` alone, or `cache(ttl_ms = 60000, mode = "refresh" | "invalidate", tenant = "col")`.
fn cache(meta: &ParseNestedMeta, slot: &mut Option<CacheAttr>) -> Result<()> {
    let mut attr = CacheAttr {
        ttl_ms: None,
        mode: None,
        tenant: None,
    };
    if slot.is_some() {
        return Err(Error::new_spanned(&meta.path, "duplicate `cache`"));
    }
    if meta.input.peek(syn::token::Paren) {
        meta.parse_nested_meta(|inner| {
            let key = key_name(&inner);
            match key.as_str() {
                "ttl_ms" => {
                    let lit: syn::LitInt = inner.value()?.parse()?;
                    if lit.base10_parse::<u64>().map_or(true, |ms| ms == 0) {
                        return Err(Error::new_spanned(&lit, "`ttl_ms` must be a positive number of milliseconds"));
                    }
                    attr.ttl_ms = Some(lit);
                    Ok(())
                }
                "mode" => {
                    string(&inner, "mode", &mut attr.mode)?;
                    match attr.mode.as_ref().map(LitStr::value).as_deref() {
                        Some("refresh" | "invalidate") => Ok(()),
                        _ => Err(Error::new_spanned(
                            attr.mode.as_ref(),
                            "`mode` is \"refresh\" (the reflector stores the new row) or \"invalidate\" (it drops the key)",
                        )),
                    }
                }
                "tenant" => string(&inner, "tenant", &mut attr.tenant),
                _ => Err(Error::new_spanned(
                    &inner.path,
                    format!("unknown `cache` setting `{key}`; expected `ttl_ms`, `mode` or `tenant`"),
                )),
            }
        })?;
    } else if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
        let path = &meta.path;
        let rest: TokenStream = meta.input.parse()?;
        return Err(Error::new_spanned(
            quote!(#path #rest),
            "write `cache` or `cache(ttl_ms = 60000, mode = \"refresh\", tenant = \"tenant_id\")`",
        ));
    }
    *slot = Some(attr);
    Ok(())
}

/// `has_many(Post, from = "id", to = "author_id")` and its kin.
fn relation(meta: &ParseNestedMeta, kind: RelationKind, out: &mut Vec<RelationAttr>) -> Result<()> {
    let key = meta.path.clone();
    let name = kind.key();
    let usage = format!("write `{}`", kind.example());
    if !meta.input.peek(syn::token::Paren) {
        return Err(Error::new_spanned(
            &key,
            format!("`{name}` takes the related model and its columns: {usage}"),
        ));
    }
    let mut target: Option<Path> = None;
    let mut via: Option<Path> = None;
    let (mut from, mut to, mut via_from, mut via_to) = (None, None, None, None);
    meta.parse_nested_meta(|inner| {
        let inner_name = key_name(&inner);
        match inner_name.as_str() {
            "from" => string(&inner, "from", &mut from),
            "to" => string(&inner, "to", &mut to),
            "via_from" | "via_to" | "via" if kind != RelationKind::HasManyThrough => {
                Err(Error::new_spanned(
                    &inner.path,
                    format!("`{inner_name}` belongs to `has_many_through`, not `{name}`"),
                ))
            }
            "via_from" => string(&inner, "via_from", &mut via_from),
            "via_to" => string(&inner, "via_to", &mut via_to),
            "via" => {
                if !inner.input.peek(Token![=]) {
                    return Err(Error::new_spanned(
                        &inner.path,
                        "`via` needs the junction model: `via = BookTag`",
                    ));
                }
                let path: Path = inner.value()?.parse()?;
                if via.is_some() {
                    return Err(Error::new_spanned(&inner.path, "duplicate `via`"));
                }
                via = Some(path);
                Ok(())
            }
            _ if inner.input.is_empty() || inner.input.peek(Token![,]) => {
                if target.is_some() {
                    return Err(Error::new_spanned(
                        &inner.path,
                        format!(
                            "`{name}` names one related model; `{inner_name}` is a second one \
                             (or an unknown key: expected `from`, `to`{})",
                            if kind == RelationKind::HasManyThrough {
                                ", `via`, `via_from`, `via_to`"
                            } else {
                                ""
                            }
                        ),
                    ));
                }
                target = Some(inner.path.clone());
                Ok(())
            }
            _ => Err(Error::new_spanned(
                &inner.path,
                format!("unknown key `{inner_name}` in `{name}(...)`: {usage}"),
            )),
        }
    })?;
    let missing = |what: &str| Error::new_spanned(&key, format!("`{name}` needs {what}: {usage}"));
    let target = target.ok_or_else(|| missing("the related model first"))?;
    let from = from.ok_or_else(|| missing("`from = \"...\"`"))?;
    let to = to.ok_or_else(|| missing("`to = \"...\"`"))?;
    let via = if kind == RelationKind::HasManyThrough {
        Some((
            via.ok_or_else(|| missing("`via = JunctionModel`"))?,
            via_from.ok_or_else(|| missing("`via_from = \"...\"`"))?,
            via_to.ok_or_else(|| missing("`via_to = \"...\"`"))?,
        ))
    } else {
        None
    };
    out.push(RelationAttr {
        kind,
        key,
        target,
        from,
        to,
        via,
    });
    Ok(())
}

fn lifeguard_attrs(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs.iter().filter(|a| a.path().is_ident("lifeguard"))
}

/// Reads the struct-level attributes.
pub fn struct_attrs(attrs: &[Attribute], derive: Derive, errors: &mut Errors) -> StructAttrs {
    let mut out = StructAttrs::default();
    for attr in lifeguard_attrs(attrs) {
        let res = attr.parse_nested_meta(|meta| {
            let name = key_name(&meta);
            match (derive, name.as_str()) {
                (Derive::LifeModel, "table_name") => string(&meta, &name, &mut out.table_name),
                (Derive::LifeModel, "schema_name") => string(&meta, &name, &mut out.schema_name),
                (Derive::LifeModel, "soft_delete") => soft_delete(&meta, &mut out.soft_delete),
                (Derive::LifeModel, "hooks") => flag(&meta, &name, &mut out.hooks),
                (Derive::LifeModel, "cache") => cache(&meta, &mut out.cache),
                (Derive::LifeModel, "graphql") => {
                    if out.graphql.is_some() {
                        return Err(Error::new_spanned(&meta.path, "duplicate `graphql`"));
                    }
                    out.graphql = Some(graphql(&meta, false)?);
                    Ok(())
                }
                (Derive::LifeModel, "has_many") => {
                    relation(&meta, RelationKind::HasMany, &mut out.relations)
                }
                (Derive::LifeModel, "has_one") => {
                    relation(&meta, RelationKind::HasOne, &mut out.relations)
                }
                (Derive::LifeModel, "belongs_to") => {
                    relation(&meta, RelationKind::BelongsTo, &mut out.relations)
                }
                (Derive::LifeModel, "has_many_through") => {
                    relation(&meta, RelationKind::HasManyThrough, &mut out.relations)
                }
                (Derive::LifeModel, _) if MODEL_FIELD_KEYS.contains(&name.as_str()) => {
                    Err(Error::new_spanned(
                        &meta.path,
                        format!("`{name}` belongs on a field, not on the struct"),
                    ))
                }
                (Derive::LifeModel, _) => Err(Error::new_spanned(
                    &meta.path,
                    format!(
                        "unknown lifeguard struct attribute `{name}`; expected one of {}",
                        one_of(STRUCT_KEYS)
                    ),
                )),
                (Derive::FromRow, _) => Err(Error::new_spanned(
                    &meta.path,
                    format!(
                        "#[derive(FromRow)] takes no struct attributes (`{name}`); \
                         its fields accept {}",
                        one_of(ROW_FIELD_KEYS)
                    ),
                )),
            }
        });
        if let Err(e) = res {
            errors.push(e);
        }
    }
    out
}

/// Reads one field's attributes.
pub fn field_attrs(attrs: &[Attribute], derive: Derive, errors: &mut Errors) -> FieldAttrs {
    let mut out = FieldAttrs::default();
    let keys = match derive {
        Derive::LifeModel => MODEL_FIELD_KEYS,
        Derive::FromRow => ROW_FIELD_KEYS,
    };
    for attr in lifeguard_attrs(attrs) {
        let res = attr.parse_nested_meta(|meta| {
            let name = key_name(&meta);
            if !keys.contains(&name.as_str()) {
                let msg = if MODEL_FIELD_KEYS.contains(&name.as_str()) {
                    format!(
                        "`{name}` is a #[derive(LifeModel)] attribute; #[derive({})] fields \
                         accept {}",
                        derive.name(),
                        one_of(keys)
                    )
                } else if STRUCT_KEYS.contains(&name.as_str()) {
                    format!("`{name}` belongs on the struct, not on a field")
                } else {
                    format!(
                        "unknown lifeguard field attribute `{name}`; expected one of {}",
                        one_of(keys)
                    )
                };
                return Err(Error::new_spanned(&meta.path, msg));
            }
            match name.as_str() {
                "primary_key" => flag(&meta, &name, &mut out.primary_key),
                "auto_increment" => flag(&meta, &name, &mut out.auto_increment),
                "ignore" => flag(&meta, &name, &mut out.ignore),
                "column_name" => string(&meta, &name, &mut out.column_name),
                "default_expr" => string(&meta, &name, &mut out.default_expr),
                "column_type" => string(&meta, &name, &mut out.column_type),
                "created_at" => flag(&meta, &name, &mut out.created_at),
                "updated_at" => flag(&meta, &name, &mut out.updated_at),
                "graphql" => {
                    if out.graphql.is_some() {
                        return Err(Error::new_spanned(&meta.path, "duplicate `graphql`"));
                    }
                    out.graphql = Some((meta.path.span(), graphql(&meta, true)?));
                    Ok(())
                }
                _ => unreachable!("every accepted key is handled"),
            }
        });
        if let Err(e) = res {
            errors.push(e);
        }
    }
    // An ignored field has no column: nothing else applies to it.
    if out.ignore.is_some() {
        let conflicts = [
            ("primary_key", out.primary_key),
            ("auto_increment", out.auto_increment),
            ("column_name", out.column_name.as_ref().map(LitStr::span)),
            ("default_expr", out.default_expr.as_ref().map(LitStr::span)),
            ("column_type", out.column_type.as_ref().map(LitStr::span)),
            ("created_at", out.created_at),
            ("updated_at", out.updated_at),
            ("graphql", out.graphql.as_ref().map(|(span, _)| *span)),
        ];
        for (name, span) in conflicts {
            if let Some(span) = span {
                errors.push(Error::new(
                    span,
                    format!(
                        "`{name}` cannot be combined with `ignore`: an ignored field has no column"
                    ),
                ));
            }
        }
    }
    out
}
