//! The network side of a [`Config`]: hosts and ports, which of several to use, and the TCP
//! settings that bound how long a dead peer can go unnoticed.

use std::path::PathBuf;
use std::time::Duration;

use super::{socket_file, Config, Host, LoadBalanceHosts, TargetSessionAttrs};
use crate::error::{Error, Result};

/// How long sent data may stay unacknowledged before the kernel drops the connection,
/// unless told otherwise.
pub(super) const DEFAULT_TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// TCP keepalive probes on an idle connection, so a peer that vanished is noticed.
///
/// The defaults (on; first probe after 30 s idle, then every 10 s, 3 unanswered probes end
/// the connection) notice a dead server within about a minute where the kernel's own
/// defaults take over two hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalives {
    /// Whether probes are sent at all (`keepalives`).
    pub enabled: bool,
    /// Idle time before the first probe (`keepalives_idle`).
    pub idle: Duration,
    /// Time between unanswered probes (`keepalives_interval`).
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped (`keepalives_count`).
    pub count: u32,
}

impl Default for Keepalives {
    fn default() -> Keepalives {
        Keepalives {
            enabled: true,
            idle: Duration::from_secs(30),
            interval: Duration::from_secs(10),
            count: 3,
        }
    }
}

impl Config {
    /// Sets the one host: a name or IP address for TCP, or, when it starts with `/`, the
    /// directory of the server's Unix-domain socket (as libpq does). Replaces any list.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.hosts = vec![Host::parse(&host.into())];
        self
    }

    /// Sets several hosts, tried in turn (see [`Config::target_session_attrs`]); each is
    /// spelt as for [`Config::host`].
    ///
    /// ```
    /// use lifeguard_core::pg::{Config, TargetSessionAttrs};
    ///
    /// let config = Config::new()
    ///     .hosts(["db-a", "db-b"])
    ///     .ports([5432, 5433])
    ///     .target_session_attrs(TargetSessionAttrs::ReadWrite);
    /// assert_eq!(config.get_hosts().len(), 2);
    /// ```
    pub fn hosts<S: Into<String>>(mut self, hosts: impl IntoIterator<Item = S>) -> Self {
        self.hosts = hosts.into_iter().map(|h| Host::parse(&h.into())).collect();
        if self.hosts.is_empty() {
            self.hosts.push(Host::parse(""));
        }
        self
    }

    /// Connects through the Unix-domain socket in `dir` (the directory, not the socket file).
    pub fn unix_socket_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.hosts = vec![Host::Unix(dir.into())];
        self
    }

    /// Sets the TCP port of every host, which for Unix sockets also picks the socket file's
    /// name.
    pub fn port(mut self, port: u16) -> Self {
        self.ports = vec![port];
        self
    }

    /// Sets one port per host, in the order of [`Config::hosts`] (or one for all).
    pub fn ports(mut self, ports: impl IntoIterator<Item = u16>) -> Self {
        self.ports = ports.into_iter().collect();
        self
    }

    /// Sets which kind of server the connection must reach.
    pub fn target_session_attrs(mut self, attrs: TargetSessionAttrs) -> Self {
        self.target_session_attrs = attrs;
        self
    }

    /// Sets in what order several hosts are tried.
    pub fn load_balance_hosts(mut self, order: LoadBalanceHosts) -> Self {
        self.load_balance_hosts = order;
        self
    }

    /// Sets the TCP keepalive probes.
    pub fn keepalives(mut self, keepalives: Keepalives) -> Self {
        self.keepalives = keepalives;
        self
    }

    /// Sets how long sent data may stay unacknowledged before the connection is dropped
    /// (`TCP_USER_TIMEOUT`); `None` leaves the kernel's default (about 15 minutes).
    pub fn tcp_user_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.tcp_user_timeout = timeout.into();
        self
    }

    /// The first (or only) host.
    pub fn get_host(&self) -> &Host {
        // `hosts` is never empty: every setter and the parser keep one.
        &self.hosts[0]
    }

    /// Every host, in the order given.
    pub fn get_hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The TCP port of the first host, or the number in its Unix socket's file name.
    pub fn get_port(&self) -> u16 {
        // `ports` is never empty, like `hosts`.
        self.ports[0]
    }

    /// The ports as given: one for every host, or one for all.
    pub fn get_ports(&self) -> &[u16] {
        &self.ports
    }

    /// Which kind of server the connection must reach.
    pub fn get_target_session_attrs(&self) -> TargetSessionAttrs {
        self.target_session_attrs
    }

    /// In what order several hosts are tried.
    pub fn get_load_balance_hosts(&self) -> LoadBalanceHosts {
        self.load_balance_hosts
    }

    /// The TCP keepalive probes.
    pub fn get_keepalives(&self) -> Keepalives {
        self.keepalives
    }

    /// How long sent data may stay unacknowledged; `None` is the kernel's default.
    pub fn get_tcp_user_timeout(&self) -> Option<Duration> {
        self.tcp_user_timeout
    }

    /// One single-host configuration per host, in the order given, each otherwise equal to
    /// this one.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the number of ports is neither one nor the number of hosts.
    pub fn targets(&self) -> Result<Vec<Config>> {
        let ports = self.ports.len();
        if ports != 1 && ports != self.hosts.len() {
            return Err(Error::config(format!(
                "{} hosts but {ports} ports: give one port for all or one per host",
                self.hosts.len()
            )));
        }
        Ok(self
            .hosts
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let mut one = self.clone();
                one.hosts = vec![host.clone()];
                one.ports = vec![self.ports[if ports == 1 { 0 } else { i }]];
                one
            })
            .collect())
    }

    /// The socket file to connect to when the (first) host is a Unix socket directory:
    /// `<dir>/.s.PGSQL.<port>`. `None` for TCP hosts.
    pub fn socket_path(&self) -> Option<PathBuf> {
        match self.get_host() {
            Host::Unix(dir) => Some(socket_file(dir, self.get_port())),
            Host::Tcp(_) => None,
        }
    }

    /// The (first) target in the form error messages show it: `host:port`, `[::1]:port`
    /// for IPv6, or the socket file's path.
    pub fn display_target(&self) -> String {
        let port = self.get_port();
        match self.get_host() {
            // Brackets keep the port from reading as one more group of the address.
            Host::Tcp(h) if h.contains(':') => format!("[{h}]:{port}"),
            Host::Tcp(h) => format!("{h}:{port}"),
            Host::Unix(dir) => socket_file(dir, port).display().to_string(),
        }
    }
}
