//! `#[derive(LifeEnum)]` columns in the generated schema: a GraphQL enum type per column
//! (a native PostgreSQL enum, a text column and an integer column), values written through
//! the ORM, filters on enum values.

use lifeguard_core::{Executor, LifeEnum, LifeModel, LifeRecord};
use lifeguard_graphql::{Request, Schema, Variables};
use lifeguard_tests::pg::{connect, in_coroutine};
use lifeguard_tests::unique_name;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, LifeEnum)]
pub enum Stage {
    Draft,
    InReview,
    #[lifeguard(rename = "live")]
    Published,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, LifeEnum)]
#[lifeguard(repr = "i16")]
pub enum Priority {
    Low = 1,
    High = 9,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, LifeEnum)]
#[lifeguard(rename_all = "UPPERCASE")]
pub enum Channel {
    Email,
    Sms,
}

#[derive(Debug, Clone, PartialEq, LifeModel, LifeRecord)]
#[lifeguard(table_name = "tickets", schema_name = "gql_enum")]
pub struct Ticket {
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    pub title: String,
    pub stage: Stage,
    /// Integer-stored: a GraphQL enum too, the integers only in SQL.
    #[lifeguard(column_type = "smallint")]
    pub priority: Priority,
    pub channel: Option<Channel>,
}

fn run(db: &dyn lifeguard_core::Executor, schema: &Schema, q: &str, vars: Value) -> Value {
    let r = schema.execute(db, Request::new(q).variables(Variables::from_json(vars)));
    serde_json::to_value(r).expect("a response serialises")
}

#[test]
fn life_enums_are_graphql_enums_in_outputs_inputs_and_filters() {
    in_coroutine(|| {
        let conn = connect();
        conn.batch_execute(
            "SELECT pg_advisory_xact_lock(4252); \
             CREATE SCHEMA IF NOT EXISTS gql_enum; \
             DO $$ BEGIN CREATE TYPE gql_enum.stage AS ENUM ('draft', 'in_review', 'live'); \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
             CREATE TABLE IF NOT EXISTS gql_enum.tickets (id bigserial PRIMARY KEY, title text NOT NULL, \
             stage gql_enum.stage NOT NULL, priority smallint NOT NULL, channel text)",
        )
        .expect("the enum table");
        let schema = Schema::builder()
            .model::<Ticket>()
            .build()
            .expect("the schema");
        let sdl = schema.sdl();
        assert!(sdl.contains("stage: TicketStage!"), "{sdl}");
        assert!(sdl.contains("channel: TicketChannel"), "{sdl}");
        assert!(sdl.contains("priority: TicketPriority!"), "{sdl}");

        let types = run(
            &conn,
            &schema,
            r#"{ __type(name: "TicketStage") { enumValues { name } } }"#,
            json!({}),
        );
        assert_eq!(
            types["data"]["__type"]["enumValues"],
            json!([{"name": "DRAFT"}, {"name": "IN_REVIEW"}, {"name": "LIVE"}])
        );

        let title = unique_name("gql_enum");
        for (stage, channel, priority) in [
            ("IN_REVIEW", "SMS", "HIGH"),
            ("LIVE", "EMAIL", "LOW"),
            ("DRAFT", "SMS", "HIGH"),
        ] {
            let out = run(
                &conn,
                &schema,
                &format!(
                    "mutation($t: String!) {{ createTicket(data: {{title: $t, stage: {stage}, priority: {priority}, channel: {channel}}}) {{ stage channel priority }} }}"
                ),
                json!({ "t": title }),
            );
            assert!(out.get("errors").is_none(), "{out}");
            assert_eq!(out["data"]["createTicket"]["stage"], stage);
            assert_eq!(out["data"]["createTicket"]["channel"], channel);
            assert_eq!(out["data"]["createTicket"]["priority"], priority);
        }
        // Stored as the labels and the integers.
        let stored: Vec<String> = conn
            .query("SELECT stage::text || '/' || channel || '/' || priority FROM gql_enum.tickets WHERE title = $1 ORDER BY id", &[&title])
            .expect("the rows")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(stored, ["in_review/SMS/9", "live/EMAIL/1", "draft/SMS/9"]);

        let found = run(
            &conn,
            &schema,
            "query($t: String!, $stages: [TicketStage!]) { tickets(filter: {title: {eq: $t}, stage: {in: $stages}, channel: {ne: EMAIL}}, orderBy: [{id: ASC}]) { stage } }",
            json!({ "t": title, "stages": ["IN_REVIEW", "LIVE", "DRAFT"] }),
        );
        assert_eq!(
            found["data"]["tickets"],
            json!([{"stage": "IN_REVIEW"}, {"stage": "DRAFT"}]),
            "{found}"
        );
        let by_priority = run(
            &conn,
            &schema,
            "query($t: String!) { tickets(filter: {title: {eq: $t}, priority: {eq: HIGH}}, orderBy: [{id: ASC}]) { stage priority } }",
            json!({ "t": title }),
        );
        assert_eq!(
            by_priority["data"]["tickets"],
            json!([{"stage": "IN_REVIEW", "priority": "HIGH"}, {"stage": "DRAFT", "priority": "HIGH"}]),
            "{by_priority}"
        );
        let priorities = run(
            &conn,
            &schema,
            r#"{ __type(name: "TicketPriority") { enumValues { name } } }"#,
            json!({}),
        );
        assert_eq!(
            priorities["data"]["__type"]["enumValues"],
            json!([{"name": "LOW"}, {"name": "HIGH"}])
        );
        let refused = run(
            &conn,
            &schema,
            "{ tickets(filter: {stage: {eq: SHIPPED}}) { id } }",
            json!({}),
        );
        assert!(
            refused["errors"][0]["message"].is_string(),
            "an unknown value is refused: {refused}"
        );
    });
}
