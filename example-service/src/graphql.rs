//! `/graphql`: the library's models (authors, books, reviews) as a generated GraphQL
//! schema, with GraphiQL for browsers; and, when the database is the shared benchmark
//! harness's (its `author` and `post` tables exist), those two tables as `BenchAuthor` and
//! `BenchPost`, as `/db` serves its `world`.
//!
//! ```graphql
//! { authors(filter: {name: {ilike: "%ann%"}}, limit: 5) { name books { title reviews { rating } } } }
//! ```

use lifeguard_core::{Executor, LifeModel, LifeRecord};
use lifeguard_graphql::graphiql::Assets;
use lifeguard_graphql::http::Endpoint;
use lifeguard_graphql::{Schema, SchemaError};

use crate::models::{Author, Book, Review};

/// An author of the benchmark harness's database (read-only here).
#[derive(Debug, Clone, LifeModel, LifeRecord)]
#[lifeguard(
    table_name = "author",
    graphql(name = "BenchAuthor", read_only),
    has_many(BenchPost, from = "id", to = "author_id")
)]
pub struct BenchAuthor {
    /// Its id.
    #[lifeguard(primary_key)]
    pub id: i32,
    /// Its name.
    pub name: String,
}

/// A post of the benchmark harness's database (read-only here).
#[derive(Debug, Clone, LifeModel, LifeRecord)]
#[lifeguard(
    table_name = "post",
    graphql(name = "BenchPost", read_only),
    belongs_to(BenchAuthor, from = "author_id", to = "id")
)]
pub struct BenchPost {
    /// Its id.
    #[lifeguard(primary_key)]
    pub id: i32,
    /// The author's id.
    pub author_id: i32,
    /// Its title.
    pub title: String,
    /// Its text.
    pub body: String,
}

/// Whether the harness's `author` and `post` tables are on the search path.
///
/// # Errors
///
/// The database could not be asked.
pub fn harness_tables(db: &impl Executor) -> lifeguard_core::Result<bool> {
    db.query_one(
        "SELECT to_regclass('author') IS NOT NULL AND to_regclass('post') IS NOT NULL",
        &[],
    )?
    .try_get(0)
}

/// The schema: the library, plus the harness's tables when `harness` is set.
///
/// # Errors
///
/// The models do not make a valid schema (a bug in this crate).
pub fn schema(harness: bool) -> Result<Schema, SchemaError> {
    let mut builder = Schema::builder()
        .model::<Author>()
        .model::<Book>()
        .model::<Review>();
    if harness {
        builder = builder.model::<BenchAuthor>().model::<BenchPost>();
    }
    builder.build()
}

/// The endpoint at `/graphql`, GraphiQL's assets from `LIFEGUARD_GRAPHIQL_DIR` (see
/// [`Assets::from_env`]).
///
/// # Errors
///
/// As [`schema`].
pub fn endpoint(harness: bool) -> Result<Endpoint, SchemaError> {
    Ok(Endpoint::new(
        "/graphql",
        schema(harness)?,
        Assets::from_env(),
    ))
}
