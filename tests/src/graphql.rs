//! The models and data the GraphQL tests share: authors, their profiles and books, books'
//! reviews and tags (many-to-many), in the schema `gql`, created once per binary under an
//! advisory lock. Each test seeds its own rows under a unique run name.

use chrono::{DateTime, NaiveDate, Utc};
use lifeguard_core::model::{RecordHooks, ValidationErrors};
use lifeguard_core::pg::Connection;
use lifeguard_core::{Executor, LifeModel, LifeRecord};
use lifeguard_graphql::Schema;
use rust_decimal::Decimal;
use serde_json::Value;

const DDL: &str = r#"
SELECT pg_advisory_xact_lock(4251);
CREATE SCHEMA IF NOT EXISTS gql;
CREATE TABLE IF NOT EXISTS gql.authors (
  id bigserial PRIMARY KEY,
  name text NOT NULL,
  run text NOT NULL,
  country text,
  born date
);
CREATE TABLE IF NOT EXISTS gql.profiles (
  id bigserial PRIMARY KEY,
  author_id int8 NOT NULL UNIQUE REFERENCES gql.authors (id) ON DELETE CASCADE,
  bio text NOT NULL
);
CREATE TABLE IF NOT EXISTS gql.books (
  id bigserial PRIMARY KEY,
  author_id int8 NOT NULL REFERENCES gql.authors (id) ON DELETE CASCADE,
  title text NOT NULL,
  year int4 NOT NULL,
  price numeric,
  labels text[] NOT NULL DEFAULT '{}',
  meta jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  deleted_at timestamptz
);
CREATE INDEX IF NOT EXISTS books_author_idx ON gql.books (author_id);
CREATE TABLE IF NOT EXISTS gql.reviews (
  id bigserial PRIMARY KEY,
  book_id int8 NOT NULL REFERENCES gql.books (id) ON DELETE CASCADE,
  stars int2 NOT NULL,
  body text
);
CREATE INDEX IF NOT EXISTS reviews_book_idx ON gql.reviews (book_id);
CREATE TABLE IF NOT EXISTS gql.tags (
  id bigserial PRIMARY KEY,
  name text NOT NULL
);
CREATE TABLE IF NOT EXISTS gql.book_tags (
  book_id int8 NOT NULL REFERENCES gql.books (id) ON DELETE CASCADE,
  tag_id int8 NOT NULL REFERENCES gql.tags (id) ON DELETE CASCADE,
  PRIMARY KEY (book_id, tag_id)
);
"#;

/// A connection to the primary with the `gql` tables in place.
pub fn connect() -> Connection {
    static ONCE: crate::pg::SchemaOnce = crate::pg::SchemaOnce::new();
    crate::pg::connect_with_schema(&ONCE, DDL)
}

/// An author; `run` scopes a test's rows.
#[derive(Debug, Clone, PartialEq, LifeModel, LifeRecord)]
#[lifeguard(table_name = "authors", schema_name = "gql", hooks)]
#[lifeguard(has_many(Book, from = "id", to = "author_id"))]
#[lifeguard(has_one(Profile, from = "id", to = "author_id"))]
pub struct Author {
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    pub name: String,
    pub run: String,
    pub country: Option<String>,
    pub born: Option<NaiveDate>,
}

impl RecordHooks for AuthorRecord {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if self.name.as_ref().is_some_and(|n| n.trim().is_empty()) {
            errors.add("name", "must not be blank");
        }
        if self
            .country
            .as_ref()
            .is_some_and(|c| c.as_ref().is_some_and(|c| c.len() != 2))
        {
            errors.add("country", "must be a two-letter code");
        }
        errors.into_result()
    }
}

/// An author's profile (has_one / belongs_to).
#[derive(Debug, Clone, PartialEq, LifeModel, LifeRecord)]
#[lifeguard(table_name = "profiles", schema_name = "gql")]
#[lifeguard(belongs_to(Author, from = "author_id", to = "id"))]
pub struct Profile {
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    pub author_id: i64,
    pub bio: String,
}

/// A book: soft delete, a creation timestamp, and several column types.
#[derive(Debug, Clone, PartialEq, LifeModel, LifeRecord)]
#[lifeguard(table_name = "books", schema_name = "gql", soft_delete)]
#[lifeguard(belongs_to(Author, from = "author_id", to = "id"))]
#[lifeguard(has_many(Review, from = "id", to = "book_id"))]
#[lifeguard(has_many_through(
    Tag,
    via = BookTag,
    from = "id",
    via_from = "book_id",
    via_to = "tag_id",
    to = "id"
))]
pub struct Book {
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    pub author_id: i64,
    pub title: String,
    pub year: i32,
    pub price: Option<Decimal>,
    #[lifeguard(default_expr = "'{}'")]
    pub labels: Vec<String>,
    pub meta: Option<serde_json::Value>,
    #[lifeguard(created_at)]
    pub created_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A review of a book.
#[derive(Debug, Clone, PartialEq, LifeModel, LifeRecord)]
#[lifeguard(table_name = "reviews", schema_name = "gql")]
#[lifeguard(belongs_to(Book, from = "book_id", to = "id"))]
pub struct Review {
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    pub book_id: i64,
    pub stars: i16,
    pub body: Option<String>,
}

/// A tag (many-to-many with books).
#[derive(Debug, Clone, PartialEq, LifeModel, LifeRecord)]
#[lifeguard(table_name = "tags", schema_name = "gql")]
#[lifeguard(has_many_through(
    Book,
    via = BookTag,
    from = "id",
    via_from = "tag_id",
    via_to = "book_id",
    to = "id"
))]
pub struct Tag {
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    pub name: String,
}

/// The junction of books and tags.
#[derive(Debug, Clone, PartialEq, LifeModel, LifeRecord)]
#[lifeguard(table_name = "book_tags", schema_name = "gql", graphql(read_only))]
pub struct BookTag {
    #[lifeguard(primary_key)]
    pub book_id: i64,
    #[lifeguard(primary_key)]
    pub tag_id: i64,
}

/// The schema over every model above.
pub fn schema() -> Schema {
    schema_with(lifeguard_graphql::Limits::default())
}

/// The schema with `limits`.
pub fn schema_with(limits: lifeguard_graphql::Limits) -> Schema {
    Schema::builder()
        .model::<Author>()
        .model::<Profile>()
        .model::<Book>()
        .model::<Review>()
        .model::<Tag>()
        .model::<BookTag>()
        .limits(limits)
        .build()
        .expect("the test schema builds")
}

/// Seeds `authors` authors under `run`, each with a profile and `books` books, each book
/// with `reviews` reviews and the tags `t0`..`t2` of the run (book `j` has tags `0..=j%3`).
/// Returns the author ids in order.
pub fn seed(
    db: &impl Executor,
    run: &str,
    authors: usize,
    books: usize,
    reviews: usize,
) -> Vec<i64> {
    let sql = format!(
        "WITH a AS (
           INSERT INTO gql.authors (name, run, country)
           SELECT 'author ' || lpad(i::text, 4, '0'), $1, CASE WHEN i % 2 = 0 THEN 'NZ' END
           FROM generate_series(1, {authors}) i RETURNING id, name),
         p AS (INSERT INTO gql.profiles (author_id, bio) SELECT id, 'bio of ' || name FROM a),
         t AS (INSERT INTO gql.tags (name) SELECT $1 || '-t' || k FROM generate_series(0, 2) k RETURNING id, name),
         b AS (
           INSERT INTO gql.books (author_id, title, year, price)
           SELECT a.id, a.name || ' book ' || j, 1990 + j, (j * 10)::numeric / 4
           FROM a, generate_series(1, {books}) j RETURNING id, year),
         r AS (
           INSERT INTO gql.reviews (book_id, stars, body)
           SELECT b.id, (k % 5 + 1)::int2, 'review ' || k FROM b, generate_series(1, {reviews}) k),
         bt AS (
           INSERT INTO gql.book_tags (book_id, tag_id)
           SELECT b.id, t.id FROM b, t
           WHERE right(t.name, 1)::int <= (b.year - 1990) % 3)
         SELECT id FROM a ORDER BY name"
    );
    db.query(&sql, &[&run])
        .expect("seeding the gql tables")
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect()
}

/// Runs `query` with `variables` on `schema` over `db`; the response as JSON.
pub fn run_on(schema: &Schema, db: &dyn Executor, query: &str, variables: Value) -> Value {
    let request = lifeguard_graphql::Request::new(query)
        .variables(lifeguard_graphql::Variables::from_json(variables));
    serde_json::to_value(schema.execute(db, request)).expect("a response serialises")
}

/// The data of `query` run on [`schema`] over `db`, which must answer without errors.
///
/// # Panics
///
/// Panics with the query and the response when it has errors.
pub fn data(db: &dyn Executor, query: &str, variables: Value) -> Value {
    let out = run_on(&schema(), db, query, variables);
    assert!(out.get("errors").is_none(), "{query}\n{out}");
    out["data"].clone()
}

/// The `extensions.code` of the first error of `response`.
///
/// # Panics
///
/// Panics when the response has no error, or its first error no code.
pub fn code(response: &Value) -> String {
    let e = &response["errors"][0];
    assert!(e.is_object(), "an error was expected: {response}");
    e["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("the error has no extensions.code: {response}"))
        .to_owned()
}

/// A small pool on the primary alone, for mutations run with `Schema::execute_on`.
pub fn pool() -> lifeguard_core::pool::Pool {
    let config =
        lifeguard_core::pool::PoolConfig::new(crate::pool::cfg(&crate::primary_url())).max_size(2);
    lifeguard_core::pool::Pool::connect(config).expect("a pool on the primary")
}
