//! Variables the request leaves out: an absent variable means an absent input field (the
//! GraphQL spec's coercion), never `null`. A filter on `$c` without `$c` filters nothing,
//! and an update whose `$country` is missing leaves the column as it was; `null` given
//! explicitly still means null.

use lifeguard_core::Executor;
use lifeguard_tests::graphql::{connect, pool, run_on, schema, seed};
use lifeguard_tests::{pg, unique_name};
use serde_json::{json, Value};

fn names(out: &Value) -> Vec<String> {
    assert!(out.get("errors").is_none(), "{out}");
    out["data"]["authors"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {out}"))
        .iter()
        .map(|a| a["name"].as_str().expect("a name").to_owned())
        .collect()
}

#[test]
fn an_absent_variable_in_a_filter_filters_nothing() {
    pg::in_coroutine(|| {
        let conn = connect();
        let run = unique_name("gqlv_filter");
        seed(&conn, &run, 3, 0, 0);
        let q = r#"query($run: String!, $c: String) {
            authors(filter: {run: {eq: $run}, country: {eq: $c}}, orderBy: [{name: ASC}]) { name }
        }"#;
        let all = ["author 0001", "author 0002", "author 0003"];
        assert_eq!(
            names(&run_on(&schema(), &conn, q, json!({ "run": run }))),
            all
        );
        // null given: the column is NULL.
        assert_eq!(
            names(&run_on(
                &schema(),
                &conn,
                q,
                json!({ "run": run, "c": null })
            )),
            ["author 0001", "author 0003"]
        );
        assert_eq!(
            names(&run_on(
                &schema(),
                &conn,
                q,
                json!({ "run": run, "c": "NZ" })
            )),
            ["author 0002"]
        );
    });
}

#[test]
fn an_absent_variable_in_update_data_leaves_the_column_and_null_clears_it() {
    pg::in_coroutine(|| {
        let conn = connect();
        let pool = pool();
        let run = unique_name("gqlv_update");
        let ids = seed(&conn, &run, 1, 0, 0);
        conn.execute(
            "UPDATE gql.authors SET country = 'NZ' WHERE id = $1",
            &[&ids[0]],
        )
        .expect("a country to keep");
        let m = r#"mutation($id: BigInt!, $name: String, $country: String) {
            updateAuthor(id: $id, data: {name: $name, country: $country}) { name country }
        }"#;
        let update = |vars: Value| {
            let request = lifeguard_graphql::Request::new(m)
                .variables(lifeguard_graphql::Variables::from_json(vars));
            let out = serde_json::to_value(schema().execute_on(&pool.primary(), request))
                .expect("serialises");
            assert!(out.get("errors").is_none(), "{out}");
            out["data"]["updateAuthor"].clone()
        };
        let id = ids[0].to_string();
        assert_eq!(
            update(json!({ "id": id, "name": "Renamed" })),
            json!({"name": "Renamed", "country": "NZ"})
        );
        assert_eq!(
            update(json!({ "id": id, "country": null })),
            json!({"name": "Renamed", "country": null})
        );
    });
}

#[test]
fn absent_page_arguments_take_their_defaults() {
    pg::in_coroutine(|| {
        let conn = connect();
        let run = unique_name("gqlv_page");
        seed(&conn, &run, 3, 0, 0);
        let q = r#"query($run: String!, $n: Int, $skip: Int) {
            authors(filter: {run: {eq: $run}}, orderBy: [{name: DESC}], limit: $n, offset: $skip) { name }
        }"#;
        let out = run_on(&schema(), &conn, q, json!({ "run": run }));
        assert_eq!(names(&out), ["author 0003", "author 0002", "author 0001"]);
        let out = run_on(
            &schema(),
            &conn,
            q,
            json!({ "run": run, "n": 1, "skip": 1 }),
        );
        assert_eq!(names(&out), ["author 0002"]);
    });
}
