//! The generated GraphQL schema executed against the real primary: lists, filters, orders,
//! pages, connections, relations of every kind, by-key reads and mutations, with the
//! statements each request costs counted by a wrapping executor.

use lifeguard_graphql::Request;
use lifeguard_tests::graphql::{connect, schema, seed};
use lifeguard_tests::orm::Counting;
use lifeguard_tests::{pg, unique_name};
use serde_json::{json, Value};

fn run(db: &dyn lifeguard_core::Executor, query: &str, variables: Value) -> Value {
    let schema = schema();
    let request = Request::new(query).variables(lifeguard_graphql::Variables::from_json(variables));
    serde_json::to_value(schema.execute(db, request)).expect("a response serialises")
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
