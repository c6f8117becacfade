//! GraphQL over HTTP on the router extension (the `router` feature): `POST` and `GET` at
//! the endpoint, GraphiQL for browsers, the SDL, status codes and media types as the
//! GraphQL-over-HTTP specification gives them.
//!
//! ```no_run
//! # fn demo(lg: lifeguard_router_ext::Lifeguard, schema: lifeguard_graphql::Schema) {
//! use lifeguard_router_ext::service::ServiceBuilder;
//! let service = lifeguard_graphql::http::routes(ServiceBuilder::new(lg), "/graphql", schema).build();
//! # }
//! ```
//!
//! | request | answer |
//! |---|---|
//! | `POST` `application/json` `{query, variables, operationName}` | the response; a mutation runs in one transaction on the primary |
//! | `GET ?query=&variables=&operationName=` | queries only: a mutation is `405` with `Allow: POST` |
//! | `GET` from a browser (`Accept: text/html`), no `query` | GraphiQL, its assets served from `{path}/assets/` |
//! | `GET {path}/schema.graphql` | the SDL |
//!
//! With `Accept: application/graphql-response+json` a request error (unparsable JSON, a
//! document that does not parse or validate) is a `400` and the response has that media
//! type; with `application/json` (or no `Accept`) it is a `200`. A request error's body
//! has `errors` and no `data`. After a committed write the consistency token is in the
//! `Lifeguard-Consistency-Token` header and in `extensions.lifeguard.consistencyToken`.

use std::sync::Arc;

use async_graphql::{Request, Response, Variables};
use lifeguard_router_ext::service::{HttpRequest, ServiceBuilder};
use lifeguard_router_ext::{Reply, RequestExecutor};

use crate::graphiql::{self, Assets};
use crate::schema::Schema;

/// The media type of GraphQL responses.
pub const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// Adds the GraphQL routes at `path` (e.g. `/graphql`), with GraphiQL's assets from
/// [`Assets::from_env`].
pub fn routes(builder: ServiceBuilder, path: &str, schema: Schema) -> ServiceBuilder {
    Endpoint::new(path, schema, Assets::from_env()).routes(builder)
}

/// The GraphQL endpoint's handlers, for services that add routes themselves (to wrap them
/// in their own middleware); [`Endpoint::routes`] adds them all.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<Inner>,
}

struct Inner {
    path: String,
    schema: Schema,
    assets: Assets,
    sdl: String,
}

impl Endpoint {
    /// The endpoint at `path` (e.g. `/graphql`) for `schema`, GraphiQL's assets from `assets`.
    pub fn new(path: &str, schema: Schema, assets: Assets) -> Endpoint {
        let sdl = schema.sdl();
        Endpoint {
            inner: Arc::new(Inner {
                path: path.trim_end_matches('/').to_owned(),
                schema,
                assets,
                sdl,
            }),
        }
    }

    /// The endpoint's path.
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// `POST {path}`.
    pub fn post(&self, req: &HttpRequest, db: &RequestExecutor) -> Reply {
        post_graphql(&self.inner.schema, req, db)
    }

    /// `GET {path}`: a query, or GraphiQL for a browser.
    pub fn get(&self, req: &HttpRequest, db: &RequestExecutor) -> Reply {
        get_graphql(&self.inner.schema, &self.inner.path, req, db)
    }

    /// `GET {path}/schema.graphql`.
    pub fn sdl(&self, _req: &HttpRequest, _db: &RequestExecutor) -> Reply {
        Reply::with_body(200, "text/plain; charset=utf-8", self.inner.sdl.clone())
    }

    /// `GET {path}/assets/{name}`.
    pub fn asset(&self, req: &HttpRequest, _db: &RequestExecutor) -> Reply {
        match req.param("name").and_then(|n| self.inner.assets.get(n)) {
            Some((content_type, body)) => {
                let mut r = Reply::with_body(200, content_type, body);
                r.headers
                    .push(("cache-control".into(), "public, max-age=86400".into()));
                r
            }
            None => error_reply(404, "application/json", "no such asset"),
        }
    }

    /// Adds the four routes to `builder`.
    pub fn routes(&self, builder: ServiceBuilder) -> ServiceBuilder {
        let path = self.inner.path.clone();
        let (a, b, c, d) = (self.clone(), self.clone(), self.clone(), self.clone());
        builder
            .route("POST", &path, "graphql", move |r, db| a.post(r, db))
            .route("GET", &path, "graphql", move |r, db| b.get(r, db))
            .route(
                "GET",
                &format!("{path}/schema.graphql"),
                "graphql_sdl",
                move |r, db| c.sdl(r, db),
            )
            .route(
                "GET",
                &format!("{path}/assets/{{name}}"),
                "graphql_assets",
                move |r, db| d.asset(r, db),
            )
    }
}

/// Which media type the client takes; `None` when it takes neither.
fn response_type(req: &HttpRequest) -> Option<&'static str> {
    let Some(accept) = req.header("accept") else {
        return Some("application/json");
    };
    let accept = accept.to_ascii_lowercase();
    if accept.contains(GRAPHQL_RESPONSE) {
        Some(GRAPHQL_RESPONSE)
    } else if accept.contains("application/json")
        || accept.contains("*/*")
        || accept.contains("application/*")
        || accept.trim().is_empty()
    {
        Some("application/json")
    } else {
        None
    }
}

/// A request error: `errors` only.
fn error_reply(status: u16, content_type: &str, message: &str) -> Reply {
    let body = serde_json::json!({ "errors": [{ "message": message }] });
    Reply::with_body(
        status,
        content_type,
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

fn post_graphql(schema: &Schema, req: &HttpRequest, db: &RequestExecutor) -> Reply {
    let Some(media) = response_type(req) else {
        return error_reply(
            406,
            "application/json",
            "accept application/graphql-response+json or application/json",
        );
    };
    let json_body = req
        .header("content-type")
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        })
        .unwrap_or(false);
    if !json_body {
        return error_reply(415, media, "send the request as application/json");
    }
    let request = match parse_body(req.body()) {
        Ok(r) => r,
        Err(m) => return error_reply(400, media, &m),
    };
    answer(schema, request, media, db)
}

fn parse_body(body: &[u8]) -> Result<Request, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "the body is not JSON".to_string())?;
    let Some(o) = v.as_object() else {
        return Err("the body is not a JSON object".into());
    };
    let query = match o.get("query") {
        Some(serde_json::Value::String(q)) => q.clone(),
        _ => return Err("query must be a string".into()),
    };
    let mut request = Request::new(query);
    match o.get("operationName") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::String(n)) => request = request.operation_name(n.clone()),
        Some(_) => return Err("operationName must be a string".into()),
    }
    match o.get("variables") {
        None | Some(serde_json::Value::Null) => {}
        Some(v @ serde_json::Value::Object(_)) => {
            request = request.variables(Variables::from_json(v.clone()))
        }
        Some(_) => return Err("variables must be an object".into()),
    }
    Ok(request)
}

fn get_graphql(schema: &Schema, endpoint: &str, req: &HttpRequest, db: &RequestExecutor) -> Reply {
    let params = query_params(req.query().unwrap_or(""));
    let param = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let browser = req
        .header("accept")
        .is_some_and(|a| a.contains("text/html"));
    let Some(query) = param("query") else {
        if browser {
            return Reply::with_body(200, "text/html; charset=utf-8", graphiql::page(endpoint));
        }
        return error_reply(
            400,
            response_type(req).unwrap_or("application/json"),
            "query is missing",
        );
    };
    let Some(media) = response_type(req) else {
        return error_reply(
            406,
            "application/json",
            "accept application/graphql-response+json or application/json",
        );
    };
    let operation = param("operationName").filter(|n| !n.is_empty());
    let mut request = Request::new(query);
    if let Some(n) = operation {
        request = request.operation_name(n);
    }
    if let Some(v) = param("variables").filter(|v| !v.is_empty()) {
        match serde_json::from_str::<serde_json::Value>(v) {
            Ok(v @ serde_json::Value::Object(_)) => {
                request = request.variables(Variables::from_json(v))
            }
            _ => return error_reply(400, media, "variables must be a JSON object"),
        }
    }
    let prepared = match schema.prepare(request) {
        Ok(p) => p,
        Err(refused) => return reply(Response::from_errors(refused), false, media, db),
    };
    if prepared.is_mutation() {
        let mut r = error_reply(405, media, "mutations are sent with POST");
        r.headers.push(("allow".into(), "POST".into()));
        return r;
    }
    let done = schema.run_on(db.db(), prepared);
    reply(done.response, done.executed, media, db)
}

/// `a=1&b=x+y` decoded.
fn query_params(q: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_encoding::percent_decode_str(&s)
            .decode_utf8_lossy()
            .into_owned()
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn answer(schema: &Schema, request: Request, media: &'static str, db: &RequestExecutor) -> Reply {
    match schema.prepare(request) {
        Ok(prepared) => {
            let done = schema.run_on(db.db(), prepared);
            reply(done.response, done.executed, media, db)
        }
        Err(refused) => reply(Response::from_errors(refused), false, media, db),
    }
}

/// The HTTP answer to `response`. When no field `executed` and there are errors, they are
/// request errors (limits, parse, validation): `400` under `graphql-response+json`, and no
/// `data` entry.
fn reply(
    mut response: Response,
    executed: bool,
    media: &'static str,
    db: &RequestExecutor,
) -> Reply {
    let failed_request = !executed && !response.errors.is_empty();
    if let Some(token) = db.committed_token() {
        let mut lifeguard = async_graphql::indexmap::IndexMap::new();
        lifeguard.insert(
            async_graphql::Name::new("consistencyToken"),
            async_graphql::Value::String(token.to_string()),
        );
        response
            .extensions
            .insert("lifeguard".into(), async_graphql::Value::Object(lifeguard));
    }
    // Serialised straight from the response, so fields keep the document's order.
    let body = if failed_request {
        serde_json::to_vec(&serde_json::json!({ "errors": response.errors }))
    } else {
        serde_json::to_vec(&response)
    };
    let status = if failed_request && media == GRAPHQL_RESPONSE {
        400
    } else {
        200
    };
    Reply::with_body(status, media, body.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded() {
        let p = query_params("query=%7B+a+%7D&variables=&x");
        assert_eq!(p[0], ("query".into(), "{ a }".into()));
        assert_eq!(p[1], ("variables".into(), String::new()));
        assert_eq!(p[2], ("x".into(), String::new()));
    }

    #[test]
    fn bodies_must_be_graphql_requests() {
        assert!(parse_body(br#"{"query":"{ a }","variables":{"x":1}}"#).is_ok());
        assert!(parse_body(b"nope").is_err());
        assert!(parse_body(br#"{"query":1}"#).is_err());
        assert!(parse_body(br#"{"query":"{ a }","variables":[1]}"#).is_err());
    }
}
