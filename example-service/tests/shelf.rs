//! `GET /shelf` over real HTTP against the real primary: the newest authors with their
//! books and the books' reviews, in order, and exactly three statements per request (one
//! per level), counted by the service's own `lifeguard_query_duration_seconds_count`.
//!
//! Its own server (schema `example_shelf_<pid>`), so no other test's requests move the
//! statement counter between the two readings.

mod common;

use std::sync::{Mutex, OnceLock};

use common::*;
use lifeguard_core::pg::Connection;
use lifeguard_core::Executor;
use lifeguard_tests::pool::text_metric;
use serde_json::Value;

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| start_server("example_shelf_"))
}

/// Serialises the tests of this file: a counted request must be the only one in flight.
fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Seeded rows are read back at once: the primary has them, a replica may not yet.
const PRIMARY: [(&str, &str); 1] = [("Lifeguard-Read-Preference", "primary")];

fn primary() -> Connection {
    // The server first: it configures may's stack size, which a connection opened before
    // it would fix at the default (too small for the service's debug frames).
    let schema = &server().schema;
    let conn = Connection::open(&primary_url()).unwrap();
    conn.batch_execute(&format!("SET search_path = {schema}, public"))
        .unwrap();
    conn
}

/// Every statement the service's pool has run so far, on any server.
fn statements_so_far() -> f64 {
    let r = get(server().port, "/metrics", &[]);
    assert_eq!(r.status, 200);
    text_metric(&r.text(), "lifeguard_query_duration_seconds_count", &[])
}

/// Three new authors (ids ascending), each with `books` books (the last one soft-deleted)
/// and two reviews per live book; returns the authors' ids.
fn seed(conn: &Connection, tag: &str, books: i64) -> Vec<i64> {
    let mut ids = Vec::new();
    for a in 0..3 {
        let row = conn
            .query_one(
                "INSERT INTO authors (name, email) VALUES ($1, $2) RETURNING id",
                &[
                    &format!("shelf {tag} {a}"),
                    &format!("shelf-{tag}-{a}@example.com"),
                ],
            )
            .unwrap();
        let author: i64 = row.get(0);
        for b in 0..books {
            let deleted = b == books - 1;
            let row = conn
                .query_one(
                    "INSERT INTO books (author_id, title, deleted_at) \
                     VALUES ($1, $2, CASE WHEN $3 THEN now() END) RETURNING id",
                    &[&author, &format!("book {a}.{b}"), &deleted],
                )
                .unwrap();
            let book: i64 = row.get(0);
            for r in 1..=2i32 {
                conn.execute(
                    "INSERT INTO reviews (book_id, reviewer, rating) VALUES ($1, $2, $3)",
                    &[&book, &format!("reader {r}"), &r],
                )
                .unwrap();
            }
        }
        ids.push(author);
    }
    ids
}

fn ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|v| v["id"].as_i64().expect("an id"))
        .collect()
}

#[test]
fn the_newest_authors_come_with_their_books_and_reviews_in_three_statements() {
    let _one = exclusive();
    let conn = primary();
    let authors = seed(&conn, "shape", 3);

    let before = statements_so_far();
    let r = get(server().port, "/shelf?limit=3", &PRIMARY);
    let after = statements_so_far();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(after - before, 3.0, "one statement per level");

    let shelf = r.json();
    // Newest first: the three just inserted, highest id first.
    let mut newest = authors.clone();
    newest.reverse();
    assert_eq!(ids(&shelf), newest, "{shelf}");
    for author in shelf.as_array().unwrap() {
        assert!(author["name"].as_str().unwrap().starts_with("shelf shape "));
        assert!(author["email"].is_string() && author["created_at"].is_string());
        let books = &author["books"];
        // Two live books by id; the soft-deleted third is not there.
        let book_ids = ids(books);
        assert_eq!(book_ids.len(), 2, "{author}");
        assert!(book_ids[0] < book_ids[1]);
        for book in books.as_array().unwrap() {
            assert_eq!(book["author_id"], author["id"]);
            assert!(book["title"].is_string());
            let reviews = &book["reviews"];
            let review_ids = ids(reviews);
            assert_eq!(review_ids.len(), 2, "{book}");
            assert!(review_ids[0] < review_ids[1]);
            for (review, rating) in reviews.as_array().unwrap().iter().zip(1..) {
                assert_eq!(review["book_id"], book["id"]);
                assert_eq!(review["rating"], rating);
                assert_eq!(review["reviewer"], format!("reader {rating}"));
            }
        }
    }
}

#[test]
fn twenty_authors_by_default_still_in_three_statements() {
    let _one = exclusive();
    let conn = primary();
    for round in 0..7 {
        seed(&conn, &format!("many{round}"), 2);
    }
    let before = statements_so_far();
    let r = get(server().port, "/shelf", &PRIMARY);
    let after = statements_so_far();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        after - before,
        3.0,
        "the same three statements for 20 authors"
    );
    let shelf = r.json();
    let got = ids(&shelf);
    assert_eq!(got.len(), 20, "{shelf}");
    assert!(got.windows(2).all(|w| w[0] > w[1]), "{got:?}");
}

#[test]
fn a_bad_limit_is_a_400_problem() {
    let _one = exclusive();
    for q in ["limit=0", "limit=101", "limit=abc", "limit=-1", "limit="] {
        let r = get(server().port, &format!("/shelf?{q}"), &[]);
        let problem = assert_problem(&r, 400);
        assert!(
            problem["detail"].as_str().unwrap().contains("limit"),
            "{q}: {problem}"
        );
    }
    let r = get(server().port, "/shelf?limit=100", &PRIMARY);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn the_openapi_document_describes_the_shelf() {
    let _one = exclusive();
    let doc = get(server().port, "/openapi.json", &[]).json();
    let op = &doc["paths"]["/shelf"]["get"];
    assert!(op.is_object(), "{}", doc["paths"]);
    assert!(op["responses"]["200"].is_object() && op["responses"]["400"].is_object());
    assert!(doc["components"]["schemas"]["ShelfAuthor"].is_object());
    assert!(doc["components"]["schemas"]["ShelfBook"].is_object());
}
