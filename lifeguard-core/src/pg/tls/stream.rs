//! A TLS session over a `may` TCP socket, shared by the connection's handles.
//!
//! rustls does no I/O of its own: this module feeds it the bytes the coroutine socket
//! reads and writes out what it produces. The writer's and the reader's handles are two
//! descriptors on one socket, so the session state lives behind one lock they share, held
//! only while rustls encrypts or decrypts, never across a socket wait. Ciphertext read but
//! not yet taken by rustls stays in that shared state too, so no handle can lose bytes
//! another one read.

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};

use may::net::TcpStream;
use rustls::ClientConnection;

use crate::rt::lock;

/// How much ciphertext one socket read takes: a little over one full TLS record.
const READ_CHUNK: usize = 17 * 1024;

/// One handle on a TLS connection: a descriptor of the socket and the shared session.
pub(crate) struct TlsSocket {
    tcp: TcpStream,
    session: Arc<Session>,
    /// This handle's read buffer, allocated on its first read (the writer's never is).
    scratch: Vec<u8>,
    /// This handle's ciphertext buffer for writes, kept so writes do not allocate.
    out: Vec<u8>,
}

struct Session {
    state: Mutex<State>,
    /// Held from encryption to the end of the socket write, so records reach the wire in
    /// the order of their sequence numbers whichever handle writes.
    writing: may::sync::Mutex<()>,
    /// The server certificate's `tls-server-end-point` hash, for SCRAM channel binding.
    end_point: Option<Vec<u8>>,
}

struct State {
    conn: ClientConnection,
    /// Ciphertext read from the socket that rustls has not taken yet, from `taken` on.
    pending: Vec<u8>,
    taken: usize,
    /// The socket reached end of file.
    eof: bool,
}

impl TlsSocket {
    /// Wraps a connection whose handshake has completed on `tcp`.
    pub(super) fn new(tcp: TcpStream, mut conn: ClientConnection) -> TlsSocket {
        // Writes encrypt everything they are given at once; the pipeline bounds how much
        // that is.
        conn.set_buffer_limit(None);
        let end_point = conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|cert| super::binding::server_end_point(cert));
        let session = Session {
            state: Mutex::new(State {
                conn,
                pending: Vec::new(),
                taken: 0,
                eof: false,
            }),
            writing: may::sync::Mutex::new(()),
            end_point,
        };
        TlsSocket {
            tcp,
            session: Arc::new(session),
            scratch: Vec::new(),
            out: Vec::new(),
        }
    }

    /// The socket underneath, for its descriptor.
    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// The `tls-server-end-point` binding data, when the server sent a certificate.
    pub(crate) fn end_point(&self) -> Option<&[u8]> {
        self.session.end_point.as_deref()
    }

    /// Another handle on the same session, with a descriptor of its own.
    pub(crate) fn try_clone(&self) -> io::Result<TlsSocket> {
        Ok(TlsSocket {
            tcp: self.tcp.try_clone()?,
            session: self.session.clone(),
            scratch: Vec::new(),
            out: Vec::new(),
        })
    }
}

impl State {
    /// Plaintext for `buf` from what has been read so far: `None` when more ciphertext is
    /// needed.
    fn deliver(&mut self, buf: &mut [u8]) -> Option<io::Result<usize>> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Some(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // A peer that closes without close_notify still just closed.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Some(Ok(0)),
                Err(e) => return Some(Err(e)),
            }
            if self.taken < self.pending.len() {
                let used = match self.conn.read_tls(&mut &self.pending[self.taken..]) {
                    Ok(used) => used,
                    Err(e) => return Some(Err(e)),
                };
                self.taken += used;
                if self.taken == self.pending.len() {
                    self.pending.clear();
                    self.taken = 0;
                }
                if let Err(e) = self.conn.process_new_packets() {
                    return Some(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
                }
            } else if self.eof {
                return Some(Ok(0));
            } else {
                return None;
            }
        }
    }
}

impl Read for TlsSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(outcome) = lock(&self.session.state).deliver(buf) {
                return outcome;
            }
            if self.scratch.is_empty() {
                self.scratch = vec![0; READ_CHUNK];
            }
            let n = self.tcp.read(&mut self.scratch)?;
            let mut state = lock(&self.session.state);
            if n == 0 {
                state.eof = true;
                // Tells rustls the transport ended, so a truncation attack is told apart
                // from a close_notify.
                state.conn.read_tls(&mut io::empty())?;
            } else {
                state.pending.extend_from_slice(&self.scratch[..n]);
            }
        }
    }
}

impl Write for TlsSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf).map(|()| buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let _turn =
            self.session.writing.lock().map_err(|_| {
                io::Error::other("a TLS writer panicked; the connection is unusable")
            })?;
        {
            let mut state = lock(&self.session.state);
            state.conn.writer().write_all(buf)?;
            while state.conn.wants_write() {
                state.conn.write_tls(&mut self.out)?;
            }
        }
        let sent = self.tcp.write_all(&self.out);
        self.out.clear();
        sent
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for TlsSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSocket").field("tcp", &self.tcp).finish()
    }
}
