//! A throwaway Redis Cluster of three masters on loopback, for the cluster tests: each
//! node a `redis-server` of its own in a directory under the system's temp dir, joined with
//! `redis-cli --cluster create`; killed, and its directory removed, when dropped.
//!
//! ```no_run
//! use lifeguard_tests::redis_cluster::LocalCluster;
//!
//! let cluster = LocalCluster::start();
//! let url = cluster.url(); // redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/
//! assert_eq!(cluster.cli(cluster.ports()[0], &["PING"]), "PONG");
//! ```

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::unique_name;

/// Three Redis Cluster masters on free loopback ports, with no replicas.
pub struct LocalCluster {
    dir: PathBuf,
    ports: Vec<u16>,
    buses: Vec<u16>,
    children: Vec<Child>,
}

impl LocalCluster {
    /// Starts three `redis-server`s in cluster mode, joins them (16384 slots spread over
    /// the three), and waits until every node reports `cluster_state:ok`.
    ///
    /// # Panics
    ///
    /// When a server does not start, or the cluster does not form within 30 s.
    pub fn start() -> LocalCluster {
        let dir = std::env::temp_dir().join(unique_name("lifeguard-cluster"));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        // The cluster bus of each node needs a port too: six free ones, taken at once so
        // that they differ.
        let listeners: Vec<TcpListener> = (0..6)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
            .collect();
        let free: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().expect("port").port())
            .collect();
        drop(listeners);
        let mut cluster = LocalCluster {
            dir,
            ports: free[..3].to_vec(),
            buses: free[3..].to_vec(),
            children: Vec::new(),
        };
        for i in 0..3 {
            let child = cluster.launch(i);
            cluster.children.push(child);
        }
        for &port in &cluster.ports {
            cluster.wait(port, "PING", |out| out == "PONG");
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for &port in &cluster.ports {
            cluster.wait(port, "CLUSTER INFO", |out| {
                out.contains("cluster_state:ok") && out.contains("cluster_known_nodes:3")
            });
        }
        cluster
    }

    /// Starts node `i` (its directory keeps its cluster config across restarts).
    fn launch(&self, i: usize) -> Child {
        let node_dir = self.dir.join(format!("node{i}"));
        std::fs::create_dir_all(&node_dir).expect("node dir");
        let log = std::fs::File::create(node_dir.join("redis.log")).expect("log file");
        Command::new("redis-server")
            .args(["--port", &self.ports[i].to_string(), "--bind", "127.0.0.1"])
            .args([
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &self.buses[i].to_string(),
            ])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&node_dir)
            .stdout(Stdio::from(log))
            .spawn()
            .expect("redis-server")
    }

    /// Restarts master `i` empty (`SHUTDOWN NOSAVE`); it rejoins with its slots, and this
    /// returns once the cluster is whole again.
    pub fn restart(&mut self, i: usize) {
        let port = self.ports[i];
        self.cli(port, &["SHUTDOWN", "NOSAVE"]);
        let _ = self.children[i].wait();
        self.children[i] = self.launch(i);
        self.wait(port, "PING", |out| out == "PONG");
        for &port in &self.ports {
            self.wait(port, "CLUSTER INFO", |out| out.contains("cluster_state:ok"));
        }
    }

    /// The client ports of the three masters.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/`.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}/", seeds.join(","))
    }

    /// Runs `redis-cli -p PORT ARGS...` (not in cluster mode: on that node only) and returns
    /// its trimmed output, errors included.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The node ID of the master on `port`.
    pub fn node_id(&self, port: u16) -> String {
        self.cli(port, &["CLUSTER", "MYID"])
    }

    /// The port of the master that serves `slot`, as the node on `asked` sees it.
    pub fn owner_of(&self, slot: u16, asked: u16) -> u16 {
        let nodes = self.cli(asked, &["CLUSTER", "NODES"]);
        nodes
            .lines()
            .find_map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                let port = fields.get(1)?.split(['@', ':']).nth(1)?.parse().ok()?;
                fields.get(8..)?.iter().any(|range| {
                    let (start, end) = range.split_once('-').unwrap_or((range, range));
                    matches!((start.parse::<u16>(), end.parse::<u16>()), (Ok(s), Ok(e)) if s <= slot && slot <= e)
                })
                .then_some(port)
            })
            .unwrap_or_else(|| panic!("no node serves slot {slot}:\n{nodes}"))
    }

    /// Polls `redis-cli -p PORT ARGS` (split on spaces) until `ok` accepts its output.
    fn wait(&self, port: u16, args: &str, ok: impl Fn(&str) -> bool) {
        let args: Vec<&str> = args.split(' ').collect();
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.cli(port, &args);
            if ok(&out) {
                return;
            }
            assert!(
                Instant::now() < until,
                "node {port} never answered {args:?} as expected: {out}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
