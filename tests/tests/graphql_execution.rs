//! The generated GraphQL schema executed against the real primary: lists, filters, orders,
//! pages, relations of every kind and by-key reads, with the statements each request
//! costs counted by a wrapping executor (connections: `graphql_connections.rs`).

use lifeguard_core::Executor;
use lifeguard_graphql::Limits;
use lifeguard_tests::graphql::{code, connect, data, run_on, schema, schema_with, seed};
use lifeguard_tests::orm::Counting;
use lifeguard_tests::{pg, unique_name};
use serde_json::{json, Value};

fn run(db: &dyn Executor, query: &str, variables: Value) -> Value {
    run_on(&schema(), db, query, variables)
}

/// The number at the end of each `name` ("author 0003" → 3).
fn numbers(list: &Value) -> Vec<u32> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|a| {
            let name = a["name"].as_str().expect("a name");
            name.rsplit(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("a numbered name")
        })
        .collect()
}

const AUTHORS_WHERE: &str = r#"query($run: String!, $f: AuthorFilter!) {
    authors(filter: {and: [{run: {eq: $run}}, $f]}, orderBy: [{name: ASC}]) { name }
}"#;

/// The numbers of the run's authors that `filter` selects, by name.
fn authors_where(db: &dyn Executor, run: &str, filter: Value) -> Vec<u32> {
    numbers(&data(db, AUTHORS_WHERE, json!({ "run": run, "f": filter }))["authors"])
}

#[test]
fn a_nested_query_is_one_statement_per_relation_per_level() {
    pg::in_coroutine(|| {
        let conn = connect();
        let run_name = unique_name("gql_nested");
        seed(&conn, &run_name, 100, 3, 2);
        let db = Counting::new(&conn);
        let out = run(
            &db,
            r#"query($run: String!) {
                authors(filter: {run: {eq: $run}}, limit: 100, orderBy: [{name: ASC}]) {
                    id name
                    profile { bio }
                    books(orderBy: [{year: DESC}], limit: 2) {
                        title year
                        reviews(filter: {stars: {gte: 1}}) { stars }
                        tags { name }
                    }
                }
            }"#,
            json!({ "run": run_name }),
        );
        assert!(out.get("errors").is_none(), "{out}");
        let authors = out["data"]["authors"].as_array().expect("a list");
        assert_eq!(authors.len(), 100);
        assert_eq!(authors[0]["name"], "author 0001");
        let books = authors[0]["books"].as_array().expect("books");
        assert_eq!(books.len(), 2, "the per-parent limit");
        assert_eq!(books[0]["year"], 1993);
        assert_eq!(books[0]["reviews"].as_array().map(Vec::len), Some(2));
        assert_eq!(authors[3]["profile"]["bio"], "bio of author 0004");
        // authors, profiles, books, reviews, tags: one statement each.
        let sent = db.sent();
        assert_eq!(db.take(), 5, "{sent:#?}");
    });
}

#[test]
fn filters_apply_every_operator_of_every_kind() {
    pg::in_coroutine(|| {
        let conn = connect();
        let run_name = unique_name("gql_filter");
        let ids = seed(&conn, &run_name, 5, 3, 0);
        // Authors 1..4 born on 2000-01-0N, author 5 never.
        conn.execute(
            "UPDATE gql.authors SET born = make_date(2000, 1, right(name, 1)::int)
             WHERE run = $1 AND name <> 'author 0005'",
            &[&run_name],
        )
        .expect("set born");
        let w = |f: Value| authors_where(&conn, &run_name, f);
        // String.
        assert_eq!(w(json!({"name": {"eq": "author 0002"}})), [2]);
        assert_eq!(w(json!({"name": {"ne": "author 0002"}})), [1, 3, 4, 5]);
        assert_eq!(w(json!({"name": {"gt": "author 0003"}})), [4, 5]);
        assert_eq!(w(json!({"name": {"gte": "author 0003"}})), [3, 4, 5]);
        assert_eq!(w(json!({"name": {"lt": "author 0003"}})), [1, 2]);
        assert_eq!(w(json!({"name": {"lte": "author 0003"}})), [1, 2, 3]);
        assert_eq!(w(json!({"name": {"like": "%3"}})), [3]);
        assert_eq!(w(json!({"name": {"like": "AUTHOR%"}})), Vec::<u32>::new());
        assert_eq!(
            w(json!({"name": {"ilike": "AUTHOR 000_"}})),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(
            w(json!({"name": {"gt": "author 0001", "lt": "author 0004"}})),
            [2, 3]
        );
        // NULLs: isNull both ways, eq/ne null, and ne keeping NULLs (IS DISTINCT FROM).
        assert_eq!(w(json!({"country": {"isNull": true}})), [1, 3, 5]);
        assert_eq!(w(json!({"country": {"isNull": false}})), [2, 4]);
        assert_eq!(w(json!({"country": {"eq": null}})), [1, 3, 5]);
        assert_eq!(w(json!({"country": {"ne": null}})), [2, 4]);
        assert_eq!(w(json!({"country": {"ne": "NZ"}})), [1, 3, 5]);
        // in / nin; nin keeps NULLs out as SQL's NOT IN does.
        let two_four = json!(["author 0002", "author 0004"]);
        assert_eq!(w(json!({"name": {"in": two_four}})), [2, 4]);
        assert_eq!(w(json!({"name": {"nin": two_four}})), [1, 3, 5]);
        assert_eq!(w(json!({"name": {"in": []}})), Vec::<u32>::new());
        assert_eq!(w(json!({"country": {"nin": ["NZ"]}})), Vec::<u32>::new());
        // A single value where a list is expected is a one-item list (literal and variable).
        let single = data(
            &conn,
            r#"query($run: String!) {
                authors(filter: {run: {eq: $run}, name: {in: "author 0003"}}) { name }
            }"#,
            json!({ "run": run_name }),
        );
        assert_eq!(numbers(&single["authors"]), [3]);
        assert_eq!(w(json!({"name": {"nin": "author 0003"}})), [1, 2, 4, 5]);
        // BigInt ids, as strings (and as Int).
        let id = |n: usize| ids[n - 1].to_string();
        assert_eq!(w(json!({"id": {"eq": id(3)}})), [3]);
        assert_eq!(w(json!({"id": {"eq": ids[2]}})), [3]);
        assert_eq!(w(json!({"id": {"gt": id(3)}})), [4, 5]);
        assert_eq!(w(json!({"id": {"lte": id(2)}})), [1, 2]);
        assert_eq!(w(json!({"id": {"in": [id(1), id(5)]}})), [1, 5]);
        assert_eq!(w(json!({"id": {"nin": [id(1), id(5)]}})), [2, 3, 4]);
        // Date.
        assert_eq!(w(json!({"born": {"eq": "2000-01-02"}})), [2]);
        assert_eq!(w(json!({"born": {"gte": "2000-01-02"}})), [2, 3, 4]);
        assert_eq!(w(json!({"born": {"lt": "2000-01-03"}})), [1, 2]);
        assert_eq!(
            w(json!({"born": {"in": ["2000-01-01", "2000-01-04"]}})),
            [1, 4]
        );
        assert_eq!(w(json!({"born": {"isNull": true}})), [5]);
        // and / or / not, nested.
        assert_eq!(
            w(json!({"or": [
                {"name": {"eq": "author 0001"}},
                {"and": [{"country": {"eq": "NZ"}}, {"not": {"name": {"eq": "author 0002"}}}]}
            ]})),
            [1, 4]
        );
        assert_eq!(
            w(
                json!({"not": {"or": [{"country": {"isNull": true}}, {"name": {"eq": "author 0004"}}]}})
            ),
            [2]
        );
        assert_eq!(w(json!({"or": []})), Vec::<u32>::new());
        assert_eq!(w(json!({"and": []})), [1, 2, 3, 4, 5]);
        assert_eq!(
            w(
                json!({"and": [{"or": [{"born": {"lt": "2000-01-02"}}, {"born": {"isNull": true}}]},
                             {"not": {"not": {"country": {"isNull": true}}}}]})
            ),
            [1, 5]
        );

        // Int (year 1991..1993) and Decimal (price 2.5, 5, 7.5) on the books of author 1.
        let years = |f: Value| -> Vec<i64> {
            let q = r#"query($a: BigInt!, $f: BookFilter!) {
                books(filter: {and: [{authorId: {eq: $a}}, $f]}, orderBy: [{year: ASC}]) { year }
            }"#;
            data(&conn, q, json!({ "a": id(1), "f": f }))["books"]
                .as_array()
                .expect("books")
                .iter()
                .map(|b| b["year"].as_i64().expect("a year"))
                .collect()
        };
        assert_eq!(years(json!({"year": {"eq": 1992}})), [1992]);
        assert_eq!(years(json!({"year": {"ne": 1992}})), [1991, 1993]);
        assert_eq!(years(json!({"year": {"gt": 1991}})), [1992, 1993]);
        assert_eq!(years(json!({"year": {"lte": 1992}})), [1991, 1992]);
        assert_eq!(years(json!({"year": {"in": [1991, 1993]}})), [1991, 1993]);
        assert_eq!(years(json!({"year": {"nin": 1991}})), [1992, 1993]);
        assert_eq!(years(json!({"price": {"eq": "5"}})), [1992]);
        assert_eq!(years(json!({"price": {"eq": "5.00"}})), [1992]);
        assert_eq!(years(json!({"price": {"gte": "5"}})), [1992, 1993]);
        assert_eq!(years(json!({"price": {"lt": "7.5"}})), [1991, 1992]);
        assert_eq!(
            years(json!({"price": {"in": ["2.5", "7.50"]}})),
            [1991, 1993]
        );
        assert_eq!(
            years(json!({"price": {"isNull": false}})),
            [1991, 1992, 1993]
        );
    });
}

#[test]
fn bad_filter_values_are_coded_errors() {
    pg::in_coroutine(|| {
        let conn = connect();
        let run_name = unique_name("gql_badfilter");
        seed(&conn, &run_name, 1, 1, 1);
        let q = |f: &str| {
            format!("{{ authors(filter: {{run: {{eq: \"{run_name}\"}}, {f}}}) {{ name }} }}")
        };
        for bad in [
            r#"id: {eq: "not a number"}"#,
            r#"id: {in: ["1", "x"]}"#,
            r#"born: {eq: "2020-13-45"}"#,
            r#"born: {gt: 7}"#,
        ] {
            let out = run(&conn, &q(bad), json!({}));
            assert!(!code(&out).is_empty(), "{bad}: {out}");
            assert!(
                out["data"].is_null() || out["data"]["authors"].is_null(),
                "{out}"
            );
        }
        // Int2 stars: a GraphQL Int that does not fit the column.
        let out = run(
            &conn,
            "query($s: Int!) { reviews(filter: {stars: {eq: $s}}, limit: 1) { stars } }",
            json!({ "s": 70000 }),
        );
        assert_eq!(code(&out), "BAD_USER_INPUT", "{out}");
        let out = run(
            &conn,
            "{ books(filter: {price: {eq: \"abc\"}}, limit: 1) { id } }",
            json!({}),
        );
        assert!(!code(&out).is_empty(), "{out}");
        // An Int variable out of the 32-bit range is refused by coercion, with a code.
        let out = run(
            &conn,
            "query($y: Int!) { books(filter: {year: {eq: $y}}, limit: 1) { id } }",
            json!({ "y": 3_000_000_000_i64 }),
        );
        assert!(!code(&out).is_empty(), "{out}");
    });
}

#[test]
fn order_by_several_fields_with_nulls_placement_and_a_key_tiebreak() {
    pg::in_coroutine(|| {
        let conn = connect();
        let run_name = unique_name("gql_order");
        seed(&conn, &run_name, 5, 0, 0);
        // Authors 1 and 2 share a name: only the key (id, ascending) orders them.
        conn.execute(
            "UPDATE gql.authors SET name = 'author 0001' WHERE run = $1 AND name = 'author 0002'",
            &[&run_name],
        )
        .expect("rename");
        let order = |o: &str| -> Vec<Value> {
            let q = format!(
                r#"query($run: String!) {{
                    authors(filter: {{run: {{eq: $run}}}}, orderBy: {o}) {{ id name country }}
                }}"#
            );
            data(&conn, &q, json!({ "run": run_name }))["authors"]
                .as_array()
                .expect("a list")
                .clone()
        };
        let ids = |rows: &[Value]| -> Vec<i64> {
            rows.iter()
                .map(|r| {
                    r["id"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .expect("an id")
                })
                .collect()
        };
        let by_id = ids(&order("[{id: ASC}]"));
        let nth = |n: usize| by_id[n - 1];
        assert_eq!(
            ids(&order("[{id: DESC}]")),
            [nth(5), nth(4), nth(3), nth(2), nth(1)]
        );
        // country: NZ for 2 and 4, NULL for 1, 3, 5. ASC puts NULLs last, DESC first.
        assert_eq!(
            ids(&order("[{country: ASC}, {name: DESC}]")),
            [nth(4), nth(2), nth(5), nth(3), nth(1)]
        );
        assert_eq!(
            ids(&order("[{country: DESC}]")),
            [nth(1), nth(3), nth(5), nth(2), nth(4)]
        );
        assert_eq!(
            ids(&order("[{country: ASC_NULLS_FIRST}, {name: ASC}]")),
            [nth(1), nth(3), nth(5), nth(2), nth(4)]
        );
        assert_eq!(
            ids(&order("[{country: DESC_NULLS_LAST}, {id: DESC}]")),
            [nth(4), nth(2), nth(5), nth(3), nth(1)]
        );
        assert_eq!(
            ids(&order("[{country: ASC_NULLS_LAST}]")),
            [nth(2), nth(4), nth(1), nth(3), nth(5)]
        );
        // The tie on name: the key breaks it ascending, whatever the name's direction.
        assert_eq!(
            ids(&order("[{name: DESC}]")),
            [nth(5), nth(4), nth(3), nth(1), nth(2)]
        );
        // A single item where a list is expected.
        assert_eq!(
            ids(&order("{name: ASC}")),
            [nth(1), nth(2), nth(3), nth(4), nth(5)]
        );
        // An item naming two fields is refused (@oneOf), before any statement.
        let db = Counting::new(&conn);
        let out = run(
            &db,
            "{ authors(orderBy: [{country: ASC, name: ASC}]) { id } }",
            json!({}),
        );
        assert!(out["errors"][0]["message"].is_string(), "{out}");
        assert!(out["data"].is_null(), "{out}");
        assert_eq!(db.take(), 0);
    });
}

#[test]
fn pages_by_limit_and_offset_and_per_parent_in_sql() {
    pg::in_coroutine(|| {
        let conn = connect();
        let run_name = unique_name("gql_page");
        seed(&conn, &run_name, 10, 4, 0);
        let q = r#"query($run: String!, $limit: Int, $offset: Int) {
            authors(filter: {run: {eq: $run}}, orderBy: [{name: ASC}], limit: $limit, offset: $offset) { name }
        }"#;
        let page = |limit: Value, offset: Value| {
            numbers(
                &data(
                    &conn,
                    q,
                    json!({"run": run_name, "limit": limit, "offset": offset}),
                )["authors"],
            )
        };
        assert_eq!(page(json!(3), json!(0)), [1, 2, 3]);
        assert_eq!(page(json!(3), json!(8)), [9, 10]);
        assert_eq!(page(json!(2), json!(20)), Vec::<u32>::new());
        assert_eq!(page(json!(0), json!(0)), Vec::<u32>::new());
        assert_eq!(page(Value::Null, json!(7)), [8, 9, 10]);
        // Above the maximum page size: refused with a code, nothing sent.
        let db = Counting::new(&conn);
        let max = Limits::default().max_page_size;
        let out = run(&db, q, json!({"run": run_name, "limit": max + 1}));
        assert_eq!(code(&out), "BAD_USER_INPUT", "{out}");
        assert_eq!(db.take(), 0);
        let out = run(&db, q, json!({"run": run_name, "offset": -1}));
        assert!(!code(&out).is_empty(), "{out}");
        assert_eq!(db.take(), 0);

        // Per parent: books 2 and 3 (by year) of every author, in one statement for all
        // ten authors. With at most 25 rows per statement, the 40 books of the run could
        // not be loaded and cut in Rust: the page is the SQL's.
        let small = schema_with(Limits {
            max_rows: 25,
            ..Limits::default()
        });
        let nested = r#"query($run: String!) {
            authors(filter: {run: {eq: $run}}, orderBy: [{name: ASC}]) {
                name
                books(limit: 2, offset: 1, orderBy: [{year: ASC}]) { year }
            }
        }"#;
        let out = run_on(&small, &db, nested, json!({ "run": run_name }));
        assert!(out.get("errors").is_none(), "{out}");
        assert_eq!(db.take(), 2, "authors, then books for all of them");
        let authors = out["data"]["authors"].as_array().expect("authors");
        assert_eq!(authors.len(), 10);
        for a in authors {
            assert_eq!(a["books"], json!([{"year": 1992}, {"year": 1993}]), "{a}");
        }
        // The same without a per-parent page is more rows than a statement may return.
        let unpaged = nested.replace("limit: 2, offset: 1, ", "");
        let out = run_on(&small, &db, &unpaged, json!({ "run": run_name }));
        assert_eq!(code(&out), "RESULT_TOO_LARGE", "{out}");
        db.take();
        // An offset alone pages per parent too (all the books after it), in SQL.
        let offset_only = nested.replace("limit: 2, offset: 1", "offset: 2");
        let out = run_on(&small, &db, &offset_only, json!({ "run": run_name }));
        assert!(out.get("errors").is_none(), "{out}");
        assert_eq!(db.take(), 2);
        for a in out["data"]["authors"].as_array().expect("authors") {
            assert_eq!(a["books"], json!([{"year": 1993}, {"year": 1994}]), "{a}");
        }
        // An offset past every parent's books: empty lists, not missing ones.
        let far = nested.replace("offset: 1", "offset: 10");
        let out = run_on(&small, &db, &far, json!({ "run": run_name }));
        assert!(out.get("errors").is_none(), "{out}");
        assert!(out["data"]["authors"]
            .as_array()
            .expect("authors")
            .iter()
            .all(|a| a["books"] == json!([])));
    });
}

#[test]
fn relations_of_every_kind_resolve_with_one_statement_each() {
    pg::in_coroutine(|| {
        let conn = connect();
        let run_name = unique_name("gql_rel");
        seed(&conn, &run_name, 3, 3, 2);
        let db = Counting::new(&conn);
        let d = data(
            &db,
            r#"query($run: String!) {
                authors(filter: {run: {eq: $run}}, orderBy: [{name: ASC}], limit: 3) {
                    name
                    profile { bio author { name } }
                    books(orderBy: [{year: ASC}], limit: 3) {
                        title
                        author { name }
                        reviews(orderBy: [{stars: DESC}], limit: 5) { stars book { title } }
                        tags(orderBy: [{name: ASC}], limit: 3) {
                            name
                            books(orderBy: [{id: ASC}], limit: 20) { title }
                        }
                    }
                }
            }"#,
            json!({ "run": run_name }),
        );
        // authors; profiles, their author; books, their author, reviews, the reviews' book,
        // tags, the tags' books: one statement per relation per level.
        let sent = db.sent();
        assert_eq!(db.take(), 9, "{sent:#?}");
        let authors = d["authors"].as_array().expect("authors");
        assert_eq!(authors.len(), 3);
        let a1 = &authors[0];
        assert_eq!(a1["profile"]["bio"], "bio of author 0001");
        assert_eq!(a1["profile"]["author"]["name"], "author 0001", "belongs_to");
        let books = a1["books"].as_array().expect("has_many");
        assert_eq!(books.len(), 3);
        assert_eq!(books[0]["title"], "author 0001 book 1");
        assert_eq!(books[2]["author"]["name"], "author 0001", "belongs_to");
        assert_eq!(
            books[0]["reviews"],
            json!([
                {"stars": 3, "book": {"title": "author 0001 book 1"}},
                {"stars": 2, "book": {"title": "author 0001 book 1"}}
            ])
        );
        // Book j has the tags 0..=j%3 of its run.
        let tag_names = |b: &Value| -> Vec<String> {
            b["tags"]
                .as_array()
                .expect("many-to-many")
                .iter()
                .map(|t| t["name"].as_str().expect("a name").to_owned())
                .collect()
        };
        let t = |k: u32| format!("{run_name}-t{k}");
        assert_eq!(tag_names(&books[0]), [t(0), t(1)]);
        assert_eq!(tag_names(&books[1]), [t(0), t(1), t(2)]);
        assert_eq!(tag_names(&books[2]), [t(0)]);
        // And back: t0 is on all nine books of the run, t2 on the three "book 2"s.
        let t0 = &books[0]["tags"][0]["books"];
        assert_eq!(t0.as_array().map(Vec::len), Some(9), "{t0}");
        let t2 = &books[1]["tags"][2]["books"];
        let titles: Vec<&str> = t2
            .as_array()
            .expect("books of t2")
            .iter()
            .map(|b| b["title"].as_str().expect("a title"))
            .collect();
        assert_eq!(
            titles,
            [
                "author 0001 book 2",
                "author 0002 book 2",
                "author 0003 book 2"
            ]
        );
        assert_eq!(authors[2]["profile"]["author"]["name"], "author 0003");
    });
}

#[test]
fn three_levels_with_arguments_over_a_hundred_parents_are_one_statement_per_level() {
    pg::in_coroutine(|| {
        let conn = connect();
        let run_name = unique_name("gql_3lvl");
        seed(&conn, &run_name, 100, 3, 3);
        let db = Counting::new(&conn);
        let d = data(
            &db,
            r#"query($run: String!) {
                authors(filter: {run: {eq: $run}}, orderBy: [{name: DESC}], limit: 100) {
                    name
                    books(filter: {year: {gte: 1992}}, orderBy: [{year: DESC}], limit: 2) {
                        year
                        reviews(filter: {stars: {gt: 2}}, orderBy: [{stars: DESC}], limit: 1) {
                            stars
                        }
                        tags(filter: {name: {like: "%t1"}}, limit: 1) { name }
                    }
                }
            }"#,
            json!({ "run": run_name }),
        );
        let sent = db.sent();
        assert_eq!(db.take(), 4, "authors, books, reviews, tags: {sent:#?}");
        let authors = d["authors"].as_array().expect("authors");
        assert_eq!(authors.len(), 100);
        assert_eq!(authors[0]["name"], "author 0100");
        let t1 = format!("{run_name}-t1");
        for a in authors {
            // Reviews 1..3 have stars 2, 3, 4; book 3 has only t0, book 2 t0..t2.
            assert_eq!(
                a["books"],
                json!([
                    {"year": 1993, "reviews": [{"stars": 4}], "tags": []},
                    {"year": 1992, "reviews": [{"stars": 4}], "tags": [{"name": t1}]}
                ]),
                "{a}"
            );
        }
    });
}

#[test]
fn aliases_fragments_and_directives_on_relations() {
    pg::in_coroutine(|| {
        let conn = connect();
        let run_name = unique_name("gql_alias");
        seed(&conn, &run_name, 2, 3, 0);
        let db = Counting::new(&conn);
        // The same relation twice under aliases, with different arguments.
        let d = data(
            &db,
            r#"query($run: String!) {
                authors(filter: {run: {eq: $run}}, orderBy: [{name: ASC}]) {
                    name
                    a: books(limit: 1, orderBy: [{year: ASC}]) { year }
                    b: books(orderBy: [{year: DESC}]) { year title }
                }
            }"#,
            json!({ "run": run_name }),
        );
        assert_eq!(db.take(), 3);
        for a in d["authors"].as_array().expect("authors") {
            assert_eq!(a["a"], json!([{"year": 1991}]));
            let years: Vec<&Value> = a["b"]
                .as_array()
                .expect("b")
                .iter()
                .map(|b| &b["year"])
                .collect();
            assert_eq!(years, [1993, 1992, 1991]);
            assert!(a["b"][0]["title"].is_string());
        }
        // Fragments and inline fragments selecting the same relation merge into one load.
        let d = data(
            &db,
            r#"query($run: String!) {
                authors(filter: {run: {eq: $run}}, orderBy: [{name: ASC}]) {
                    ...Named
                    ... on Author { books(orderBy: [{year: ASC}]) { year } }
                }
            }
            fragment Named on Author {
                name
                books(orderBy: [{year: ASC}]) { title ... on Book { price } }
            }"#,
            json!({ "run": run_name }),
        );
        assert_eq!(
            db.take(),
            2,
            "the two selections of books are one statement"
        );
        assert_eq!(
            d["authors"][0]["books"][1],
            json!({"title": "author 0001 book 2", "price": "5.0000000000000000", "year": 1992})
        );
        // @skip / @include on a relation: a skipped relation costs no statement.
        let q = r#"query($run: String!, $skip: Boolean!, $with: Boolean!) {
            authors(filter: {run: {eq: $run}}) {
                name
                books @skip(if: $skip) { year }
                profile @include(if: $with) { bio }
                literal: books @skip(if: true) { year }
                also: books @include(if: false) { year }
            }
        }"#;
        let d = data(
            &db,
            q,
            json!({"run": run_name, "skip": true, "with": false}),
        );
        let a = &d["authors"][0];
        assert!(
            a.get("books").is_none() && a.get("profile").is_none(),
            "{a}"
        );
        assert!(a.get("literal").is_none() && a.get("also").is_none(), "{a}");
        let sent = db.sent();
        assert_eq!(db.take(), 1, "only the authors: {sent:#?}");
        let d = data(
            &db,
            q,
            json!({"run": run_name, "skip": false, "with": true}),
        );
        let a = &d["authors"][0];
        assert_eq!(a["books"].as_array().map(Vec::len), Some(3));
        assert_eq!(a["profile"]["bio"], "bio of author 0001");
        assert_eq!(db.take(), 3);
    });
}

#[test]
fn soft_deleted_books_never_appear() {
    pg::in_coroutine(|| {
        let conn = connect();
        let run_name = unique_name("gql_soft");
        let ids = seed(&conn, &run_name, 2, 3, 1);
        // Book 2 of author 1 and every book of author 2 are deleted.
        let gone: Vec<i64> = conn
            .query(
                "UPDATE gql.books SET deleted_at = now()
                 WHERE (author_id = $1 AND title LIKE '% book 2') OR author_id = $2 RETURNING id",
                &[&ids[0], &ids[1]],
            )
            .expect("soft delete")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(gone.len(), 4);
        let d = data(
            &conn,
            r#"query($a: BigInt!, $b: BigInt!, $gone: BigInt!, $run: String!, $tag: String!) {
                books(filter: {authorId: {in: [$a, $b]}}, orderBy: [{year: ASC}]) { year }
                booksConnection(filter: {authorId: {in: [$a, $b]}}) { totalCount nodes { year } }
                book(id: $gone) { id }
                authors(filter: {run: {eq: $run}}, orderBy: [{name: ASC}]) {
                    books(orderBy: [{year: ASC}]) { year }
                }
                tags(filter: {name: {eq: $tag}}) { books(orderBy: [{year: ASC}]) { year } }
                reviews(filter: {bookId: {eq: $gone}}) { stars book { id } }
                withDeleted: books(filter: {authorId: {eq: $a}, deletedAt: {isNull: false}}) { id }
            }"#,
            json!({
                "a": ids[0].to_string(), "b": ids[1].to_string(),
                "gone": gone[0].to_string(), "run": run_name, "tag": format!("{run_name}-t0")
            }),
        );
        let live = json!([{"year": 1991}, {"year": 1993}]);
        assert_eq!(d["books"], live, "root list");
        assert_eq!(d["booksConnection"]["totalCount"], 2);
        assert_eq!(d["booksConnection"]["nodes"], live);
        assert_eq!(d["book"], Value::Null, "by key");
        assert_eq!(d["authors"][0]["books"], live, "has_many");
        assert_eq!(d["authors"][1]["books"], json!([]));
        assert_eq!(d["tags"][0]["books"], live, "many-to-many");
        assert_eq!(d["reviews"][0]["book"], Value::Null, "belongs_to");
        assert_eq!(d["withDeleted"], json!([]), "even when asked for");
    });
}

#[test]
fn by_key_reads_find_a_row_or_null() {
    pg::in_coroutine(|| {
        let conn = connect();
        let run_name = unique_name("gql_key");
        let ids = seed(&conn, &run_name, 2, 2, 0);
        let db = Counting::new(&conn);
        let q = r#"query($id: BigInt!) {
            author(id: $id) { id name profile { bio } books(limit: 1, orderBy: [{year: DESC}]) { year } }
        }"#;
        let d = data(&db, q, json!({ "id": ids[1].to_string() }));
        assert_eq!(
            d["author"],
            json!({
                "id": ids[1].to_string(), "name": "author 0002",
                "profile": {"bio": "bio of author 0002"}, "books": [{"year": 1992}]
            })
        );
        assert_eq!(db.take(), 3);
        // An Int is a BigInt too.
        let d = data(&db, q, json!({ "id": ids[0] }));
        assert_eq!(d["author"]["name"], "author 0001");
        let d = data(&db, q, json!({ "id": "9223372036854775807" }));
        assert_eq!(d["author"], Value::Null);
        let out = run(&db, q, json!({ "id": "twelve" }));
        assert!(!code(&out).is_empty(), "{out}");
        let out = run(&db, q, json!({ "id": "9223372036854775808" }));
        assert!(!code(&out).is_empty(), "{out}");
    });
}
