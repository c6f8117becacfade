//! The byte stream under a connection: a `may` TCP or Unix socket, never a blocking `std` one.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use may::net::TcpStream;
use may::os::unix::net::UnixStream;

use super::config::{Config, Host};
use crate::error::{Error, Result};

/// A connected socket; reads and writes park the calling coroutine, not its thread.
#[derive(Debug)]
pub(crate) enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Socket {
    /// Opens a socket to the configured server, bounded by the connect timeout.
    pub(crate) fn connect(config: &Config) -> Result<Socket> {
        let target = config.display_target();
        let timeout = config.get_connect_timeout();
        match config.get_host() {
            Host::Unix(_) => {
                let path = config
                    .socket_path()
                    .ok_or_else(|| Error::config("a Unix-socket host needs a socket directory"))?;
                let stream = UnixStream::connect(&path)
                    .map_err(|e| Error::connection(format!("connect to {target}"), Some(e)))?;
                Ok(Socket::Unix(stream))
            }
            Host::Tcp(host) => {
                // Name resolution goes through the system resolver, which blocks this worker
                // thread; it runs once per connection open, never per statement. IP literals
                // skip it entirely.
                let addrs: Vec<SocketAddr> = (host.as_str(), config.get_port())
                    .to_socket_addrs()
                    .map_err(|e| Error::connection(format!("resolve {target}"), Some(e)))?
                    .collect();
                let mut last = None;
                for addr in &addrs {
                    let attempt = match timeout {
                        Some(t) => TcpStream::connect_timeout(addr, t),
                        None => TcpStream::connect(addr),
                    };
                    match attempt {
                        Ok(stream) => {
                            // Small pipelined requests must not wait for Nagle's timer.
                            stream.set_nodelay(true).map_err(|e| {
                                Error::connection(format!("configure socket to {target}"), Some(e))
                            })?;
                            return Ok(Socket::Tcp(stream));
                        }
                        Err(e) => last = Some(e),
                    }
                }
                let context = match &last {
                    Some(e) if e.kind() == io::ErrorKind::TimedOut => format!(
                        "connect to {target} timed out after {:?}",
                        timeout.unwrap_or_default()
                    ),
                    _ => format!("connect to {target}"),
                };
                Err(Error::connection(context, last))
            }
        }
    }

    /// A second handle on the same socket, so one coroutine reads while others write.
    pub(crate) fn try_clone(&self) -> io::Result<Socket> {
        match self {
            Socket::Tcp(s) => s.try_clone().map(Socket::Tcp),
            Socket::Unix(s) => s.try_clone().map(Socket::Unix),
        }
    }

    /// Bounds every read (used during the start-up handshake only).
    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_read_timeout(timeout),
            Socket::Unix(s) => s.set_read_timeout(timeout),
        }
    }

    /// Closes both directions, which also wakes a coroutine parked in a read.
    pub(crate) fn shutdown(&self) {
        // The peer may already be gone; there is nothing useful to do with that error.
        let _ = match self {
            Socket::Tcp(s) => s.shutdown(Shutdown::Both),
            Socket::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            Socket::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.flush(),
            Socket::Unix(s) => s.flush(),
        }
    }
}
