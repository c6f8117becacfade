//! Procedural macros for Lifeguard: `#[derive(LifeModel, LifeRecord, FromRow)]`.
//!
//! Use them through `lifeguard_core`, which re-exports them next to the traits of the same
//! names (macros and traits live in different namespaces, as with serde):
//!
//! ```
//! use lifeguard_core::model::{ActiveValue::Set, LifeModel, LifeRecord, ModelColumn};
//! use lifeguard_core::query::ColumnExpr;
//! use lifeguard_core::{LifeModel, LifeRecord};
//!
//! #[derive(Debug, Clone, LifeModel, LifeRecord)]
//! #[lifeguard(table_name = "users", schema_name = "app")]
//! pub struct User {
//!     #[lifeguard(primary_key, auto_increment)]
//!     pub id: i64,
//!     #[lifeguard(column_name = "email_address")]
//!     pub email: String,
//!     pub name: Option<String>,
//!     #[lifeguard(ignore)]
//!     pub cached_score: u32,
//! }
//!
//! assert_eq!(User::QUALIFIED, r#""app"."users""#);
//! assert_eq!(
//!     User::FIND_BY_PK_SQL,
//!     r#"SELECT "id", "email_address", "name" FROM "app"."users" WHERE "id" = $1"#
//! );
//! assert_eq!(UserColumn::Email.name(), "email_address");
//!
//! let new_user = UserRecord { email: Set("a@example.com".into()), ..Default::default() };
//! assert!(new_user.primary_key().is_none()); // `insert` lets the database assign `id`
//!
//! let (sql, params) = User::find().filter(UserColumn::Email.eq("a@example.com")).build();
//! assert_eq!(
//!     sql,
//!     r#"SELECT "app"."users"."id", "app"."users"."email_address", "app"."users"."name" FROM "app"."users" WHERE ("app"."users"."email_address" = $1)"#
//! );
//! assert_eq!(params.len(), 1);
//!
//! // The same filter through the typed column: a non-string value would not compile.
//! let (typed_sql, _) = User::find().filter(User::COL_EMAIL.eq("a@example.com")).build();
//! assert_eq!(typed_sql, sql);
//! ```
//!
//! The generated code names `::lifeguard_core` paths only, so a crate using the derives
//! depends on `lifeguard-core` and nothing else; the helpers that exist only for it are
//! under the hidden `::lifeguard_core::__private`.
//!
//! # Attributes
//!
//! Every option is written `#[lifeguard(...)]`; an unknown or malformed key is a compile
//! error pointing at it.
//!
//! | where | key | meaning |
//! | --- | --- | --- |
//! | struct | `table_name = "users"` | the table (required by `LifeModel`) |
//! | struct | `schema_name = "app"` | the schema; statements then name `"app"."users"` |
//! | field | `primary_key` | part of the primary key (at least one field; several make a composite key) |
//! | field | `auto_increment` | the database assigns it (serial, identity, default): an insert may leave it `NotSet` |
//! | field | `column_name = "..."` | the SQL name, when it differs from the field name |
//! | field | `ignore` | not a column: not selected, not decoded, not in the record; filled with `Default::default()` |
//! | field | `default_expr = "now()"` | the column's SQL default (metadata for DDL) |
//! | field | `column_type = "timestamptz"` | the column's SQL type (metadata for DDL), instead of the one derived from the Rust type |
//! | struct | `hooks` | writes run the record's `RecordHooks` impl (hooks and `validate`), which you write: `impl RecordHooks for UserRecord {}` |
//! | struct | `soft_delete`, `soft_delete = "removed_at"` | deletes set the column (default `deleted_at`, an `Option<DateTime<Utc>>`) to `now()`; queries, `find_by_id` and loaders skip marked rows |
//! | struct | `has_many(Post, from = "id", to = "author_id")` | `impl Related<Post>`: `Post.author_id` holds this row's `id` |
//! | struct | `has_one(Profile, from = "id", to = "user_id")` | the same, at most one row |
//! | struct | `belongs_to(Author, from = "author_id", to = "id")` | this row's `author_id` names an `Author.id` |
//! | struct | `has_many_through(Tag, via = BookTag, from = "id", via_from = "book_id", via_to = "tag_id", to = "id")` | many-to-many through the junction model |
//! | field | `created_at` | a `DateTime<_>`/`NaiveDateTime` written as `now()` on insert when left unset |
//! | field | `updated_at` | the same on insert, and on every update that changes something unless set |
//! | struct | `graphql(name = "Writer", read_only)` | how generated APIs expose the model (`LifeModel::EXPOSURE`): another type name, no mutations |
//! | field | `graphql(skip)`, `graphql(name = "fullName")`, `graphql(read_only)` | the same for a field: hidden, renamed, never taken as input |
//!
//! Relation columns are SQL names: `from` is checked against this model, `to` (and the
//! junction's columns) against the other model at compile time. Every relation attribute
//! is also an entry of `LifeModel::RELATIONS`, in declaration order. Relation attributes may be
//! split over several `#[lifeguard(...)]` lines (clippy's `duplicated_attributes` lint
//! may mistake two relations' equal `to = "id"` for a repeated attribute: allow it on the
//! struct). See `lifeguard_core::model` for
//! `find_related`, the join-based `find_also_related`/`find_with_related` and the batched
//! loaders (`load_many`, `load_one`, `load_many_to_many`, nested `load`).
//!
//! `#[derive(FromRow)]` accepts only the field keys `column_name` and `ignore`.

#![warn(missing_docs)]

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

mod attr;
mod from_row;
mod input;
mod model;
mod names;
mod value_enum;

/// Makes a struct with named fields a table-backed model.
///
/// For `struct User` it implements `FromRow` and `LifeModel` for `User`, and generates, with
/// the struct's visibility:
///
/// - `enum UserColumn`: one variant per stored field, named in CamelCase (`created_at` ->
///   `CreatedAt`), deriving `Debug, Clone, Copy, PartialEq, Eq, Hash` and implementing
///   `ModelColumn` (so every `ColumnExpr` helper: `UserColumn::Email.eq("a@b.c")`);
/// - `struct UserRecord`: the change set, one `ActiveValue<T>` per stored field (with the
///   field's visibility), implementing `LifeRecord`, `Default` (every field `NotSet`),
///   `Clone`, `Debug` (which fields are set, not their values), `From<User>` (every
///   field `Unchanged`) and `InputRecord` (fields set by SQL column name from JSON values;
///   a field whose type has no `FromInput` impl is `NotWritable`);
/// - on `User`, one typed column constant per stored field (with the field's visibility):
///   `pub const COL_EMAIL: TypedColumn<UserColumn, String>`, named `COL_` and the field
///   name in upper case (`r#type` -> `COL_TYPE`), typed with the field's type as written
///   (aliases and paths included). Its comparisons take values of that type, so
///   `User::COL_EMAIL.eq(5)` is a compile error where `UserColumn::Email.eq(5)` is an
///   `Error::Encode` at run time. The prefix is there because `User`'s namespace also holds
///   `LifeModel`'s constants, and `created_at`/`updated_at` fields would otherwise meet
///   `CREATED_AT`/`UPDATED_AT`; no `LifeModel` item starts with `COL_`. Two fields that
///   give the same name (`aB`, `Ab`) are an error on the second.
///
/// The record is generated here, not by `#[derive(LifeRecord)]`: derive both for
/// readability, or `LifeModel` alone.
///
/// Columns are every field but the `ignore`d ones, in declaration order; rows decode by
/// position in that order, matching the generated column lists. The primary key type is the
/// key field's type, or a tuple of the key fields' types in declaration order. All SQL the
/// trait exposes as constants (`QUALIFIED`, `COLUMN_LIST`, `FIND_BY_PK_SQL`,
/// `DELETE_BY_PK_SQL`, and the soft-delete variants) is written at compile time,
/// identifiers quoted; so is `RELATIONS`, the relation attributes in declaration order
/// (`&[]` without any). `FromRow::from_row_at` decodes the model from any column offset, so
/// a join can decode two models from one row.
///
/// `ColumnDef::sql_type` is the `column_type` attribute, else derived from the last path
/// segment of the field type: `i16` smallint, `i32` integer, `i64` bigint, `f32` real,
/// `f64` double precision, `bool` boolean, `String` text, `Vec<u8>` bytea, `Uuid` uuid,
/// `NaiveDate` date, `NaiveTime` time, `NaiveDateTime` timestamp, `DateTime<_>`
/// timestamptz, `Decimal` numeric, `Value`/`Json<_>` jsonb, `Vec<T>` `T[]`, `Option<T>` as
/// `T` (and `nullable`), anything else text.
///
/// ```
/// use lifeguard_core::model::{ActiveValue, LifeModel, LifeRecord};
/// use lifeguard_core::LifeModel;
///
/// #[derive(Debug, Clone, LifeModel)]
/// #[lifeguard(table_name = "memberships")]
/// pub struct Membership {
///     #[lifeguard(primary_key)]
///     pub org_id: i64,
///     #[lifeguard(primary_key)]
///     pub user_id: i64,
///     #[lifeguard(default_expr = "now()", column_type = "timestamptz")]
///     pub joined: String,
/// }
///
/// assert_eq!(
///     Membership::DELETE_BY_PK_SQL,
///     r#"DELETE FROM "memberships" WHERE "org_id" = $1 AND "user_id" = $2"#
/// );
/// let m = Membership { org_id: 1, user_id: 2, joined: "today".into() };
/// assert_eq!(m.primary_key(), (1, 2));
/// let record = m.into_record();
/// assert!(record.key_unchanged());
/// assert!(matches!(record.joined, ActiveValue::Unchanged(_)));
/// ```
#[proc_macro_derive(LifeModel, attributes(lifeguard))]
pub fn derive_life_model(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    model::expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Accepted next to `#[derive(LifeModel)]`, for symmetry with SeaORM-style code.
///
/// `#[derive(LifeModel)]` already generates the `{Name}Record` struct and its `LifeRecord`
/// impl (a derive cannot see which other derives are present, so the record cannot be split
/// off). This derive generates nothing but a check that the struct also derives
/// `LifeModel`, so forgetting it reads as "the trait `LifeModel` is not implemented for
/// `User`" rather than a missing `UserRecord`.
#[proc_macro_derive(LifeRecord, attributes(lifeguard))]
pub fn derive_life_record(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    model::expand_record(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Decodes a row into a struct by column name: for projections and raw-SQL results.
///
/// Each field reads the column of its name, or of `#[lifeguard(column_name = "...")]`;
/// `#[lifeguard(ignore)]` fields are `Default::default()`. A missing column or a type
/// mismatch is an error naming the column. Do not derive it next to `LifeModel`, which
/// implements `FromRow` itself (by position).
///
/// ```
/// use lifeguard_core::FromRow;
///
/// #[derive(Debug, FromRow)]
/// pub struct EmailCount {
///     pub domain: String,
///     #[lifeguard(column_name = "count")]
///     pub users: i64,
///     #[lifeguard(ignore)]
///     pub note: Option<String>,
/// }
/// ```
#[proc_macro_derive(FromRow, attributes(lifeguard))]
pub fn derive_from_row(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    from_row::expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// A fieldless enum as a column value, in one of three representations:
///
/// - `#[lifeguard(repr = "text")]` (the default): the variant's label, for a native
///   PostgreSQL enum type or a `text`/`varchar` column. Labels are the variant names in
///   `snake_case` unless `rename_all = "lowercase" | "UPPERCASE" | "kebab-case" | "none"` says
///   otherwise; `#[lifeguard(rename = "...")]` on a variant sets its label.
/// - `repr = "i16" | "i32" | "i64"`: the discriminant (explicit or counted from 0) in an
///   integer column.
///
/// Unknown labels or values read from the database are a decode error naming the enum.
///
/// It also implements `FromInput`: a JSON string that is a label or its GraphQL enum
/// value form (`IN_STOCK` for the label `in_stock`, `in-stock` or the variant `InStock`),
/// and for an integer-stored enum a stored integer. `InputEnum` lists each variant's label,
/// GraphQL form and stored integer, in variant order.
///
/// ```
/// use lifeguard_core::LifeEnum;
///
/// #[derive(Debug, Clone, Copy, PartialEq, LifeEnum)]
/// pub enum Status { Draft, InReview, #[lifeguard(rename = "live")] Published }
///
/// #[derive(Debug, Clone, Copy, PartialEq, LifeEnum)]
/// #[lifeguard(repr = "i16")]
/// pub enum Priority { Low = 1, Normal = 5, High = 9 }
/// ```
#[proc_macro_derive(LifeEnum, attributes(lifeguard))]
pub fn derive_life_enum(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    value_enum::expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
