//! Hostile GraphQL documents against the generated schema, each run on a coroutine with
//! the stack the example service gives its request coroutines (`set_stack_size(0x10000)`
//! words, 512 KiB): every one gets a spec-format error (`errors[].message`), never a panic,
//! a stack overflow or an unbounded query, and the limit that refuses it is named.
//!
//! The deep documents matter most in release builds too (frames differ):
//! `cargo test --release -p lifeguard-tests --test graphql_hostile`.

use std::time::{Duration, Instant};

use lifeguard_graphql::{Limits, Request, Variables};
use lifeguard_tests::graphql::{connect, schema_with, seed};
use lifeguard_tests::orm::Counting;
use lifeguard_tests::{pg, unique_name};
use serde_json::{json, Value};

/// The example service's coroutine stack, in words (example-service/src/main.rs).
const SERVICE_STACK: usize = 0x10000;
/// How long any hostile document may take, end to end.
const BOUND: Duration = Duration::from_secs(10);

/// Runs `f` on a coroutine with the service's stack, failing the test when it panics or
/// does not finish within [`BOUND`] (a stack overflow aborts the whole binary).
fn on_service_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    pg::in_coroutine_sized(Some(SERVICE_STACK), BOUND, f)
}

/// What the schema with `limits` answers to `query`, and how many statements it sent; the
/// engine parses the document on the coroutine, as it does in the service.
fn answer(limits: Limits, query: String, variables: Value) -> (Value, usize) {
    let request = Request::new(query).variables(Variables::from_json(variables));
    on_service_stack(move || {
        let conn = connect();
        let db = Counting::new(&conn);
        let schema = schema_with(limits);
        let started = Instant::now();
        let response = schema.execute(&db, request);
        assert!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
        let out = serde_json::to_value(response).expect("a response serialises");
        (out, db.take())
    })
}

/// `authors { books { author { books ... } } }`: `pairs` book/author pairs under the first
/// author of `run`.
fn nested_relations(run: &str, pairs: usize) -> String {
    let mut q = format!("{{ authors(filter: {{run: {{eq: \"{run}\"}}}}, limit: 1) {{ id ");
    for _ in 0..pairs {
        q.push_str("books(limit: 1) { author { ");
    }
    q.push_str("id");
    q.push_str(&"} } ".repeat(pairs));
    q.push_str("} }");
    q
}

/// The messages of a spec-format error response (at least one, each a non-empty string).
fn messages(out: &Value) -> Vec<String> {
    let errors = out["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors: {out}"));
    assert!(!errors.is_empty(), "{out}");
    errors
        .iter()
        .map(|e| {
            let m = e["message"].as_str().unwrap_or_else(|| panic!("{e}"));
            assert!(!m.is_empty(), "{e}");
            m.to_owned()
        })
        .collect()
}

/// Asserts a request error: no data at all, nothing sent, and a message containing `what`.
fn refused(out: &Value, sent: usize, what: &str) {
    let m = messages(out);
    assert!(out["data"].is_null(), "{out}");
    assert_eq!(
        sent, 0,
        "statements were sent for a refused document: {out}"
    );
    assert!(
        m.iter().any(|m| m.contains(what)),
        "expected a message with {what:?}: {m:?}"
    );
}

fn deep_selection(levels: usize) -> String {
    format!("{}{}", "{a".repeat(levels), "}".repeat(levels))
}

fn deep_list_argument(levels: usize) -> String {
    format!(
        "{{ authors(filter: {{id: {{in: {}1{}}}}}) {{ id }} }}",
        "[".repeat(levels),
        "]".repeat(levels)
    )
}

#[test]
fn a_selection_10_000_deep_is_refused_before_parsing() {
    let (out, sent) = answer(Limits::default(), deep_selection(10_000), json!({}));
    refused(&out, sent, "nests 10000 levels deep");
}

#[test]
fn a_list_argument_100_000_deep_is_refused_before_parsing() {
    // A large document limit, so the nesting is what refuses it.
    let limits = Limits {
        max_document_bytes: 1 << 20,
        ..Limits::default()
    };
    let (out, sent) = answer(limits, deep_list_argument(100_000), json!({}));
    refused(&out, sent, "nests 100004 levels deep");
}

#[test]
fn nesting_under_the_scan_limit_but_past_the_engine_depth_is_refused() {
    // 40 levels pass the bracket scan (64) and the parser; the depth limit (16) refuses them.
    let (out, sent) = answer(Limits::default(), nested_relations("none", 19), json!({}));
    refused(&out, sent, "nested too deep");
}

#[test]
fn a_query_as_deep_as_the_depth_limit_runs_on_the_service_stack() {
    // Depth 12 (within the default limit of 16): root, then 5 book/author pairs, then `id`.
    // An author of its own with a book, so every level has a row to load.
    let run = unique_name("gqlh_deep");
    let seeded = run.clone();
    pg::in_coroutine(move || {
        seed(&connect(), &seeded, 1, 1, 0);
    });
    let (out, sent) = answer(Limits::default(), nested_relations(&run, 5), json!({}));
    assert!(out.get("errors").is_none(), "{out}");
    assert_eq!(sent, 11, "one statement per level: {out}");
}

#[test]
fn a_small_document_parses_on_the_service_stack() {
    // pest's stack guard compares the stack pointer with the worker *thread's* stack, so on
    // a coroutine placed below it every parse failed with "stack limit reached"; the
    // schema now parses on a stack of known bounds when the guard reads too little.
    let (out, _) = answer(
        Limits::default(),
        "{ authors(limit: 1) { id } }".into(),
        json!({}),
    );
    assert!(out.get("errors").is_none(), "{out}");
}

#[test]
fn a_one_megabyte_document_is_refused_by_size() {
    let q = format!("{{ authors(limit: 1) {{ id }} }}\n#{}", "x".repeat(1 << 20));
    let (out, sent) = answer(Limits::default(), q, json!({}));
    refused(&out, sent, "more than the 65536 allowed");
}

#[test]
fn five_thousand_aliases_of_one_field_are_refused_by_the_field_limit() {
    // A large document limit, so the alias count is what refuses it.
    let limits = Limits {
        max_document_bytes: 1 << 20,
        ..Limits::default()
    };
    let fields: String = (0..5000)
        .map(|i| format!("a{i}: authors(limit: 1) {{ id }} "))
        .collect();
    let (out, sent) = answer(limits, format!("{{ {fields} }}"), json!({}));
    refused(&out, sent, "too complex");
}

#[test]
fn fragment_cycles_are_refused() {
    let q = "query { authors(limit: 1) { ...A } }
             fragment A on Author { id ...B }
             fragment B on Author { name ...A }";
    let (out, sent) = answer(Limits::default(), q.into(), json!({}));
    refused(&out, sent, "recursion depth");
    // A fragment that spreads itself.
    let q = "{ authors(limit: 1) { ...A } } fragment A on Author { ...A }";
    let (out, sent) = answer(Limits::default(), q.into(), json!({}));
    refused(&out, sent, "recursion depth");
}

#[test]
fn variables_of_the_wrong_type_are_refused() {
    let q =
        "query($n: Int, $run: String!) { authors(limit: $n, filter: {run: {eq: $run}}) { id } }";
    for variables in [
        json!({"n": "ten", "run": "x"}),
        json!({"n": 1, "run": 5}),
        json!({"n": 1}),
        json!({"n": 1.5, "run": "x"}),
        json!({"n": [1], "run": {"eq": "x"}}),
    ] {
        let (out, sent) = answer(Limits::default(), q.into(), variables.clone());
        let m = messages(&out);
        assert!(out["data"].is_null(), "{variables}: {out}");
        assert_eq!(sent, 0, "{variables}: {out}");
        assert!(
            m.iter()
                .any(|m| m.to_lowercase().contains("variable") || m.contains("Invalid value")),
            "{variables}: {m:?}"
        );
    }
}

#[test]
fn unknown_fields_and_arguments_are_refused() {
    for q in [
        "{ authors { nope } }",
        "{ nope }",
        "{ authors(nope: 1) { id } }",
        "{ authors(filter: {nope: {eq: 1}}) { id } }",
    ] {
        let (out, sent) = answer(Limits::default(), q.into(), json!({}));
        let m = messages(&out);
        assert!(out["data"].is_null(), "{q}: {out}");
        assert_eq!(sent, 0, "{q}: {out}");
        assert!(m.iter().any(|m| m.contains("nope")), "{q}: {m:?}");
    }
}

#[test]
fn a_huge_limit_is_refused_and_nothing_is_sent() {
    let (out, sent) = answer(
        Limits::default(),
        "{ authors(limit: 1000000) { id } }".into(),
        json!({}),
    );
    let m = messages(&out);
    assert_eq!(sent, 0, "{out}");
    assert!(m.iter().any(|m| m.contains("1000")), "{m:?}");
    // Past Int's range: a coercion error.
    let (out, sent) = answer(
        Limits::default(),
        "{ authors(limit: 99999999999999) { id } }".into(),
        json!({}),
    );
    messages(&out);
    assert_eq!(sent, 0, "{out}");
    // And a nested one.
    let (out, sent) = answer(
        Limits::default(),
        "{ authors(limit: 1) { books(limit: 5000) { id } } }".into(),
        json!({}),
    );
    messages(&out);
    assert_eq!(sent, 0, "{out}");
}

#[test]
fn a_query_estimated_past_max_cost_is_refused_before_any_statement() {
    // 1000 authors x 1000 books x 1000 reviews: far past the default 50,000 rows, each page
    // within the page-size cap.
    let q = "{ authors(limit: 1000) { id books(limit: 1000) { id reviews(limit: 1000) { id } } } }";
    let (out, sent) = answer(Limits::default(), q.into(), json!({}));
    messages(&out);
    assert_eq!(sent, 0, "a statement was sent: {out}");
    let codes: Vec<&Value> = out["errors"]
        .as_array()
        .map(|e| e.iter().map(|e| &e["extensions"]["code"]).collect())
        .unwrap_or_default();
    assert!(codes.iter().any(|c| *c == "COST_LIMIT"), "{out}");
}

#[test]
fn a_cheap_query_still_runs_under_the_same_limits() {
    // The control for the tests above: the limits refuse the hostile, not everything.
    let run = unique_name("gql_hostile");
    on_service_stack({
        let run = run.clone();
        move || {
            seed(&connect(), &run, 2, 2, 1);
        }
    });
    let (out, sent) = answer(
        Limits::default(),
        "query($run: String!) { authors(filter: {run: {eq: $run}}, limit: 10) { id books(limit: 10) { reviews { id } } } }".into(),
        json!({ "run": run }),
    );
    assert!(out.get("errors").is_none(), "{out}");
    assert_eq!(out["data"]["authors"].as_array().map(Vec::len), Some(2));
    assert_eq!(sent, 3);
}

#[test]
fn introspection_switched_off_refuses_schema_and_type() {
    let off = Limits {
        introspection: false,
        ..Limits::default()
    };
    for q in [
        "{ __schema { types { name } } }",
        "{ __type(name: \"Author\") { name } }",
    ] {
        let (out, sent) = answer(off.clone(), q.into(), json!({}));
        messages(&out);
        assert_eq!(sent, 0);
        assert!(out["data"]["__schema"].is_null() && out["data"]["__type"].is_null());
        // On by default.
        let (out, _) = answer(Limits::default(), q.into(), json!({}));
        assert!(out.get("errors").is_none(), "{out}");
    }
}
