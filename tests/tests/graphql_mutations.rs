//! The generated mutations against the real primary, through a pool with
//! `Schema::execute_on`: creates, updates and deletes (one and many) with nested
//! selections, soft delete, validation and constraint errors as coded GraphQL errors, the
//! whole operation rolled back when one field fails, and no mutation for a read-only model.

use lifeguard_core::pool::Pool;
use lifeguard_core::Executor;
use lifeguard_graphql::{Request, Variables};
use lifeguard_tests::graphql::{code, connect, pool, run_on, schema, seed};
use lifeguard_tests::{pg, unique_name};
use serde_json::{json, Value};

/// Runs `query` as one operation on the pool's primary (a mutation in one transaction).
fn mutate(pool: &Pool, query: &str, variables: Value) -> Value {
    let request = Request::new(query).variables(Variables::from_json(variables));
    serde_json::to_value(schema().execute_on(&pool.primary(), request)).expect("serialises")
}

/// The data of a mutation that must have no errors.
fn ok(pool: &Pool, query: &str, variables: Value) -> Value {
    let out = mutate(pool, query, variables);
    assert!(out.get("errors").is_none(), "{query}\n{out}");
    out["data"].clone()
}

/// The run's authors as (name, country), by name, read straight from the table.
fn authors_of(db: &impl Executor, run: &str) -> Vec<(String, Option<String>)> {
    db.query(
        "SELECT name, country FROM gql.authors WHERE run = $1 ORDER BY name",
        &[&run],
    )
    .expect("read authors")
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

fn id_of(v: &Value) -> i64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a BigInt id: {v}"))
}

#[test]
fn creates_return_their_nested_selection() {
    pg::in_coroutine(|| {
        let conn = connect();
        let pool = pool();
        let run = unique_name("gqlm_create");
        let d = ok(
            &pool,
            r#"mutation($run: String!) {
                createAuthor(data: {name: "Ada", run: $run, country: "GB", born: "1815-12-10"}) {
                    id name country born profile { bio } books { title }
                }
            }"#,
            json!({ "run": run }),
        );
        let ada = &d["createAuthor"];
        assert_eq!(ada["name"], "Ada");
        assert_eq!(ada["born"], "1815-12-10");
        assert_eq!(ada["profile"], Value::Null);
        assert_eq!(ada["books"], json!([]));
        let ada_id = id_of(&ada["id"]);
        assert_eq!(authors_of(&conn, &run), [("Ada".into(), Some("GB".into()))]);

        // A batch, returned in key order, each with the nested rows written before it.
        let d = ok(
            &pool,
            r#"mutation($run: String!, $ada: BigInt!) {
                createAuthors(data: [
                    {name: "Bea", run: $run},
                    {name: "Cy", run: $run, country: "FR"}
                ]) { id name country }
                createBook(data: {authorId: $ada, title: "Notes", year: 1843, price: "12.50"}) {
                    title price labels createdAt deletedAt author { name books { title } }
                }
                createProfile(data: {authorId: $ada, bio: "analyst"}) { bio author { name profile { bio } } }
            }"#,
            json!({ "run": run, "ada": ada_id.to_string() }),
        );
        let many = d["createAuthors"].as_array().expect("a list");
        assert_eq!(many.len(), 2);
        assert_eq!(many[0]["name"], "Bea");
        assert_eq!(many[1]["country"], "FR");
        assert!(id_of(&many[0]["id"]) < id_of(&many[1]["id"]));
        let book = &d["createBook"];
        assert_eq!(book["price"], "12.50");
        assert_eq!(book["labels"], json!([]), "the column default");
        assert!(
            book["createdAt"].is_string(),
            "the created_at timestamp: {book}"
        );
        assert_eq!(book["deletedAt"], Value::Null);
        assert_eq!(book["author"]["books"], json!([{"title": "Notes"}]));
        assert_eq!(d["createProfile"]["author"]["profile"]["bio"], "analyst");
        assert_eq!(authors_of(&conn, &run).len(), 3);
    });
}

#[test]
fn updates_by_key_and_by_filter() {
    pg::in_coroutine(|| {
        let conn = connect();
        let pool = pool();
        let run = unique_name("gqlm_update");
        let ids = seed(&conn, &run, 4, 1, 0);
        let d = ok(
            &pool,
            r#"mutation($id: BigInt!) {
                updateAuthor(id: $id, data: {country: "AU", born: "1970-01-01"}) {
                    name country born books { title }
                }
            }"#,
            json!({ "id": ids[0].to_string() }),
        );
        assert_eq!(
            d["updateAuthor"],
            json!({"name": "author 0001", "country": "AU", "born": "1970-01-01",
                   "books": [{"title": "author 0001 book 1"}]})
        );
        // No row with that key: null, nothing written.
        let d = ok(
            &pool,
            r#"mutation { updateAuthor(id: "9223372036854775807", data: {country: "AU"}) { name } }"#,
            json!({}),
        );
        assert_eq!(d["updateAuthor"], Value::Null);
        // By filter: authors 2 and 3 only; absent fields stay, null clears.
        let d = ok(
            &pool,
            r#"mutation($run: String!) {
                updateAuthors(
                    filter: {run: {eq: $run}, name: {in: ["author 0002", "author 0003"]}},
                    data: {country: null}
                ) { name country }
            }"#,
            json!({ "run": run }),
        );
        assert_eq!(
            d["updateAuthors"],
            json!([{"name": "author 0002", "country": null}, {"name": "author 0003", "country": null}])
        );
        let nz = Some("NZ".to_owned());
        assert_eq!(
            authors_of(&conn, &run),
            [
                ("author 0001".into(), Some("AU".into())),
                ("author 0002".into(), None),
                ("author 0003".into(), None),
                ("author 0004".into(), nz),
            ]
        );
        let d = ok(
            &pool,
            r#"mutation($run: String!) {
                updateAuthors(filter: {run: {eq: $run}, name: {eq: "nobody"}}, data: {country: "DE"}) { name }
            }"#,
            json!({ "run": run }),
        );
        assert_eq!(d["updateAuthors"], json!([]));
    });
}

#[test]
fn deletes_are_soft_where_the_model_is() {
    pg::in_coroutine(|| {
        let conn = connect();
        let pool = pool();
        let run = unique_name("gqlm_delete");
        let ids = seed(&conn, &run, 2, 3, 0);
        let books = |author: i64| -> Vec<(i32, bool)> {
            conn.query(
                "SELECT year, deleted_at IS NOT NULL FROM gql.books WHERE author_id = $1 ORDER BY year",
                &[&author],
            )
            .expect("read books")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
        };
        let first: i64 = conn
            .query_one(
                "SELECT id FROM gql.books WHERE author_id = $1 AND year = 1991",
                &[&ids[0]],
            )
            .expect("a book")
            .get(0);
        let q = "mutation($id: BigInt!) { deleteBook(id: $id) }";
        let d = ok(&pool, q, json!({ "id": first.to_string() }));
        assert_eq!(d["deleteBook"], 1);
        assert_eq!(
            books(ids[0]),
            [(1991, true), (1992, false), (1993, false)],
            "the row stays"
        );
        // Already deleted: nothing to delete.
        assert_eq!(
            ok(&pool, q, json!({ "id": first.to_string() }))["deleteBook"],
            0
        );
        let d = ok(
            &pool,
            "mutation($a: BigInt!) { deleteBooks(filter: {authorId: {eq: $a}, year: {gte: 1992}}) }",
            json!({ "a": ids[0].to_string() }),
        );
        assert_eq!(d["deleteBooks"], 2);
        assert_eq!(books(ids[0]), [(1991, true), (1992, true), (1993, true)]);
        assert_eq!(books(ids[1]), [(1991, false), (1992, false), (1993, false)]);
        // Authors have no soft delete: the row goes.
        let d = ok(
            &pool,
            "mutation($a: BigInt!) { deleteAuthor(id: $a) }",
            json!({ "a": ids[1].to_string() }),
        );
        assert_eq!(d["deleteAuthor"], 1);
        assert_eq!(authors_of(&conn, &run).len(), 1);
        assert_eq!(books(ids[1]), []);
    });
}

#[test]
fn validation_errors_come_back_field_by_field() {
    pg::in_coroutine(|| {
        let conn = connect();
        let pool = pool();
        let run = unique_name("gqlm_invalid");
        let out = mutate(
            &pool,
            r#"mutation($run: String!) {
                createAuthor(data: {name: "  ", run: $run, country: "NZL"}) { id }
            }"#,
            json!({ "run": run }),
        );
        assert_eq!(code(&out), "VALIDATION", "{out}");
        let mut fields: Vec<&str> = out["errors"][0]["extensions"]["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .map(|f| {
                assert!(f["message"].is_string(), "{f}");
                f["field"].as_str().expect("a field name")
            })
            .collect();
        fields.sort_unstable();
        assert_eq!(fields, ["country", "name"], "{out}");
        assert_eq!(out["data"], Value::Null);
        assert_eq!(authors_of(&conn, &run), []);
        // An update is validated too, and leaves the row as it was.
        let ids = seed(&conn, &run, 1, 0, 0);
        let out = mutate(
            &pool,
            r#"mutation($id: BigInt!) { updateAuthor(id: $id, data: {country: "X"}) { id } }"#,
            json!({ "id": ids[0].to_string() }),
        );
        assert_eq!(code(&out), "VALIDATION", "{out}");
        assert_eq!(
            out["errors"][0]["extensions"]["fields"][0]["field"],
            "country"
        );
        assert_eq!(authors_of(&conn, &run), [("author 0001".into(), None)]);
        // A value the column cannot take is named by its GraphQL field (createdAt).
        let out = mutate(
            &pool,
            r#"mutation($a: BigInt!) {
                createBook(data: {authorId: $a, title: "t", year: 1, createdAt: "yesterday"}) { id }
            }"#,
            json!({ "a": ids[0].to_string() }),
        );
        assert_eq!(code(&out), "VALIDATION", "{out}");
        assert_eq!(
            out["errors"][0]["extensions"]["fields"][0]["field"], "createdAt",
            "{out}"
        );
        let books: i64 = conn
            .query_one(
                "SELECT count(*) FROM gql.books WHERE author_id = $1",
                &[&ids[0]],
            )
            .expect("count books")
            .get(0);
        assert_eq!(books, 0);
    });
}

#[test]
fn constraint_violations_carry_sqlstate_and_constraint() {
    pg::in_coroutine(|| {
        let conn = connect();
        let pool = pool();
        let run = unique_name("gqlm_constraint");
        let ids = seed(&conn, &run, 1, 0, 0);
        let out = mutate(
            &pool,
            r#"mutation($a: BigInt!) { createProfile(data: {authorId: $a, bio: "twice"}) { id } }"#,
            json!({ "a": ids[0].to_string() }),
        );
        assert_eq!(code(&out), "UNIQUE_VIOLATION", "{out}");
        let ext = &out["errors"][0]["extensions"];
        assert_eq!(ext["sqlstate"], "23505");
        assert_eq!(ext["constraint"], "profiles_author_id_key");
        let out = mutate(
            &pool,
            r#"mutation { createBook(data: {authorId: "9223372036854775807", title: "orphan", year: 1}) { id } }"#,
            json!({}),
        );
        assert_eq!(code(&out), "FOREIGN_KEY_VIOLATION", "{out}");
        let ext = &out["errors"][0]["extensions"];
        assert_eq!(ext["sqlstate"], "23503");
        assert_eq!(ext["constraint"], "books_author_id_fkey");
        // The message names no internals (no table, no value).
        let message = out["errors"][0]["message"].as_str().expect("a message");
        assert!(
            !message.contains("gql") && !message.contains("9223372036854775807"),
            "{message}"
        );
    });
}

const TWO_CREATES: &str = r#"mutation($run: String!, $second: String!) {
    first: createAuthor(data: {name: "first", run: $run}) { id }
    second: createAuthor(data: {name: "second", run: $run, country: $second}) { id }
}"#;

#[test]
fn a_failing_field_rolls_the_whole_operation_back() {
    pg::in_coroutine(|| {
        let conn = connect();
        let pool = pool();
        let run = unique_name("gqlm_rollback");
        let out = mutate(&pool, TWO_CREATES, json!({ "run": run, "second": "bad" }));
        assert_eq!(code(&out), "VALIDATION", "{out}");
        assert_eq!(out["data"], Value::Null, "{out}");
        assert_eq!(
            authors_of(&conn, &run),
            [],
            "the first create is rolled back"
        );
        // A constraint violation in the second field: the first's update is undone too.
        let ids = seed(&conn, &run, 1, 0, 0);
        let out = mutate(
            &pool,
            r#"mutation($a: BigInt!) {
                updateAuthor(id: $a, data: {country: "AU"}) { id }
                createProfile(data: {authorId: $a, bio: "again"}) { id }
            }"#,
            json!({ "a": ids[0].to_string() }),
        );
        assert_eq!(code(&out), "UNIQUE_VIOLATION", "{out}");
        assert_eq!(authors_of(&conn, &run), [("author 0001".into(), None)]);
        // The pool is usable after it, and a good operation commits both fields.
        let d = ok(&pool, TWO_CREATES, json!({ "run": run, "second": "FR" }));
        assert!(
            d["first"]["id"].is_string() && d["second"]["id"].is_string(),
            "{d}"
        );
        assert_eq!(authors_of(&conn, &run).len(), 3);
        // Without execute_on's transaction the first field would stay: the check above
        // would see it (run here on a connection of its own, in autocommit).
        let own = connect();
        let again = unique_name("gqlm_autocommit");
        let out = run_on(
            &schema(),
            &own,
            TWO_CREATES,
            json!({ "run": again, "second": "bad" }),
        );
        assert_eq!(code(&out), "VALIDATION", "{out}");
        assert_eq!(authors_of(&conn, &again), [("first".into(), None)]);
    });
}

#[test]
fn a_read_only_model_has_no_mutation_fields() {
    pg::in_coroutine(|| {
        let conn = connect();
        let out = run_on(
            &schema(),
            &conn,
            r#"{
                m: __type(name: "Mutation") { fields { name } }
                q: __type(name: "Query") { fields { name } }
            }"#,
            json!({}),
        );
        let names = |t: &str| -> Vec<String> {
            out["data"][t]["fields"]
                .as_array()
                .unwrap_or_else(|| panic!("{out}"))
                .iter()
                .map(|f| f["name"].as_str().expect("a name").to_owned())
                .collect()
        };
        let mutations = names("m");
        assert!(
            mutations.contains(&"createBook".to_owned()),
            "{mutations:?}"
        );
        assert!(
            mutations.contains(&"deleteTags".to_owned()),
            "{mutations:?}"
        );
        assert!(
            !mutations.iter().any(|n| n.contains("BookTag")),
            "{mutations:?}"
        );
        assert!(names("q").contains(&"bookTags".to_owned()));
        let pool = pool();
        let out = mutate(
            &pool,
            r#"mutation { createBookTag(data: {bookId: "1", tagId: "1"}) { bookId } }"#,
            json!({}),
        );
        assert!(out["errors"][0]["message"].is_string(), "{out}");
    });
}
