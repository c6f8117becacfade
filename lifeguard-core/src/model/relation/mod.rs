//! Relations between models, and loading them without N+1 queries.
//!
//! Relations are declared on the model with the derive (column names are SQL names):
//!
//! | attribute | meaning | key |
//! | --- | --- | --- |
//! | `has_many(Post, from = "id", to = "author_id")` | rows of `Post` whose `author_id` is this row's `id` | this model's `from` |
//! | `has_one(Profile, from = "id", to = "user_id")` | at most one such row | |
//! | `belongs_to(Author, from = "author_id", to = "id")` | the `Author` this row's `author_id` names | |
//! | `has_many_through(Tag, via = BookTag, from = "id", via_from = "book_id", via_to = "tag_id", to = "id")` | many-to-many through the junction model `BookTag` | |
//!
//! Each one implements [`Related<Target>`](Related) for the model, and the model lists them
//! all in [`LifeModel::RELATIONS`](super::LifeModel::RELATIONS). Then:
//!
//! - **lazy** ([`lazy`]): [`LifeModel::find_related`](super::LifeModel::find_related) gives
//!   a [`Select`](crate::query::Select) over the related rows, to refine and run;
//! - **join-based** ([`join`]):
//!   [`Select::find_also_related`](crate::query::Select::find_also_related) (one
//!   `LEFT JOIN` query, pairs `(M, Option<R>)`) and
//!   [`Select::find_with_related`](crate::query::Select::find_with_related)
//!   (`(M, Vec<R>)`, grouped);
//! - **batched** ([`loader`]): [`load_many`], [`load_one`], [`load_many_to_many`], and
//!   nested trees with [`load`] and the [`many`]/[`one`] specs: one `WHERE key = ANY($1)`
//!   query per level, whatever the number of rows (a level with no keys to look up sends
//!   nothing).
//!
//! Soft-deleted rows (`#[lifeguard(soft_delete)]`) of the related model, and of a
//! junction model, are left out everywhere, as with `find()`.
//!
//! ```
//! use lifeguard_core::model::{many, LifeModel, Related, RelationKind};
//! use lifeguard_core::LifeModel;
//!
//! #[derive(Debug, Clone, LifeModel)]
//! #[lifeguard(table_name = "authors", has_many(Post, from = "id", to = "author_id"))]
//! pub struct Author {
//!     #[lifeguard(primary_key)]
//!     pub id: i64,
//!     pub name: String,
//! }
//!
//! #[derive(Debug, Clone, LifeModel)]
//! #[lifeguard(table_name = "posts", belongs_to(Author, from = "author_id", to = "id"))]
//! #[lifeguard(has_many(Comment, from = "id", to = "post_id"))]
//! pub struct Post {
//!     #[lifeguard(primary_key)]
//!     pub id: i64,
//!     pub author_id: i64,
//! }
//!
//! #[derive(Debug, Clone, LifeModel)]
//! #[lifeguard(table_name = "comments")]
//! pub struct Comment {
//!     #[lifeguard(primary_key)]
//!     pub id: i64,
//!     pub post_id: i64,
//! }
//!
//! assert_eq!(<Author as Related<Post>>::def().kind, RelationKind::HasMany);
//! let author = Author { id: 7, name: "Ann".into() };
//! let (sql, params) = author.find_related::<Post>().build();
//! assert_eq!(
//!     sql,
//!     r#"SELECT "posts"."id", "posts"."author_id" FROM "posts" WHERE ("posts"."author_id" = $1)"#
//! );
//! assert_eq!(params.len(), 1);
//!
//! // Authors, their posts, and the posts' comments: three queries in all.
//! # fn demo(db: &impl lifeguard_core::Executor) -> lifeguard_core::Result<()> {
//! let tree: Vec<(Author, Vec<(Post, Vec<Comment>)>)> =
//!     Author::find().all_with(db, many::<Post>().with(many::<Comment>()))?;
//! # Ok(()) }
//! ```

mod def;
mod join;
mod lazy;
mod loader;
mod sql;

pub use def::{has_column, Related, RelationDef, RelationKind, ViaDef};
pub use join::{SelectTwo, SelectWithRelated};
pub(crate) use lazy::find_related;
pub use loader::{
    load, load_many, load_many_to_many, load_one, many, one, Leaf, LoadSpec, Many, Nest, One, With,
};
