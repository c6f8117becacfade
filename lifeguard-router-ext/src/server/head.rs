//! Request heads: found across reads without re-parsing what was already looked at, then
//! parsed once.

use crate::problem::Problem;
use crate::service::{Head, Limits};

/// A parsed head and how to treat its connection.
pub(super) struct Parsed {
    pub(super) head: Head,
    /// Bytes of request line and headers.
    pub(super) len: usize,
    pub(super) keep_alive: KeepAlive,
    pub(super) expect_continue: bool,
}

/// Whether the connection stays open after a response, and whether to say so.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum KeepAlive {
    /// HTTP/1.1 default: stay open.
    Implicit,
    /// HTTP/1.0 with `Connection: keep-alive`: stay open and say so.
    Announced,
    /// Close after this response.
    Close,
}

/// The head being received at the start of the connection's unconsumed bytes.
///
/// The first look at a head hands the bytes straight to `httparse`, which completes at
/// once in the usual case (the whole head came in one read). Once a head is found
/// incomplete, later reads only scan their new bytes for the empty line that ends it, and
/// `httparse` runs again only when one is found: a head trickling in one byte per read
/// costs work in proportion to its length, not to its length squared.
#[derive(Default)]
pub(super) struct HeadReader {
    /// Bytes of the incomplete head already scanned; `None` until a look found the head
    /// incomplete.
    scanned: Option<usize>,
    /// Bytes looked at by `httparse` and by the scan, to prove the bound above.
    #[cfg(test)]
    work: usize,
}

impl HeadReader {
    /// The complete head at the start of `buf`, `None` while more bytes are needed, or the
    /// problem that ends the connection. `buf` must start where the previous call's did
    /// and only have grown since, until a head is returned.
    pub(super) fn parse(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<Parsed>, Problem> {
        loop {
            let candidate = match self.scanned {
                None => buf,
                Some(from) => match self.scan(buf, from) {
                    Some(end) => &buf[..end],
                    None if buf.len() > limits.max_head_bytes => return Err(head_bytes(limits)),
                    None => return Ok(None),
                },
            };
            #[cfg(test)]
            {
                self.work += candidate.len();
            }
            match parse_complete(candidate, limits)? {
                Some(parsed) => {
                    self.scanned = None;
                    return Ok(Some(parsed));
                }
                // The first look: scan from the start from now on.
                None if self.scanned.is_none() => self.scanned = Some(0),
                // An empty line that did not end the head (empty lines before the request
                // line, which `httparse` skips): the scan goes on after it.
                None => {}
            }
        }
    }

    /// Scans `buf` from `from` for the end of a head (`\n\n` or `\n\r\n`, the line endings
    /// `httparse` accepts); its length, or `None`. Either way the scanned bytes are not
    /// looked at again.
    fn scan(&mut self, buf: &[u8], from: usize) -> Option<usize> {
        let found = (from..buf.len()).find(|&i| {
            buf[i] == b'\n'
                && ((i >= 1 && buf[i - 1] == b'\n')
                    || (i >= 2 && buf[i - 1] == b'\r' && buf[i - 2] == b'\n'))
        });
        let next = found.map_or(buf.len(), |i| i + 1);
        #[cfg(test)]
        {
            self.work += next.saturating_sub(from);
        }
        self.scanned = Some(next);
        found.map(|i| i + 1)
    }
}

fn too_large(detail: String) -> Problem {
    Problem::new(
        431,
        "urn:lifeguard:problem:header-fields-too-large",
        "Request header fields too large",
        detail,
    )
}

fn head_bytes(limits: &Limits) -> Problem {
    too_large(format!(
        "the request line and headers may be at most {} bytes",
        limits.max_head_bytes
    ))
}

/// `httparse` over `buf`: the head if it is complete, `None` if not.
fn parse_complete(buf: &[u8], limits: &Limits) -> Result<Option<Parsed>, Problem> {
    // On the coroutine's stack for the default limit: no allocation per request.
    let mut inline = [httparse::EMPTY_HEADER; 64];
    let mut spilled;
    let fields: &mut [httparse::Header<'_>] = if limits.max_headers <= inline.len() {
        &mut inline[..limits.max_headers]
    } else {
        spilled = vec![httparse::EMPTY_HEADER; limits.max_headers];
        &mut spilled
    };
    let mut req = httparse::Request::new(fields);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len > limits.max_head_bytes => {
            return Err(head_bytes(limits))
        }
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_head_bytes => {
            return Err(head_bytes(limits))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(too_large(format!(
                "a request may carry at most {} headers",
                limits.max_headers
            )))
        }
        Err(e) => {
            return Err(Problem::new(
                400,
                "urn:lifeguard:problem:malformed-request",
                "Malformed request",
                format!("the request head is not valid HTTP/1.1: {e}"),
            ))
        }
    };
    // A complete parse always has a method, path and version; the defaults only keep
    // this total.
    let head = Head::new(
        req.method.unwrap_or_default(),
        req.path.unwrap_or_default(),
        req.headers,
    );
    let has_token = |name: &str, token: &str| {
        head.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    let keep_alive = if has_token("connection", "close") {
        KeepAlive::Close
    } else if req.version == Some(1) {
        KeepAlive::Implicit
    } else if has_token("connection", "keep-alive") {
        KeepAlive::Announced
    } else {
        KeepAlive::Close
    };
    let expect_continue = req.version == Some(1) && has_token("expect", "100-continue");
    Ok(Some(Parsed {
        head,
        len,
        keep_alive,
        expect_continue,
    }))
}

/// Fuzz entry point: the bytes after the first as one read, and as reads of `bytes[0]`
/// bytes each (at least one), must give the same head, or both a refusal.
#[cfg(feature = "fuzzing")]
pub fn fuzz_head(bytes: &[u8]) {
    let Some((&step, input)) = bytes.split_first() else {
        return;
    };
    let limits = Limits {
        max_head_bytes: 512,
        max_headers: 8,
        ..Limits::default()
    };
    let outcome = |r: Result<Option<Parsed>, Problem>| match r {
        Ok(Some(p)) => Ok(Some((p.len, p.head.method, p.head.target, p.head.headers))),
        Ok(None) => Ok(None),
        Err(problem) => Err(problem.status),
    };
    let mut reader = HeadReader::default();
    let mut incremental = Ok(None);
    let mut end = 0;
    while end < input.len() {
        end = (end + usize::from(step.max(1))).min(input.len());
        incremental = outcome(reader.parse(&input[..end], &limits));
        if !matches!(incremental, Ok(None)) {
            break;
        }
    }
    let whole = outcome(HeadReader::default().parse(&input[..end], &limits));
    // Read in pieces, a malformed line is only seen once the head's end (or its size
    // limit) arrives; read at once it may be seen at once, and as another refusal.
    let agree = match (&incremental, &whole) {
        (Ok(Some(_)), _) => incremental == whole,
        (Err(_), whole) => whole.is_err(),
        (Ok(None), whole) => !matches!(whole, Ok(Some(_))),
    };
    assert!(agree, "read in pieces {incremental:?}, at once {whole:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes` to a reader one more byte per call, as a head trickling in one byte
    /// per read arrives; the parsed head and the bytes looked at in all.
    fn trickle(bytes: &[u8], limits: &Limits) -> (Option<Parsed>, usize) {
        let mut reader = HeadReader::default();
        for end in 1..=bytes.len() {
            match reader.parse(&bytes[..end], limits) {
                Ok(Some(parsed)) => return (Some(parsed), reader.work),
                Ok(None) => {}
                Err(p) => panic!("refused: {}", p.status),
            }
        }
        (None, reader.work)
    }

    #[test]
    fn a_head_trickling_in_byte_by_byte_is_parsed_in_linear_work() {
        let value = "v".repeat(8 << 10);
        let head = format!("GET /where?x=1 HTTP/1.1\r\nHost: t\r\nX-Long: {value}\r\n\r\n");
        let (parsed, work) = trickle(head.as_bytes(), &Limits::default());
        let parsed = parsed.expect("the head completes");
        assert_eq!(parsed.len, head.len());
        assert_eq!(parsed.head.target, "/where?x=1");
        assert_eq!(parsed.head.headers[1].1, value);
        // The first look, one scan, the final parse; re-parsing from the start on each
        // read would be about len²/2 (34 million here).
        assert!(work <= 4 * head.len(), "{work} bytes looked at");
    }

    #[test]
    fn line_feed_endings_and_leading_empty_lines_are_found() {
        for head in [
            &b"GET / HTTP/1.1\nHost: t\n\n"[..],
            b"\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
            b"\n\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
        ] {
            let (parsed, _) = trickle(head, &Limits::default());
            let parsed = parsed.unwrap_or_else(|| panic!("{:?}", String::from_utf8_lossy(head)));
            assert_eq!(parsed.len, head.len());
            assert_eq!(parsed.head.method, "GET");
        }
    }

    #[test]
    fn an_incomplete_head_past_the_limit_is_refused() {
        let limits = Limits {
            max_head_bytes: 64,
            ..Limits::default()
        };
        let mut reader = HeadReader::default();
        let bytes = format!("GET / HTTP/1.1\r\nX-Long: {}", "v".repeat(100));
        let mut refused = None;
        for end in 1..=bytes.len() {
            if let Err(p) = reader.parse(&bytes.as_bytes()[..end], &limits) {
                refused = Some((end, p.status));
                break;
            }
        }
        assert_eq!(refused, Some((65, 431)));
    }
}
