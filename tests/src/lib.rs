//! Cross-crate integration tests. Helpers here read the service URLs that
//! `scripts/services env` exports.
//!
//! Start the services and export their URLs before running the tests:
//!
//! ```text
//! scripts/services up
//! eval "$(scripts/services env)"
//! cargo test -p lifeguard-tests
//! ```
//!
//! (`scripts/test` does all of this.) The helpers talk to the servers through
//! the `psql` and `redis-cli` command-line clients, so they depend on nothing
//! but the standard library.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
pub mod scratch;

pub mod cache;
pub mod drill;
pub mod graphql;
pub mod http;
pub mod orm;
pub mod pg;
pub mod pgbouncer;
pub mod pool;
pub mod proxy;
pub mod redis_cluster;
pub mod reflector;
pub mod replica;
/// Message shown when the service environment variables are missing.
pub const SETUP_HINT: &str =
    "run scripts/services up and eval \"$(scripts/services env)\" (or use scripts/test)";

/// Default PostgreSQL 15 binary directory on Debian/Ubuntu.
pub const DEFAULT_PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Reads a required environment variable set by `scripts/services env`.
///
/// # Panics
///
/// Panics with a hint on how to start the services when `name` is unset or
/// empty.
pub fn env_var(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!("environment variable {name} is not set: {SETUP_HINT}"),
    }
}

/// URL of the primary as the bootstrap superuser `postgres`
/// (`LIFEGUARD_PRIMARY_URL`).
pub fn primary_url() -> String {
    env_var("LIFEGUARD_PRIMARY_URL")
}

/// URLs of the streaming replicas (`LIFEGUARD_REPLICA_URLS`, comma-separated).
///
/// # Panics
///
/// Panics when the variable is unset or lists no URL.
pub fn replica_urls() -> Vec<String> {
    let urls: Vec<String> = env_var("LIFEGUARD_REPLICA_URLS")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    assert!(
        !urls.is_empty(),
        "LIFEGUARD_REPLICA_URLS lists no URL: {SETUP_HINT}"
    );
    urls
}

/// URL of the first replica.
pub fn replica_url() -> String {
    replica_urls().remove(0)
}

/// URL of the Redis server (`LIFEGUARD_REDIS_URL`).
pub fn redis_url() -> String {
    env_var("LIFEGUARD_REDIS_URL")
}

/// URL of the primary as the SCRAM-SHA-256 application role `lifeguard_app`
/// (`LIFEGUARD_APP_URL`).
pub fn app_url() -> String {
    env_var("LIFEGUARD_APP_URL")
}

/// URL of the primary as the md5-authenticated role `lifeguard_md5`
/// (`LIFEGUARD_MD5_URL`).
pub fn md5_url() -> String {
    env_var("LIFEGUARD_MD5_URL")
}

/// URL of the primary as the cleartext-password role `lifeguard_clear`
/// (`LIFEGUARD_CLEAR_URL`).
pub fn clear_url() -> String {
    env_var("LIFEGUARD_CLEAR_URL")
}

/// Directory holding the primary's Unix socket (`LIFEGUARD_PG_SOCKET_DIR`).
pub fn pg_socket_dir() -> String {
    env_var("LIFEGUARD_PG_SOCKET_DIR")
}

/// TCP port of the primary (`LIFEGUARD_PG_PORT`, default 55432).
pub fn pg_port() -> u16 {
    std::env::var("LIFEGUARD_PG_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(55432)
}

/// Replaces the password in a `postgres://user:password@host...` URL.
///
/// # Panics
///
/// Panics when the URL carries no `user:password@` part.
pub fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("URL without scheme");
    let (userinfo, hostpart) = rest.split_once('@').expect("URL without user@");
    let user = userinfo.split(':').next().unwrap_or(userinfo);
    format!("{scheme}://{user}:{password}@{hostpart}")
}

/// Finds `name` in `$LIFEGUARD_PG_BIN`, on `PATH`, or in [`DEFAULT_PG_BIN`].
fn find_pg_tool(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("LIFEGUARD_PG_BIN") {
        let p = Path::new(&dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    if let Some(p) = find_on_path(name) {
        return p;
    }
    Path::new(DEFAULT_PG_BIN).join(name)
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Path of the `psql` binary (`$LIFEGUARD_PG_BIN`, `PATH`, or
/// `/usr/lib/postgresql/15/bin`).
pub fn psql_bin() -> PathBuf {
    find_pg_tool("psql")
}

fn output_to_result(what: &str, out: std::io::Result<Output>) -> Result<String, String> {
    match out {
        Err(e) => Err(format!("could not run {what}: {e}")),
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        Ok(o) => Err(format!(
            "{what} failed ({}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim(),
            String::from_utf8_lossy(&o.stdout).trim()
        )),
    }
}

/// A `psql` command with unaligned, tuples-only output that stops at the
/// first error and ignores `~/.psqlrc`. Add the connection arguments.
pub fn psql_command() -> Command {
    let mut cmd = Command::new(psql_bin());
    cmd.args(["-X", "-At", "-v", "ON_ERROR_STOP=1"])
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICE");
    cmd
}

/// Runs `sql` with `psql -X -At -v ON_ERROR_STOP=1 -d URL -c SQL` and returns
/// its trimmed standard output, or the error text when psql fails.
pub fn try_psql(url: &str, sql: &str) -> Result<String, String> {
    let out = psql_command().args(["-d", url, "-c", sql]).output();
    output_to_result(&format!("psql -d {url} -c {sql:?}"), out)
}

/// Like [`try_psql`] but panics on failure.
///
/// # Panics
///
/// Panics with psql's error output when the command fails.
pub fn psql(url: &str, sql: &str) -> String {
    try_psql(url, sql).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `redis-cli -u URL ARGS...` and returns its trimmed raw output, or the
/// error text when redis-cli fails or the server answers with an error.
pub fn try_redis_cli(url: &str, args: &[&str]) -> Result<String, String> {
    let bin = find_on_path("redis-cli").unwrap_or_else(|| PathBuf::from("redis-cli"));
    let out = Command::new(bin)
        .args(["-u", url, "--no-raw"])
        .args(args)
        .env_remove("REDISCLI_AUTH")
        .output();
    let text = output_to_result(&format!("redis-cli -u {url} {args:?}"), out)?;
    if text.starts_with("(error)") {
        return Err(format!("redis-cli -u {url} {args:?}: {text}"));
    }
    Ok(text
        .trim_start_matches("(integer) ")
        .trim_matches('"')
        .to_string())
}

/// Like [`try_redis_cli`] but panics on failure.
///
/// # Panics
///
/// Panics with the error text when redis-cli fails.
pub fn redis_cli(url: &str, args: &[&str]) -> String {
    try_redis_cli(url, args).unwrap_or_else(|e| panic!("{e}"))
}

/// A name unique to this process and call, usable as an SQL identifier or a
/// Redis key: `<prefix>_<pid>_<nanos>_<counter>` (lowercase ASCII).
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `check` every 50 ms until it returns `Some` or `timeout` elapses.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Drops a table on the primary when it goes out of scope (also on panic).
pub struct DropTableGuard {
    url: String,
    table: String,
}

impl DropTableGuard {
    /// Guards `table` (an already-quoted or plain identifier) reachable via
    /// `url`.
    pub fn new(url: &str, table: &str) -> Self {
        Self {
            url: url.to_string(),
            table: table.to_string(),
        }
    }
}

impl Drop for DropTableGuard {
    fn drop(&mut self) {
        let _ = try_psql(&self.url, &format!("DROP TABLE IF EXISTS {}", self.table));
    }
}
