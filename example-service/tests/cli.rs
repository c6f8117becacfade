//! Smoke test of the `lifeguard-migrate` binary against the real primary: usage errors,
//! `up`, `status`, `drift`, `down` over the fixture migrations read with `--dir`, and the
//! embedded service migrations against the service's models, each in a schema of the
//! test's own (tracking table via `--schema`, tables via the URL's `search_path` option).
//!
//! Needs `LIFEGUARD_PRIMARY_URL` (`eval "$(scripts/services env)"`, or `scripts/test`).

use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use lifeguard_core::pg::Connection;
use lifeguard_core::Executor;

const BIN: &str = env!("CARGO_BIN_EXE_lifeguard-migrate");
const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../lifeguard-core/migrations_test"
);

fn primary_url() -> String {
    std::env::var("LIFEGUARD_PRIMARY_URL").expect(
        "LIFEGUARD_PRIMARY_URL is not set: run scripts/services up and eval \"$(scripts/services env)\"",
    )
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Drops the schema at the end, also on panic.
struct Schema {
    name: String,
    conn: Connection,
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = self
            .conn
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
    }
}

#[test]
fn usage_errors_exit_2_without_a_database() {
    let o = Command::new(BIN).arg("sideways").output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown command \"sideways\""));
    let o = Command::new(BIN).arg("--help").output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("down --to VERSION"));
    let o = Command::new(BIN)
        .arg("status")
        .env_remove("DATABASE_URL")
        .env_remove("LIFEGUARD_PRIMARY_URL")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("pass --url"));
}

impl Schema {
    /// A new schema, and the URL whose `search_path` is it.
    fn create(prefix: &str) -> (Schema, String) {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("{prefix}_{}_{nanos}", std::process::id());
        let conn = Connection::open(&primary_url()).unwrap();
        conn.batch_execute(&format!("CREATE SCHEMA {name}"))
            .unwrap();
        let url = format!("{}?options=-c%20search_path%3D{name}", primary_url());
        (Schema { name, conn }, url)
    }
}

#[test]
fn up_status_drift_down_through_the_binary() {
    // The binary finds the URL in DATABASE_URL; search_path rides in the URL.
    let (schema, url) = Schema::create("lg_cli");
    let run = |args: &[&str]| {
        let o = Command::new(BIN)
            .args(["--dir", FIXTURES, "--schema", &schema.name])
            .args(args)
            .env("DATABASE_URL", &url)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            text(&o),
        )
    };

    let (code, out, all) = run(&["status"]);
    assert_eq!(code, Some(0), "{all}");
    assert_eq!(out.matches("pending").count(), 3, "{all}");

    let (code, out, all) = run(&["up"]);
    assert_eq!(code, Some(0), "{all}");
    assert!(out.contains("applied  1 create_widgets"), "{all}");
    assert!(out.contains("applied  3 seed_widgets"), "{all}");
    let widgets: i64 = schema
        .conn
        .query_one(
            &format!("SELECT count(*) FROM {}.widgets", schema.name),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(widgets, 2);

    let (code, out, all) = run(&["up"]);
    assert_eq!(code, Some(0), "{all}");
    assert!(out.contains("nothing to apply"), "{all}");

    let (code, out, all) = run(&["status"]);
    assert_eq!(code, Some(0), "{all}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{all}");
    assert!(lines[0].trim_start().starts_with("version  name"), "{all}");
    assert!(
        lines[2].contains("add_widget_color") && lines[2].contains("applied"),
        "{all}"
    );

    // The binary compares the example service's models, whose tables the fixtures lack.
    let (code, out, all) = run(&["drift"]);
    assert_eq!(code, Some(3), "{all}");
    assert!(
        out.contains("DRIFT    authors: model says the table exists, database has no such table"),
        "{all}"
    );
    assert!(out.ends_with("5 difference(s)\n"), "{all}");

    let (code, out, all) = run(&["down", "2"]);
    assert_eq!(code, Some(0), "{all}");
    assert!(out.starts_with("reverted 3 seed_widgets"), "{all}");
    assert!(out.contains("reverted 2 add_widget_color"), "{all}");

    let (code, out, all) = run(&["down", "--to", "0"]);
    assert_eq!(code, Some(0), "{all}");
    assert!(out.contains("reverted 1 create_widgets"), "{all}");
    let gone: bool = schema
        .conn
        .query_one(
            "SELECT to_regclass($1) IS NULL",
            &[&format!("{}.widgets", schema.name)],
        )
        .unwrap()
        .get(0);
    assert!(gone);

    // A broken migration directory is an error naming the file.
    let bad = std::env::temp_dir().join(format!("{}_bad", schema.name));
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("init.sql"), "SELECT 1").unwrap();
    let o = Command::new(BIN)
        .args(["--dir", bad.to_str().unwrap(), "--url", &url, "up"])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&bad);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("init.sql must start with its version"));
}

#[test]
fn the_embedded_migrations_create_what_the_models_describe() {
    let (schema, url) = Schema::create("lg_cli_embedded");
    let run = |args: &[&str]| {
        let o = Command::new(BIN)
            .args(["--url", &url, "--schema", &schema.name])
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            text(&o),
        )
    };
    let (code, out, all) = run(&["up"]);
    assert_eq!(code, Some(0), "{all}");
    assert!(out.starts_with("applied  1 library ("), "{all}");
    assert!(out.contains("applied  2 techempower ("), "{all}");
    let (code, out, all) = run(&["drift"]);
    assert_eq!(code, Some(0), "{all}");
    let tables: Vec<&str> = out.lines().collect();
    assert_eq!(
        tables,
        [
            "ok       authors",
            "ok       books",
            "ok       reviews",
            "ok       world",
            "ok       fortune"
        ],
        "{all}"
    );
}
