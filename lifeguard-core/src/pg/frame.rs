//! Framing of backend messages out of the bytes read from the socket.
//!
//! Everything the server (or a corrupted stream) sends passes through [`next_message`] first,
//! so this is where hostile input must turn into an error rather than a panic or an
//! unbounded allocation.

use bytes::BytesMut;
use postgres_protocol::message::backend::Message;

use crate::error::{Error, Result};

/// The largest backend message accepted. PostgreSQL caps a field at 1 GiB; a length past
/// that is corruption, and honouring it would let a broken peer make us reserve gigabytes.
pub const MAX_MESSAGE_LEN: usize = (1 << 30) + 1024;

/// Splits the next complete backend message off the front of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a message (read more, then call again),
/// and an error when the bytes cannot be a valid message.
///
/// ```
/// use bytes::BytesMut;
/// use lifeguard_core::pg::frame::next_message;
///
/// // ReadyForQuery, idle.
/// let mut buf = BytesMut::from(&b"Z\x00\x00\x00\x05I"[..]);
/// assert!(next_message(&mut buf).unwrap().is_some());
/// assert!(buf.is_empty());
/// let mut partial = BytesMut::from(&b"Z\x00\x00"[..]);
/// assert!(next_message(&mut partial).unwrap().is_none());
/// ```
pub fn next_message(buf: &mut BytesMut) -> Result<Option<Message>> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if !(4..=MAX_MESSAGE_LEN).contains(&len) {
        return Err(Error::protocol(format!(
            "invalid length {len} for backend message {:?}",
            char::from(buf[0])
        )));
    }
    if buf.len() < len + 1 {
        // Reserve the rest now so the next read can take the whole message in one go.
        buf.reserve(len + 1 - buf.len());
        return Ok(None);
    }
    match Message::parse(buf) {
        Ok(Some(message)) => Ok(Some(message)),
        // The length check above means a whole message is present; `None` cannot happen, but
        // reporting it beats trusting that.
        Ok(None) => Err(Error::protocol("incomplete backend message")),
        Err(e) => Err(Error::protocol(format!("malformed backend message: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn rejects_absurd_lengths_without_allocating() {
        let mut buf = BytesMut::from(&b"D\xff\xff\xff\xff"[..]);
        assert!(next_message(&mut buf).is_err());
        let mut buf = BytesMut::from(&b"D\x00\x00\x00\x02"[..]);
        assert!(next_message(&mut buf).is_err());
    }

    #[test]
    fn parses_back_to_back_messages() {
        let mut bytes = msg(b'1', b"");
        bytes.extend(msg(b'C', b"SELECT 1\0"));
        bytes.extend(msg(b'Z', b"I"));
        let mut buf = BytesMut::from(&bytes[..]);
        let mut n = 0;
        while next_message(&mut buf).unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 3);
        assert!(buf.is_empty());
    }

    proptest! {
        // Random bytes: the framer returns messages, asks for more, or errors; never panics.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = next_message(&mut buf) {}
        }

        // Valid-looking frames with random tags and bodies, possibly truncated.
        #[test]
        fn framed_garbage_never_panics(
            frames in proptest::collection::vec(
                (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..64)), 1..8),
            cut in any::<usize>(),
        ) {
            let mut bytes = Vec::new();
            for (tag, body) in &frames {
                bytes.extend(msg(*tag, body));
            }
            let cut = cut % (bytes.len() + 1);
            let mut buf = BytesMut::from(&bytes[..cut]);
            while let Ok(Some(_)) = next_message(&mut buf) {}
        }
    }
}
