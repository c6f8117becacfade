//! A Redis Cluster behind one [`RedisClient`](super::RedisClient): the single-server client
//! ([`Server`]) for each node, a slot map, and routing.
//!
//! - **The slot map** comes from `CLUSTER NODES`, asked of the known masters, then of the
//!   seed nodes, by a background coroutine whenever the map may be out of date: at first, after
//!   a `MOVED`, after a node could not be reached; at most once per [`REFRESH_EVERY`]. Until
//!   the first map is loaded, commands go to a seed node, whose `MOVED` replies teach the
//!   client their slots; so no call waits for the map, and a service starts while the
//!   cluster is down, as with one server.
//! - **Routing**: each command goes to the master of its slot (any master, for a command
//!   without keys). The commands of one call are grouped by node; each group is written to
//!   its node before the client waits for any reply, so a call over three nodes takes about
//!   one round trip, not three.
//! - **Redirects**: a `MOVED` reply updates its slot at once (the rest of the map is
//!   refreshed in the background) and an `ASK` reply sends `ASKING` and the command to the
//!   node importing the slot, without changing the map; either way the command is retried
//!   once, within the caller's deadline. A second redirect, `CLUSTERDOWN` and `TRYAGAIN` are
//!   the caller's error replies.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use redis::{Cmd, Pipeline, Value};

use super::slot::{command_slot, key_slot, parse_nodes, redirect, Redirect, SLOTS};
use super::{server_error, single, RedisAddr, RedisConfig, Script, ScriptCall, Server};
use crate::error::{Error, RedisError, RedisErrorKind, Result};
use crate::rt::lock;

/// The least time between two loads of the slot map: a resharding answers `MOVED` to many
/// calls at once, and each updates its own slot anyway.
const REFRESH_EVERY: Duration = Duration::from_millis(100);

/// `ASKING`, packed: it lets the next command on the connection run on a slot being
/// imported.
const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";

/// The slot map's entry for a slot with no known owner (no master has that index).
const NO_OWNER: u16 = u16::MAX;

pub(super) struct Cluster {
    config: RedisConfig,
    /// The seed nodes' clients, never empty: asked for the slot map when no master answers,
    /// and sent commands until a map is known.
    seeds: Vec<Server>,
    topology: RwLock<Topology>,
    /// Whether the slot map may be out of date; the next call starts a refresh.
    stale: AtomicBool,
    refresh: Mutex<Refresh>,
    /// Turns commands without keys among the masters.
    next: AtomicUsize,
    /// Reconnects of servers no longer part of the topology, so that
    /// [`Cluster::reconnects`] only grows.
    retired: AtomicU64,
}

#[derive(Default)]
struct Refresh {
    running: bool,
    last: Option<Instant>,
}

struct Topology {
    /// For each slot, its master's index in `masters` ([`NO_OWNER`] while unknown).
    owners: Vec<u16>,
    masters: Vec<Server>,
    /// Every server the client talks to, by `host:port`: the masters, the seeds, and the
    /// targets of `ASK` redirects.
    known: HashMap<String, Server>,
}

/// The commands of one call bound for one node: their indices in the call, each with
/// whether an `ASK` redirect sent it there (it is then preceded by `ASKING`).
struct Part {
    server: Server,
    items: Vec<(usize, bool)>,
}

impl Cluster {
    pub(super) fn new(config: RedisConfig) -> Cluster {
        let seeds: Vec<RedisAddr> = match config.cluster_seeds() {
            Some(seeds) if !seeds.is_empty() => seeds.to_vec(),
            _ => vec![config.addr.clone()],
        };
        let seeds: Vec<Server> = seeds
            .into_iter()
            .map(|addr| Server::new(config.node(addr)))
            .collect();
        let known = seeds
            .iter()
            .map(|s| (s.inner.target.clone(), s.clone()))
            .collect();
        Cluster {
            config,
            seeds,
            topology: RwLock::new(Topology {
                owners: vec![NO_OWNER; SLOTS],
                masters: Vec::new(),
                known,
            }),
            stale: AtomicBool::new(true),
            refresh: Mutex::default(),
            next: AtomicUsize::new(0),
            retired: AtomicU64::new(0),
        }
    }

    pub(super) fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// The masters as the slot map knows them (none before it is loaded).
    pub(super) fn masters(&self) -> Vec<Server> {
        self.read().masters.clone()
    }

    /// Reconnects of every server so far.
    pub(super) fn reconnects(&self) -> u64 {
        let topology = self.read();
        self.retired.load(Ordering::Relaxed)
            + topology.known.values().map(Server::reconnects).sum::<u64>()
    }

    /// One command, routed by `slot` (any node when `None`).
    pub(super) fn query(
        self: &Arc<Self>,
        slot: Option<u16>,
        cmd: &Cmd,
        deadline: Instant,
    ) -> Result<Value> {
        Ok(single(self.run(&[cmd], &[slot], None, deadline)?)?)
    }

    /// `EVALSHA` on the node of the first key, and on `NOSCRIPT` `SCRIPT LOAD` and `EVALSHA`
    /// there in one round trip.
    pub(super) fn eval(
        self: &Arc<Self>,
        script: &Script,
        keys: &[&[u8]],
        args: &[&[u8]],
        deadline: Instant,
    ) -> Result<Value> {
        let evalsha = script.evalsha(keys, args);
        let slot = keys.first().map(|key| key_slot(key));
        let reply = single(self.run(&[&evalsha], &[slot], None, deadline)?)?;
        match &reply {
            Value::ServerError(e) if e.code() == "NOSCRIPT" => {
                let load = script.load();
                Ok(single(self.run(
                    &[&evalsha],
                    &[slot],
                    Some(&load),
                    deadline,
                )?)?)
            }
            _ => Ok(reply),
        }
    }

    pub(super) fn pipeline(
        self: &Arc<Self>,
        pipeline: &Pipeline,
        deadline: Instant,
    ) -> Result<Vec<Value>> {
        if pipeline.is_transaction() {
            return Err(Error::Redis(RedisError::new(
                RedisErrorKind::Protocol,
                "a MULTI/EXEC pipeline cannot span the nodes of a Redis Cluster",
            )));
        }
        let cmds: Vec<&Cmd> = pipeline.cmd_iter().collect();
        let slots: Vec<Option<u16>> = cmds.iter().map(|cmd| command_slot(cmd)).collect();
        self.run(&cmds, &slots, None, deadline)
    }

    pub(super) fn eval_each(
        self: &Arc<Self>,
        script: &Script,
        calls: &[ScriptCall],
        deadline: Instant,
    ) -> Result<Vec<Value>> {
        let cmds: Vec<Cmd> = calls
            .iter()
            .map(|(keys, args)| {
                let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
                let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                script.evalsha(&keys, &args)
            })
            .collect();
        let slots: Vec<Option<u16>> = calls
            .iter()
            .map(|(keys, _)| keys.first().map(|key| key_slot(key)))
            .collect();
        let cmds: Vec<&Cmd> = cmds.iter().collect();
        self.run(&cmds, &slots, Some(&script.load()), deadline)
    }

    /// Runs `cmds`, each on the owner of its slot in `slots`, with `load` (`SCRIPT LOAD`)
    /// first on every node they go to; returns their replies in order, after following
    /// each command's redirect once.
    fn run(
        self: &Arc<Self>,
        cmds: &[&Cmd],
        slots: &[Option<u16>],
        load: Option<&Cmd>,
        deadline: Instant,
    ) -> Result<Vec<Value>> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        self.refresh_if_stale();
        let mut parts = Vec::new();
        {
            let topology = self.read();
            let turn = self.next.fetch_add(1, Ordering::Relaxed);
            for (i, slot) in slots.iter().enumerate() {
                let server = topology
                    .owner(*slot, turn)
                    // Indexing is sound: `seeds` is never empty.
                    .unwrap_or_else(|| self.seeds[turn % self.seeds.len()].clone());
                add(&mut parts, server, i, false);
            }
        }
        let mut replies = vec![Value::Nil; cmds.len()];
        self.exchange(&parts, cmds, load, &mut replies, deadline)?;
        let mut retries = Vec::new();
        for part in &parts {
            for &(i, _) in &part.items {
                let Some(to) = redirect(&replies[i], host(&part.server)) else {
                    continue;
                };
                let server = match to.ask {
                    true => self.server_at(&to.host, to.port),
                    false => self.moved(&to),
                };
                add(&mut retries, server, i, to.ask);
            }
        }
        if !retries.is_empty() {
            self.exchange(&retries, cmds, load, &mut replies, deadline)?;
        }
        Ok(replies)
    }

    /// Sends each part to its node, all before waiting for any, and puts the replies in
    /// `replies`. A node that cannot be reached may have been replaced: the map is then
    /// reloaded.
    fn exchange(
        &self,
        parts: &[Part],
        cmds: &[&Cmd],
        load: Option<&Cmd>,
        replies: &mut [Value],
        deadline: Instant,
    ) -> Result<()> {
        let sent = send(parts, cmds, load, replies, deadline);
        if let Err(Error::Redis(e)) = &sent {
            if matches!(
                e.kind,
                RedisErrorKind::Connection | RedisErrorKind::Unavailable
            ) {
                self.stale.store(true, Ordering::Release);
            }
        }
        sent
    }

    /// The server at `host:port`, known from now on.
    fn server_at(&self, host: &str, port: u16) -> Server {
        if let Some(server) = self.read().known.get(&addr(host, port)) {
            return server.clone();
        }
        self.write().server_at(&self.config, host, port)
    }

    /// Records that `to.slot` is served by the node `MOVED` named, and has the rest of the
    /// map reloaded.
    fn moved(self: &Arc<Self>, to: &Redirect) -> Server {
        let server = {
            let mut topology = self.write();
            let server = topology.server_at(&self.config, &to.host, to.port);
            topology.set_owner(to.slot, &server);
            server
        };
        self.stale.store(true, Ordering::Release);
        self.refresh_if_stale();
        server
    }

    /// Starts a background load of the slot map when it may be out of date, unless one is
    /// running or the last began less than [`REFRESH_EVERY`] ago.
    fn refresh_if_stale(self: &Arc<Self>) {
        if !self.stale.load(Ordering::Acquire) {
            return;
        }
        {
            let mut refresh = lock(&self.refresh);
            if refresh.running || refresh.last.is_some_and(|at| at.elapsed() < REFRESH_EVERY) {
                return;
            }
            refresh.running = true;
            refresh.last = Some(Instant::now());
        }
        // Cleared before the load, so that news arriving during it triggers another.
        self.stale.store(false, Ordering::Release);
        let cluster = self.clone();
        let spawned = crate::rt::spawn("lifeguard-redis-slots", 0x4000, move || {
            let loaded = cluster.load_slots();
            lock(&cluster.refresh).running = false;
            if !loaded {
                cluster.stale.store(true, Ordering::Release);
            }
        });
        if spawned.is_err() {
            lock(&self.refresh).running = false;
            self.stale.store(true, Ordering::Release);
        }
    }

    /// Asks the known masters, then the seeds, for `CLUSTER NODES` until one answers with
    /// a map, and installs it; `false` when none did.
    fn load_slots(&self) -> bool {
        let mut candidates = self.read().masters.clone();
        for seed in &self.seeds {
            if !candidates
                .iter()
                .any(|c| Arc::ptr_eq(&c.inner, &seed.inner))
            {
                candidates.push(seed.clone());
            }
        }
        let each = self.config.connect_timeout + self.config.command_timeout;
        let mut ask = redis::cmd("CLUSTER");
        ask.arg("NODES");
        for server in candidates {
            let ranges = match server.query_until::<String>(&ask, Instant::now() + each) {
                Ok(text) => parse_nodes(&text, host(&server)),
                Err(_) => continue,
            };
            // A node that has not joined a cluster yet knows no slots.
            if !ranges.is_empty() {
                self.install(ranges);
                return true;
            }
        }
        tracing::warn!(target: "lifeguard::cache", "no Redis Cluster node answered CLUSTER NODES");
        false
    }

    /// Replaces the slot map with `ranges` (`start`, `end`, master host, port), keeping
    /// the clients (and connections) of nodes still in it.
    fn install(&self, ranges: Vec<(u16, u16, String, u16)>) {
        let mut topology = self.write();
        let mut owners = vec![NO_OWNER; SLOTS];
        let mut masters: Vec<Server> = Vec::new();
        for (start, end, host, port) in ranges {
            let server = topology.server_at(&self.config, &host, port);
            let index = index_of(&mut masters, &server);
            owners[usize::from(start)..=usize::from(end)].fill(index);
        }
        let seeds = &self.seeds;
        let retired = &self.retired;
        topology.known.retain(|_, server| {
            let keep = masters
                .iter()
                .chain(seeds)
                .any(|s| Arc::ptr_eq(&s.inner, &server.inner));
            if !keep {
                retired.fetch_add(server.reconnects(), Ordering::Relaxed);
            }
            keep
        });
        topology.owners = owners;
        topology.masters = masters;
    }

    fn read(&self) -> RwLockReadGuard<'_, Topology> {
        // Nothing panics while holding the lock, so a poisoned one is still consistent.
        self.topology.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Topology> {
        self.topology
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Topology {
    /// The master of `slot`, or, for no slot or one without a known master, the master
    /// whose turn it is; `None` before any master is known.
    fn owner(&self, slot: Option<u16>, turn: usize) -> Option<Server> {
        let owned = slot
            .and_then(|slot| self.owners.get(usize::from(slot)))
            .and_then(|&index| self.masters.get(usize::from(index)));
        owned
            .or_else(|| self.masters.get(turn % self.masters.len().max(1)))
            .cloned()
    }

    /// The client of the node at `host:port`, made on first sight.
    fn server_at(&mut self, config: &RedisConfig, host: &str, port: u16) -> Server {
        self.known
            .entry(addr(host, port))
            .or_insert_with(|| {
                Server::new(config.node(RedisAddr::Tcp {
                    host: host.to_owned(),
                    port,
                }))
            })
            .clone()
    }

    fn set_owner(&mut self, slot: u16, server: &Server) {
        let index = index_of(&mut self.masters, server);
        if let Some(owner) = self.owners.get_mut(usize::from(slot)) {
            *owner = index;
        }
    }
}

/// `server`'s index in `masters`, where it is added if missing.
fn index_of(masters: &mut Vec<Server>, server: &Server) -> u16 {
    let index = match masters
        .iter()
        .position(|m| Arc::ptr_eq(&m.inner, &server.inner))
    {
        Some(index) => index,
        None => {
            masters.push(server.clone());
            masters.len() - 1
        }
    };
    u16::try_from(index).unwrap_or(NO_OWNER)
}

/// Adds command `index` to the part bound for `server`.
fn add(parts: &mut Vec<Part>, server: Server, index: usize, ask: bool) {
    match parts
        .iter_mut()
        .find(|p| Arc::ptr_eq(&p.server.inner, &server.inner))
    {
        Some(part) => part.items.push((index, ask)),
        None => parts.push(Part {
            server,
            items: vec![(index, ask)],
        }),
    }
}

/// Writes every part to its node, then waits for each in turn.
fn send(
    parts: &[Part],
    cmds: &[&Cmd],
    load: Option<&Cmd>,
    replies: &mut [Value],
    deadline: Instant,
) -> Result<()> {
    let conns = parts
        .iter()
        .map(|part| part.server.connection(deadline))
        .collect::<Result<Vec<_>>>()?;
    let requests = parts
        .iter()
        .zip(&conns)
        .map(|(part, conn)| {
            let asks = part.items.iter().filter(|(_, ask)| *ask).count();
            let count = usize::from(load.is_some()) + part.items.len() + asks;
            conn.request(count, |out| {
                if let Some(load) = load {
                    load.write_packed_command(out);
                }
                for &(i, ask) in &part.items {
                    if ask {
                        out.extend_from_slice(ASKING);
                    }
                    cmds[i].write_packed_command(out);
                }
            })
        })
        .collect::<Result<Vec<_>, RedisError>>()?;
    for (part, request) in parts.iter().zip(&requests) {
        let mut got = request.wait(deadline)?.into_iter();
        if load.is_some() {
            if let Some(Value::ServerError(e)) = got.next() {
                return Err(server_error(&e, "SCRIPT LOAD").into());
            }
        }
        for &(i, ask) in &part.items {
            if ask {
                // `ASKING`'s `OK`.
                got.next();
            }
            replies[i] = got.next().ok_or_else(|| {
                RedisError::new(
                    RedisErrorKind::Protocol,
                    "a request completed without all its replies",
                )
            })?;
        }
    }
    Ok(())
}

/// The host of a node's client (nodes are always reached over TCP).
fn host(server: &Server) -> &str {
    match &server.inner.config.addr {
        RedisAddr::Tcp { host, .. } => host,
        RedisAddr::Unix(_) => "",
    }
}

/// A node's key in [`Topology::known`], as [`RedisAddr`] displays it.
fn addr(host: &str, port: u16) -> String {
    format!("{host}:{port}")
}
