//! The TCP settings every socket to a server gets: keepalive probes and `TCP_USER_TIMEOUT`,
//! so a peer that vanished is noticed by the kernel instead of waited for without end.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use may::net::TcpStream;
use socket2::{SockRef, TcpKeepalive};

use crate::pg::config::{Config, Keepalives};

/// The keepalive and user-timeout settings of one connection's socket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TcpSettings {
    keepalives: Keepalives,
    user_timeout: Option<Duration>,
}

impl TcpSettings {
    /// The settings `config` asks for.
    pub(crate) fn of(config: &Config) -> TcpSettings {
        TcpSettings {
            keepalives: config.get_keepalives(),
            user_timeout: config.get_tcp_user_timeout(),
        }
    }

    /// Lifeguard's defaults, for sockets opened without a PostgreSQL configuration.
    #[cfg(feature = "cache")]
    pub(crate) fn defaults() -> TcpSettings {
        TcpSettings::of(&Config::new())
    }

    /// Sets the options on a connected socket. Its duplicates (the reader's and the
    /// writer's handles) share them: options belong to the socket, not the descriptor.
    pub(crate) fn apply(&self, stream: &TcpStream) -> io::Result<()> {
        // SAFETY: `stream` keeps the descriptor open for as long as this borrow lives.
        let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
        let socket = SockRef::from(&fd);
        let k = self.keepalives;
        if k.enabled {
            // The kernel counts keepalive times in whole seconds and refuses zero.
            let probes = TcpKeepalive::new()
                .with_time(whole_seconds(k.idle))
                .with_interval(whole_seconds(k.interval))
                .with_retries(k.count.max(1));
            socket.set_tcp_keepalive(&probes)?;
        } else {
            socket.set_keepalive(false)?;
        }
        #[cfg(target_os = "linux")]
        socket.set_tcp_user_timeout(self.user_timeout)?;
        Ok(())
    }
}

/// `d` rounded up to whole seconds, at least one.
fn whole_seconds(d: Duration) -> Duration {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    Duration::from_secs(secs.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_times_round_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(
            whole_seconds(Duration::from_millis(1500)),
            Duration::from_secs(2)
        );
        assert_eq!(
            whole_seconds(Duration::from_secs(30)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn the_options_are_set_on_the_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let stream =
            TcpStream::connect(listener.local_addr().expect("its address")).expect("connect");
        let settings = TcpSettings {
            keepalives: Keepalives {
                enabled: true,
                idle: Duration::from_secs(7),
                interval: Duration::from_secs(3),
                count: 4,
            },
            user_timeout: Some(Duration::from_millis(12_345)),
        };
        settings.apply(&stream).expect("apply");
        // SAFETY: `stream` is open for the whole test.
        let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
        let socket = SockRef::from(&fd);
        assert!(socket.keepalive().expect("SO_KEEPALIVE"));
        assert_eq!(
            socket.tcp_keepalive_time().expect("TCP_KEEPIDLE"),
            Duration::from_secs(7)
        );
        assert_eq!(
            socket.tcp_keepalive_interval().expect("TCP_KEEPINTVL"),
            Duration::from_secs(3)
        );
        assert_eq!(socket.tcp_keepalive_retries().expect("TCP_KEEPCNT"), 4);
        #[cfg(target_os = "linux")]
        assert_eq!(
            socket.tcp_user_timeout().expect("TCP_USER_TIMEOUT"),
            Some(Duration::from_millis(12_345))
        );
    }
}
