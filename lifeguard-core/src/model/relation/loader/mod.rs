//! Batched loading: the related rows of many parents with one `WHERE key = ANY($1)` query
//! per level, whatever the number of parents.

mod level;
mod spec;

pub use spec::{many, one, Leaf, LoadSpec, Many, Nest, One, With};

use super::def::{Related, RelationKind};
use crate::error::Result;
use crate::executor::Executor;
use crate::model::LifeModel;
use crate::query::Select;

/// Loads `spec` for `parents`: one query per level of the spec, never one per row.
///
/// ```no_run
/// # use lifeguard_core::LifeModel;
/// # #[derive(Debug, Clone, LifeModel)]
/// # #[lifeguard(table_name = "authors", has_many(Post, from = "id", to = "author_id"))]
/// # #[lifeguard(has_one(Profile, from = "id", to = "author_id"))]
/// # pub struct Author { #[lifeguard(primary_key)] pub id: i64 }
/// # #[derive(Debug, Clone, LifeModel)]
/// # #[lifeguard(table_name = "profiles")]
/// # pub struct Profile { #[lifeguard(primary_key)] pub id: i64, pub author_id: i64 }
/// # #[derive(Debug, Clone, LifeModel)]
/// # #[lifeguard(table_name = "posts", has_many(Comment, from = "id", to = "post_id"))]
/// # pub struct Post { #[lifeguard(primary_key)] pub id: i64, pub author_id: i64 }
/// # #[derive(Debug, Clone, LifeModel)]
/// # #[lifeguard(table_name = "comments")]
/// # pub struct Comment { #[lifeguard(primary_key)] pub id: i64, pub post_id: i64 }
/// use lifeguard_core::model::{load, many, one, LifeModel};
///
/// # fn demo(db: &impl lifeguard_core::Executor) -> lifeguard_core::Result<()> {
/// let authors = Author::find().all(db)?;
/// // Each author with their profile and their posts, each post with its comments:
/// // three queries, however many rows.
/// let tree: Vec<(Author, (Option<Profile>, Vec<(Post, Vec<Comment>)>))> = load(
///     db,
///     authors,
///     (one::<Profile>(), many::<Post>().with(many::<Comment>())),
/// )?;
/// # Ok(()) }
/// ```
pub fn load<P, S, E>(db: &E, parents: Vec<P>, spec: S) -> Result<Vec<(P, S::Out)>>
where
    P: LifeModel,
    S: LoadSpec<P>,
    E: Executor + ?Sized,
{
    let loaded = spec.load_for(db, &parents)?;
    Ok(parents.into_iter().zip(loaded).collect())
}

/// Each parent with all its related `R`s, in one query (`has_many`).
///
/// ```no_run
/// # use lifeguard_core::LifeModel;
/// # #[derive(Debug, Clone, LifeModel)]
/// # #[lifeguard(table_name = "authors", has_many(Post, from = "id", to = "author_id"))]
/// # pub struct Author { #[lifeguard(primary_key)] pub id: i64 }
/// # #[derive(Debug, Clone, LifeModel)]
/// # #[lifeguard(table_name = "posts")]
/// # pub struct Post { #[lifeguard(primary_key)] pub id: i64, pub author_id: i64 }
/// use lifeguard_core::model::{load_many, LifeModel};
///
/// # fn demo(db: &impl lifeguard_core::Executor) -> lifeguard_core::Result<()> {
/// let authors = Author::find().all(db)?;
/// let with_posts: Vec<(Author, Vec<Post>)> = load_many::<Author, Post, _>(db, authors)?;
/// # Ok(()) }
/// ```
pub fn load_many<P, R, E>(db: &E, parents: Vec<P>) -> Result<Vec<(P, Vec<R>)>>
where
    P: Related<R>,
    R: LifeModel,
    E: Executor + ?Sized,
{
    load(db, parents, many::<R>())
}

/// Each parent with its related `R`, if any, in one query (`belongs_to`, `has_one`).
pub fn load_one<P, R, E>(db: &E, parents: Vec<P>) -> Result<Vec<(P, Option<R>)>>
where
    P: Related<R>,
    R: LifeModel,
    E: Executor + ?Sized,
{
    load(db, parents, one::<R>())
}

/// Each parent with its `R`s through the junction table, in one query
/// (`has_many_through`); the same as [`load_many`], named for readability.
pub fn load_many_to_many<P, R, E>(db: &E, parents: Vec<P>) -> Result<Vec<(P, Vec<R>)>>
where
    P: Related<R>,
    R: LifeModel,
    E: Executor + ?Sized,
{
    debug_assert_eq!(P::def().kind, RelationKind::ManyToMany);
    load_many(db, parents)
}

impl<M: LifeModel> Select<M> {
    /// Runs the query and loads `spec` for the rows: `Author::find().all_with(db,
    /// many::<Post>())`. One query for the rows, then one per level of the spec.
    pub fn all_with<S: LoadSpec<M>>(
        &self,
        db: &(impl Executor + ?Sized),
        spec: S,
    ) -> Result<Vec<(M, S::Out)>> {
        let parents = self.all(db)?;
        load(db, parents, spec)
    }
}
