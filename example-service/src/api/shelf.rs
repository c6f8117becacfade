//! `GET /shelf`: the newest authors, each with their books, each book with its reviews.
//!
//! The REST counterpart of the nested GraphQL query `authors -> books -> reviews`, and what
//! `scripts/bench-graphql` measures it against: the same three levels loaded the same way,
//! one statement per level (the authors, then `load` of every author's books in one
//! `WHERE author_id = ANY($1)`, then every book's reviews in one more), so a request costs
//! three statements whatever the number of authors.

use lifeguard_core::model::{many, LifeModel};
use lifeguard_router_ext::service::HttpRequest;
use lifeguard_router_ext::{Reply, RequestExecutor};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ProblemBody};
use crate::http::{int_param, json};
use crate::models::{Author, AuthorColumn, Book, BookColumn, Review, ReviewColumn};

/// Authors when `limit` is not given.
pub const DEFAULT_SHELF_LIMIT: i64 = 20;
/// The largest `limit`.
pub const MAX_SHELF_LIMIT: i64 = 100;

/// A book with its reviews.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShelfBook {
    /// The book.
    #[serde(flatten)]
    pub book: Book,
    /// Its reviews, by id.
    pub reviews: Vec<Review>,
}

/// An author with their live books, each with its reviews.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShelfAuthor {
    /// The author.
    #[serde(flatten)]
    pub author: Author,
    /// Their books, by id.
    pub books: Vec<ShelfBook>,
}

/// The parameters of `GET /shelf`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ShelfQuery {
    /// How many authors, newest (highest id) first: 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

/// The newest authors with their books and the books' reviews (three queries: the authors,
/// then one batched query per level).
#[utoipa::path(get, path = "/shelf", tag = "authors", params(ShelfQuery),
    responses(
        (status = 200, description = "The authors, newest first, with books and reviews by id", body = [ShelfAuthor]),
        (status = 400, description = "A malformed query parameter", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub fn shelf(req: &HttpRequest, db: &RequestExecutor) -> Result<Reply, ApiError> {
    let limit = int_param(req, "limit", 1, MAX_SHELF_LIMIT)?.unwrap_or(DEFAULT_SHELF_LIMIT);
    // The children's order is asked of the database, so nothing is sorted here.
    let tree = Author::find()
        .order_by_desc(AuthorColumn::Id)
        .limit(limit as u64)
        .all_with(
            db,
            many::<Book>()
                .query(|q| q.order_by_asc(BookColumn::Id))
                .with(many::<Review>().query(|q| q.order_by_asc(ReviewColumn::Id))),
        )?;
    let authors: Vec<ShelfAuthor> = tree
        .into_iter()
        .map(|(author, books)| ShelfAuthor {
            author,
            books: books
                .into_iter()
                .map(|(book, reviews)| ShelfBook { book, reviews })
                .collect(),
        })
        .collect();
    Ok(json(200, &authors))
}
