//! A throwaway primary with a streaming replica, for tests that stop, promote or cut off
//! servers (the shared pair of `scripts/services up` must stay up for everyone else).
//!
//! The primary is a [`ScratchServer`] with `wal_level=replica`, WAL senders, `hot_standby`
//! and replication trusted from 127.0.0.1. The replica is a second [`ScratchServer`] whose
//! data directory is replaced by `pg_basebackup -R -X stream` of the primary, moved to its
//! own free port. Both run as the unprivileged service user when the tests run as root.
//!
//! ```no_run
//! use lifeguard_tests::replica::ScratchPair;
//! use lifeguard_tests::scratch::StopMode;
//!
//! let mut pair = ScratchPair::start();
//! let (primary, replica) = (pair.primary_url(), pair.replica_url());
//! pair.stop_replica(StopMode::Immediate);
//! pair.start_replica();
//! # let _ = (primary, replica);
//! // Dropping the pair stops both servers and deletes their directories.
//! ```

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use lifeguard_core::pg::Connection;
use lifeguard_core::Executor;

use crate::scratch::{ScratchServer, StopMode};
use crate::{try_psql, wait_for, DEFAULT_PG_BIN};

/// Pauses WAL replay on a replica until dropped (read-your-writes tests: the replica then
/// stays behind every later write). Resumes however the test ends, so a shared replica
/// never stays paused.
pub struct ReplayPaused(Connection);

impl ReplayPaused {
    /// Pauses replay on the replica at `url`.
    pub fn on(url: &str) -> ReplayPaused {
        let conn = Connection::open(url).expect("connect to the replica");
        conn.batch_execute("SELECT pg_wal_replay_pause()")
            .expect("pause replay");
        ReplayPaused(conn)
    }
}

impl Drop for ReplayPaused {
    fn drop(&mut self) {
        let _ = self.0.batch_execute("SELECT pg_wal_replay_resume()");
    }
}

/// A scratch primary and one streaming hot-standby replica of it; both are stopped and
/// deleted on drop.
#[derive(Debug)]
pub struct ScratchPair {
    // Declared first so the replica is stopped before its primary on drop.
    replica: ScratchServer,
    primary: ScratchServer,
}

impl ScratchPair {
    /// Creates and starts the primary, clones it with `pg_basebackup`, starts the replica
    /// and waits until the primary's `pg_stat_replication` shows it streaming.
    ///
    /// # Panics
    ///
    /// Panics when a server cannot be created or started, or the replica does not stream
    /// within 30 s.
    pub fn start() -> ScratchPair {
        let mut primary = ScratchServer::init();
        append_conf(
            &primary.data_dir().join("postgresql.conf"),
            "wal_level = replica\nmax_wal_senders = 8\nwal_keep_size = '128MB'\n\
             hot_standby = on\nhot_standby_feedback = off\nwal_sender_timeout = '5s'\n\
             wal_receiver_timeout = '5s'\nwal_retrieve_retry_interval = '200ms'\n",
        );
        append_conf(
            &primary.data_dir().join("pg_hba.conf"),
            "host replication all 127.0.0.1/32 trust\n",
        );
        primary.start();

        // A second scratch server provides the directory, port and ownership; its freshly
        // initdb'd data directory is replaced by a base backup of the primary.
        let mut replica = ScratchServer::init();
        let data = replica.data_dir();
        fs::remove_dir_all(&data)
            .unwrap_or_else(|e| panic!("remove {} for the base backup: {e}", data.display()));
        let port = primary.port().to_string();
        run_pg_tool(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                &data.display().to_string(),
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ],
        );
        // The backup carries the primary's postgresql.conf: move the copy to its own port
        // and socket directory (later lines win).
        append_conf(
            &data.join("postgresql.conf"),
            &format!(
                "port = {}\nunix_socket_directories = '{}'\n",
                replica.port(),
                replica.dir().display()
            ),
        );
        replica.start();
        let pair = ScratchPair { replica, primary };
        pair.wait_streaming(Duration::from_secs(30));
        pair
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres` of the primary.
    pub fn primary_url(&self) -> String {
        self.primary.url()
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres` of the replica.
    pub fn replica_url(&self) -> String {
        self.replica.url()
    }

    /// The primary's TCP port.
    pub fn primary_port(&self) -> u16 {
        self.primary.port()
    }

    /// The replica's TCP port.
    pub fn replica_port(&self) -> u16 {
        self.replica.port()
    }

    /// The primary server itself.
    pub fn primary(&self) -> &ScratchServer {
        &self.primary
    }

    /// The replica server itself.
    pub fn replica(&self) -> &ScratchServer {
        &self.replica
    }

    /// Stops the primary (`pg_ctl stop -m <mode>`).
    pub fn stop_primary(&mut self, mode: StopMode) {
        self.primary.stop(mode);
    }

    /// Starts the primary again on its port.
    pub fn start_primary(&mut self) {
        self.primary.start();
    }

    /// Stops the replica (`pg_ctl stop -m <mode>`).
    pub fn stop_replica(&mut self, mode: StopMode) {
        self.replica.stop(mode);
    }

    /// Starts the replica again on its port (it resumes streaming once it reconnects).
    pub fn start_replica(&mut self) {
        self.replica.start();
    }

    /// Promotes the replica (`SELECT pg_promote()`, waiting up to 60 s); it then runs on a
    /// new timeline and accepts writes.
    ///
    /// # Panics
    ///
    /// Panics when the promotion fails.
    pub fn promote_replica(&mut self) {
        let out = try_psql(&self.replica_url(), "SELECT pg_promote(true, 60)")
            .unwrap_or_else(|e| panic!("promote the replica: {e}"));
        assert_eq!(out, "t", "pg_promote did not finish");
    }

    /// Waits until the primary reports the replica as `streaming` in `pg_stat_replication`.
    ///
    /// # Panics
    ///
    /// Panics when it is not streaming within `timeout`.
    pub fn wait_streaming(&self, timeout: Duration) {
        let url = self.primary_url();
        let streaming = wait_for(timeout, || {
            try_psql(
                &url,
                "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
            )
            .ok()
            .filter(|n| n != "0")
        });
        assert!(
            streaming.is_some(),
            "the scratch replica did not start streaming within {timeout:?}"
        );
    }

    /// Waits until the replica has replayed every record the primary has inserted into WAL
    /// so far, flushed or not (the scratch servers run `synchronous_commit = off`).
    ///
    /// # Panics
    ///
    /// Panics when it has not within `timeout`.
    pub fn wait_caught_up(&self, timeout: Duration) {
        let target = last_record_end(&self.primary_url());
        let replica = self.replica_url();
        let sql = format!("SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn");
        let done = wait_for(timeout, || {
            try_psql(&replica, &sql).ok().filter(|v| v == "t")
        });
        assert!(
            done.is_some(),
            "the scratch replica did not replay up to {target} within {timeout:?}"
        );
    }
}

/// The end of the last WAL record the primary at `url` has inserted, as `pg_lsn` text.
///
/// Right after a record that ends on a page boundary, `pg_current_wal_insert_lsn()` points
/// past the next page's header (24 bytes, 40 at a segment's start), which a replica's replay
/// position never reaches until another record comes; the library's consistency tokens
/// back up to the boundary the same way.
///
/// # Panics
///
/// Panics when the primary cannot be read.
pub fn last_record_end(url: &str) -> String {
    let sql = "SELECT CASE \
         WHEN o % pg_size_bytes(current_setting('wal_segment_size')) = 40 THEN l - 40 \
         WHEN o % current_setting('wal_block_size')::int8 = 24 THEN l - 24 \
         ELSE l END \
       FROM (SELECT l, l - '0/0'::pg_lsn AS o FROM pg_current_wal_insert_lsn() AS l) AS w";
    try_psql(url, sql).unwrap_or_else(|e| panic!("read the primary's LSN: {e}"))
}

/// Appends `text` to a server configuration file.
fn append_conf(path: &std::path::Path, text: &str) {
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    writeln!(file, "\n# lifeguard scratch pair\n{text}")
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Runs a PostgreSQL tool as the service user (through `runuser` when root), as
/// [`ScratchServer`] does for `initdb` and `pg_ctl`.
fn run_pg_tool(tool: &str, args: &[&str]) {
    let bin = std::env::var("LIFEGUARD_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(DEFAULT_PG_BIN))
        .join(tool);
    let mut cmd = if is_root() {
        let user = std::env::var("LIFEGUARD_SERVICES_USER")
            .ok()
            .filter(|u| !u.is_empty() && u != "root")
            .unwrap_or_else(|| "postgres".into());
        let mut c = Command::new("runuser");
        c.args(["-u", &user, "--"]).arg(&bin);
        c
    } else {
        Command::new(&bin)
    };
    let out = cmd
        .args(args)
        .current_dir("/")
        .output()
        .unwrap_or_else(|e| panic!("could not run {tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim(),
        String::from_utf8_lossy(&out.stdout).trim()
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
