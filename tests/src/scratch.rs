//! A throwaway PostgreSQL server for tests that stop, kill or restart the server.
//!
//! The shared primary started by `scripts/services up` is used by every test binary and
//! engineer at once, so tests that take a server down get their own: a fresh data directory
//! under `/tmp/lifeguard-scratch-<unique>`, a free loopback port, trust authentication for
//! the superuser `postgres`, and `fsync=off`. `initdb` takes a second or two, so share one
//! [`ScratchServer`] per test where possible.
//!
//! ```no_run
//! use lifeguard_tests::scratch::{ScratchServer, StopMode};
//!
//! let mut server = ScratchServer::start_new();
//! let url = server.url(); // postgres://postgres@127.0.0.1:PORT/postgres
//! server.stop(StopMode::Immediate);
//! server.start();
//! // Dropping the server stops it and deletes its directory.
//! ```

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::DEFAULT_PG_BIN;

/// How `pg_ctl stop` shuts the server down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// `-m fast`: backends are told to terminate (clients see `FATAL 57P01`), then a clean
    /// shutdown checkpoint.
    Fast,
    /// `-m immediate`: every server process is killed at once, like a crash.
    Immediate,
}

impl StopMode {
    fn arg(self) -> &'static str {
        match self {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// A private PostgreSQL server on a free loopback port, removed when dropped.
///
/// When the test process runs as root, the server runs as the unprivileged OS user named by
/// `LIFEGUARD_SERVICES_USER` (default `postgres`) through `runuser`, as PostgreSQL refuses to
/// run as root.
#[derive(Debug)]
pub struct ScratchServer {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    run_as: Option<String>,
    running: bool,
}

impl ScratchServer {
    /// Creates a data directory with `initdb` and starts the server.
    ///
    /// # Panics
    ///
    /// Panics when `initdb` or `pg_ctl start` fails (with their output).
    pub fn start_new() -> ScratchServer {
        let mut server = ScratchServer::init();
        server.start();
        server
    }

    /// Creates the data directory with `initdb` without starting the server.
    ///
    /// # Panics
    ///
    /// Panics when the directory cannot be created or `initdb` fails.
    pub fn init() -> ScratchServer {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = PathBuf::from(format!(
            "/tmp/lifeguard-scratch-{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let run_as = if is_root() {
            let user =
                std::env::var("LIFEGUARD_SERVICES_USER").unwrap_or_else(|_| "postgres".into());
            let user = if user.is_empty() || user == "root" {
                "postgres".to_string()
            } else {
                user
            };
            let status = Command::new("chown")
                .arg(format!("{user}:"))
                .arg(&dir)
                .status()
                .expect("run chown");
            assert!(status.success(), "chown {} to {user} failed", dir.display());
            Some(user)
        } else {
            None
        };
        let bin = std::env::var("LIFEGUARD_PG_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(DEFAULT_PG_BIN));
        let port = free_port();
        let server = ScratchServer {
            dir,
            port,
            bin,
            run_as,
            running: false,
        };
        let data = server.data_dir();
        server.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--no-sync".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
            ],
        );
        let mut conf = fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .expect("open postgresql.conf");
        write!(
            conf,
            "\n# lifeguard scratch server\nlisten_addresses = '127.0.0.1'\nport = {port}\n\
             unix_socket_directories = '{}'\nfsync = off\nsynchronous_commit = off\n\
             full_page_writes = off\nmax_connections = 100\n",
            server.dir.display()
        )
        .expect("write postgresql.conf");
        server
    }

    /// The directory holding the data directory, the log and the Unix socket.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data directory (`<dir>/data`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The TCP port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Whether the server was started and not stopped since.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Starts the server and waits until it accepts connections (`pg_ctl -w start`).
    ///
    /// # Panics
    ///
    /// Panics when `pg_ctl start` fails; the server log is in the message.
    pub fn start(&mut self) {
        let data = self.data_dir();
        let log = self.dir.join("server.log");
        let ok = self.try_run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "start".as_ref(),
            ],
        );
        if let Err(e) = ok {
            let log = fs::read_to_string(&log).unwrap_or_default();
            panic!("{e}\nserver log:\n{log}");
        }
        self.running = true;
    }

    /// Stops the server with `pg_ctl -w -m <mode> stop`.
    ///
    /// # Panics
    ///
    /// Panics when `pg_ctl stop` fails.
    pub fn stop(&mut self, mode: StopMode) {
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                mode.arg().as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "stop".as_ref(),
            ],
        );
        self.running = false;
    }

    /// Stops the server (fast) if it runs, then starts it again on the same port.
    pub fn restart(&mut self) {
        if self.running {
            self.stop(StopMode::Fast);
        }
        self.start();
    }

    fn command(&self, tool: &str) -> Command {
        let bin = self.bin.join(tool);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        // The service user may not be allowed into the test's working directory.
        cmd.current_dir("/");
        cmd
    }

    fn try_run(&self, tool: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
        let out = self
            .command(tool)
            .args(args)
            .output()
            .map_err(|e| format!("could not run {tool}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{tool} {args:?} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            ))
        }
    }

    fn run(&self, tool: &str, args: &[&std::ffi::OsStr]) {
        if let Err(e) = self.try_run(tool, args) {
            panic!("{e}");
        }
    }
}

impl Drop for ScratchServer {
    fn drop(&mut self) {
        if self.running || self.data_dir().join("postmaster.pid").exists() {
            let data = self.data_dir();
            let _ = self.try_run(
                "pg_ctl",
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-m".as_ref(),
                    "immediate".as_ref(),
                    "-w".as_ref(),
                    "stop".as_ref(),
                ],
            );
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A loopback port nothing listens on right now (bound once and released).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
