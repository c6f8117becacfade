//! Relay's global object identification against the real primary: every model with a key
//! implements `Node` with a `nodeId: ID!`, and `node(nodeId:)` reads the row back with
//! its nested selection, in one statement per level; an identifier that is not one of
//! this schema's is a coded input error, and a well-formed one without a row is null.

use base64::Engine;
use lifeguard_tests::graphql::{code, connect, run_on, schema, seed};
use lifeguard_tests::orm::Counting;
use lifeguard_tests::{pg, unique_name};
use serde_json::{json, Value};

fn data(out: Value) -> Value {
    assert!(out.get("errors").is_none(), "{out}");
    out["data"].clone()
}

#[test]
fn a_node_id_reads_its_row_back_whatever_the_type() {
    pg::in_coroutine(|| {
        let conn = connect();
        let run = unique_name("gqln_read");
        seed(&conn, &run, 1, 2, 1);
        let d = data(run_on(
            &schema(),
            &conn,
            r#"query($run: String!) {
                authors(filter: {run: {eq: $run}}) { nodeId name books(orderBy: [{year: ASC}]) { nodeId title } }
            }"#,
            json!({ "run": run }),
        ));
        let author = &d["authors"][0];
        let book = &author["books"][1];
        let (author_id, book_id) = (author["nodeId"].clone(), book["nodeId"].clone());
        assert_ne!(author_id, book_id, "identifiers differ across types");
        let q = r#"query($id: ID!) {
            node(nodeId: $id) {
                __typename nodeId
                ... on Author { name books(limit: 1) { title reviews { body } } }
                ... on Book { title }
            }
        }"#;
        let db = Counting::new(&conn);
        let d = data(run_on(&schema(), &db, q, json!({ "id": author_id })));
        assert_eq!(
            d["node"],
            json!({"__typename": "Author", "nodeId": author_id, "name": "author 0001",
                   "books": [{"title": "author 0001 book 1", "reviews": [{"body": "review 1"}]}]})
        );
        assert_eq!(db.take(), 3, "one statement per level");
        let d = data(run_on(&schema(), &conn, q, json!({ "id": book_id })));
        assert_eq!(
            d["node"],
            json!({"__typename": "Book", "nodeId": book_id, "title": "author 0001 book 2"})
        );
    });
}

#[test]
fn a_foreign_identifier_is_an_input_error_and_a_missing_row_is_null() {
    pg::in_coroutine(|| {
        let conn = connect();
        let q = "query($id: ID!) { node(nodeId: $id) { nodeId } }";
        let id = |body: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(body);
        for bad in [
            "not base64!".to_owned(),
            id("[\"Nobody\", 1]"),
            id("[\"Author\"]"),
            id("[\"Author\", 1, 2]"),
            id("{}"),
        ] {
            let out = run_on(&schema(), &conn, q, json!({ "id": bad }));
            assert_eq!(code(&out), "BAD_USER_INPUT", "{bad}: {out}");
            assert!(out["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("not a global identifier")));
        }
        let out = run_on(
            &schema(),
            &conn,
            q,
            json!({ "id": id("[\"Author\", \"9223372036854775807\"]") }),
        );
        assert_eq!(data(out)["node"], Value::Null);
    });
}

/// A model named `Node`: its type would shadow the interface.
#[derive(Debug, Clone, lifeguard_core::LifeModel, lifeguard_core::LifeRecord)]
#[lifeguard(table_name = "nodes")]
pub struct Node {
    #[lifeguard(primary_key)]
    pub id: i32,
}

/// A column whose field would be `nodeId`, the identifier's name.
#[derive(Debug, Clone, lifeguard_core::LifeModel, lifeguard_core::LifeRecord)]
#[lifeguard(table_name = "parcels")]
pub struct Parcel {
    #[lifeguard(primary_key)]
    pub id: i32,
    pub node_id: i32,
}

/// The same column renamed: the schema builds.
#[derive(Debug, Clone, lifeguard_core::LifeModel, lifeguard_core::LifeRecord)]
#[lifeguard(table_name = "parcels")]
pub struct RenamedParcel {
    #[lifeguard(primary_key)]
    pub id: i32,
    #[lifeguard(graphql(name = "hubId"))]
    pub node_id: i32,
}

#[test]
fn names_that_clash_with_node_are_refused_at_build() {
    use lifeguard_graphql::Schema;
    let named = Schema::builder().model::<Node>().build().err();
    assert!(
        named.is_some_and(|e| e.to_string().contains("a model is named Node")),
        "a model named Node is refused"
    );
    let field = Schema::builder().model::<Parcel>().build().err();
    assert!(
        field.is_some_and(|e| e.to_string().contains("Parcel: a field is named nodeId")),
        "a field named nodeId is refused"
    );
    let sdl = Schema::builder()
        .model::<RenamedParcel>()
        .build()
        .expect("a renamed field builds")
        .sdl();
    assert!(sdl.contains("hubId: Int!"), "{sdl}");
}
