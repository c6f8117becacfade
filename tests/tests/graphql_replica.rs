//! GraphQL through a pool of the real primary and streaming replica: a query follows the
//! handle's read preference, a mutation runs on the primary, and a query carrying the
//! mutation's consistency token reads the written row wherever it runs.

use std::time::Duration;

use lifeguard_core::pool::{Pool, PoolConfig, ReadOptions, ReadPreference, Role};
use lifeguard_graphql::{Request, Variables};
use lifeguard_tests::graphql::{connect, schema};
use lifeguard_tests::pool::{cfg, wait_healthy};
use lifeguard_tests::{pg, primary_url, replica_url, unique_name};
use serde_json::{json, Value};

fn pool() -> Pool {
    Pool::connect(
        PoolConfig::new(cfg(&primary_url()))
            .replica(cfg(&replica_url()))
            .monitor_interval(Duration::from_millis(100))
            .name(unique_name("gql_replica")),
    )
    .expect("connect the pool")
}

fn run(
    schema: &lifeguard_graphql::Schema,
    db: &lifeguard_core::pool::Db,
    q: &str,
    vars: Value,
) -> Value {
    let request = Request::new(q).variables(Variables::from_json(vars));
    serde_json::to_value(schema.execute_on(db, request)).expect("a response serialises")
}

#[test]
fn queries_follow_the_read_preference_and_the_token_reads_the_mutation() {
    pg::init();
    drop(connect());
    // Waits on the test thread: the pool's monitor runs on the coroutine workers.
    let pool = pool();
    wait_healthy(&pool, Duration::from_secs(10));
    pg::in_coroutine_within(Duration::from_secs(30), move || {
        let schema = schema();
        let run_name = unique_name("gql_rep");

        let writer = pool.db(ReadOptions::new(ReadPreference::Replica));
        let created = run(
            &schema,
            &writer,
            "mutation($run: String!) { createAuthor(data: {name: \"Replicated\", run: $run}) { id name } }",
            json!({ "run": run_name }),
        );
        assert!(created.get("errors").is_none(), "{created}");
        assert_eq!(
            writer.served_by(),
            Some(Role::Primary),
            "a mutation runs on the primary"
        );
        let id = created["data"]["createAuthor"]["id"].clone();
        let token = writer
            .token()
            .expect("the token")
            .expect("a token after a write");

        // With the token, the row is there wherever the read runs.
        let reader = pool.db(ReadOptions::new(ReadPreference::ReplicaPreferred).min_lsn(token));
        let read = run(
            &schema,
            &reader,
            "query($id: BigInt!) { author(id: $id) { name } }",
            json!({ "id": id }),
        );
        assert_eq!(read["data"]["author"]["name"], "Replicated", "{read}");

        // A query prefers the replica once it has replayed the write.
        // (Polled with coroutine sleeps: a thread sleep would stall the pool's monitor.)
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut on_replica = None;
        while on_replica.is_none() && std::time::Instant::now() < deadline {
            let reader = pool.db(ReadOptions::new(ReadPreference::Replica));
            let read = run(
                &schema,
                &reader,
                "query($id: BigInt!) { author(id: $id) { name } }",
                json!({ "id": id }),
            );
            if reader.served_by() == Some(Role::Replica)
                && read["data"]["author"]["name"] == "Replicated"
            {
                on_replica = Some(());
            }
            may::coroutine::sleep(Duration::from_millis(50));
        }
        assert!(on_replica.is_some(), "the query never ran on the replica");
    });
}
