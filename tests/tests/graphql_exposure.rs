//! `#[lifeguard(graphql(..))]` hints in the generated schema: a renamed type, a hidden
//! field, a renamed field, a field kept out of the inputs, and a read-only model.

use lifeguard_core::{LifeModel, LifeRecord};
use lifeguard_graphql::Schema;

#[derive(Debug, Clone, LifeModel, LifeRecord)]
#[lifeguard(
    table_name = "people",
    schema_name = "gql_hints",
    graphql(name = "Person")
)]
pub struct Member {
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    #[lifeguard(graphql(name = "displayName"))]
    pub name: String,
    #[lifeguard(graphql(skip))]
    pub password_hash: String,
    #[lifeguard(graphql(read_only))]
    pub karma: i32,
}

#[derive(Debug, Clone, LifeModel, LifeRecord)]
#[lifeguard(table_name = "audit", schema_name = "gql_hints", graphql(read_only))]
pub struct Audit {
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    pub what: String,
}

/// The block of `kind name` in `sdl`, up to its closing brace (`type Person {` also finds
/// `type Person implements Node {`).
fn block<'a>(sdl: &'a str, head: &str) -> &'a str {
    let name = format!("{} ", head.trim_end_matches(" {"));
    let start = sdl
        .find(&name)
        .unwrap_or_else(|| panic!("no {head} in {sdl}"));
    let end = sdl[start..].find('}').map_or(sdl.len(), |e| start + e);
    &sdl[start..end]
}

#[test]
fn hints_rename_hide_and_keep_fields_out_of_the_inputs() {
    let sdl = Schema::builder()
        .model::<Member>()
        .model::<Audit>()
        .build()
        .expect("the schema")
        .sdl();
    let person = block(&sdl, "type Person {");
    assert!(person.contains("displayName: String!"), "{person}");
    assert!(person.contains("karma: Int!"), "{person}");
    assert!(
        !person.lines().any(|l| l.trim_start().starts_with("name:")),
        "the field has its new name only: {person}"
    );
    assert!(
        !sdl.contains("passwordHash"),
        "a skipped field is nowhere: {sdl}"
    );
    assert!(!sdl.contains("type Member"), "{sdl}");
    let create = block(&sdl, "input PersonCreateInput {");
    assert!(create.contains("displayName: String!"), "{create}");
    assert!(
        !create.contains("karma"),
        "a read-only field is not an input: {create}"
    );
    assert!(
        sdl.contains("createPerson(data: PersonCreateInput!): Person!"),
        "{sdl}"
    );
    assert!(
        sdl.contains("audits("),
        "a read-only model is still queried: {sdl}"
    );
    assert!(
        !sdl.contains("createAudit"),
        "a read-only model has no mutations: {sdl}"
    );
    assert!(!sdl.contains("AuditCreateInput"), "{sdl}");
}
