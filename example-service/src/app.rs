//! Wiring: the pool, the migrations, the seed, the routes, the server and its shutdown.

use std::error::Error as StdError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeguard_core::cache::redis::{RedisClient, RedisConfig};
use lifeguard_core::cache::{install_change_capture, Cache, CacheConfig, CaptureOptions};
use lifeguard_core::migrate::{startup_migrations, Migrator};
use lifeguard_core::pool::{Pool, ReadOptions, ReadPreference};
use lifeguard_core::Executor;
use lifeguard_graphql::http::Endpoint;
use lifeguard_router_ext::service::{HttpRequest, LifeguardService, Limits, ServiceBuilder};
use lifeguard_router_ext::{Lifeguard, ReadyPolicy, Reply, RequestExecutor, Settings, JSON};
use may::coroutine::JoinHandle;

use crate::config::{AppConfig, CacheSettings, HttpServer};
use crate::error::ApiError;
use crate::models::{Author, Book};
use crate::techempower::World;
use crate::{api, openapi, seed, techempower};

/// The SQL migrations, embedded at compile time from `example-service/migrations/`.
pub static MIGRATIONS: &[(&str, &str)] =
    lifeguard_core::migrations!("../migrations"; "0001_library.sql", "0002_techempower.sql");

/// The migrator of the service's schema: the history table `lifeguard_migrations` lives in
/// `schema` too, and a migration may run as long as it needs (no statement timeout).
pub fn migrator(schema: &str) -> Migrator {
    Migrator::new(MIGRATIONS)
        .schema(schema)
        .statement_timeout(Duration::ZERO)
}

/// A handler of this service: errors become problem+json replies.
pub trait Handler:
    Fn(&HttpRequest, &RequestExecutor) -> Result<Reply, ApiError> + Send + Sync + 'static
{
}
impl<F> Handler for F where
    F: Fn(&HttpRequest, &RequestExecutor) -> Result<Reply, ApiError> + Send + Sync + 'static
{
}

/// Counts requests inside handlers, so shutdown can wait for them.
#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Requests running now.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.0.clone())
    }
}

struct InFlightGuard(Arc<AtomicUsize>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The routes of the service, each counted in flight and turning `Err` into problem+json.
struct Routes {
    builder: ServiceBuilder,
    in_flight: InFlight,
}

impl Routes {
    fn add(mut self, method: &str, path: &str, name: &str, handler: impl Handler) -> Routes {
        let in_flight = self.in_flight.clone();
        self.builder = self.builder.route(method, path, name, move |req, db| {
            let _guard = in_flight.enter();
            handler(req, db).unwrap_or_else(ApiError::into_reply)
        });
        self
    }
}

/// `GET /debug/where`: which server ran this request's read.
fn debug_where(_req: &HttpRequest, db: &RequestExecutor) -> Result<Reply, ApiError> {
    let row = db.query_one("SELECT pg_is_in_recovery(), inet_server_port()", &[])?;
    Ok(crate::http::json(
        200,
        &openapi::Where {
            in_recovery: row.try_get(0)?,
            port: row.try_get(1)?,
        },
    ))
}

/// The service over `lg`: every route of the API, plus `/metrics`, `/health/live` and
/// `/health/ready`.
pub fn service(
    lg: Lifeguard,
    config: &AppConfig,
    in_flight: InFlight,
    graphql: Endpoint,
) -> LifeguardService {
    let doc = Arc::new(openapi::document());
    let (post, get, sdl, asset) = (graphql.clone(), graphql.clone(), graphql.clone(), graphql);
    let builder = ServiceBuilder::new(lg)
        .health(ReadyPolicy::default())
        .metrics()
        .limits(Limits {
            max_body: config.max_body,
            ..Limits::default()
        });
    let mut routes = Routes { builder, in_flight }
        .add("GET", "/authors", "authors_list", api::list_authors)
        .add("POST", "/authors", "authors_create", api::create_author)
        .add("GET", "/authors/{id}", "authors_get", api::get_author)
        .add("PATCH", "/authors/{id}", "authors_patch", api::patch_author)
        .add(
            "DELETE",
            "/authors/{id}",
            "authors_delete",
            api::delete_author,
        )
        .add("GET", "/shelf", "shelf", api::shelf::shelf)
        .add("GET", "/books", "books_list", api::list_books)
        .add("POST", "/books", "books_create", api::create_book)
        .add("GET", "/books/{id}", "books_get", api::get_book)
        .add("PATCH", "/books/{id}", "books_patch", api::patch_book)
        .add("DELETE", "/books/{id}", "books_delete", api::delete_book)
        .add(
            "GET",
            "/books/{id}/reviews",
            "reviews_list",
            api::list_reviews,
        )
        .add(
            "POST",
            "/books/{id}/reviews",
            "reviews_create",
            api::create_review,
        )
        .add("GET", "/db", "db", techempower::db)
        .add("GET", "/queries", "queries", techempower::queries)
        .add("GET", "/fortunes", "fortunes", techempower::fortunes)
        .add("GET", "/updates", "updates", techempower::updates)
        .add("POST", "/graphql", "graphql", move |r, db| {
            Ok(post.post(r, db))
        })
        .add(
            "GET",
            "/graphql",
            "graphql",
            move |r, db| Ok(get.get(r, db)),
        )
        .add(
            "GET",
            "/graphql/schema.graphql",
            "graphql_sdl",
            move |r, db| Ok(sdl.sdl(r, db)),
        )
        .add(
            "GET",
            "/graphql/assets/{name}",
            "graphql_assets",
            move |r, db| Ok(asset.asset(r, db)),
        )
        .add("GET", "/openapi.json", "openapi", move |_req, _db| {
            Ok(Reply::with_body(200, JSON, doc.as_slice()))
        });
    if config.debug_endpoints {
        routes = routes.add("GET", "/debug/where", "debug_where", debug_where);
    }
    routes.builder.build()
}

/// A started service.
pub struct Running {
    /// The pool.
    pub pool: Pool,
    /// Requests in handlers now.
    pub in_flight: InFlight,
    server: JoinHandle<()>,
}

/// Connects the pool, applies pending migrations, seeds (unless disabled) and starts
/// serving on `config.listen`. Configure `may` first.
///
/// # Errors
///
/// A bad URL, an unreachable primary, a failed migration or seed, an address in use.
pub fn start(config: &AppConfig) -> Result<Running, Box<dyn StdError>> {
    let pool = Pool::connect(config.pool_config()?)?;
    // Logs each migration it applies (target lifeguard::migrate).
    startup_migrations(&pool, &migrator(&config.schema))?;
    if config.seed {
        let n = seed::seed(&pool)?;
        if n > 0 {
            tracing::info!("seeded {n} authors");
        }
    }
    let pool = match &config.cache {
        Some(cache) => with_cache(pool, cache, &config.schema)?,
        None => pool,
    };
    wait_for_replicas(&pool, config.replica_wait);
    let settings = Settings {
        served_by: config.served_by,
        ..Settings::default()
    };
    let in_flight = InFlight::default();
    let lg = Lifeguard::new(pool.clone(), settings);
    let graphql = crate::graphql::endpoint(crate::graphql::harness_tables(&pool)?)?;
    let service = service(lg, config, in_flight.clone(), graphql);
    let server = match config.http_server {
        HttpServer::Lifeguard => service.start(config.listen.as_str())?,
        HttpServer::MiniHttp => service.start_minihttp(config.listen.as_str())?,
    };
    Ok(Running {
        pool,
        in_flight,
        server,
    })
}

/// Installs change capture for the cached models in the service's schema (idempotent;
/// concurrent starts take turns on the lock the capture SQL takes) and attaches the cache.
fn with_cache(
    pool: Pool,
    settings: &CacheSettings,
    schema: &str,
) -> Result<Pool, Box<dyn StdError>> {
    let opts = CaptureOptions::new().schema(schema);
    pool.transaction(|tx| {
        // Every start re-creates what exists already: its notices are noise.
        tx.batch_execute("SET LOCAL client_min_messages = warning")?;
        install_change_capture::<Author>(tx, &opts)?;
        install_change_capture::<Book>(tx, &opts)?;
        install_change_capture::<World>(tx, &opts)
    })?;
    let redis = RedisClient::new(RedisConfig::from_url(&settings.redis_url)?);
    let cache = Cache::new(
        redis,
        CacheConfig::new(settings.namespace.clone()).staleness_bound(settings.staleness),
    );
    tracing::info!(namespace = %settings.namespace, "reads of authors, books and world go through the Redis cache");
    Ok(pool.with_cache(cache))
}

/// Waits (at most `wait`) until a replica has replayed everything written so far
/// (migrations and seed included), so the first requests that read from a replica find the
/// tables. A replica that stays behind or down is logged, not fatal: reads that prefer a
/// replica then fall back to the primary (within its fallback budget).
fn wait_for_replicas(pool: &Pool, wait: Duration) {
    if pool.health().replicas.is_empty() {
        return;
    }
    // An empty transaction counts as this handle's write, so `token` reads the primary's
    // position now: past every migration and seed row.
    let db = pool.primary();
    let token = match db.transaction(|_| Ok(())).and_then(|()| db.token()) {
        Ok(Some(token)) => token,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the primary's position");
            return;
        }
    };
    let caught_up = pool.db(ReadOptions::new(ReadPreference::Replica).min_lsn(token));
    let until = Instant::now() + wait;
    while caught_up.query_one("SELECT 1", &[]).is_err() {
        if Instant::now() >= until {
            tracing::warn!("serving before any replica has replayed the migrations");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How long shutdown leaves the servers to write responses their handlers have returned.
const RESPONSE_FLUSH: Duration = Duration::from_millis(100);

impl Running {
    /// Graceful shutdown: stops accepting connections, waits up to `grace` for the requests
    /// already in handlers, then closes every database connection. Requests that arrive on
    /// open keep-alive connections meanwhile are still served; once this returns the
    /// process should exit (open client connections are then simply closed).
    pub fn shutdown(self, grace: Duration) {
        // SAFETY: cancelling the server's accept coroutine unwinds it at its next
        // blocking point (the accept), which drops the listener; nothing else shares its
        // stack.
        unsafe { self.server.coroutine().cancel() };
        let _ = self.server.join();
        let until = Instant::now() + grace;
        while self.in_flight.count() > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        let left = self.in_flight.count();
        if left > 0 {
            tracing::warn!("{left} requests still running after the grace period");
        }
        // A handler that returned has its response still to be written by the server
        // (may_minihttp writes after its service returns): give those writes a moment
        // before the process exits and closes their sockets.
        std::thread::sleep(RESPONSE_FLUSH.min(until.saturating_duration_since(Instant::now())));
        self.pool.close();
    }
}
