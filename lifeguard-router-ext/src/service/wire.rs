//! What may go on the wire in a response: header names and values, status reasons.

/// Header names a handler may not set: the server writes them, or they would change the
/// response's framing.
const RESERVED: [&str; 6] = [
    "connection",
    "content-length",
    "content-type",
    "date",
    "server",
    "transfer-encoding",
];

/// The status line's code: a handler's status outside `100..=999` is sent as `500`.
pub(crate) fn status(code: u16) -> u16 {
    if (100..=999).contains(&code) {
        code
    } else {
        500
    }
}

/// Whether a handler's header may be sent as is; logs the ones dropped.
pub(crate) fn sendable(name: &str, value: &str) -> bool {
    let ok = valid_name(name)
        && valid_value(value)
        && !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name));
    if !ok {
        tracing::warn!(header = %name, "dropped an invalid or reserved response header");
    }
    ok
}

/// An RFC 9110 token.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Visible ASCII, spaces and tabs: nothing that could end the line.
pub(crate) fn valid_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

/// The reason phrase sent with `status`.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}
