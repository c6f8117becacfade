//! The BRRTRouter glue of the crate docs, compiled and run against shape-mirror types.
//!
//! `mod brrtrouter` copies the signatures of `specs/router-graphql.md` §1.1–1.3 (BRRTRouter
//! commit 68a972a). Stand-ins, because those crates are not dependencies here: `Method`
//! for `http::Method`, `AnyError` for `anyhow::Error`, unit structs for `SseReceiver` and
//! `QueueDepthGuard`. Everything the glue touches has BRRTRouter's exact shape.
//!
//! Needs `scripts/services up && eval "$(scripts/services env)"`.

mod common;

#[allow(dead_code)]
mod brrtrouter {
    pub mod ids {
        /// ULID newtype in BRRTRouter (`src/ids.rs`), `Copy`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct RequestId(pub u128);
        impl std::fmt::Display for RequestId {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{:026X}", self.0)
            }
        }
    }

    pub mod dispatcher {
        use std::sync::Arc;

        use super::ids::RequestId;
        use smallvec::SmallVec;

        /// Stand-in for `http::Method`.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Method {
            Get,
            Post,
        }
        /// Stand-in for BRRTRouter's SSE receiver.
        pub struct SseReceiver;
        /// Stand-in for BRRTRouter's queue-depth guard.
        #[derive(Debug)]
        pub struct QueueDepthGuard;

        pub type HeaderVec = SmallVec<[(Arc<str>, String); 16]>;
        pub type ParamVec = SmallVec<[(Arc<str>, String); 8]>;

        #[derive(Debug, Clone)]
        pub struct HandlerRequest {
            pub request_id: RequestId,
            pub method: Method,
            pub path: String,
            pub handler_name: String,
            pub path_params: ParamVec,
            pub query_params: ParamVec,
            pub raw_query: Option<String>,
            pub headers: HeaderVec,
            pub cookies: HeaderVec,
            pub body: Option<serde_json::Value>,
            pub jwt_claims: Option<serde_json::Value>,
            pub reply_tx: may::sync::mpsc::Sender<HandlerResponse>,
            pub queue_guard: Option<Arc<QueueDepthGuard>>,
        }

        impl HandlerRequest {
            pub fn get_header(&self, name: &str) -> Option<&str> {
                self.headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_str())
            }
        }

        pub struct HandlerResponse {
            pub status: u16,
            pub headers: HeaderVec,
            pub body: serde_json::Value,
            pub sse: Option<SseReceiver>,
        }

        impl HandlerResponse {
            pub fn new(status: u16, headers: HeaderVec, body: serde_json::Value) -> Self {
                HandlerResponse {
                    status,
                    headers,
                    body,
                    sse: None,
                }
            }
            pub fn json(status: u16, body: serde_json::Value) -> Self {
                Self::new(status, HeaderVec::new(), body)
            }
            pub fn get_header(&self, name: &str) -> Option<&str> {
                self.headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_str())
            }
            pub fn set_header(&mut self, name: &str, value: String) {
                let name = name.to_ascii_lowercase();
                self.headers.retain(|(k, _)| k.as_ref() != name);
                self.headers.push((Arc::from(name.as_str()), value));
            }
        }
    }

    pub mod middleware {
        use std::time::Duration;

        use super::dispatcher::{HandlerRequest, HandlerResponse};

        /// `src/middleware/core.rs:29-54`.
        pub trait Middleware: Send + Sync {
            fn before(&self, _req: &HandlerRequest) -> Option<HandlerResponse> {
                None
            }
            fn after(&self, _req: &HandlerRequest, _res: &mut HandlerResponse, _latency: Duration) {
            }
        }
    }

    pub mod typed {
        use std::collections::HashMap;

        use super::dispatcher::{HandlerRequest, HandlerResponse, Method};

        /// Stand-in for `anyhow::Error`.
        pub type AnyError = Box<dyn std::error::Error + Send + Sync>;

        pub trait Handler: Send + 'static {
            type Request: TryFrom<HandlerRequest, Error = AnyError> + Send + 'static;
            type Response: HandlerResponseOutput;
            fn handle(&self, req: TypedHandlerRequest<Self::Request>) -> Self::Response;
        }

        pub struct TypedHandlerRequest<T> {
            pub method: Method,
            pub path: String,
            pub handler_name: String,
            pub path_params: HashMap<String, String>,
            pub query_params: HashMap<String, String>,
            pub data: T,
            pub jwt_claims: Option<serde_json::Value>,
        }

        pub trait HandlerResponseOutput: Send + 'static {
            fn into_handler_response(self) -> Result<HandlerResponse, serde_json::Error>;
        }

        impl<T: serde::Serialize + Send + 'static> HandlerResponseOutput for T {
            fn into_handler_response(self) -> Result<HandlerResponse, serde_json::Error> {
                Ok(HandlerResponse::json(200, serde_json::to_value(self)?))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The glue a BRRTRouter service pastes in (crate docs, "BRRTRouter"), verbatim apart from
// the `use` paths.
mod glue {
    use std::sync::OnceLock;
    use std::time::Duration;

    use crate::brrtrouter::dispatcher::{HandlerRequest, HandlerResponse};
    use crate::brrtrouter::middleware::Middleware;
    use crate::brrtrouter::typed::{AnyError, Handler, HandlerResponseOutput, TypedHandlerRequest};
    use lifeguard_router_ext::{Lifeguard, Reply, RequestContext, RequestExecutor};

    /// Set once at start-up (BRRTRouter's register callback is a plain fn pointer).
    pub static LIFEGUARD: OnceLock<Lifeguard> = OnceLock::new();

    fn pairs(r: &HandlerRequest) -> impl Iterator<Item = (&str, &str)> {
        r.headers.iter().map(|(k, v)| (k.as_ref(), v.as_str()))
    }

    fn to_response(reply: Reply) -> HandlerResponse {
        let body = serde_json::from_slice(&reply.body).unwrap_or(serde_json::Value::Null);
        let mut res = HandlerResponse::new(reply.status, Default::default(), body);
        res.set_header("content-type", reply.content_type);
        for (k, v) in reply.headers {
            res.set_header(&k, v);
        }
        res
    }

    /// Rejects malformed Lifeguard-* headers (400 problem+json) and counts requests.
    pub struct LifeguardMiddleware(pub Lifeguard);
    impl Middleware for LifeguardMiddleware {
        fn before(&self, req: &HandlerRequest) -> Option<HandlerResponse> {
            self.0.before(pairs(req)).map(to_response)
        }
        fn after(&self, req: &HandlerRequest, res: &mut HandlerResponse, latency: Duration) {
            self.0.after(&req.handler_name, res.status, latency);
        }
    }

    /// Wraps an untyped handler: it gets the request's executor; the response gets the
    /// request id and, after a committed write, the consistency token.
    pub fn lifeguarded<F>(
        f: F,
    ) -> impl Fn(HandlerRequest) -> HandlerResponse + Clone + Send + 'static
    where
        F: Fn(HandlerRequest, &RequestExecutor) -> HandlerResponse + Clone + Send + 'static,
    {
        move |req| {
            let lg = LIFEGUARD.get().expect("LIFEGUARD is set at start-up");
            let ctx = match lg.context(pairs(&req)) {
                Ok(ctx) => ctx.or_request_id(req.request_id.to_string()),
                Err(p) => return to_response(p.into()),
            };
            let done = lg.handle(ctx, |db| f(req, db));
            let mut res = done.output;
            for (k, v) in done.headers {
                res.set_header(&k, v);
            }
            res
        }
    }

    /// Typed handlers: the context is built in `TryFrom`, which runs in the handler
    /// coroutine; the inner handler reaches the executor through `lifeguard_router_ext::current()`.
    pub struct WithCtx<R> {
        pub inner: R,
        pub ctx: RequestContext,
    }
    impl<R: TryFrom<HandlerRequest, Error = AnyError>> TryFrom<HandlerRequest> for WithCtx<R> {
        type Error = AnyError;
        fn try_from(r: HandlerRequest) -> Result<Self, AnyError> {
            let lg = LIFEGUARD.get().expect("LIFEGUARD is set at start-up");
            let ctx = lg
                .context(pairs(&r))?
                .or_request_id(r.request_id.to_string());
            Ok(WithCtx {
                inner: R::try_from(r)?,
                ctx,
            })
        }
    }
    /// Not `Serialize`, so it does not collide with the blanket impl.
    pub struct WithHeaders<T>(pub T, pub Vec<(String, String)>);
    impl<T: HandlerResponseOutput> HandlerResponseOutput for WithHeaders<T> {
        fn into_handler_response(self) -> Result<HandlerResponse, serde_json::Error> {
            let mut hr = self.0.into_handler_response()?;
            for (k, v) in self.1 {
                hr.set_header(&k, v);
            }
            Ok(hr)
        }
    }
    #[derive(Clone, Copy)]
    pub struct Lifeguarded<H>(pub H);
    impl<H: Handler> Handler for Lifeguarded<H> {
        type Request = WithCtx<H::Request>;
        type Response = WithHeaders<H::Response>;
        fn handle(&self, r: TypedHandlerRequest<Self::Request>) -> Self::Response {
            let lg = LIFEGUARD.get().expect("LIFEGUARD is set at start-up");
            let WithCtx { inner, ctx } = r.data;
            let inner = TypedHandlerRequest {
                method: r.method,
                path: r.path,
                handler_name: r.handler_name,
                path_params: r.path_params,
                query_params: r.query_params,
                data: inner,
                jwt_claims: r.jwt_claims,
            };
            let done = lg.handle(ctx, |_db| self.0.handle(inner));
            WithHeaders(done.output, done.headers)
        }
    }
}
// ---------------------------------------------------------------------------------------

use std::sync::Arc;
use std::time::Duration;

use brrtrouter::dispatcher::{HandlerRequest, HandlerResponse, HeaderVec, Method};
use brrtrouter::ids::RequestId;
use brrtrouter::middleware::Middleware;
use brrtrouter::typed::{AnyError, Handler, HandlerResponseOutput, TypedHandlerRequest};
use glue::*;
use lifeguard_core::Executor;
use lifeguard_router_ext::{current, Lifeguard, Settings};

fn init() -> &'static Lifeguard {
    LIFEGUARD.get_or_init(|| {
        let lg = Lifeguard::new(common::pool(), Settings::default());
        lg.pool()
            .primary()
            .batch_execute("CREATE TABLE IF NOT EXISTS rext_brr (id serial PRIMARY KEY, v text)")
            .unwrap();
        lg
    })
}

fn request(id: u128, handler: &str, headers: &[(&str, &str)]) -> HandlerRequest {
    let (tx, _rx) = may::sync::mpsc::channel();
    HandlerRequest {
        request_id: RequestId(id),
        method: Method::Get,
        path: "/pets/{id}".into(),
        handler_name: handler.into(),
        path_params: Default::default(),
        query_params: Default::default(),
        raw_query: None,
        // BRRTRouter lower-cases names.
        headers: headers
            .iter()
            .map(|(k, v)| (Arc::from(k.to_ascii_lowercase().as_str()), v.to_string()))
            .collect::<HeaderVec>(),
        cookies: Default::default(),
        body: None,
        jwt_claims: None,
        reply_tx: tx,
        queue_guard: None,
    }
}

#[test]
fn middleware_rejects_malformed_headers_before_the_handler() {
    let mw: Arc<dyn Middleware> = Arc::new(LifeguardMiddleware(init().clone()));
    let req = request(1, "list_pets", &[("Lifeguard-Max-Staleness", "later")]);
    let res = mw.before(&req).expect("short-circuits");
    assert_eq!(res.status, 400);
    assert_eq!(
        res.get_header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(res.body["header"], "Lifeguard-Max-Staleness");
    assert!(mw
        .before(&request(
            2,
            "list_pets",
            &[("Lifeguard-Read-Preference", "primary")]
        ))
        .is_none());

    let mut ok = HandlerResponse::json(200, serde_json::json!([]));
    mw.after(&req, &mut ok, Duration::from_millis(3));
    let text = String::from_utf8(init().metrics().body).unwrap();
    assert!(text.contains("lifeguard_http_requests_total{route=\"list_pets\",status=\"200\"}"));
}

#[test]
fn untyped_wrapper_routes_and_returns_the_token_after_a_write() {
    init();
    let handler = lifeguarded(
        |_req: HandlerRequest, db: &lifeguard_router_ext::RequestExecutor| {
            let recovery: bool = db
                .query_one("SELECT pg_is_in_recovery()", &[])
                .unwrap()
                .get(0);
            db.execute("INSERT INTO rext_brr (v) VALUES ('x')", &[])
                .unwrap();
            HandlerResponse::json(201, serde_json::json!({ "in_recovery": recovery }))
        },
    );
    let res = handler(request(
        0xABC,
        "create_pet",
        &[("Lifeguard-Read-Preference", "primary")],
    ));
    assert_eq!(res.status, 201);
    assert_eq!(res.body["in_recovery"], false);
    assert_eq!(
        res.get_header("lifeguard-request-id"),
        Some(RequestId(0xABC).to_string().as_str())
    );
    assert!(res
        .get_header("lifeguard-consistency-token")
        .unwrap()
        .starts_with("v1."));

    // A client id wins over BRRTRouter's; a read-only request gets no token.
    let read = lifeguarded(
        |_req: HandlerRequest, db: &lifeguard_router_ext::RequestExecutor| {
            db.query_one("SELECT 1", &[]).unwrap();
            HandlerResponse::json(200, serde_json::json!({}))
        },
    );
    let res = read(request(
        5,
        "get_pet",
        &[("Lifeguard-Request-Id", "client-7")],
    ));
    assert_eq!(res.get_header("lifeguard-request-id"), Some("client-7"));
    assert!(res.get_header("lifeguard-consistency-token").is_none());

    let res = read(request(
        6,
        "get_pet",
        &[("Lifeguard-Consistency-Token", "bad")],
    ));
    assert_eq!(res.status, 400);
}

struct GetPet;
struct GetPetRequest;
impl TryFrom<HandlerRequest> for GetPetRequest {
    type Error = AnyError;
    fn try_from(_: HandlerRequest) -> Result<Self, AnyError> {
        Ok(GetPetRequest)
    }
}
impl Handler for GetPet {
    type Request = GetPetRequest;
    type Response = serde_json::Value;
    fn handle(&self, _req: TypedHandlerRequest<GetPetRequest>) -> serde_json::Value {
        // A generated controller has no parameter for the executor: the scope provides it.
        let db = current().expect("Lifeguarded installs the scope");
        let recovery: bool = db
            .query_one("SELECT pg_is_in_recovery()", &[])
            .unwrap()
            .get(0);
        serde_json::json!({ "in_recovery": recovery, "id": db.context().request_id() })
    }
}

#[test]
fn typed_wrapper_builds_the_context_in_try_from() {
    init();
    let h = Lifeguarded(GetPet);
    let req = request(9, "get_pet", &[("Lifeguard-Read-Preference", "primary")]);
    let data = <Lifeguarded<GetPet> as Handler>::Request::try_from(req).unwrap();
    let typed = TypedHandlerRequest {
        method: Method::Get,
        path: "/pets/{id}".into(),
        handler_name: "get_pet".into(),
        path_params: Default::default(),
        query_params: Default::default(),
        data,
        jwt_claims: None,
    };
    let res = h.handle(typed).into_handler_response().unwrap();
    assert_eq!(res.status, 200);
    assert_eq!(res.body["in_recovery"], false);
    assert_eq!(
        res.get_header("lifeguard-request-id"),
        Some(RequestId(9).to_string().as_str())
    );
    assert!(current().is_none());

    let bad = request(10, "get_pet", &[("Lifeguard-Read-Preference", "sideways")]);
    assert!(<Lifeguarded<GetPet> as Handler>::Request::try_from(bad).is_err());
}
