//! The REST endpoints of the library: authors, books, reviews.
//!
//! Every handler has the shape `fn(&HttpRequest, &RequestExecutor) -> Result<Reply,
//! ApiError>`: the executor is the pool seen through the request's `Lifeguard-*` headers,
//! so plain ORM calls (`Author::find().all(db)`) follow the client's read preference,
//! staleness bound and consistency token; after a write the response carries a
//! `Lifeguard-Consistency-Token` the client sends back to read its own write anywhere.
//!
//! Writes that must first look at the row they change (`PATCH`, `POST /books/{id}/reviews`)
//! run in one transaction on the primary, so the check never reads a stale replica.

use lifeguard_core::model::{load, load_many, many, one, ActiveValue::Set, LifeModel, LifeRecord};
use lifeguard_core::query::{ColumnExpr, Condition};
use lifeguard_core::Error;
use lifeguard_router_ext::service::HttpRequest;
use lifeguard_router_ext::{Reply, RequestExecutor};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ProblemBody};
use crate::http::{int_param, json, json_body, path_id, text_param};
use crate::models::{
    Author, AuthorColumn, AuthorRecord, Book, BookColumn, BookRecord, Review, ReviewColumn,
    ReviewRecord,
};

pub mod shelf;

/// Rows per page when `per_page` is not given.
pub const DEFAULT_PER_PAGE: i64 = 20;
/// The largest `per_page`.
pub const MAX_PER_PAGE: i64 = 100;

// ---------------------------------------------------------------- request bodies --

// The `schema` attributes mirror the records' validators (`models.rs`), so generated
// clients and fuzzers know the rules before they send a request: trimmed text must keep a
// non-space character, and no text may hold NUL. utoipa takes only literals here.

/// `POST /authors`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAuthor {
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\x00]*\S[^\x00]*$")]
    pub name: String,
    /// Unique; `user@host`.
    #[schema(max_length = 254, pattern = r"^[^@\x00]+@[^@\x00]+$")]
    pub email: String,
    /// At most 2,000 characters.
    #[serde(default)]
    #[schema(max_length = 2000, pattern = r"^[^\x00]*$")]
    pub bio: Option<String>,
}

/// `PATCH /authors/{id}`: only the fields present change; `"bio": null` clears the bio.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorPatch {
    /// 1 to 200 characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\x00]*\S[^\x00]*$")]
    pub name: Option<String>,
    /// Unique; `user@host`.
    #[serde(default)]
    #[schema(max_length = 254, pattern = r"^[^@\x00]+@[^@\x00]+$")]
    pub email: Option<String>,
    /// At most 2,000 characters; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(max_length = 2000, pattern = r"^[^\x00]*$", value_type = Option<String>)]
    pub bio: Option<Option<String>>,
}

/// `POST /books`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBook {
    /// An existing author's id.
    #[schema(minimum = 1)]
    pub author_id: i64,
    /// 1 to 300 characters.
    #[schema(min_length = 1, max_length = 300, pattern = r"^[^\x00]*\S[^\x00]*$")]
    pub title: String,
    /// ISBN-10 or ISBN-13; unique among live books.
    #[serde(default)]
    #[schema(pattern = r"^-*(?:(?:[0-9]-*){9}[0-9X]|(?:[0-9]-*){13})-*$")]
    pub isbn: Option<String>,
    /// 1450 to 2100.
    #[serde(default)]
    #[schema(minimum = 1450, maximum = 2100)]
    pub published_year: Option<i32>,
}

/// `PATCH /books/{id}`: only the fields present change; `null` clears `isbn` or
/// `published_year`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BookPatch {
    /// Moves the book to another existing author.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub author_id: Option<i64>,
    /// 1 to 300 characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 300, pattern = r"^[^\x00]*\S[^\x00]*$")]
    pub title: Option<String>,
    /// ISBN-10 or ISBN-13; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(pattern = r"^-*(?:(?:[0-9]-*){9}[0-9X]|(?:[0-9]-*){13})-*$", value_type = Option<String>)]
    pub isbn: Option<Option<String>>,
    /// 1450 to 2100; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(minimum = 1450, maximum = 2100, value_type = Option<i32>)]
    pub published_year: Option<Option<i32>>,
}

/// `POST /books/{id}/reviews`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReview {
    /// 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100, pattern = r"^[^\x00]*\S[^\x00]*$")]
    pub reviewer: String,
    /// 1 to 5.
    #[schema(minimum = 1, maximum = 5)]
    pub rating: i32,
    /// At most 5,000 characters.
    #[serde(default)]
    #[schema(max_length = 5000, pattern = r"^[^\x00]*$")]
    pub body: Option<String>,
}

/// A field that is present (even as `null`) is `Some`; absent fields take the default `None`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

// ---------------------------------------------------------------- responses --

/// An author with their (live) books.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthorWithBooks {
    /// The author.
    #[serde(flatten)]
    pub author: Author,
    /// Their books, by id.
    pub books: Vec<Book>,
}

/// A book with its author and reviews.
#[derive(Debug, Serialize, ToSchema)]
pub struct BookDetail {
    /// The book.
    #[serde(flatten)]
    pub book: Book,
    /// Its author.
    pub author: Option<Author>,
    /// Its reviews, by id.
    pub reviews: Vec<Review>,
}

/// One page of authors.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthorPage {
    /// The authors of this page.
    pub items: Vec<Author>,
    /// This page (from 1).
    pub page: i64,
    /// Rows per page.
    pub per_page: i64,
    /// Rows matching the filters, over all pages.
    pub total: i64,
}

/// One page of books.
#[derive(Debug, Serialize, ToSchema)]
pub struct BookPage {
    /// The books of this page.
    pub items: Vec<Book>,
    /// This page (from 1).
    pub page: i64,
    /// Rows per page.
    pub per_page: i64,
    /// Rows matching the filters, over all pages.
    pub total: i64,
}

// ---------------------------------------------------------------- query parameters --

/// Filters and paging of `GET /authors`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuthorListQuery {
    /// Case-insensitive substring of the name.
    pub q: Option<String>,
    /// Page number, from 1.
    #[param(minimum = 1, maximum = 1000000)]
    pub page: Option<i64>,
    /// Rows per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<i64>,
}

/// Filters and paging of `GET /books`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BookListQuery {
    /// Only this author's books.
    #[param(minimum = 1)]
    pub author_id: Option<i64>,
    /// Case-insensitive substring of the title.
    pub q: Option<String>,
    /// Only books first published this year.
    #[param(minimum = 1450, maximum = 2100)]
    pub year: Option<i32>,
    /// Page number, from 1.
    #[param(minimum = 1, maximum = 1000000)]
    pub page: Option<i64>,
    /// Rows per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<i64>,
}

/// `page` and `per_page`, validated.
fn paging(req: &HttpRequest) -> Result<(i64, i64), ApiError> {
    let page = int_param(req, "page", 1, 1_000_000)?.unwrap_or(1);
    let per_page = int_param(req, "per_page", 1, MAX_PER_PAGE)?.unwrap_or(DEFAULT_PER_PAGE);
    Ok((page, per_page))
}

/// A `LIKE` pattern matching `text` anywhere, its wildcards escaped.
fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

fn created(location: String, body: Reply) -> Reply {
    body.header("Location", location)
}

fn no_content() -> Reply {
    Reply::with_body(204, lifeguard_router_ext::JSON, Vec::new())
}

/// Maps `Error::NotFound` from a transaction to a `404` naming the resource.
fn or_not_found(what: String) -> impl FnOnce(Error) -> ApiError {
    move |e| match e {
        Error::NotFound => ApiError::NotFound(what),
        other => ApiError::Db(other),
    }
}

// ---------------------------------------------------------------- authors --

/// Lists authors, by name, with an optional name filter.
#[utoipa::path(get, path = "/authors", tag = "authors", params(AuthorListQuery),
    responses(
        (status = 200, description = "A page of authors", body = AuthorPage),
        (status = 400, description = "A malformed query parameter", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub fn list_authors(req: &HttpRequest, db: &RequestExecutor) -> Result<Reply, ApiError> {
    let (page, per_page) = paging(req)?;
    let filter = text_param(req, "q")?.map(|q| AuthorColumn::Name.ilike(contains_pattern(&q)));
    let pages = Author::find()
        .filter_opt(filter)
        .order_by_asc(AuthorColumn::Name)
        .paginate(db, per_page as u64);
    let items = pages.fetch_page(page as u64 - 1)?;
    let total = pages.num_items()? as i64;
    Ok(json(
        200,
        &AuthorPage {
            items,
            page,
            per_page,
            total,
        },
    ))
}

/// Creates an author.
#[utoipa::path(post, path = "/authors", tag = "authors", request_body = NewAuthor,
    responses(
        (status = 201, description = "Created", body = Author,
            headers(("Location" = String, description = "The new author's URL"))),
        (status = 400, description = "Malformed JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The email is taken", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub fn create_author(req: &HttpRequest, db: &RequestExecutor) -> Result<Reply, ApiError> {
    let new: NewAuthor = json_body(req)?;
    let author = AuthorRecord {
        name: Set(new.name),
        email: Set(new.email),
        bio: Set(new.bio),
        ..Default::default()
    }
    .insert(db)?;
    Ok(created(
        format!("/authors/{}", author.id),
        json(201, &author),
    ))
}

/// One author with their books (two queries: the author, then `load_many` of the books).
#[utoipa::path(get, path = "/authors/{id}", tag = "authors",
    params(("id" = i64, Path, description = "Author id", minimum = 1)),
    responses(
        (status = 200, description = "The author and their books", body = AuthorWithBooks),
        (status = 404, description = "No such author", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub fn get_author(req: &HttpRequest, db: &RequestExecutor) -> Result<Reply, ApiError> {
    let id = path_id(req, "id")?;
    let author = Author::find_by_id(id)
        .one(db)?
        .ok_or_else(|| ApiError::NotFound(format!("author {id} does not exist")))?;
    let (author, mut books) = load_many::<Author, Book, _>(db, vec![author])?
        .pop()
        .expect("one parent in, one out");
    books.sort_by_key(|b| b.id);
    Ok(json(200, &AuthorWithBooks { author, books }))
}

/// Changes the fields given.
#[utoipa::path(patch, path = "/authors/{id}", tag = "authors", request_body = AuthorPatch,
    params(("id" = i64, Path, description = "Author id", minimum = 1)),
    responses(
        (status = 200, description = "The author as stored", body = Author),
        (status = 400, description = "Malformed JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such author", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The email is taken", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub fn patch_author(req: &HttpRequest, db: &RequestExecutor) -> Result<Reply, ApiError> {
    let id = path_id(req, "id")?;
    let patch: AuthorPatch = json_body(req)?;
    let author = db
        .db()
        .transaction(|tx| {
            let current = Author::find_by_id(id)
                .for_update()
                .one(&*tx)?
                .ok_or(Error::NotFound)?;
            let mut record = current.into_record();
            if let Some(name) = &patch.name {
                record.name = Set(name.clone());
            }
            if let Some(email) = &patch.email {
                record.email = Set(email.clone());
            }
            if let Some(bio) = &patch.bio {
                record.bio = Set(bio.clone());
            }
            record.update(&*tx)
        })
        .map_err(or_not_found(format!("author {id} does not exist")))?;
    Ok(json(200, &author))
}

/// Deletes the author, their books and the books' reviews.
#[utoipa::path(delete, path = "/authors/{id}", tag = "authors",
    params(("id" = i64, Path, description = "Author id", minimum = 1)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such author", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub fn delete_author(req: &HttpRequest, db: &RequestExecutor) -> Result<Reply, ApiError> {
    let id = path_id(req, "id")?;
    match Author::delete_by_id(db, id)? {
        0 => Err(ApiError::NotFound(format!("author {id} does not exist"))),
        _ => Ok(no_content()),
    }
}

// ---------------------------------------------------------------- books --

/// Lists live books by id, filtered by author, title substring and year.
#[utoipa::path(get, path = "/books", tag = "books", params(BookListQuery),
    responses(
        (status = 200, description = "A page of books", body = BookPage),
        (status = 400, description = "A malformed query parameter", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub fn list_books(req: &HttpRequest, db: &RequestExecutor) -> Result<Reply, ApiError> {
    let (page, per_page) = paging(req)?;
    let author_id = int_param(req, "author_id", 1, i64::MAX)?;
    let year = int_param(req, "year", 1450, 2100)?;
    let title = text_param(req, "q")?;
    let filter = Condition::all()
        .add_option(author_id.map(|a| BookColumn::AuthorId.eq(a)))
        .add_option(year.map(|y| BookColumn::PublishedYear.eq(y as i32)))
        .add_option(title.map(|q| BookColumn::Title.ilike(contains_pattern(&q))));
    let pages = Book::find().filter(filter).paginate(db, per_page as u64);
    let items = pages.fetch_page(page as u64 - 1)?;
    let total = pages.num_items()? as i64;
    Ok(json(
        200,
        &BookPage {
            items,
            page,
            per_page,
            total,
        },
    ))
}

/// Creates a book.
#[utoipa::path(post, path = "/books", tag = "books", request_body = NewBook,
    responses(
        (status = 201, description = "Created", body = Book,
            headers(("Location" = String, description = "The new book's URL"))),
        (status = 400, description = "Malformed JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The ISBN is taken", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or no such author", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub fn create_book(req: &HttpRequest, db: &RequestExecutor) -> Result<Reply, ApiError> {
    let new: NewBook = json_body(req)?;
    let book = BookRecord {
        author_id: Set(new.author_id),
        title: Set(new.title),
        isbn: Set(new.isbn),
        published_year: Set(new.published_year),
        ..Default::default()
    }
    .insert(db)?;
    Ok(created(format!("/books/{}", book.id), json(201, &book)))
}

/// One live book with its author and reviews (two queries: the book, then one per
/// relation, batched by `load`).
#[utoipa::path(get, path = "/books/{id}", tag = "books",
    params(("id" = i64, Path, description = "Book id", minimum = 1)),
    responses(
        (status = 200, description = "The book, its author and reviews", body = BookDetail),
        (status = 404, description = "No such book (or deleted)", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub fn get_book(req: &HttpRequest, db: &RequestExecutor) -> Result<Reply, ApiError> {
    let id = path_id(req, "id")?;
    let book = Book::find_by_id(id)
        .one(db)?
        .ok_or_else(|| ApiError::NotFound(format!("book {id} does not exist")))?;
    let (book, (author, mut reviews)) = load(db, vec![book], (one::<Author>(), many::<Review>()))?
        .pop()
        .expect("one parent in, one out");
    reviews.sort_by_key(|r| r.id);
    Ok(json(
        200,
        &BookDetail {
            book,
            author,
            reviews,
        },
    ))
}

/// Changes the fields given.
#[utoipa::path(patch, path = "/books/{id}", tag = "books", request_body = BookPatch,
    params(("id" = i64, Path, description = "Book id", minimum = 1)),
    responses(
        (status = 200, description = "The book as stored", body = Book),
        (status = 400, description = "Malformed JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such book", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The ISBN is taken", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or no such author", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub fn patch_book(req: &HttpRequest, db: &RequestExecutor) -> Result<Reply, ApiError> {
    let id = path_id(req, "id")?;
    let patch: BookPatch = json_body(req)?;
    let book = db
        .db()
        .transaction(|tx| {
            let current = Book::find_by_id(id)
                .for_update()
                .one(&*tx)?
                .ok_or(Error::NotFound)?;
            let mut record = current.into_record();
            if let Some(author_id) = patch.author_id {
                record.author_id = Set(author_id);
            }
            if let Some(title) = &patch.title {
                record.title = Set(title.clone());
            }
            if let Some(isbn) = &patch.isbn {
                record.isbn = Set(isbn.clone());
            }
            if let Some(year) = patch.published_year {
                record.published_year = Set(year);
            }
            record.update(&*tx)
        })
        .map_err(or_not_found(format!("book {id} does not exist")))?;
    Ok(json(200, &book))
}

/// Soft-deletes the book: it disappears from every query, its row stays.
#[utoipa::path(delete, path = "/books/{id}", tag = "books",
    params(("id" = i64, Path, description = "Book id", minimum = 1)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such book (or already deleted)", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub fn delete_book(req: &HttpRequest, db: &RequestExecutor) -> Result<Reply, ApiError> {
    let id = path_id(req, "id")?;
    match Book::delete_by_id(db, id)? {
        0 => Err(ApiError::NotFound(format!("book {id} does not exist"))),
        _ => Ok(no_content()),
    }
}

// ---------------------------------------------------------------- reviews --

/// A live book's reviews, by id.
#[utoipa::path(get, path = "/books/{id}/reviews", tag = "reviews",
    params(("id" = i64, Path, description = "Book id", minimum = 1)),
    responses(
        (status = 200, description = "The reviews", body = [Review]),
        (status = 404, description = "No such book", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub fn list_reviews(req: &HttpRequest, db: &RequestExecutor) -> Result<Reply, ApiError> {
    let id = path_id(req, "id")?;
    let book = Book::find_by_id(id)
        .one(db)?
        .ok_or_else(|| ApiError::NotFound(format!("book {id} does not exist")))?;
    let reviews = book
        .find_related::<Review>()
        .order_by_asc(ReviewColumn::Id)
        .all(db)?;
    Ok(json(200, &reviews))
}

/// Reviews a live book.
#[utoipa::path(post, path = "/books/{id}/reviews", tag = "reviews", request_body = NewReview,
    params(("id" = i64, Path, description = "Book id", minimum = 1)),
    responses(
        (status = 201, description = "Created", body = Review),
        (status = 400, description = "Malformed JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such book", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub fn create_review(req: &HttpRequest, db: &RequestExecutor) -> Result<Reply, ApiError> {
    let id = path_id(req, "id")?;
    let new: NewReview = json_body(req)?;
    let record = ReviewRecord {
        book_id: Set(id),
        reviewer: Set(new.reviewer),
        rating: Set(new.rating),
        body: Set(new.body),
        ..Default::default()
    };
    // Validate before touching the database, so a bad body is a 422 even for a missing book.
    use lifeguard_core::model::RecordHooks as _;
    record.validate().map_err(Error::Validation)?;
    let review = db
        .db()
        .transaction(|tx| {
            // FOR SHARE: the book cannot be deleted until the review is in.
            Book::find_by_id(id)
                .for_share()
                .one(&*tx)?
                .ok_or(Error::NotFound)?;
            record.clone().insert(&*tx)
        })
        .map_err(or_not_found(format!("book {id} does not exist")))?;
    Ok(json(201, &review))
}
