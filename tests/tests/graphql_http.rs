//! GraphQL over HTTP: a real service (`lifeguard_graphql::http::routes` over the fixture
//! schema and a real pool) on a free port, spoken to over raw TCP. Status codes, media
//! types and bodies as the GraphQL-over-HTTP specification gives them; GraphiQL and the
//! SDL; the consistency token after a mutation; response fields in document order.
//!
//! The service's coroutines have the tests' 256 KiB stack (`pg::init`): on the example
//! service's 512 KiB the engine's parser refuses every document (see graphql_hostile.rs,
//! `a_small_document_parses_on_the_service_stack`).

use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::Duration;

use lifeguard_core::pool::{Pool, PoolConfig};
use lifeguard_router_ext::service::ServiceBuilder;
use lifeguard_router_ext::{Lifeguard, Settings};
use lifeguard_tests::graphql::{connect, schema, seed};
use lifeguard_tests::http::{self, Resp};
use lifeguard_tests::{pg, scratch::free_port, unique_name, wait_for};
use serde_json::{json, Value};

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// The port of the one service this binary starts.
fn port() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| {
        pg::init();
        // The fixture tables, created before any coroutine needs them.
        drop(connect());
        let config = PoolConfig::from_env()
            .expect("run: scripts/services up && eval \"$(scripts/services env)\"")
            .monitor_interval(Duration::from_millis(100));
        let pool = Pool::connect(config).expect("pool");
        let lg = Lifeguard::new(pool, Settings::default());
        let service =
            lifeguard_graphql::http::routes(ServiceBuilder::new(lg), "/graphql", schema()).build();
        let port = free_port();
        service
            .start(("127.0.0.1", port))
            .expect("the server starts");
        wait_for(Duration::from_secs(5), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .expect("the server accepts");
        port
    })
}

fn send(method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
    let mut s = http::connect(port());
    let mut headers = headers.to_vec();
    headers.push(("Connection", "close"));
    std::io::Write::write_all(&mut s, &http::request(method, path, &headers, body)).expect("send");
    http::read_responses(&mut s, 1).remove(0)
}

/// A `POST` reading from the primary (the rows a test seeds may not be on the replica yet).
fn post(accept: Option<&str>, body: &Value) -> Resp {
    post_with(accept, &[("Lifeguard-Read-Preference", "primary")], body)
}

fn post_with(accept: Option<&str>, extra: &[(&str, &str)], body: &Value) -> Resp {
    let body = serde_json::to_vec(body).expect("json");
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = accept {
        headers.push(("Accept", a));
    }
    headers.extend_from_slice(extra);
    send("POST", "/graphql", &headers, Some(&body))
}

fn get(query: &str, accept: &str) -> Resp {
    let q: String = percent_encode(query);
    send(
        "GET",
        &format!("/graphql?query={q}"),
        &[("Accept", accept)],
        None,
    )
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn media(r: &Resp) -> &str {
    r.header("content-type")
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
}

/// Seeds one author under a fresh run name.
fn seeded() -> String {
    let run = unique_name("gql_http");
    pg::in_coroutine({
        let run = run.clone();
        move || {
            seed(&connect(), &run, 2, 2, 1);
        }
    });
    run
}

#[test]
fn a_post_query_is_200_json_with_data() {
    let run = seeded();
    let r = post(
        None,
        &json!({
            "query": "query($run: String!) { authors(filter: {run: {eq: $run}}) { name } }",
            "variables": {"run": run}
        }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(media(&r), "application/json");
    let v = r.json();
    assert!(v.get("errors").is_none(), "{v}");
    assert_eq!(v["data"]["authors"].as_array().map(Vec::len), Some(2));
}

#[test]
fn a_parse_error_is_400_with_the_graphql_media_type_and_200_with_json() {
    let bad = json!({"query": "{ authors { "});
    let r = post(Some(GRAPHQL_RESPONSE), &bad);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(media(&r), GRAPHQL_RESPONSE);
    let v = r.json();
    assert!(v["errors"][0]["message"].is_string(), "{v}");
    assert!(v.get("data").is_none(), "a request error has no data: {v}");
    // A validation error is a request error too.
    let r = post(Some(GRAPHQL_RESPONSE), &json!({"query": "{ nope }"}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.json().get("data").is_none());

    let r = post(Some("application/json"), &bad);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(media(&r), "application/json");
    assert!(r.json()["errors"][0]["message"].is_string());
}

#[test]
fn get_runs_a_query_and_refuses_a_mutation_with_405() {
    let r = get("{ authors(limit: 1) { id } }", "application/json");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json().get("errors").is_none(), "{}", r.text());

    let r = get("mutation { deleteAuthor(id: 0) }", "application/json");
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(r.header("allow"), Some("POST"));
    assert!(r.json()["errors"][0]["message"].is_string());
}

#[test]
fn bodies_that_are_not_json_are_400_and_other_media_types_415() {
    let r = send(
        "POST",
        "/graphql",
        &[("Content-Type", "application/json")],
        Some(b"{ authors { id } }"),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.json()["errors"][0]["message"].is_string());

    let r = send(
        "POST",
        "/graphql",
        &[("Content-Type", "text/plain")],
        Some(br#"{"query":"{ authors { id } }"}"#),
    );
    assert_eq!(r.status, 415, "{}", r.text());
    assert!(r.json()["errors"][0]["message"].is_string());
}

#[test]
fn browsers_get_graphiql_and_the_sdl_is_served() {
    let r = send("GET", "/graphql", &[("Accept", "text/html")], None);
    assert_eq!(r.status, 200);
    assert_eq!(media(&r), "text/html");
    let page = r.text();
    assert!(
        page.contains("<html") || page.contains("<!DOCTYPE"),
        "{page}"
    );
    assert!(page.to_lowercase().contains("graphiql"));
    // Its scripts and styles are the service's own, not a CDN's.
    assert!(page.contains("/graphql/assets/"), "{page}");
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "{page}"
    );

    let r = send("GET", "/graphql/schema.graphql", &[], None);
    assert_eq!(r.status, 200);
    let sdl = r.text();
    assert!(sdl.contains("type Author"), "{sdl}");
    assert_eq!(sdl, schema().sdl());
}

#[test]
fn a_mutation_carries_the_consistency_token_in_header_and_extensions() {
    let run = unique_name("gql_http_m");
    let r = post(
        None,
        &json!({
            "query": "mutation($run: String!) { createAuthor(data: {name: \"m\", run: $run}) { id name } }",
            "variables": {"run": run}
        }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert!(v.get("errors").is_none(), "{v}");
    let header = r
        .header("lifeguard-consistency-token")
        .unwrap_or_else(|| panic!("no token header: {:?}", r.headers));
    assert!(header.starts_with("v1."), "{header}");
    assert_eq!(
        v["extensions"]["lifeguard"]["consistencyToken"], header,
        "{v}"
    );
    // Read your write on the replica with the token.
    let r = post_with(
        None,
        &[
            ("Lifeguard-Read-Preference", "replica-preferred"),
            ("Lifeguard-Consistency-Token", header),
        ],
        &json!({
            "query": "query($run: String!) { authors(filter: {run: {eq: $run}}) { name } }",
            "variables": {"run": run}
        }),
    );
    assert_eq!(r.json()["data"]["authors"][0]["name"], "m", "{}", r.text());
    // A query writes nothing and carries none.
    let r = post(None, &json!({"query": "{ authors(limit: 1) { id } }"}));
    assert!(r.header("lifeguard-consistency-token").is_none());
    assert!(r.json().get("extensions").is_none(), "{}", r.text());
}

#[test]
fn response_fields_keep_the_document_order() {
    let run = seeded();
    let r = post(
        None,
        &json!({
            "query": "query($run: String!) { zz: authors(filter: {run: {eq: $run}}, limit: 1) { name run id } aa: __typename }",
            "variables": {"run": run}
        }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.text();
    let at = |needle: &str| {
        body.find(needle)
            .unwrap_or_else(|| panic!("{needle} missing: {body}"))
    };
    assert!(at("\"zz\"") < at("\"aa\""), "{body}");
    assert!(at("\"name\"") < at("\"run\""), "{body}");
    assert!(at("\"run\"") < at("\"id\""), "{body}");
}

#[test]
fn deep_documents_naming_a_mutation_are_refused_before_any_parse() {
    // The binding looks for a mutation (to refuse it on GET, to open a transaction on POST)
    // before the engine runs: that look must not parse what the limits refuse.
    let deep = format!(
        "mutation {{ deleteAuthor(id: {}1{}) {{ id }} }}",
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    let r = post(Some(GRAPHQL_RESPONSE), &json!({ "query": deep }));
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json();
    assert!(v["errors"][0]["message"].is_string(), "{v}");
    assert!(v.get("data").is_none(), "{v}");

    // Within the 16 KiB request head: 2,000 brackets, each `%5B`.
    let deep = format!(
        "mutation{{deleteAuthor(id:{}1{}){{id}}}}",
        "[".repeat(2_000),
        "]".repeat(2_000)
    );
    let r = get(&deep, GRAPHQL_RESPONSE);
    assert!(r.status == 400 || r.status == 405, "{}", r.text());
    assert!(r.json()["errors"][0]["message"].is_string());
}

#[test]
fn a_one_megabyte_document_gets_an_error_not_a_parse() {
    // Under the service's 1 MiB body cap: the document limit answers, in GraphQL's format.
    let q = format!("{{ authors {{ id }} }}#{}", "x".repeat(1_000_000));
    let r = post(Some(GRAPHQL_RESPONSE), &json!({ "query": q }));
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json();
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("bytes")),
        "{v}"
    );
    assert!(v.get("data").is_none(), "{v}");
}
