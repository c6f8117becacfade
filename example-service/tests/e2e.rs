//! End to end over real HTTP on loopback: the service runs in this process (as `main`
//! starts it) against the real primary and replica, in a schema of its own; requests are
//! hand-written HTTP/1.1 on std sockets.
//!
//! Needs `scripts/services up` and `eval "$(scripts/services env)"` (or `scripts/test`).

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::sync::OnceLock;

use common::*;
use lifeguard_core::pg::Connection;
use lifeguard_core::Executor;
use serde_json::{json, Value};

const SCHEMA_PREFIX: &str = "example_e2e_";

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| start_server(SCHEMA_PREFIX))
}

fn port() -> u16 {
    server().port
}

/// A fresh connection to the primary with the test schema first in the search path.
fn primary() -> Connection {
    let conn = Connection::open(&primary_url()).unwrap();
    conn.batch_execute(&format!("SET search_path = {}, public", server().schema))
        .unwrap();
    conn
}

/// A unique suffix for names within this run.
fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn primary_only() -> [(&'static str, &'static str); 1] {
    [("Lifeguard-Read-Preference", "primary")]
}

// ------------------------------------------------------------ read routing --

fn whereis(headers: &[(&str, &str)]) -> Value {
    let r = get(port(), "/debug/where", headers);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[test]
fn each_read_preference_routes_as_specified() {
    let primary_port = port_of(&primary_url());
    let replica_port = port_of(replica_urls().split(',').next().unwrap());
    let pref = |p: &'static str| whereis(&[("Lifeguard-Read-Preference", p)]);

    for _ in 0..5 {
        assert_eq!(
            pref("primary"),
            json!({"in_recovery": false, "port": primary_port})
        );
        assert_eq!(
            pref("primary-preferred"),
            json!({"in_recovery": false, "port": primary_port})
        );
        assert_eq!(
            pref("replica"),
            json!({"in_recovery": true, "port": replica_port})
        );
        assert_eq!(
            pref("replica-preferred"),
            json!({"in_recovery": true, "port": replica_port})
        );
        // No header: the default, replica-preferred.
        assert_eq!(
            whereis(&[]),
            json!({"in_recovery": true, "port": replica_port})
        );
        // Nearest: either server, always answered.
        let n = pref("nearest");
        assert!(
            n["port"] == primary_port || n["port"] == replica_port,
            "{n}"
        );
    }
    // Case-insensitive values; a staleness bound the replica meets.
    let r = whereis(&[
        ("Lifeguard-Read-Preference", "REPLICA"),
        ("Lifeguard-Max-Staleness", "5000"),
    ]);
    assert_eq!(r["in_recovery"], true);
}

#[test]
fn replica_reads_without_a_token_come_from_the_replica() {
    // The read path of a real endpoint, not only the diagnostic one: with `replica` and
    // no token, a list is answered (by the replica, as /debug/where shows for the same
    // headers).
    let h = [("Lifeguard-Read-Preference", "replica")];
    assert_eq!(whereis(&h)["in_recovery"], true);
    let r = get(port(), "/authors?per_page=1", &h);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("Lifeguard-Consistency-Token").is_none(),
        "a read issues no token"
    );
}

#[test]
fn a_client_that_sends_back_its_token_reads_its_writes() {
    for i in 0..15 {
        let email = format!("ryw-{}@example.org", unique());
        let r = send_json(
            port(),
            "POST",
            "/authors",
            &[],
            &json!({"name": format!("RYW {i}"), "email": email}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let token = r
            .header("Lifeguard-Consistency-Token")
            .expect("a write returns a token")
            .to_string();
        assert!(token.starts_with("v1."), "{token}");
        let id = r.json()["id"].as_i64().unwrap();

        // Replica-preferred with the token: the replica once it has replayed the write,
        // else the primary; never a miss.
        let got = get(
            port(),
            &format!("/authors/{id}"),
            &[("Lifeguard-Consistency-Token", &token)],
        );
        assert_eq!(got.status, 200, "read {i} missed its write: {}", got.text());
        assert_eq!(got.json()["email"], email);

        // A change, then a read with the newer token sees the change.
        let p = send_json(
            port(),
            "PATCH",
            &format!("/authors/{id}"),
            &[("Lifeguard-Consistency-Token", &token)],
            &json!({"name": format!("RYW {i} renamed")}),
        );
        assert_eq!(p.status, 200, "{}", p.text());
        let token2 = p.header("Lifeguard-Consistency-Token").unwrap().to_string();
        let got = get(
            port(),
            &format!("/authors/{id}"),
            &[("Lifeguard-Consistency-Token", &token2)],
        );
        assert_eq!(got.json()["name"], format!("RYW {i} renamed"));
    }
}

// ------------------------------------------------------------ TechEmpower --

fn assert_world(v: &Value) -> (i32, i32) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"));
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 2, "{v}");
    assert!(
        obj.contains_key("id") && obj.contains_key("randomNumber"),
        "{v}"
    );
    let id = v["id"].as_i64().expect("integer id") as i32;
    let n = v["randomNumber"].as_i64().expect("integer randomNumber") as i32;
    assert!(
        (1..=10_000).contains(&id) && (1..=10_000).contains(&n),
        "{v}"
    );
    (id, n)
}

fn stored(conn: &Connection, id: i32) -> i32 {
    conn.query_one("SELECT randomnumber FROM world WHERE id = $1", &[&id])
        .unwrap()
        .get(0)
}

const FORTUNES_HTML: &str = "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table><tr><th>id</th><th>message</th></tr><tr><td>11</td><td>&lt;script&gt;alert(&quot;This should not be displayed in a browser alert box.&quot;);&lt;/script&gt;</td></tr><tr><td>4</td><td>A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1</td></tr><tr><td>5</td><td>A computer program does what you tell it to do, not what you want it to do.</td></tr><tr><td>2</td><td>A computer scientist is someone who fixes things that aren&#39;t broken.</td></tr><tr><td>8</td><td>A list is only as strong as its weakest link. — Donald Knuth</td></tr><tr><td>0</td><td>Additional fortune added at request time.</td></tr><tr><td>3</td><td>After enough decimal places, nobody gives a damn.</td></tr><tr><td>7</td><td>Any program that runs right is obsolete.</td></tr><tr><td>10</td><td>Computers make very fast, very accurate mistakes.</td></tr><tr><td>6</td><td>Emacs is a nice operating system, but I prefer UNIX. — Tom Christaensen</td></tr><tr><td>9</td><td>Feature: A bug with seniority.</td></tr><tr><td>1</td><td>fortune: No such file or directory</td></tr><tr><td>12</td><td>フレームワークのベンチマーク</td></tr></table></body></html>";

#[test]
fn techempower_endpoints_answer_in_the_harness_formats() {
    // Sequential in one test: /updates changes rows the other checks compare.
    let conn = primary();

    let r = get(port(), "/db", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let (id, n) = assert_world(&r.json());
    assert_eq!(stored(&conn, id), n);

    let r = get(port(), "/queries?q=20", &[]);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let rows = r.json();
    assert_eq!(rows.as_array().unwrap().len(), 20);
    for v in rows.as_array().unwrap() {
        let (id, n) = assert_world(v);
        assert_eq!(stored(&conn, id), n);
    }
    for (q, len) in [
        ("", 1),
        ("?q=foo", 1),
        ("?q=0", 1),
        ("?q=-3", 1),
        ("?q=1", 1),
        ("?q=501", 500),
        ("?q=500", 500),
    ] {
        let r = get(port(), &format!("/queries{q}"), &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.json().as_array().unwrap().len(), len, "/queries{q}");
    }

    let r = get(port(), "/fortunes", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.text(), FORTUNES_HTML);

    let r = get(port(), "/updates?q=5", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let rows = r.json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 5);
    for id in rows
        .iter()
        .map(|v| assert_world(v).0)
        .collect::<HashSet<_>>()
    {
        let given: Vec<i32> = rows
            .iter()
            .filter(|v| v["id"] == id)
            .map(|v| v["randomNumber"].as_i64().unwrap() as i32)
            .collect();
        assert!(
            given.contains(&stored(&conn, id)),
            "id {id}: db has {}, response gave {given:?}",
            stored(&conn, id)
        );
    }
    assert!(
        r.header("Lifeguard-Consistency-Token").is_some(),
        "an update is a write"
    );
    for (q, len) in [("?q=foo", 1), ("?q=501", 500)] {
        let r = get(port(), &format!("/updates{q}"), &[]);
        assert_eq!(r.json().as_array().unwrap().len(), len, "/updates{q}");
    }
}

// ------------------------------------------------------------ REST --

#[test]
fn crud_round_trip() {
    let p = port();
    let email = format!("crud-{}@Example.org", unique());
    let r = send_json(
        p,
        "POST",
        "/authors",
        &[],
        &json!({"name": "  Ann Author", "email": email, "bio": "b"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let author = r.json();
    let id = author["id"].as_i64().unwrap();
    assert_eq!(
        r.header("Location"),
        Some(format!("/authors/{id}").as_str())
    );
    assert_eq!(
        author["email"],
        email.to_lowercase(),
        "emails are normalised"
    );
    assert_eq!(author["created_at"], author["updated_at"]);

    let h = primary_only();
    let r = get(p, &format!("/authors/{id}"), &h);
    assert_eq!(r.json()["books"], json!([]));

    let r = send_json(
        p,
        "PATCH",
        &format!("/authors/{id}"),
        &h,
        &json!({"bio": null, "name": "Ann"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let patched = r.json();
    assert_eq!(patched["bio"], Value::Null);
    assert_eq!(patched["name"], "Ann");
    assert_ne!(
        patched["updated_at"], author["updated_at"],
        "updated_at moves"
    );
    assert_eq!(patched["created_at"], author["created_at"]);

    // A book, a review, and the eager-loaded views.
    let isbn = "978-3-16-148410-0";
    let r = send_json(
        p,
        "POST",
        "/books",
        &h,
        &json!({"author_id": id, "title": format!("Book {}", unique()), "isbn": isbn, "published_year": 2001}),
    );
    // The ISBN may be taken by an earlier run of this test in the same schema? No: the
    // schema is per run, and only this test uses this ISBN.
    assert_eq!(r.status, 201, "{}", r.text());
    let book_id = r.json()["id"].as_i64().unwrap();
    let r = send_json(
        p,
        "POST",
        "/books",
        &h,
        &json!({"author_id": id, "title": "Twin", "isbn": isbn}),
    );
    assert_problem(&r, 409);
    let r = send_json(
        p,
        "POST",
        &format!("/books/{book_id}/reviews"),
        &h,
        &json!({"reviewer": "rita", "rating": 4, "body": "good"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = get(p, &format!("/authors/{id}"), &h);
    assert_eq!(r.json()["books"][0]["id"], book_id);
    let r = get(p, &format!("/books/{book_id}"), &h);
    let detail = r.json();
    assert_eq!(detail["author"]["id"], id);
    assert_eq!(detail["reviews"][0]["reviewer"], "rita");
    assert!(detail.get("deleted_at").is_none());
    let r = get(p, &format!("/books/{book_id}/reviews"), &h);
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    let r = send_json(
        p,
        "PATCH",
        &format!("/books/{book_id}"),
        &h,
        &json!({"isbn": null, "published_year": 1999}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["isbn"], Value::Null);
    assert_eq!(r.json()["published_year"], 1999);

    // Soft delete: gone from the API, still in the table.
    let r = roundtrip(p, "DELETE", &format!("/books/{book_id}"), &h, None);
    assert_eq!(r.status, 204);
    assert!(r.header("Lifeguard-Consistency-Token").is_some());
    assert_problem(&get(p, &format!("/books/{book_id}"), &h), 404);
    assert_problem(
        &roundtrip(p, "DELETE", &format!("/books/{book_id}"), &h, None),
        404,
    );
    assert_problem(
        &send_json(
            p,
            "POST",
            &format!("/books/{book_id}/reviews"),
            &h,
            &json!({"reviewer": "x", "rating": 3}),
        ),
        404,
    );
    assert_eq!(
        get(p, &format!("/authors/{id}"), &h).json()["books"],
        json!([])
    );
    let deleted: Option<chrono::DateTime<chrono::Utc>> = primary()
        .query_one("SELECT deleted_at FROM books WHERE id = $1", &[&book_id])
        .unwrap()
        .get(0);
    assert!(deleted.is_some());
    // The ISBN is free again once its book is deleted.
    let r = send_json(
        p,
        "POST",
        "/books",
        &h,
        &json!({"author_id": id, "title": "Again", "isbn": isbn}),
    );
    assert_eq!(r.status, 201, "{}", r.text());

    // Duplicate email, then delete the author (cascades).
    let r = send_json(
        p,
        "POST",
        "/authors",
        &h,
        &json!({"name": "Dup", "email": email}),
    );
    assert_problem(&r, 409);
    let r = roundtrip(p, "DELETE", &format!("/authors/{id}"), &h, None);
    assert_eq!(r.status, 204);
    assert_problem(&get(p, &format!("/authors/{id}"), &h), 404);
    assert_problem(
        &send_json(p, "PATCH", &format!("/authors/{id}"), &h, &json!({})),
        404,
    );
    assert_problem(
        &roundtrip(p, "DELETE", &format!("/authors/{id}"), &h, None),
        404,
    );
}

#[test]
fn lists_filter_and_paginate() {
    let p = port();
    let h = primary_only();
    let tag = unique();
    let r = send_json(
        p,
        "POST",
        "/authors",
        &h,
        &json!({"name": format!("Pager {tag}"), "email": format!("pager-{tag}@example.org")}),
    );
    let author = r.json()["id"].as_i64().unwrap();
    let mut ids = Vec::new();
    for i in 0..7 {
        let title = if i % 2 == 0 {
            format!("Even_{i} 100%")
        } else {
            format!("Odd {i}")
        };
        let r = send_json(
            p,
            "POST",
            "/books",
            &h,
            &json!({"author_id": author, "title": title, "published_year": 1990 + (i % 3)}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        ids.push(r.json()["id"].as_i64().unwrap());
    }
    let page = |n: i64| {
        get(
            p,
            &format!("/books?author_id={author}&per_page=3&page={n}"),
            &h,
        )
        .json()
    };
    let mut seen = Vec::new();
    for (n, len) in [(1, 3), (2, 3), (3, 1), (4, 0)] {
        let v = page(n);
        assert_eq!(v["total"], 7);
        assert_eq!(v["page"], n);
        assert_eq!(v["per_page"], 3);
        assert_eq!(v["items"].as_array().unwrap().len(), len, "page {n}: {v}");
        seen.extend(
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["id"].as_i64().unwrap()),
        );
    }
    assert_eq!(seen, ids, "pages cover every book once, by id");

    // Title filter: case-insensitive, wildcards taken literally.
    let v = get(p, &format!("/books?author_id={author}&q=even_"), &h).json();
    assert_eq!(v["total"], 4);
    let v = get(p, &format!("/books?author_id={author}&q=100%25"), &h).json();
    assert_eq!(v["total"], 4);
    let v = get(p, &format!("/books?author_id={author}&q=0%25"), &h).json();
    assert_eq!(v["total"], 4, "`0%` matches the literal text");
    let v = get(p, &format!("/books?author_id={author}&q=_"), &h).json();
    assert_eq!(v["total"], 4, "`_` is literal: only the Even_ titles");
    let v = get(p, &format!("/books?author_id={author}&year=1991"), &h).json();
    assert_eq!(v["total"], 2);
    let v = get(p, &format!("/authors?q=pager+{tag}"), &h).json();
    assert_eq!(v["total"], 1);
    assert_eq!(v["items"][0]["id"], author);

    // Defaults and limits.
    let v = get(p, "/books", &h).json();
    assert_eq!(v["per_page"], 20);
    assert_eq!(v["page"], 1);
    for bad in [
        "page=0",
        "per_page=101",
        "per_page=x",
        "author_id=-1",
        "year=3000",
    ] {
        assert_problem(&get(p, &format!("/books?{bad}"), &h), 400);
    }
}

// ------------------------------------------------------------ bad input --

#[test]
fn malformed_lifeguard_headers_are_400_problems() {
    for (name, value) in [
        ("Lifeguard-Read-Preference", "sideways"),
        ("Lifeguard-Max-Staleness", "soon"),
        ("Lifeguard-Consistency-Token", "v2.nope"),
        ("Lifeguard-Timeout", "0"),
        ("Lifeguard-Request-Id", "has space"),
    ] {
        let r = get(port(), "/authors", &[(name, value)]);
        let v = assert_problem(&r, 400);
        assert_eq!(v["header"], name);
    }
    // A valid request id is echoed; one is generated otherwise.
    let r = get(port(), "/db", &[("Lifeguard-Request-Id", "req-42")]);
    assert_eq!(r.header("Lifeguard-Request-Id"), Some("req-42"));
    let r = get(port(), "/db", &[]);
    assert_eq!(r.header("Lifeguard-Request-Id").map(str::len), Some(36));
}

#[test]
fn bad_bodies_and_unknown_routes() {
    let p = port();
    // Malformed JSON: 400.
    let r = roundtrip(
        p,
        "POST",
        "/authors",
        &[("Content-Type", "application/json")],
        Some(b"{\"name\":"),
    );
    assert_problem(&r, 400);
    // Not JSON at all.
    let r = roundtrip(
        p,
        "POST",
        "/authors",
        &[("Content-Type", "text/plain")],
        Some(b"hi"),
    );
    assert_problem(&r, 400);
    // Well-formed JSON of the wrong shape: 422.
    for body in [
        json!({"name": 1, "email": "a@b"}),
        json!({"name": "x"}),
        json!({"name": "x", "email": "a@b", "extra": 1}),
        json!([1]),
    ] {
        let r = send_json(p, "POST", "/authors", &[], &body);
        assert_problem(&r, 422);
    }
    // Field validation: 422 listing the fields.
    let r = send_json(
        p,
        "POST",
        "/authors",
        &[],
        &json!({"name": " ", "email": "nobody"}),
    );
    let v = assert_problem(&r, 422);
    let fields: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "email"]);
    let r = send_json(
        p,
        "POST",
        "/books",
        &[],
        &json!({"author_id": 1, "title": "t", "isbn": "12"}),
    );
    assert_eq!(assert_problem(&r, 422)["errors"][0]["field"], "isbn");
    let r = send_json(
        p,
        "POST",
        "/books",
        &[],
        &json!({"author_id": i64::MAX, "title": "t"}),
    );
    assert_eq!(assert_problem(&r, 422)["errors"][0]["field"], "author_id");
    let r = send_json(
        p,
        "POST",
        "/books/1/reviews",
        &[],
        &json!({"reviewer": "r", "rating": 6}),
    );
    assert_eq!(assert_problem(&r, 422)["errors"][0]["field"], "rating");
    // NUL characters, which PostgreSQL text cannot hold (found by schemathesis).
    assert_problem(&get(p, "/authors?q=a%00b", &[]), 400);
    assert_problem(&get(p, "/books?q=%00", &[]), 400);
    let r = send_json(
        p,
        "POST",
        "/authors",
        &[],
        &json!({"name": "a\u{0}b", "email": "n@u.l"}),
    );
    assert_eq!(assert_problem(&r, 422)["errors"][0]["field"], "name");
    // Oversized body (the test service allows 4096 bytes): 413.
    let big = vec![b' '; 5000];
    let r = roundtrip(
        p,
        "POST",
        "/authors",
        &[("Content-Type", "application/json")],
        Some(&big),
    );
    assert_problem(&r, 413);
    // Unknown routes and methods, bad ids.
    assert_problem(&get(p, "/nope", &[]), 404);
    assert_problem(&roundtrip(p, "PUT", "/authors", &[], None), 404);
    assert_problem(&get(p, "/authors/", &[]), 404);
    assert_problem(&get(p, "/authors/abc", &[]), 400);
    assert_problem(&get(p, "/authors/0", &[]), 404);
    assert_problem(&get(p, "/authors/99999999999999999999", &[]), 404);
    assert_problem(&get(p, "/books/9223372036854775807", &[]), 404);
}

#[test]
fn seventeen_request_headers_are_served_and_too_many_are_a_431() {
    // may_minihttp would close the connection unanswered at the 17th header; the service
    // runs on Lifeguard's own server, whose limit is 64.
    let names: Vec<String> = (0..64).map(|i| format!("X-H{i}")).collect();
    let hs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    assert_eq!(get(port(), "/db", &hs[..16]).status, 200);
    assert_eq!(get(port(), "/db", &hs[..63]).status, 200);
    let mut s = connect(port());
    s.write_all(&request("GET", "/db", &hs, None)).unwrap();
    let r = read_responses(&mut s, 1).remove(0);
    assert_problem(&r, 431);
    assert_eq!(r.header("Connection"), Some("close"));
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap_or(0), 0, "then it closes");
}

#[test]
fn keep_alive_connections_serve_many_requests() {
    let mut s = connect(port());
    let mut out = Vec::new();
    for _ in 0..10 {
        out.extend(request("GET", "/db", &[], None));
    }
    s.write_all(&out).unwrap();
    let rs = read_responses(&mut s, 10);
    assert!(rs.iter().all(|r| r.status == 200));
}

// ------------------------------------------------------------ operations --

#[test]
fn openapi_document_lists_every_route_with_the_lifeguard_headers() {
    let r = get(port(), "/openapi.json", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/authors",
        "/authors/{id}",
        "/books",
        "/books/{id}",
        "/books/{id}/reviews",
        "/db",
        "/queries",
        "/fortunes",
        "/updates",
        "/metrics",
        "/health/ready",
        "/openapi.json",
        "/debug/where",
    ] {
        assert!(paths.contains_key(path), "missing {path}");
    }
    let mut operations = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let params: Vec<&str> = op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            for h in [
                "Lifeguard-Read-Preference",
                "Lifeguard-Max-Staleness",
                "Lifeguard-Consistency-Token",
                "Lifeguard-Timeout",
                "Lifeguard-Request-Id",
            ] {
                assert!(params.contains(&h), "{method} {path} lacks {h}");
            }
            for (status, resp) in op["responses"].as_object().unwrap() {
                assert!(
                    resp["headers"]["Lifeguard-Request-Id"].is_object(),
                    "{method} {path} {status}"
                );
            }
            assert!(
                op["responses"]["400"].is_object(),
                "{method} {path} documents its 400"
            );
        }
    }
    assert!(operations >= 21, "{operations}");
    assert!(doc["components"]["schemas"]["Author"].is_object());
    assert!(doc["components"]["schemas"]["ProblemBody"].is_object());
}

#[test]
fn metrics_and_health() {
    let _ = get(port(), "/authors", &[]);
    let r = get(port(), "/metrics", &[]);
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(
        text.contains("lifeguard_http_requests_total{route=\"authors_list\",status=\"200\"}"),
        "{text}"
    );
    assert!(text.contains("lifeguard_pool_"), "pool series");
    assert_eq!(get(port(), "/health/live", &[]).status, 200);
    let r = get(port(), "/health/ready", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "ready");
}

#[test]
fn the_schema_is_the_configured_one() {
    let conn = Connection::open(&primary_url()).unwrap();
    let n: i64 = conn
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name IN ('authors', 'books', 'reviews', 'world', 'fortune', 'lifeguard_migrations')",
            &[&server().schema],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 6);
    let worlds: i64 = primary()
        .query_one("SELECT count(*) FROM world", &[])
        .unwrap()
        .get(0);
    assert_eq!(worlds, 10_000);
    // The seed ran once even though the migrator and seed are idempotent.
    let seeded: i64 = primary()
        .query_one("SELECT count(*) FROM authors WHERE email LIKE '%@example.org' AND email NOT LIKE '%-%'", &[])
        .unwrap()
        .get(0);
    assert_eq!(seeded, 3);
}
