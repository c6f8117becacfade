//! Framing of backend messages out of the bytes read from the socket.
//!
//! Everything the server (or a corrupted stream) sends passes through [`next_frame`] first,
//! so this is where hostile input must turn into an error rather than a panic or an
//! unbounded allocation.

use bytes::BytesMut;
use postgres_protocol::message::backend::Message;

use crate::error::{Error, Result};

/// The default `max_message_size`, for the tests and fuzz targets that frame without a
/// connection. PostgreSQL caps a field at 1 GiB; a length past that is corruption.
#[cfg(any(test, feature = "fuzzing"))]
const MAX_MESSAGE_LEN: usize = (1 << 30) + 1024;

/// The most room reserved ahead of bytes that have not arrived. A header is only a claim:
/// reserving its whole length would let five bytes cost a gigabyte, so the buffer grows
/// with what is actually read and this merely saves a few reallocations on big messages.
const MAX_RESERVE_AHEAD: usize = 64 * 1024;

/// [`next_frame`] under the default cap.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn next_message(buf: &mut BytesMut) -> Result<Option<Message>> {
    Ok(next_frame(buf, MAX_MESSAGE_LEN)?.map(|(message, _)| message))
}

/// Splits the next complete backend message off the front of `buf`, for a connection whose
/// messages may be at most `max` bytes (type byte and length included), with the size of
/// the message it returns.
///
/// Returns `Ok(None)` when `buf` holds only part of a message (read more, then call again),
/// and an error when the bytes cannot be a valid message. A message longer than `max` is an
/// error as soon as its header arrives, before any of it is buffered.
pub(crate) fn next_frame(buf: &mut BytesMut, max: usize) -> Result<Option<(Message, usize)>> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len < 4 {
        return Err(Error::protocol(format!(
            "invalid length {len} for backend message {:?}",
            char::from(buf[0])
        )));
    }
    if len >= max {
        return Err(Error::protocol(format!(
            "backend message {:?} of {} bytes exceeds max_message_size ({max} bytes)",
            char::from(buf[0]),
            len as u64 + 1
        )));
    }
    if buf.len() < len + 1 {
        buf.reserve((len + 1 - buf.len()).min(MAX_RESERVE_AHEAD));
        return Ok(None);
    }
    match Message::parse(buf) {
        Ok(Some(message)) => Ok(Some((message, len + 1))),
        // The length check above means a whole message is present; `None` cannot happen, but
        // reporting it beats trusting that.
        Ok(None) => Err(Error::protocol("incomplete backend message")),
        Err(e) => Err(Error::protocol(format!("malformed backend message: {e}"))),
    }
}

/// Decoding of every message kind the way the client does, shared by the property tests and
/// the fuzz targets (`fuzz/`): any of it may fail, none of it may panic or abort.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod exercise {
    use bytes::BytesMut;
    use postgres_protocol::message::backend::Message;

    use super::next_message;
    use crate::error::Error;

    /// Decodes a message the way the client does (reader, handshake, `Call`, `Row`,
    /// `SimpleRow`, notifications); any of it may fail, none of it may panic.
    pub(crate) fn decode(message: Message, simple: bool) {
        use std::sync::Arc;

        use fallible_iterator::FallibleIterator;
        use postgres_types::Type;

        use crate::error::DbError;
        use crate::pg::call::rows_affected;
        use crate::pg::notify::Notification;
        use crate::pg::row::{Row, SimpleRow};
        use crate::pg::statement::Column;

        match message {
            Message::DataRow(body) => {
                let ranges: std::result::Result<Vec<_>, _> = body.ranges().collect();
                let n = match ranges {
                    Ok(ranges) => {
                        for r in ranges.iter().flatten() {
                            let _ = &body.buffer()[r.clone()];
                        }
                        ranges.len()
                    }
                    Err(_) => 3,
                };
                if simple {
                    let columns: Arc<[String]> = (0..n).map(|i| format!("c{i}")).collect();
                    if let Ok(row) = SimpleRow::new(columns, body) {
                        for i in 0..n + 1 {
                            let _ = row.get(i);
                        }
                        let _ = row.get("c0");
                    }
                } else {
                    let columns: Arc<[Column]> = (0..n)
                        .map(|i| Column::new(format!("c{i}"), Type::INT4))
                        .collect();
                    if let Ok(row) = Row::new(columns, body) {
                        for i in 0..n + 1 {
                            let _ = row.raw(i);
                            let _ = row.try_get::<_, Option<i32>>(i);
                            let _ = row.try_get::<_, Option<String>>(i);
                        }
                    }
                }
            }
            Message::RowDescription(body) => {
                let _ = body
                    .fields()
                    .map(|f| {
                        Ok((
                            f.name().to_owned(),
                            f.table_oid(),
                            f.column_id(),
                            Type::from_oid(f.type_oid()),
                            f.type_size(),
                            f.type_modifier(),
                            f.format(),
                        ))
                    })
                    .collect::<Vec<_>>();
            }
            Message::ErrorResponse(body) => {
                if let Ok(db) = DbError::parse(body.fields()) {
                    let e = Error::from_db(db);
                    let _ = (e.to_string(), e.sqlstate(), e.is_retryable());
                }
            }
            Message::NoticeResponse(body) => {
                if let Ok(db) = DbError::parse(body.fields()) {
                    let _ = db.to_string();
                }
            }
            Message::ParameterDescription(body) => {
                if let Ok(oids) = body.parameters().collect::<Vec<u32>>() {
                    let _: Vec<_> = oids.into_iter().map(Type::from_oid).collect();
                }
            }
            Message::NotificationResponse(body) => {
                let _ = (body.process_id(), body.channel(), body.message());
                let _ = Notification::from_body(&body);
            }
            Message::CommandComplete(body) => {
                if let Ok(tag) = body.tag() {
                    let _ = rows_affected(tag);
                }
            }
            Message::ParameterStatus(body) => {
                let _ = (body.name(), body.value());
            }
            Message::ReadyForQuery(body) => {
                let _ = body.status();
            }
            Message::BackendKeyData(body) => {
                let _ = (body.process_id(), body.secret_key());
            }
            Message::AuthenticationSasl(body) => {
                let _ = body.mechanisms().collect::<Vec<_>>();
            }
            Message::AuthenticationSaslContinue(body) => {
                let _ = body.data();
            }
            Message::AuthenticationSaslFinal(body) => {
                let _ = body.data();
            }
            Message::AuthenticationMd5Password(body) => {
                let _ = body.salt();
            }
            Message::CopyInResponse(body) => {
                let _ = (body.format(), body.column_formats().collect::<Vec<_>>());
            }
            Message::CopyOutResponse(body) => {
                let _ = (body.format(), body.column_formats().collect::<Vec<_>>());
            }
            Message::CopyData(body) => {
                let _ = body.data();
            }
            _ => {}
        }
    }

    /// Frames and decodes everything in `bytes` twice (binary and simple rows); returns how
    /// many messages came out before the framer stopped.
    pub(crate) fn decode_all(bytes: &[u8]) -> usize {
        let mut count = 0;
        for simple in [false, true] {
            let mut buf = BytesMut::from(bytes);
            count = 0;
            while let Ok(Some(m)) = next_message(&mut buf) {
                decode(m, simple);
                count += 1;
            }
        }
        count
    }
}

/// Fuzz entry point: frames and decodes every backend message in `bytes`, then frames them
/// again under a `max_message_size` the first byte picks, as a connection with a small cap
/// would.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn fuzz_backend_messages(bytes: &[u8]) {
    exercise::decode_all(bytes);
    let cap = 5 + usize::from(bytes.first().copied().unwrap_or(0));
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some((_, size))) = next_frame(&mut buf, cap) {
        assert!(size <= cap, "a {size}-byte message passed a cap of {cap}");
    }
}

#[cfg(test)]
mod tests {
    use super::exercise::decode_all;
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
    fn a_promised_large_message_reserves_only_a_bounded_amount() {
        // A DataRow claiming 1 GiB: within the cap, but nothing of it has arrived.
        let mut buf = BytesMut::from(&b"D\x40\x00\x00\x00"[..]);
        assert!(next_message(&mut buf).unwrap().is_none());
        assert!(
            buf.capacity() <= MAX_RESERVE_AHEAD + 64,
            "reserved {} bytes for a 5-byte header",
            buf.capacity()
        );
    }

    #[test]
    fn a_message_over_the_connection_cap_is_refused_from_its_header() {
        // A DataRow of 10,000 bytes (length field 9,999) against caps around it.
        let mut buf = BytesMut::from(&b"D\x00\x00\x27\x0f"[..]);
        let e = match next_frame(&mut buf, 9_999) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a message over the cap was accepted"),
        };
        assert!(e.contains("10000 bytes exceeds max_message_size"), "{e}");
        assert!(next_frame(&mut buf, 10_000).unwrap().is_none());
        let mut buf = BytesMut::from(&b"Z\x00\x00\x00\x05I"[..]);
        assert_eq!(next_frame(&mut buf, 6).unwrap().map(|(_, n)| n), Some(6));
    }

    #[test]
    fn waits_for_the_rest_of_a_partial_message() {
        // ReadyForQuery, idle, cut after its length and then whole.
        let mut buf = BytesMut::from(&b"Z\x00\x00"[..]);
        assert!(next_message(&mut buf).unwrap().is_none());
        let mut buf = BytesMut::from(&b"Z\x00\x00\x00\x05"[..]);
        assert!(next_message(&mut buf).unwrap().is_none());
        assert_eq!(buf.len(), 5, "a partial message stays in the buffer");
        buf.extend_from_slice(b"I");
        assert!(next_message(&mut buf).unwrap().is_some());
        assert!(buf.is_empty());
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

    fn cstr(s: &[u8]) -> Vec<u8> {
        let mut v: Vec<u8> = s.iter().map(|&b| if b == 0 { b'x' } else { b }).collect();
        v.push(0);
        v
    }

    /// A well-formed reply: ParseComplete, BindComplete, RowDescription, DataRows,
    /// CommandComplete, a notice, a notification, ReadyForQuery.
    fn well_formed(names: &[Vec<u8>], rows: &[Vec<Option<Vec<u8>>>]) -> (Vec<u8>, usize) {
        let mut out = msg(b'1', b"");
        out.extend(msg(b'2', b""));
        let mut desc = (names.len() as i16).to_be_bytes().to_vec();
        for name in names {
            desc.extend(cstr(name));
            desc.extend_from_slice(&0u32.to_be_bytes());
            desc.extend_from_slice(&0i16.to_be_bytes());
            desc.extend_from_slice(&25u32.to_be_bytes());
            desc.extend_from_slice(&(-1i16).to_be_bytes());
            desc.extend_from_slice(&(-1i32).to_be_bytes());
            desc.extend_from_slice(&1i16.to_be_bytes());
        }
        out.extend(msg(b'T', &desc));
        for row in rows {
            let mut body = (row.len() as i16).to_be_bytes().to_vec();
            for value in row {
                match value {
                    None => body.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(v) => {
                        body.extend_from_slice(&(v.len() as i32).to_be_bytes());
                        body.extend_from_slice(v);
                    }
                }
            }
            out.extend(msg(b'D', &body));
        }
        out.extend(msg(b'C', format!("SELECT {}\0", rows.len()).as_bytes()));
        out.extend(msg(b'N', b"SNOTICE\0C00000\0Mhello\0\0"));
        let mut notify = 42i32.to_be_bytes().to_vec();
        notify.extend(cstr(b"chan"));
        notify.extend(cstr(b"payload"));
        out.extend(msg(b'A', &notify));
        out.extend(msg(
            b'E',
            b"SERROR\0VERROR\0C22012\0Mdivision by zero\0P7\0L42\0\0",
        ));
        out.extend(msg(b'Z', b"I"));
        (out, rows.len() + 8)
    }

    /// Any tag a server sends, so random frames often reach a real decoder.
    fn backend_tag() -> impl Strategy<Value = u8> {
        prop_oneof![
            Just(b'D'),
            Just(b'T'),
            Just(b'E'),
            Just(b'N'),
            Just(b't'),
            Just(b'A'),
            Just(b'C'),
            Just(b'S'),
            Just(b'Z'),
            Just(b'K'),
            Just(b'R'),
            Just(b'G'),
            Just(b'H'),
            Just(b'd'),
            any::<u8>(),
        ]
    }

    fn names() -> impl Strategy<Value = Vec<Vec<u8>>> {
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 0..6)
    }

    fn rows() -> impl Strategy<Value = Vec<Vec<Option<Vec<u8>>>>> {
        proptest::collection::vec(
            proptest::collection::vec(
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
                0..6,
            ),
            0..6,
        )
    }

    #[test]
    fn decodes_a_well_formed_reply() {
        let names = vec![b"a".to_vec(), b"b".to_vec()];
        let rows = vec![
            vec![Some(1i32.to_be_bytes().to_vec()), None],
            vec![Some(b"xy".to_vec()), Some(Vec::new())],
        ];
        let (bytes, expected) = well_formed(&names, &rows);
        assert_eq!(decode_all(&bytes), expected);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        // Random bytes: the framer returns messages, asks for more, or errors; never panics.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            decode_all(&bytes);
        }

        // Valid-looking frames with likely tags and random bodies, possibly truncated: every
        // message that frames is decoded like the client decodes it.
        #[test]
        fn framed_garbage_never_panics(
            frames in proptest::collection::vec(
                (backend_tag(), proptest::collection::vec(any::<u8>(), 0..64)), 1..8),
            cut in any::<usize>(),
        ) {
            let mut bytes = Vec::new();
            for (tag, body) in &frames {
                bytes.extend(msg(*tag, body));
            }
            let cut = cut % (bytes.len() + 1);
            decode_all(&bytes[..cut]);
        }

        // Bodies built from plausible pieces (counts, lengths, strings) hit deeper decoder
        // paths than uniform bytes do.
        #[test]
        fn structured_garbage_never_panics(
            tag in backend_tag(),
            pieces in proptest::collection::vec(prop_oneof![
                any::<i16>().prop_map(|v| v.to_be_bytes().to_vec()),
                any::<i32>().prop_map(|v| v.to_be_bytes().to_vec()),
                (-2i32..40).prop_map(|v| v.to_be_bytes().to_vec()),
                (0i16..8).prop_map(|v| v.to_be_bytes().to_vec()),
                proptest::collection::vec(1u8..=255, 0..8).prop_map(|s| cstr(&s)),
                Just(vec![0u8]),
            ], 0..12),
        ) {
            let body: Vec<u8> = pieces.concat();
            decode_all(&msg(tag, &body));
        }

        // A well-formed reply with random bytes flipped and a random cut.
        #[test]
        fn mutated_replies_never_panic(
            names in names(),
            rows in rows(),
            flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 1..8),
            cut in any::<usize>(),
        ) {
            let (mut bytes, expected) = well_formed(&names, &rows);
            prop_assert_eq!(decode_all(&bytes), expected);
            for (at, xor) in flips {
                let at = at % bytes.len();
                bytes[at] ^= xor;
            }
            decode_all(&bytes);
            let cut = cut % (bytes.len() + 1);
            decode_all(&bytes[..cut]);
        }
    }
}
