//! The library domain: authors write books; readers review books.
//!
//! Each model is one `#[derive(LifeModel, LifeRecord)]` struct: the derive gives the column
//! enum (`AuthorColumn::Email`), the change set (`AuthorRecord`), row decoding and the
//! relation impls. The same structs are the JSON the API returns (`Serialize`) and their
//! OpenAPI schemas (`ToSchema`).
//!
//! - `Author` *has many* `Book`s; `Book` *belongs to* an `Author` and *has many* `Review`s;
//!   `Review` *belongs to* a `Book`.
//! - `created_at` / `updated_at` are written by the database clock (`now()`) on insert and
//!   on every update that changes something; `default_expr = "now()"` states the columns'
//!   default as the migration creates it, so `lifeguard-migrate drift` finds none missing.
//! - `Book` is soft-deleted: `DELETE /books/{id}` sets `deleted_at`; queries, `find_by_id`
//!   and the relation loaders then skip it.
//! - Records validate their fields before any SQL (`#[lifeguard(hooks)]` and
//!   [`RecordHooks::validate`]): a failure is a `422` listing the fields.
//!
//! The models name no schema: the pool's connections set `search_path` to the configured
//! schema (see [`crate::config`]), so one binary serves any schema.

#![allow(clippy::duplicated_attributes)] // two relations may both say `to = "id"`

use chrono::{DateTime, Utc};
use lifeguard_core::model::{RecordHooks, ValidationErrors};
use lifeguard_core::{LifeModel, LifeRecord};
use serde::Serialize;
use utoipa::ToSchema;

/// An author.
#[derive(Debug, Clone, Serialize, ToSchema, LifeModel, LifeRecord)]
#[lifeguard(
    table_name = "authors",
    hooks,
    cache,
    has_many(Book, from = "id", to = "author_id")
)]
pub struct Author {
    /// Assigned by the database.
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    /// Display name, 1 to 200 characters.
    pub name: String,
    /// Unique among authors; contains `@`.
    pub email: String,
    /// Optional biography, at most 2,000 characters.
    pub bio: Option<String>,
    /// When the author was created (database clock).
    #[lifeguard(created_at, default_expr = "now()")]
    pub created_at: DateTime<Utc>,
    /// When the author last changed (database clock).
    #[lifeguard(updated_at, default_expr = "now()")]
    pub updated_at: DateTime<Utc>,
}

/// A book; deleting it only marks it deleted.
#[derive(Debug, Clone, Serialize, ToSchema, LifeModel, LifeRecord)]
#[lifeguard(table_name = "books", hooks, soft_delete, cache)]
#[lifeguard(belongs_to(Author, from = "author_id", to = "id"))]
#[lifeguard(has_many(Review, from = "id", to = "book_id"))]
pub struct Book {
    /// Assigned by the database.
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    /// The author's id.
    pub author_id: i64,
    /// Title, 1 to 300 characters.
    pub title: String,
    /// ISBN-10 or ISBN-13 (digits, hyphens, a final `X`); unique among live books.
    pub isbn: Option<String>,
    /// Year of first publication, 1450 to 2100.
    pub published_year: Option<i32>,
    /// When the book was created (database clock).
    #[lifeguard(created_at, default_expr = "now()")]
    pub created_at: DateTime<Utc>,
    /// When the book last changed (database clock).
    #[lifeguard(updated_at, default_expr = "now()")]
    pub updated_at: DateTime<Utc>,
    /// Set by a delete; deleted books are never returned.
    #[serde(skip)]
    #[schema(ignore)]
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A reader's review of a book.
#[derive(Debug, Clone, Serialize, ToSchema, LifeModel, LifeRecord)]
#[lifeguard(
    table_name = "reviews",
    hooks,
    belongs_to(Book, from = "book_id", to = "id")
)]
pub struct Review {
    /// Assigned by the database.
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    /// The book's id.
    pub book_id: i64,
    /// Who wrote the review, 1 to 100 characters.
    pub reviewer: String,
    /// 1 to 5 stars.
    pub rating: i32,
    /// Optional text, at most 5,000 characters.
    pub body: Option<String>,
    /// When the review was written (database clock).
    #[lifeguard(created_at, default_expr = "now()")]
    pub created_at: DateTime<Utc>,
}

/// Adds an error when a present text field's length (in characters) is outside `min..=max`.
fn text_len(
    errors: &mut ValidationErrors,
    field: &'static str,
    value: Option<&str>,
    min: usize,
    max: usize,
) {
    if let Some(v) = value {
        if v.contains('\0') {
            errors.add(field, "must not contain NUL characters");
            return;
        }
        let n = v.chars().count();
        if n < min || n > max {
            let msg = if min > 0 && v.trim().is_empty() {
                "must not be empty".to_string()
            } else {
                format!("must be {min} to {max} characters long")
            };
            errors.add(field, msg);
        }
    }
}

impl RecordHooks for AuthorRecord {
    fn before_save(&mut self) -> lifeguard_core::Result<()> {
        if let lifeguard_core::model::ActiveValue::Set(email) = &mut self.email {
            *email = email.trim().to_lowercase();
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        text_len(
            &mut errors,
            "name",
            self.name.as_ref().map(|s| s.trim()),
            1,
            200,
        );
        if let Some(email) = self.email.as_ref() {
            let ok = email.len() <= 254
                && !email.contains('\0')
                && email.split_once('@').is_some_and(|(user, host)| {
                    !user.is_empty() && !host.is_empty() && !host.contains('@')
                });
            if !ok {
                errors.add("email", "must look like user@host");
            }
        }
        text_len(
            &mut errors,
            "bio",
            self.bio.as_ref().and_then(|b| b.as_deref()),
            0,
            2000,
        );
        errors.into_result()
    }
}

impl RecordHooks for BookRecord {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        text_len(
            &mut errors,
            "title",
            self.title.as_ref().map(|s| s.trim()),
            1,
            300,
        );
        if let Some(Some(isbn)) = self.isbn.as_ref() {
            let digits: Vec<char> = isbn.chars().filter(|c| *c != '-').collect();
            let shape = isbn
                .chars()
                .all(|c| c.is_ascii_digit() || c == '-' || c == 'X')
                && (digits.len() == 10 || digits.len() == 13)
                && digits[..digits.len() - 1].iter().all(char::is_ascii_digit)
                && (digits.len() == 10 || digits[12] != 'X');
            if !shape {
                errors.add("isbn", "must be an ISBN-10 or ISBN-13 (digits and hyphens)");
            }
        }
        if let Some(Some(year)) = self.published_year.as_ref() {
            if !(1450..=2100).contains(year) {
                errors.add("published_year", "must be between 1450 and 2100");
            }
        }
        if self.author_id.as_ref().is_some_and(|id| *id <= 0) {
            errors.add("author_id", "must be a positive id");
        }
        errors.into_result()
    }
}

impl RecordHooks for ReviewRecord {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        text_len(
            &mut errors,
            "reviewer",
            self.reviewer.as_ref().map(|s| s.trim()),
            1,
            100,
        );
        if self.rating.as_ref().is_some_and(|r| !(1..=5).contains(r)) {
            errors.add("rating", "must be 1 to 5");
        }
        text_len(
            &mut errors,
            "body",
            self.body.as_ref().and_then(|b| b.as_deref()),
            0,
            5000,
        );
        errors.into_result()
    }
}
