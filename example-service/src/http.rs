//! Small request helpers: query parameters, path ids, JSON bodies and JSON replies.

use lifeguard_router_ext::service::HttpRequest;
use lifeguard_router_ext::{Reply, JSON};
use percent_encoding::percent_decode_str;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ApiError;

/// The first value of query parameter `name`, percent-decoded (`+` is a space).
pub fn query_param(req: &HttpRequest, name: &str) -> Option<String> {
    req.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k) == name).then(|| decode(v))
    })
}

fn decode(s: &str) -> String {
    percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// Query parameter `name` as text to match: absent or empty is `None`; a NUL character
/// (which PostgreSQL text cannot hold) is a `400`.
pub fn text_param(req: &HttpRequest, name: &str) -> Result<Option<String>, ApiError> {
    match query_param(req, name) {
        Some(v) if v.contains('\0') => Err(ApiError::BadRequest(format!(
            "query parameter {name} must not contain NUL characters"
        ))),
        Some(v) if !v.is_empty() => Ok(Some(v)),
        _ => Ok(None),
    }
}

/// Query parameter `name` as an integer in `min..=max`: absent is `None`; anything else is
/// a `400` naming the parameter.
pub fn int_param(
    req: &HttpRequest,
    name: &str,
    min: i64,
    max: i64,
) -> Result<Option<i64>, ApiError> {
    match query_param(req, name) {
        None => Ok(None),
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::BadRequest(format!(
                "query parameter {name} must be an integer from {min} to {max}"
            ))),
        },
    }
}

/// The path parameter `name` as a positive id; malformed is a `400`... except that an id
/// no row can have (0, negative, too large) is simply not found.
pub fn path_id(req: &HttpRequest, name: &str) -> Result<i64, ApiError> {
    let raw = req.param(name).unwrap_or("");
    match raw.parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        Ok(_) => Err(ApiError::NotFound(format!("no resource with id {raw}"))),
        Err(_) if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) => {
            Err(ApiError::NotFound("no resource with this id".into()))
        }
        Err(_) => Err(ApiError::BadRequest(format!(
            "path parameter {name} must be an integer id"
        ))),
    }
}

/// The body as JSON of type `T`: malformed JSON is a `400`; JSON of the wrong shape (a
/// missing field, a wrong type, an unknown field) is a `422` naming the problem.
pub fn json_body<T: DeserializeOwned>(req: &HttpRequest) -> Result<T, ApiError> {
    if let Some(ct) = req.header("content-type") {
        let media = ct.split(';').next().unwrap_or("").trim();
        if !media.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::BadRequest(
                "the body must be application/json".into(),
            ));
        }
    }
    serde_json::from_slice(req.body()).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::invalid("body", strip_position(&e)),
        _ => ApiError::BadRequest(format!(
            "the body is not valid JSON: {}",
            strip_position(&e)
        )),
    })
}

/// serde_json's message without " at line 1 column 7" (kept short and stable).
fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// A JSON reply of any serializable value.
pub fn json<T: Serialize>(status: u16, value: &T) -> Reply {
    Reply::with_body(status, JSON, serde_json::to_vec(value).unwrap_or_default())
}
