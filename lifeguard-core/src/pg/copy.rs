//! `COPY ... FROM STDIN` and `COPY ... TO STDOUT` on an exclusively borrowed connection.

use std::io;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use postgres_types::{IsNull, ToSql, Type};

use super::call::{db_error, rows_affected, Call};
use super::connection::Connection;
use super::pipeline::{Outgoing, Reply};
use crate::error::{Error, Result};

/// CopyData messages are cut at this size, so memory stays flat whatever the caller writes.
const CHUNK: usize = 64 * 1024;

impl Connection {
    /// Starts `COPY ... FROM STDIN`; write the data to the returned [`CopyIn`], then
    /// [`CopyIn::finish`]. Dropping it unfinished aborts the copy.
    ///
    /// ```no_run
    /// # fn demo(conn: &mut lifeguard_core::pg::Connection) -> lifeguard_core::Result<()> {
    /// use std::io::Write;
    /// let mut copy = conn.copy_in("COPY points (x, y) FROM STDIN (FORMAT csv)")?;
    /// copy.write_all(b"1,2\n3,4\n").map_err(|e| lifeguard_core::Error::protocol(e.to_string()))?;
    /// assert_eq!(copy.finish()?, 2);
    /// # Ok(()) }
    /// ```
    pub fn copy_in(&mut self, sql: &str) -> Result<CopyIn<'_>> {
        self.copy_in_exclusive(sql)
    }

    /// `copy_in` on a session the caller holds exclusively without a `&mut` (a pool lease).
    pub(crate) fn copy_in_exclusive(&self, sql: &str) -> Result<CopyIn<'_>> {
        let (call, reply) = self.start_copy(sql, Direction::In)?;
        Ok(CopyIn {
            call,
            reply,
            buf: BytesMut::new(),
            done: false,
        })
    }

    /// Runs `COPY ... TO STDOUT` and returns a reader over the data as the server sends it.
    pub fn copy_out(&mut self, sql: &str) -> Result<CopyOut<'_>> {
        self.copy_out_exclusive(sql)
    }

    /// `copy_out` on a session the caller holds exclusively without a `&mut` (a pool lease).
    pub(crate) fn copy_out_exclusive(&self, sql: &str) -> Result<CopyOut<'_>> {
        let (call, reply) = self.start_copy(sql, Direction::Out)?;
        Ok(CopyOut {
            call,
            reply,
            current: Bytes::new(),
            finished: false,
        })
    }

    /// Sends the COPY statement and waits until the server is in the copy mode `want`; any
    /// other outcome ends the request and becomes an error, leaving the session in step.
    fn start_copy(&self, sql: &str, want: Direction) -> Result<(Call<'_>, Arc<Reply>)> {
        let call = Call {
            exclusive: true,
            ..Call::new(self)
        };
        let mut buf = BytesMut::new();
        frontend::query(sql, &mut buf).map_err(|e| Error::protocol(e.to_string()))?;
        let reply = self.shared().request(Outgoing::Raw(&buf))?;
        let wrong = || Error::invalid_use(want.mismatch());
        loop {
            match call.next(&reply)? {
                Message::CopyInResponse(_) if want == Direction::In => break,
                Message::CopyOutResponse(_) if want == Direction::Out => break,
                Message::CopyInResponse(_) => {
                    // The server now waits for data that will never come: end the copy and
                    // the request before reporting the mistake.
                    let mut out = BytesMut::new();
                    frontend::copy_fail(want.mismatch(), &mut out)
                        .map_err(|e| Error::protocol(e.to_string()))?;
                    self.shared().send_raw(&out)?;
                    drain(&call, &reply)?;
                    return Err(wrong());
                }
                Message::CopyOutResponse(_) => {
                    drain(&call, &reply)?;
                    return Err(wrong());
                }
                Message::ErrorResponse(body) => {
                    let e = db_error(&body)?;
                    drain(&call, &reply)?;
                    return Err(e);
                }
                Message::ReadyForQuery(_) => return Err(wrong()),
                _ => {}
            }
        }
        Ok((call, reply))
    }
}

/// Which way a COPY moves data.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    In,
    Out,
}

impl Direction {
    fn mismatch(self) -> &'static str {
        match self {
            Direction::In => "copy_in needs a COPY ... FROM STDIN statement",
            Direction::Out => "copy_out needs a COPY ... TO STDOUT statement",
        }
    }
}

/// Reads the rest of a reply up to its `ReadyForQuery`.
fn drain(call: &Call<'_>, reply: &Arc<Reply>) -> Result<()> {
    loop {
        if let Message::ReadyForQuery(_) = call.next(reply)? {
            return Ok(());
        }
    }
}

/// The sending side of `COPY ... FROM STDIN`; implements [`io::Write`].
pub struct CopyIn<'a> {
    call: Call<'a>,
    reply: Arc<Reply>,
    buf: BytesMut,
    done: bool,
}

impl std::fmt::Debug for CopyIn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyIn")
            .field("buffered", &self.buf.len())
            .finish()
    }
}

impl CopyIn<'_> {
    /// Sends raw COPY data (text, CSV or binary, as the statement said).
    ///
    /// Data of any size may be passed: it goes out in `CopyData` messages of bounded size,
    /// since one message's length field cannot describe more than 2 GiB.
    pub fn send(&mut self, data: &[u8]) -> Result<()> {
        for piece in data.chunks(CHUNK) {
            self.buf.extend_from_slice(piece);
            if self.buf.len() >= CHUNK {
                self.flush_data()?;
            }
        }
        Ok(())
    }

    fn flush_data(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut out = BytesMut::with_capacity(self.buf.len() + 5);
        out.put_u8(b'd');
        out.put_i32(copy_data_len(self.buf.len())?);
        out.extend_from_slice(&self.buf);
        self.buf.clear();
        self.call.conn.shared().send_raw(&out)
    }

    /// Ends the copy and returns the number of rows the server took.
    pub fn finish(mut self) -> Result<u64> {
        self.done = true;
        self.flush_data()?;
        let mut out = BytesMut::new();
        frontend::copy_done(&mut out);
        self.call.conn.shared().send_raw(&out)?;
        let mut rows = 0;
        let mut error = None;
        loop {
            match self.call.next(&self.reply)? {
                Message::CommandComplete(body) => {
                    rows = rows_affected(body.tag().map_err(|e| Error::protocol(e.to_string()))?)
                }
                Message::ErrorResponse(body) => error = Some(db_error(&body)?),
                Message::ReadyForQuery(_) => break,
                _ => {}
            }
        }
        error.map_or(Ok(rows), Err)
    }
}

/// The length field of a `CopyData` message carrying `payload` bytes. `send` keeps the
/// buffer near `CHUNK`, so the error is a guard against a wrapped length (which the server
/// would read as a different stream), not a path callers meet.
fn copy_data_len(payload: usize) -> Result<i32> {
    payload
        .checked_add(4)
        .and_then(|n| i32::try_from(n).ok())
        .ok_or_else(|| {
            Error::invalid_use(format!(
                "a COPY data message of {payload} bytes exceeds the protocol's 2 GiB limit"
            ))
        })
}

impl io::Write for CopyIn<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.send(data).map_err(io::Error::other)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_data().map_err(io::Error::other)
    }
}

impl Drop for CopyIn<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Abort so the server leaves COPY mode; its error reply is read and dropped so the
        // connection is back in step for the next statement.
        let mut out = BytesMut::new();
        if frontend::copy_fail("copy aborted by the client", &mut out).is_ok()
            && self.call.conn.shared().send_raw(&out).is_ok()
        {
            let _ = drain(&self.call, &self.reply);
        }
    }
}

/// The receiving side of `COPY ... TO STDOUT`; implements [`io::Read`] and yields chunks.
pub struct CopyOut<'a> {
    call: Call<'a>,
    reply: Arc<Reply>,
    current: Bytes,
    finished: bool,
}

impl std::fmt::Debug for CopyOut<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyOut")
            .field("finished", &self.finished)
            .finish()
    }
}

impl CopyOut<'_> {
    /// The next chunk of data (one server `CopyData`), or `None` at the end.
    pub fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        if !self.current.is_empty() {
            return Ok(Some(std::mem::take(&mut self.current)));
        }
        if self.finished {
            return Ok(None);
        }
        let mut error = None;
        loop {
            match self.call.next(&self.reply)? {
                Message::CopyData(body) if error.is_none() => return Ok(Some(body.into_bytes())),
                Message::ErrorResponse(body) => error = Some(db_error(&body)?),
                Message::ReadyForQuery(_) => {
                    self.finished = true;
                    return error.map_or(Ok(None), Err);
                }
                _ => {}
            }
        }
    }

    /// Reads everything that is left.
    pub fn read_all(mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(chunk) = self.next_chunk()? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

impl io::Read for CopyOut<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.current.is_empty() {
            match self.next_chunk().map_err(io::Error::other)? {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

impl Drop for CopyOut<'_> {
    fn drop(&mut self) {
        if !self.finished {
            // Keep the connection in step: consume the rest of the stream.
            let _ = drain(&self.call, &self.reply);
        }
    }
}

/// Encodes rows in PostgreSQL's binary COPY format on top of a [`CopyIn`].
///
/// ```no_run
/// # fn demo(conn: &mut lifeguard_core::pg::Connection) -> lifeguard_core::Result<()> {
/// use lifeguard_core::pg::{BinaryCopyWriter, Type};
/// let copy = conn.copy_in("COPY points (x, label) FROM STDIN (FORMAT binary)")?;
/// let mut writer = BinaryCopyWriter::new(copy, &[Type::INT4, Type::TEXT])?;
/// writer.write(&[&1i32, &"one"])?;
/// assert_eq!(writer.finish()?, 1);
/// # Ok(()) }
/// ```
pub struct BinaryCopyWriter<'a> {
    copy: CopyIn<'a>,
    types: Vec<Type>,
    row: BytesMut,
}

impl<'a> BinaryCopyWriter<'a> {
    /// Starts the binary stream (writes its header) for columns of these types.
    pub fn new(mut copy: CopyIn<'a>, types: &[Type]) -> Result<BinaryCopyWriter<'a>> {
        // Signature, flags, header-extension length.
        copy.send(b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0")?;
        Ok(BinaryCopyWriter {
            copy,
            types: types.to_vec(),
            row: BytesMut::new(),
        })
    }

    /// Writes one row; the values must match the column types given to `new`.
    pub fn write(&mut self, values: &[&(dyn ToSql + Sync)]) -> Result<()> {
        if values.len() != self.types.len() {
            return Err(Error::ParameterCount {
                expected: self.types.len(),
                given: values.len(),
            });
        }
        self.row.clear();
        self.row.put_i16(values.len() as i16);
        for (index, (value, ty)) in values.iter().zip(&self.types).enumerate() {
            let at = self.row.len();
            self.row.put_i32(0);
            let encode_error = |source: Box<dyn std::error::Error + Send + Sync>| Error::Encode {
                index,
                pg_type: ty.to_string(),
                source: source.into(),
            };
            match value.to_sql_checked(ty, &mut self.row) {
                Ok(IsNull::No) => {
                    let len = i32::try_from(self.row.len() - at - 4)
                        .map_err(|_| encode_error("value longer than 2 GiB".into()))?;
                    self.row[at..at + 4].copy_from_slice(&len.to_be_bytes());
                }
                Ok(IsNull::Yes) => self.row[at..at + 4].copy_from_slice(&(-1i32).to_be_bytes()),
                Err(e) => return Err(encode_error(e)),
            }
        }
        let row = std::mem::take(&mut self.row);
        let result = self.copy.send(&row);
        self.row = row;
        result
    }

    /// Writes the trailer and ends the copy; returns the number of rows loaded.
    pub fn finish(mut self) -> Result<u64> {
        self.copy.send(&(-1i16).to_be_bytes())?;
        self.copy.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_data_lengths_past_the_protocol_limit_are_refused_not_wrapped() {
        assert_eq!(copy_data_len(CHUNK).unwrap(), CHUNK as i32 + 4);
        assert_eq!(copy_data_len(i32::MAX as usize - 4).unwrap(), i32::MAX);
        assert!(copy_data_len(i32::MAX as usize - 3).is_err());
        assert!(copy_data_len(usize::MAX).is_err());
    }
}
