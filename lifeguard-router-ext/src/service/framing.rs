//! Body framing: the length a request head announces, validated before any byte of the
//! body is read.

use crate::problem::Problem;

use super::Limits;

pub(crate) enum FramingError {
    TooLarge(usize),
    Problem(Problem),
}

/// The body length the head announces, validated so that may_minihttp's own parse (which
/// unwraps) cannot fail: every `Content-Length` is ASCII digits, all agree, and fit `usize`.
pub(crate) fn framing(
    headers: &[(String, String)],
    limits: &Limits,
) -> Result<usize, FramingError> {
    if headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
    {
        return Err(FramingError::Problem(Problem::new(
            501,
            "urn:lifeguard:problem:transfer-encoding",
            "Transfer-Encoding not supported",
            "send the body with Content-Length",
        )));
    }
    let bad = || {
        FramingError::Problem(Problem::invalid_header(
            "Content-Length",
            "expected one decimal length",
        ))
    };
    let mut len: Option<usize> = None;
    for (_, v) in headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        // may_minihttp parses the raw value with `str::parse::<usize>`: no whitespace, no
        // sign; we require exactly that form.
        if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: usize = v.parse().map_err(|_| bad())?;
        if len.is_some_and(|l| l != n) {
            return Err(bad());
        }
        len = Some(n);
    }
    match len.unwrap_or(0) {
        n if n > limits.max_body => Err(FramingError::TooLarge(n)),
        n => Ok(n),
    }
}
