//! Relay connections of the generated schema against the real primary: every page walked
//! forward (`first`/`after`) and backward (`last`/`before`) over orders with NULLs and
//! ties, cursors refused under another order, and `nodes` beside `edges`.

use lifeguard_core::Executor;
use lifeguard_tests::graphql::{code, connect, data, run_on, schema, seed};
use lifeguard_tests::orm::Counting;
use lifeguard_tests::{pg, unique_name};
use serde_json::{json, Value};

fn run(db: &dyn Executor, query: &str, variables: Value) -> Value {
    run_on(&schema(), db, query, variables)
}

const CONNECTION: &str = r#"query($run: String!, $first: Int, $after: String, $last: Int, $before: String, $order: [AuthorOrderBy!]) {
    authorsConnection(first: $first, after: $after, last: $last, before: $before, filter: {run: {eq: $run}}, orderBy: $order) {
        totalCount
        edges { cursor node { id name country } }
        nodes { name }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
}"#;

/// The ids of one page and its page info, checked against each other.
fn page(db: &dyn Executor, vars: Value, total: u64) -> (Vec<i64>, Value) {
    let c = data(db, CONNECTION, vars)["authorsConnection"].clone();
    assert_eq!(c["totalCount"], total, "{c}");
    let edges = c["edges"].as_array().expect("edges");
    let from_edges: Vec<&Value> = edges.iter().map(|e| &e["node"]["name"]).collect();
    let from_nodes: Vec<&Value> = c["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| &n["name"])
        .collect();
    assert_eq!(from_edges, from_nodes, "nodes and edges are the same rows");
    let info = c["pageInfo"].clone();
    assert_eq!(
        info["startCursor"],
        edges.first().map_or(Value::Null, |e| e["cursor"].clone())
    );
    assert_eq!(
        info["endCursor"],
        edges.last().map_or(Value::Null, |e| e["cursor"].clone())
    );
    let ids = edges
        .iter()
        .map(|e| {
            e["node"]["id"]
                .as_str()
                .and_then(|s| s.parse::<i64>().ok())
                .expect("an id")
        })
        .collect();
    (ids, info)
}

/// Walks every page from the end, `last` at a time; the ids in the connection's order.
fn walk_back(db: &dyn Executor, run: &str, order: Value, last: u64, total: u64) -> Vec<i64> {
    let mut seen: Vec<i64> = Vec::new();
    let mut before = Value::Null;
    for pages in 0.. {
        assert!(pages <= total, "the walk does not end");
        let vars = json!({"run": run, "last": last, "before": before, "order": order});
        let (ids, info) = page(db, vars, total);
        assert_eq!(info["hasNextPage"], !before.is_null(), "{info}");
        assert!(ids.len() as u64 <= last);
        seen.splice(0..0, ids.iter().copied());
        if info["hasPreviousPage"] != json!(true) {
            break;
        }
        assert_eq!(ids.len() as u64, last, "a page after the first is full");
        before = info["startCursor"].clone();
    }
    seen
}

/// Walks every page of the run's authors in `order`, `first` at a time; the ids in the
/// order seen, each page checked against its page info.
fn walk(db: &dyn Executor, run: &str, order: Value, first: u64, total: u64) -> Vec<i64> {
    let mut seen = Vec::new();
    let mut after = Value::Null;
    for pages in 0.. {
        assert!(pages <= total, "the walk does not end");
        let vars = json!({"run": run, "first": first, "after": after, "order": order});
        let (ids, info) = page(db, vars, total);
        assert_eq!(info["hasPreviousPage"], !after.is_null(), "{info}");
        assert!(ids.len() as u64 <= first);
        seen.extend(ids.iter().copied());
        if info["hasNextPage"] != json!(true) {
            break;
        }
        assert_eq!(ids.len() as u64, first, "a page before the last is full");
        after = info["endCursor"].clone();
    }
    seen
}

#[test]
fn connections_walk_every_page_in_order_over_a_nullable_column() {
    pg::in_coroutine(|| {
        let conn = connect();
        let run_name = unique_name("gql_conn");
        seed(&conn, &run_name, 11, 0, 0);
        // Three countries and NULLs, with ties inside each.
        conn.execute(
            "UPDATE gql.authors SET country = CASE right(name, 2)::int % 4
               WHEN 0 THEN 'NZ' WHEN 1 THEN NULL WHEN 2 THEN 'AU' ELSE 'FR' END
             WHERE run = $1",
            &[&run_name],
        )
        .expect("countries");
        for (order, sql) in [
            (json!([{"country": "DESC"}]), "country DESC NULLS FIRST, id"),
            (json!([{"country": "ASC"}]), "country ASC NULLS LAST, id"),
            (
                json!([{"country": "ASC_NULLS_FIRST"}, {"name": "DESC"}]),
                "country ASC NULLS FIRST, name DESC, id",
            ),
            (
                json!([{"country": "DESC_NULLS_LAST"}, {"id": "DESC"}]),
                "country DESC NULLS LAST, id DESC",
            ),
            (json!([{"name": "ASC"}]), "name, id"),
        ] {
            let expected: Vec<i64> = conn
                .query(
                    &format!("SELECT id FROM gql.authors WHERE run = $1 ORDER BY {sql}"),
                    &[&run_name],
                )
                .expect("the expected order")
                .iter()
                .map(|r| r.get(0))
                .collect();
            assert_eq!(expected.len(), 11);
            for size in [1, 3, 4, 11, 20] {
                assert_eq!(
                    walk(&conn, &run_name, order.clone(), size, 11),
                    expected,
                    "{order} by {size}"
                );
                assert_eq!(
                    walk_back(&conn, &run_name, order.clone(), size, 11),
                    expected,
                    "{order} back by {size}"
                );
            }
        }
        // first: 0 is an empty page that says more follow.
        let c = data(&conn, CONNECTION, json!({"run": run_name, "first": 0}))["authorsConnection"]
            .clone();
        assert_eq!(c["edges"], json!([]));
        assert_eq!(c["pageInfo"]["hasNextPage"], true);
        assert_eq!(c["pageInfo"]["endCursor"], Value::Null);
    });
}

#[test]
fn a_cursor_of_another_order_or_garbage_is_refused() {
    pg::in_coroutine(|| {
        let conn = connect();
        let run_name = unique_name("gql_cursor");
        seed(&conn, &run_name, 4, 0, 0);
        let vars = json!({"run": run_name, "first": 2, "order": [{"country": "DESC"}]});
        let c = data(&conn, CONNECTION, vars)["authorsConnection"].clone();
        let cursor = c["pageInfo"]["endCursor"].clone();
        assert!(cursor.is_string(), "{c}");
        let db = Counting::new(&conn);
        for (after, order) in [
            (cursor.clone(), json!([{"country": "ASC"}])),
            (cursor.clone(), json!([{"name": "ASC"}])),
            (cursor.clone(), Value::Null),
            (json!("not a cursor"), json!([{"country": "DESC"}])),
            (json!("eyJvIjoxfQ"), json!([{"country": "DESC"}])),
            (json!(""), json!([{"country": "DESC"}])),
        ] {
            let vars = json!({"run": run_name, "first": 2, "after": after, "order": order});
            let out = run(&db, CONNECTION, vars);
            assert_eq!(code(&out), "BAD_USER_INPUT", "{after} {order}: {out}");
        }
        // The same order takes it.
        let vars =
            json!({"run": run_name, "first": 2, "after": cursor, "order": [{"country": "DESC"}]});
        let c = data(&conn, CONNECTION, vars)["authorsConnection"].clone();
        assert_eq!(c["edges"].as_array().map(Vec::len), Some(2));
        assert_eq!(c["pageInfo"]["hasNextPage"], false);
    });
}

#[test]
fn a_page_between_two_cursors_and_first_with_last_refused() {
    pg::in_coroutine(|| {
        let conn = connect();
        let run_name = unique_name("gql_between");
        seed(&conn, &run_name, 6, 0, 0);
        let order = json!([{"name": "ASC"}]);
        let (all, info) = page(
            &conn,
            json!({"run": run_name, "first": 6, "order": order}),
            6,
        );
        assert_eq!(info["hasNextPage"], false);
        let cursors = data(
            &conn,
            CONNECTION,
            json!({"run": run_name, "first": 6, "order": order}),
        )["authorsConnection"]["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .map(|e| e["cursor"].clone())
            .collect::<Vec<_>>();
        // After the 1st and before the 6th: the 2nd to the 5th, from either end.
        let between =
            json!({"run": run_name, "after": cursors[0], "before": cursors[5], "order": order});
        let mut forward = between.clone();
        forward["first"] = json!(10);
        assert_eq!(page(&conn, forward, 6).0, all[1..5]);
        let mut backward = between;
        backward["last"] = json!(2);
        let (ids, info) = page(&conn, backward, 6);
        assert_eq!(ids, all[3..5]);
        assert_eq!(
            (info["hasPreviousPage"].clone(), info["hasNextPage"].clone()),
            (json!(true), json!(true))
        );
        // A `before` cursor of another order, and first with last, are input errors.
        let out = run(
            &conn,
            CONNECTION,
            json!({"run": run_name, "last": 2, "before": cursors[5], "order": [{"name": "DESC"}]}),
        );
        assert_eq!(code(&out), "BAD_USER_INPUT", "{out}");
        let out = run(
            &conn,
            CONNECTION,
            json!({"run": run_name, "first": 2, "last": 2}),
        );
        assert_eq!(code(&out), "BAD_USER_INPUT", "{out}");
    });
}

#[test]
fn nodes_and_edges_of_a_connection_share_rows_but_not_arguments() {
    pg::in_coroutine(|| {
        let conn = connect();
        let run_name = unique_name("gql_edges");
        seed(&conn, &run_name, 2, 3, 0);
        let q = |nodes_args: &str, edges_args: &str| {
            format!(
                r#"query($run: String!) {{
                    authorsConnection(filter: {{run: {{eq: $run}}}}, orderBy: [{{name: ASC}}]) {{
                        nodes {{ name b: books({nodes_args}) {{ year }} }}
                        edges {{ node {{ b: books({edges_args}) {{ year }} }} }}
                    }}
                }}"#
            )
        };
        // The same arguments: one load serves both.
        let db = Counting::new(&conn);
        let same = "orderBy: [{year: DESC}], limit: 2";
        let d = data(&db, &q(same, same), json!({ "run": run_name }));
        assert_eq!(db.take(), 2);
        let c = &d["authorsConnection"];
        let top = json!([{"year": 1993}, {"year": 1992}]);
        assert_eq!(c["nodes"][1]["b"], top);
        assert_eq!(c["edges"][1]["node"]["b"], top);
        // Different arguments under one response key cannot share the rows: refused,
        // where one side used to be answered with the other's rows.
        let out = run(
            &db,
            &q(
                "orderBy: [{year: ASC}], limit: 1",
                "orderBy: [{year: DESC}]",
            ),
            json!({ "run": run_name }),
        );
        assert_eq!(code(&out), "BAD_USER_INPUT", "{out}");
        assert_eq!(db.take(), 0);
    });
}
