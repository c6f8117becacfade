//! Read-your-writes over HTTP while the replica is stuck (pool spec P10): with replay
//! paused, a client that writes and then reads with the returned token always sees its
//! write; without the token and with `replica` (and a staleness bound the paused replica
//! still meets), it reads from the replica, which does not have the write.
//!
//! Its own test binary, because pausing the shared replica would disturb every other
//! routing test running beside it.

mod common;

use std::time::Duration;

use common::*;
use lifeguard_tests::replica::ReplayPaused;
use serde_json::json;

#[test]
fn tokens_read_writes_while_replay_is_paused() {
    let server = start_server("example_paused_");
    let port = server.port;
    let replica_port = port_of(replica_urls().split(',').next().unwrap());
    let paused = ReplayPaused::on(replica_urls().split(',').next().unwrap());
    for i in 0..10 {
        let email = format!("paused-{i}-{}@example.org", std::process::id());
        let r = send_json(
            port,
            "POST",
            "/authors",
            &[],
            &json!({"name": format!("Paused {i}"), "email": email}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let token = r.header("Lifeguard-Consistency-Token").unwrap().to_string();
        let id = r.json()["id"].as_i64().unwrap();

        // With the token: always the write (the replica cannot have it; the primary can).
        let got = get(
            port,
            &format!("/authors/{id}"),
            &[("Lifeguard-Consistency-Token", &token)],
        );
        assert_eq!(
            got.status,
            200,
            "read {i} with its token missed: {}",
            got.text()
        );
        assert_eq!(got.json()["email"], email);

        // Without it, `replica` with a generous bound reads the stale replica.
        let stale = [
            ("Lifeguard-Read-Preference", "replica"),
            ("Lifeguard-Max-Staleness", "3600000"),
        ];
        let w = get(port, "/debug/where", &stale);
        assert_eq!(
            w.json(),
            json!({"in_recovery": true, "port": replica_port}),
            "{}",
            w.text()
        );
        let miss = get(port, &format!("/authors/{id}"), &stale);
        assert_eq!(
            miss.status,
            404,
            "the paused replica has the write: {}",
            miss.text()
        );
    }
    drop(paused);
    // Once replay resumes, the replica catches up and the same read finds the rows.
    let caught_up = wait_for(Duration::from_secs(20), || {
        let r = get(
            port,
            "/authors?per_page=1",
            &[("Lifeguard-Read-Preference", "replica")],
        );
        (r.status == 200).then_some(())
    });
    assert!(
        caught_up.is_some(),
        "the replica never became eligible again"
    );
}
