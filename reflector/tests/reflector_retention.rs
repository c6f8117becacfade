//! Outbox retention: consumed rows older than the retention go, but never while some
//! namespace's checkpoint has not passed them. On an outbox of its own (schema
//! `reflector_trim`), since retention looks at every checkpoint beside it.

mod common;

use std::time::Duration;

use common::{eventually, BIN};
use lifeguard_core::cache::{install_change_capture, CaptureOptions};
use lifeguard_core::{Executor, LifeModel, LifeRecord};
use lifeguard_tests::pg::connect;
use lifeguard_tests::reflector::ReflectorProcess;
use lifeguard_tests::unique_name;

#[derive(Debug, Clone, LifeModel, LifeRecord)]
#[lifeguard(table_name = "trimmed", schema_name = "reflector_trim", cache)]
pub struct Trimmed {
    #[lifeguard(primary_key)]
    pub id: i64,
    pub n: i64,
}

fn outbox_rows() -> i64 {
    connect()
        .query_one("SELECT count(*) FROM reflector_trim.lifeguard_outbox", &[])
        .unwrap()
        .get(0)
}

#[test]
fn consumed_rows_go_only_once_every_checkpoint_has_passed_them() {
    let conn = connect();
    conn.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS reflector_trim;
         CREATE TABLE IF NOT EXISTS reflector_trim.trimmed (id bigint PRIMARY KEY, n bigint NOT NULL)",
    )
    .unwrap();
    install_change_capture::<Trimmed>(&conn, &CaptureOptions::new().schema("reflector_trim"))
        .unwrap();
    let ns = unique_name("rtrim");
    let reflector = ReflectorProcess::spawn(
        BIN,
        &ns,
        "reflector_trim",
        &[("LIFEGUARD_REFLECTOR_RETENTION_S", "0")],
    );
    reflector.wait_leading(Duration::from_secs(20));
    // Only this namespace and a consumer that has read nothing yet.
    conn.execute(
        "DELETE FROM reflector_trim.lifeguard_reflector_checkpoint WHERE namespace <> $1",
        &[&ns],
    )
    .unwrap();
    conn.batch_execute(
        "INSERT INTO reflector_trim.lifeguard_reflector_checkpoint (namespace, txid, id)
           VALUES ('lagging', '0', 0);
         DELETE FROM reflector_trim.trimmed;
         INSERT INTO reflector_trim.trimmed SELECT g, 0 FROM generate_series(1, 100) g",
    )
    .unwrap();
    // Two trims (every 10 s) later, the lagging consumer still holds every row.
    std::thread::sleep(Duration::from_secs(21));
    assert!(
        outbox_rows() >= 100,
        "rows a checkpoint has not passed are kept"
    );
    conn.batch_execute(
        "DELETE FROM reflector_trim.lifeguard_reflector_checkpoint WHERE namespace = 'lagging'",
    )
    .unwrap();
    eventually(
        Duration::from_secs(15),
        "the consumed rows are trimmed",
        || outbox_rows() == 0,
    );
}
