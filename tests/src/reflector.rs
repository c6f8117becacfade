//! Reflector processes for the tests: started with the environment of a namespace and a
//! capture schema, watched through their HTTP endpoints, and signalled like an operator
//! (or a crash) would.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{primary_url, redis_url};

/// A running `lifeguard-reflector`; killed when dropped.
pub struct ReflectorProcess {
    child: Child,
    port: u16,
    namespace: String,
}

impl ReflectorProcess {
    /// Starts the binary `bin` on namespace `ns` and capture schema `schema`, against the
    /// test primary and Redis, with `env` on top.
    pub fn spawn(bin: &str, ns: &str, schema: &str, env: &[(&str, &str)]) -> ReflectorProcess {
        Self::spawn_on(bin, ns, schema, &redis_url(), env)
    }

    /// As [`spawn`](Self::spawn), with the Redis at `redis`.
    pub fn spawn_on(
        bin: &str,
        ns: &str,
        schema: &str,
        redis: &str,
        env: &[(&str, &str)],
    ) -> ReflectorProcess {
        let port = crate::scratch::free_port();
        let mut cmd = Command::new(bin);
        cmd.env("LIFEGUARD_REFLECTOR_DATABASE_URL", primary_url())
            .env("LIFEGUARD_REFLECTOR_REDIS_URL", redis)
            .env("LIFEGUARD_CACHE_NAMESPACE", ns)
            .env("LIFEGUARD_CAPTURE_SCHEMA", schema)
            .env("LIFEGUARD_REFLECTOR_LISTEN", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if std::env::var_os("LIFEGUARD_TEST_REFLECTOR_LOG").is_none() {
            cmd.stderr(Stdio::null());
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start the reflector");
        ReflectorProcess {
            child,
            port,
            namespace: ns.to_owned(),
        }
    }

    /// The cache namespace it reflects for.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `GET /status`, when it answers.
    pub fn status(&self) -> Option<serde_json::Value> {
        let body = self.get("/status")?;
        serde_json::from_str(&body).ok()
    }

    /// The epoch while this process leads.
    pub fn leading_epoch(&self) -> Option<i64> {
        let status = self.status()?;
        (status["role"] == "leader").then(|| status["epoch"].as_i64())?
    }

    /// Waits up to `limit` for this process to lead; returns its epoch.
    pub fn wait_leading(&self, limit: Duration) -> i64 {
        let until = Instant::now() + limit;
        loop {
            if let Some(epoch) = self.leading_epoch() {
                return epoch;
            }
            assert!(
                Instant::now() < until,
                "the reflector did not lead within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The sum of the samples of `name` whose labels include `labels` (0 when none).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get("/metrics")
            .map_or(0.0, |text| crate::pool::text_metric(&text, name, labels))
    }

    /// Sends `signal` (`KILL`, `STOP`, `CONT`, `TERM`).
    ///
    /// # Panics
    ///
    /// On another name, or when the signal cannot be sent.
    pub fn signal(&self, signal: &str) {
        let number = match signal {
            "KILL" => libc::SIGKILL,
            "STOP" => libc::SIGSTOP,
            "CONT" => libc::SIGCONT,
            "TERM" => libc::SIGTERM,
            other => panic!("no signal {other}"),
        };
        let pid = i32::try_from(self.pid()).expect("a pid fits an i32");
        // SAFETY: kill(2) only takes numbers; the pid is this handle's own child, which
        // is not reaped before the handle drops, so it names no other process.
        let sent = unsafe { libc::kill(pid, number) };
        assert_eq!(sent, 0, "kill -{signal} failed");
    }

    /// SIGTERM, then waits for the process to exit; returns whether it exited 0.
    pub fn terminate(mut self) -> bool {
        self.signal("TERM");
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn get(&self, path: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let (head, body) = out.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
    }
}

impl Drop for ReflectorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
