//! Checks the local services started by `scripts/services up`: primary,
//! streaming replica, Redis and the authentication roles.

use std::time::Duration;

use lifeguard_tests::*;

#[test]
fn primary_is_not_in_recovery() {
    assert_eq!(psql(&primary_url(), "SELECT pg_is_in_recovery()"), "f");
}

#[test]
fn replicas_are_in_recovery() {
    for url in replica_urls() {
        assert_eq!(psql(&url, "SELECT pg_is_in_recovery()"), "t", "{url}");
    }
}

#[test]
fn replica_is_read_only() {
    let table = unique_name("lg_ro");
    let err = try_psql(&replica_url(), &format!("CREATE TABLE {table} (id int)"))
        .expect_err("DDL on a hot standby must fail");
    assert!(err.contains("read-only"), "unexpected error: {err}");
}

#[test]
fn primary_has_streaming_replica() {
    let n: i64 = psql(
        &primary_url(),
        "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
    )
    .parse()
    .unwrap();
    assert!(n >= 1, "no streaming replica");
}

#[test]
fn redis_ping_and_set_get() {
    let url = redis_url();
    assert_eq!(redis_cli(&url, &["PING"]), "PONG");
    let key = unique_name("lg_test_key");
    let value = unique_name("value");
    assert_eq!(redis_cli(&url, &["SET", &key, &value, "EX", "60"]), "OK");
    assert_eq!(redis_cli(&url, &["GET", &key]), value);
    assert_eq!(redis_cli(&url, &["DEL", &key]), "1");
}

#[test]
fn primary_writes_reach_the_replica() {
    let primary = primary_url();
    let replica = replica_url();
    let table = unique_name("lg_repl");
    let _guard = DropTableGuard::new(&primary, &table);
    psql(
        &primary,
        &format!("CREATE TABLE {table} (id int PRIMARY KEY, v text NOT NULL)"),
    );
    let value = unique_name("v");
    psql(
        &primary,
        &format!("INSERT INTO {table} VALUES (1, '{value}')"),
    );
    let seen = wait_for(Duration::from_secs(10), || {
        try_psql(&replica, &format!("SELECT v FROM {table} WHERE id = 1"))
            .ok()
            .filter(|v| !v.is_empty())
    });
    assert_eq!(
        seen.as_deref(),
        Some(value.as_str()),
        "row not visible on the replica within 10 s"
    );
}

#[test]
fn scram_app_role_connects_with_password() {
    let url = app_url();
    assert_eq!(psql(&url, "SELECT current_user"), "lifeguard_app");
    // The app role may create objects in schema public.
    let table = unique_name("lg_app");
    let _guard = DropTableGuard::new(&url, &table);
    psql(&url, &format!("CREATE TABLE {table} (id int)"));
}

#[test]
fn scram_app_role_rejects_wrong_password() {
    let err = try_psql(&with_password(&app_url(), "wrong_pw"), "SELECT 1")
        .expect_err("wrong password must be rejected");
    assert!(
        err.contains("password authentication failed"),
        "unexpected error: {err}"
    );
}

#[test]
fn md5_role_connects_and_stores_md5_hash() {
    assert_eq!(psql(&md5_url(), "SELECT current_user"), "lifeguard_md5");
    let hash = psql(
        &primary_url(),
        "SELECT left(rolpassword, 3) FROM pg_authid WHERE rolname = 'lifeguard_md5'",
    );
    assert_eq!(hash, "md5", "lifeguard_md5 must store an md5 hash");
    assert!(try_psql(&with_password(&md5_url(), "wrong_pw"), "SELECT 1").is_err());
}

#[test]
fn cleartext_role_connects() {
    assert_eq!(psql(&clear_url(), "SELECT current_user"), "lifeguard_clear");
    assert!(try_psql(&with_password(&clear_url(), "wrong_pw"), "SELECT 1").is_err());
}

#[test]
fn primary_accepts_unix_socket_connections() {
    let out = psql_command()
        .args(["-h", &pg_socket_dir(), "-p", &pg_port().to_string()])
        .args(["-U", "postgres", "-d", "lifeguard", "-c", "SELECT 1"])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql over the Unix socket failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
}

#[test]
fn bench_database_exists() {
    assert_eq!(
        psql(
            &primary_url(),
            "SELECT count(*) FROM pg_database WHERE datname = 'bench'"
        ),
        "1"
    );
}
