//! A Redis client for `may` coroutines: commands packed by the `redis` crate, replies split
//! by the connection's reader (which decodes the common ones itself and hands the rest to
//! the `redis` crate's parser), over Lifeguard's own non-blocking sockets (never that
//! crate's blocking connections).
//!
//! - **Pipelined**: concurrent coroutines share a few long-lived connections; each
//!   command's reply comes back to its caller in order.
//! - **Bounded**: every call has a deadline (its own, or [`RedisConfig::command_timeout`]);
//!   a connection whose reply is overdue long after a deadline is presumed dead.
//! - **Self-healing**: a broken connection is replaced by the next call that needs it;
//!   failed connects open a circuit for a jittered, doubling pause, during which calls fail
//!   at once with [`RedisErrorKind::Unavailable`], and the next call after it tries again.
//! - **Scripts**: [`Script`] runs by `EVALSHA` and loads itself on `NOSCRIPT`.
//! - **Redis Cluster**: with a `redis+cluster://host:port,host:port/` URL the same
//!   [`RedisClient`] keeps one such pool per master, routes each command to the master of
//!   its key's slot ([`key_slot`]) from a slot map read from the cluster, splits pipelines
//!   and script batches by node, and follows `MOVED` and `ASK` redirects once within the
//!   call's deadline.
//!
//! ```no_run
//! use lifeguard_core::cache::redis::{RedisClient, RedisConfig};
//!
//! let client = RedisClient::new(RedisConfig::from_url("redis://127.0.0.1:56379/0")?);
//! client.query::<()>(redis::cmd("SET").arg("greeting").arg("hello"))?;
//! let greeting: Option<String> = client.query(redis::cmd("GET").arg("greeting"))?;
//! assert_eq!(greeting.as_deref(), Some("hello"));
//! # Ok::<(), lifeguard_core::Error>(())
//! ```

mod cluster;
mod config;
mod connection;
mod script;
mod slot;

pub use config::{RedisAddr, RedisConfig};
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use connection::fuzz_replies;
pub use script::Script;
pub use slot::key_slot;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use may::sync::Blocker;
use redis::FromRedisValue;

use crate::error::{Error, RedisError, RedisErrorKind, Result};
use crate::pg::Socket;
use crate::rt::lock;
use cluster::Cluster;
use connection::Connection;

pub use redis::{cmd, Cmd, Pipeline, Value};

/// One call of a script in [`RedisClient::eval_each_until`]: its keys, then its arguments.
pub type ScriptCall = (Vec<Vec<u8>>, Vec<Vec<u8>>);

/// A Redis client: a pool of pipelined connections to one server, or, for a
/// `redis+cluster://` configuration, to each master of a Redis Cluster, with commands routed
/// by their keys' slots. Cheap to clone; clones share the connections, which close when the
/// last clone drops.
#[derive(Clone)]
pub struct RedisClient {
    target: Target,
}

#[derive(Clone)]
enum Target {
    Server(Server),
    Cluster(Arc<Cluster>),
}

/// The client of one server: the whole of a [`RedisClient`] for one server, and one node of
/// a cluster's.
#[derive(Clone)]
struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    config: RedisConfig,
    target: String,
    members: Vec<Mutex<Member>>,
    next: AtomicUsize,
    circuit: Mutex<Circuit>,
    /// Connections opened to replace one that broke: a change tells a reader that the
    /// server it talks to may have restarted since it last looked at something.
    reconnects: AtomicU64,
}

#[derive(Default)]
struct Member {
    conn: Option<Arc<Connection>>,
    connecting: bool,
    /// Calls waiting for the connect in progress.
    waiters: Vec<Arc<Blocker>>,
}

/// What [`RedisClient::reopen`] did.
enum Reopen {
    Opened(Arc<Connection>),
    Failed(Error),
    /// Another call is connecting; wait on this to hear when it is done.
    InProgress(Arc<Blocker>),
    CircuitOpen,
}

/// Failed connects hold further attempts off for a doubling, jittered pause.
#[derive(Default)]
struct Circuit {
    failures: u32,
    open_until: Option<Instant>,
}

impl Circuit {
    fn is_open(&self, now: Instant) -> bool {
        self.open_until.is_some_and(|until| now < until)
    }

    fn failed(&mut self, max: Duration) {
        self.failures = self.failures.saturating_add(1);
        let pause = (Duration::from_millis(50) * 2u32.saturating_pow(self.failures.min(10)))
            .min(max)
            .mul_f64(0.5 + rand::random::<f64>() * 0.5);
        self.open_until = Some(Instant::now() + pause);
    }
}

impl RedisClient {
    /// A client for the server, or the cluster, `config` names. Nothing connects yet: the
    /// first calls open the connections (and, for a cluster, load its slot map), so a
    /// service starts while Redis is down.
    pub fn new(config: RedisConfig) -> RedisClient {
        let target = match config.cluster_seeds() {
            Some(_) => Target::Cluster(Arc::new(Cluster::new(config))),
            None => Target::Server(Server::new(config)),
        };
        RedisClient { target }
    }

    /// The configuration the client runs with.
    pub fn config(&self) -> &RedisConfig {
        match &self.target {
            Target::Server(server) => &server.inner.config,
            Target::Cluster(cluster) => cluster.config(),
        }
    }

    /// The deadline a call without its own gets.
    fn default_deadline(&self) -> Instant {
        Instant::now() + self.config().command_timeout
    }

    /// Runs one command and converts its reply. In a cluster the command goes to the node
    /// that owns its first key's slot ([`key_slot`]), found by the command's name (`EVAL`
    /// and `EVALSHA` after their key count, `OBJECT`, `XINFO` and the like after their
    /// subcommand, nearly every other command at its first argument); a command without
    /// keys (`PING`, `INFO`, `SCRIPT`, `CLUSTER`, ...) goes to any node, and
    /// [`RedisClient::query_for_key`] sends one to a key's node. A command whose key is
    /// not where this looks for it reaches a node that redirects it (`MOVED`), which is
    /// followed.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`]: a server error reply (`Server`, with its code), no reply in time
    /// (`Timeout`), a lost connection (`Connection`), an open circuit (`Unavailable`), or a
    /// reply `T` cannot hold (`Protocol`). In a cluster, a `MOVED` or `ASK` redirect is
    /// followed once within the deadline; a second one, `CLUSTERDOWN` and `TRYAGAIN` are
    /// errors (`Server`, with that code).
    pub fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        self.query_until(cmd, self.default_deadline())
    }

    /// As [`RedisClient::query`], waiting no later than `deadline`.
    pub fn query_until<T: FromRedisValue>(&self, cmd: &Cmd, deadline: Instant) -> Result<T> {
        match &self.target {
            Target::Server(server) => server.query_until(cmd, deadline),
            Target::Cluster(cluster) => {
                convert(cluster.query(slot::command_slot(cmd), cmd, deadline)?)
            }
        }
    }

    /// As [`RedisClient::query`], on the node that owns `key`'s slot, whatever keys the
    /// command names: for a command that names none but whose answer depends on the node
    /// (`INFO server` read beside a key), or one whose key the routing does not find. On
    /// one server, the same as [`RedisClient::query`].
    ///
    /// ```no_run
    /// # fn demo(client: &lifeguard_core::cache::redis::RedisClient) -> lifeguard_core::Result<()> {
    /// use lifeguard_core::cache::redis::cmd;
    ///
    /// // The run id of the server that holds the namespace's heartbeat.
    /// let info: String = client.query_for_key(b"lg:{shop}:hb", cmd("INFO").arg("server"))?;
    /// # Ok(()) }
    /// ```
    pub fn query_for_key<T: FromRedisValue>(&self, key: &[u8], cmd: &Cmd) -> Result<T> {
        self.query_for_key_until(key, cmd, self.default_deadline())
    }

    /// As [`RedisClient::query_for_key`], waiting no later than `deadline`.
    pub fn query_for_key_until<T: FromRedisValue>(
        &self,
        key: &[u8],
        cmd: &Cmd,
        deadline: Instant,
    ) -> Result<T> {
        match &self.target {
            Target::Server(server) => server.query_until(cmd, deadline),
            Target::Cluster(cluster) => {
                convert(cluster.query(Some(key_slot(key)), cmd, deadline)?)
            }
        }
    }

    /// Runs `cmd` on every master (outside a cluster, on the one server) and returns each
    /// one's address with its reply, in address order: how the reflector sees that no
    /// master of a cluster has restarted.
    ///
    /// # Errors
    ///
    /// As [`RedisClient::query`], for any master; in a cluster whose masters are not known
    /// yet, [`RedisErrorKind::Unavailable`].
    pub fn query_each_master<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
        deadline: Instant,
    ) -> Result<Vec<(String, T)>> {
        let servers = match &self.target {
            Target::Server(server) => vec![server.clone()],
            Target::Cluster(cluster) => cluster.masters(),
        };
        if servers.is_empty() {
            return Err(RedisError::new(
                RedisErrorKind::Unavailable,
                "the cluster's masters are not known yet",
            )
            .into());
        }
        let mut replies = servers
            .iter()
            .map(|s| Ok((s.inner.target.clone(), s.query_until(cmd, deadline)?)))
            .collect::<Result<Vec<_>>>()?;
        replies.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(replies)
    }

    /// Runs the commands of `pipeline` and returns their replies, in order; an error reply
    /// of one command is returned as its `Value::ServerError`, so the others' replies are
    /// not lost. One round trip on one server; in a cluster, one per node the commands'
    /// keys live on (routed as [`RedisClient::query`] routes), sent to every node before
    /// waiting for any, then one more for the commands redirected (`MOVED`, `ASK`).
    ///
    /// # Errors
    ///
    /// As [`RedisClient::query`], for the round trip (on any node) that failed; in a
    /// cluster, also a `MULTI`/`EXEC` pipeline ([`Pipeline::atomic`]), which cannot span
    /// nodes (`Protocol`).
    pub fn pipeline_until(&self, pipeline: &Pipeline, deadline: Instant) -> Result<Vec<Value>> {
        match &self.target {
            Target::Server(server) => server.pipeline_until(pipeline, deadline),
            Target::Cluster(cluster) => cluster.pipeline(pipeline, deadline),
        }
    }

    /// Runs `script` on `keys` and `args`: `EVALSHA`, and on `NOSCRIPT` (a restarted or
    /// flushed server, or a cluster node that has not seen the script) `SCRIPT LOAD`
    /// followed by `EVALSHA` in one round trip, on the node that runs it. In a cluster the
    /// script runs on the node of its first key; all its keys must share that slot (a hash
    /// tag), as Redis requires.
    ///
    /// # Errors
    ///
    /// As [`RedisClient::query`].
    pub fn eval_until<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&[u8]],
        args: &[&[u8]],
        deadline: Instant,
    ) -> Result<T> {
        match &self.target {
            Target::Server(server) => server.eval_until(script, keys, args, deadline),
            Target::Cluster(cluster) => convert(cluster.eval(script, keys, args, deadline)?),
        }
    }

    /// Runs `script` once per entry of `calls` (its keys, its arguments), preceded by
    /// `SCRIPT LOAD` so that a restarted server cannot answer `NOSCRIPT`; returns each
    /// call's reply in order (an error reply as its `Value::ServerError`). One round trip
    /// on one server; in a cluster, as [`RedisClient::pipeline_until`], with `SCRIPT LOAD`
    /// first on every node.
    ///
    /// ```no_run
    /// # fn demo(client: &lifeguard_core::cache::redis::RedisClient) -> lifeguard_core::Result<()> {
    /// use std::time::{Duration, Instant};
    /// use lifeguard_core::cache::redis::Script;
    ///
    /// let incr = Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    /// let calls = [(vec![b"a".to_vec()], vec![b"1".to_vec()]), (vec![b"b".to_vec()], vec![b"2".to_vec()])];
    /// let replies = client.eval_each_until(&incr, &calls, Instant::now() + Duration::from_secs(1))?;
    /// assert_eq!(replies.len(), 2);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`RedisClient::pipeline_until`], and `SCRIPT LOAD` refused (`Server`).
    pub fn eval_each_until(
        &self,
        script: &Script,
        calls: &[ScriptCall],
        deadline: Instant,
    ) -> Result<Vec<Value>> {
        match &self.target {
            Target::Server(server) => server.eval_each_until(script, calls, deadline),
            Target::Cluster(cluster) => cluster.eval_each(script, calls, deadline),
        }
    }

    /// How many connections this client has opened after one broke (in a cluster, to
    /// every node it has talked to): when it changes, a server may be a new one
    /// (restarted or failed over), so what was read from it before may no longer describe
    /// it. Opening the first connections does not count.
    pub fn reconnects(&self) -> u64 {
        match &self.target {
            Target::Server(server) => server.reconnects(),
            Target::Cluster(cluster) => cluster.reconnects(),
        }
    }
}

impl Server {
    /// The client of the server `config.addr`; nothing connects yet.
    fn new(config: RedisConfig) -> Server {
        let target = config.addr.to_string();
        let members = (0..config.connections).map(|_| Mutex::default()).collect();
        Server {
            inner: Arc::new(Inner {
                config,
                target,
                members,
                next: AtomicUsize::new(0),
                circuit: Mutex::default(),
                reconnects: AtomicU64::new(0),
            }),
        }
    }

    /// [`RedisClient::query_until`] on this server.
    fn query_until<T: FromRedisValue>(&self, cmd: &Cmd, deadline: Instant) -> Result<T> {
        let conn = self.connection(deadline)?;
        let reply = conn
            .request(1, |out| cmd.write_packed_command(out))?
            .wait(deadline)?;
        convert(single(reply)?)
    }

    /// [`RedisClient::pipeline_until`] on this server: one round trip.
    fn pipeline_until(&self, pipeline: &Pipeline, deadline: Instant) -> Result<Vec<Value>> {
        let commands = pipeline.len();
        if commands == 0 {
            return Ok(Vec::new());
        }
        let conn = self.connection(deadline)?;
        let packed = pipeline.get_packed_pipeline();
        Ok(conn
            .request(commands, |out| out.extend_from_slice(&packed))?
            .wait(deadline)?)
    }

    /// [`RedisClient::eval_until`] on this server.
    fn eval_until<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&[u8]],
        args: &[&[u8]],
        deadline: Instant,
    ) -> Result<T> {
        let conn = self.connection(deadline)?;
        let evalsha = script.evalsha(keys, args);
        let reply = single(
            conn.request(1, |out| evalsha.write_packed_command(out))?
                .wait(deadline)?,
        )?;
        let reply = match &reply {
            Value::ServerError(e) if e.code() == "NOSCRIPT" => {
                let load = script.load();
                let replies = conn
                    .request(2, |out| {
                        load.write_packed_command(out);
                        evalsha.write_packed_command(out);
                    })?
                    .wait(deadline)?;
                replies.into_iter().nth(1).unwrap_or(Value::Nil)
            }
            _ => reply,
        };
        convert(reply)
    }

    /// [`RedisClient::eval_each_until`] on this server: one round trip.
    fn eval_each_until(
        &self,
        script: &Script,
        calls: &[ScriptCall],
        deadline: Instant,
    ) -> Result<Vec<Value>> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.connection(deadline)?;
        let load = script.load();
        let mut replies = conn
            .request(calls.len() + 1, |out| {
                load.write_packed_command(out);
                for (keys, args) in calls {
                    let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
                    let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                    script.evalsha(&keys, &args).write_packed_command(out);
                }
            })?
            .wait(deadline)?;
        if let Some(Value::ServerError(e)) = replies.first() {
            return Err(server_error(e, "SCRIPT LOAD").into());
        }
        replies.remove(0);
        Ok(replies)
    }

    /// How many connections to this server replaced or followed one that broke.
    fn reconnects(&self) -> u64 {
        self.inner.reconnects.load(Ordering::Relaxed)
    }

    /// A healthy connection: the next one in turn, reopened by this call when it is down
    /// (unless the circuit says wait), else any other healthy one; while another call is
    /// opening it, this one waits for that within its deadline.
    fn connection(&self, deadline: Instant) -> Result<Arc<Connection>> {
        let inner = &*self.inner;
        let n = inner.members.len();
        let first = inner.next.fetch_add(1, Ordering::Relaxed) % n;
        let healthy = |idx: usize| {
            lock(&inner.members[idx])
                .conn
                .clone()
                .filter(|conn| !conn.is_broken())
        };
        loop {
            if let Some(conn) = healthy(first) {
                return Ok(conn);
            }
            let opening = match self.reopen(first, deadline) {
                Reopen::Opened(conn) => return Ok(conn),
                Reopen::Failed(e) => return (1..n).find_map(|i| healthy((first + i) % n)).ok_or(e),
                Reopen::InProgress(waiter) => Some(waiter),
                Reopen::CircuitOpen => None,
            };
            if let Some(conn) = (1..n).find_map(|i| healthy((first + i) % n)) {
                return Ok(conn);
            }
            match opening {
                Some(waiter) if Instant::now() < deadline => {
                    crate::rt::park(&waiter, Some(deadline))
                }
                _ => {
                    return Err(Error::Redis(RedisError::new(
                        RedisErrorKind::Unavailable,
                        format!(
                            "no connection to Redis at {} (reconnecting after failed connects)",
                            inner.target
                        ),
                    )))
                }
            }
        }
    }

    /// Reopens member `idx`, unless the circuit is open or another call is at it.
    fn reopen(&self, idx: usize, deadline: Instant) -> Reopen {
        let inner = &*self.inner;
        {
            let mut member = lock(&inner.members[idx]);
            if member.connecting {
                let waiter = Arc::new(Blocker::new(false));
                member.waiters.push(waiter.clone());
                return Reopen::InProgress(waiter);
            }
            if lock(&inner.circuit).is_open(Instant::now()) {
                return Reopen::CircuitOpen;
            }
            member.connecting = true;
        }
        // A connection that broke may mean a restarted server: opening one then (for this
        // member or another) is a reconnect. Opening the first ones is not.
        let after_a_break = inner
            .members
            .iter()
            .any(|m| lock(m).conn.as_ref().is_some_and(|c| c.is_broken()));
        let opened = self.open(deadline);
        if opened.is_ok() && after_a_break {
            inner.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        let waiters = {
            let mut member = lock(&inner.members[idx]);
            member.connecting = false;
            if let Ok(conn) = &opened {
                member.conn = Some(conn.clone());
            }
            std::mem::take(&mut member.waiters)
        };
        for w in waiters {
            w.unpark();
        }
        match opened {
            Ok(conn) => Reopen::Opened(conn),
            Err(e) => Reopen::Failed(e),
        }
    }

    /// Connects, authenticates and selects the database, within the connect timeout and
    /// `deadline`.
    fn open(&self, deadline: Instant) -> Result<Arc<Connection>> {
        let inner = &*self.inner;
        let opened = self.try_open(deadline);
        let mut circuit = lock(&inner.circuit);
        match &opened {
            Ok(_) => *circuit = Circuit::default(),
            Err(_) => circuit.failed(inner.config.max_backoff),
        }
        opened
    }

    fn try_open(&self, deadline: Instant) -> Result<Arc<Connection>> {
        let inner = &*self.inner;
        let config = &inner.config;
        let deadline = deadline.min(Instant::now() + config.connect_timeout);
        let left = deadline.saturating_duration_since(Instant::now());
        let socket = match &config.addr {
            RedisAddr::Tcp { host, port } => {
                Socket::connect_tcp(host, *port, Some(left), &inner.target)
            }
            RedisAddr::Unix(path) => Socket::connect_unix(path, &inner.target),
        }
        .map_err(|e| {
            Error::Redis(RedisError {
                source: Some(Arc::new(e)),
                ..RedisError::new(
                    RedisErrorKind::Connection,
                    format!("connect to {}", inner.target),
                )
            })
        })?;
        let conn = Connection::start(socket, inner.target.clone())?;
        let mut hello = Pipeline::new();
        if let Some(password) = &config.password {
            match &config.user {
                Some(user) => hello.cmd("AUTH").arg(user).arg(password),
                None => hello.cmd("AUTH").arg(password),
            };
        }
        if config.db != 0 {
            hello.cmd("SELECT").arg(config.db);
        }
        if !hello.is_empty() {
            let packed = hello.get_packed_pipeline();
            let replies = conn
                .request(hello.len(), |out| out.extend_from_slice(&packed))
                .and_then(|slot| slot.wait(deadline));
            let refused = match replies {
                Ok(replies) => replies.into_iter().find_map(|r| match r {
                    Value::ServerError(e) => Some(server_error(&e, "AUTH/SELECT")),
                    _ => None,
                }),
                Err(e) => Some(e),
            };
            if let Some(e) = refused {
                conn.fail(e.clone());
                return Err(Error::Redis(e));
            }
        }
        Ok(conn)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The connections' coroutines hold them; closing ends those.
        for member in &self.members {
            if let Some(conn) = lock(member).conn.take() {
                conn.fail(RedisError::new(
                    RedisErrorKind::Connection,
                    "the Redis client was dropped",
                ));
            }
        }
    }
}

/// The only reply of a one-command request.
fn single(replies: Vec<Value>) -> Result<Value, RedisError> {
    replies.into_iter().next().ok_or_else(|| {
        RedisError::new(
            RedisErrorKind::Protocol,
            "a request completed without its reply",
        )
    })
}

fn convert<T: FromRedisValue>(reply: Value) -> Result<T> {
    if let Value::ServerError(e) = &reply {
        return Err(Error::Redis(server_error(e, "command")));
    }
    T::from_redis_value(reply).map_err(|e| {
        Error::Redis(RedisError::new(
            RedisErrorKind::Protocol,
            format!("unexpected reply shape: {e}"),
        ))
    })
}

fn server_error(e: &redis::ServerError, what: &str) -> RedisError {
    RedisError {
        code: Some(e.code().to_owned()),
        ..RedisError::new(
            RedisErrorKind::Server,
            format!("{what} refused: {} {}", e.code(), e.details().unwrap_or("")),
        )
    }
}

impl From<RedisError> for Error {
    fn from(e: RedisError) -> Error {
        Error::Redis(e)
    }
}
