//! Configuration: environment variables, plus `--listen ADDR` on the command line.
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `DATABASE_URL` or `LIFEGUARD_PRIMARY_URL` | the primary (`DATABASE_URL` wins, as the benchmark harness passes it) | required |
//! | `LIFEGUARD_REPLICA_URLS` | streaming replicas, comma-separated | none |
//! | `HTTP_POOL_SIZE` | the most PostgreSQL connections the service may open **per server**; the pool gets `HTTP_POOL_SIZE - 1` (at least 1), because the pool's monitor holds one more connection per server | unset: `LIFEGUARD_POOL_MAX_SIZE`, else 10 |
//! | `LIFEGUARD_SCHEMA` | the schema the service's tables and migration history live in (`search_path = <schema>, public`) | `example` |
//! | `LIFEGUARD_LISTEN` | the address to serve on (`--listen ADDR` wins) | `127.0.0.1:8080` |
//! | `LIFEGUARD_SEED` | `0` skips the idempotent seed of authors and books | `1` |
//! | `LIFEGUARD_DEBUG_ENDPOINTS` | `1` serves `GET /debug/where` (reveals topology) | `0` |
//! | `LIFEGUARD_SERVED_BY` | `1` sends `Lifeguard-Served-By` on responses (reveals topology) | `0` |
//! | `LIFEGUARD_SHUTDOWN_GRACE_MS` | how long a SIGTERM/SIGINT waits for requests in flight | `5000` |
//! | `LIFEGUARD_MAX_BODY` | the largest request body in bytes (larger: `413`) | `65536` |
//! | `LIFEGUARD_WORKERS` | `may` scheduler threads. One keeps the tail short when the database shares the machine (BENCHMARKS.md has the run); raise it on a host of its own | `1` |
//! | `LIFEGUARD_HTTP_SERVER` | `lifeguard`: Lifeguard's own HTTP/1.1 server (up to 64 request headers, `431` past that); `minihttp`: may_minihttp 0.1.11 (16 request headers, a 17th closes the connection unanswered) | `lifeguard` |
//! | `LIFEGUARD_PIPELINE_DEPTH` | the most requests in flight on one pooled connection; further requests wait in arrival order for the first connection with room (`0`: no limit). A limit keeps a connection that stalls from holding many requests: a shorter tail on `/updates` and `/queries` for some throughput of `/db` and `/fortunes` (BENCHMARKS.md) | `32` |
//! | `LIFEGUARD_CACHE_REDIS_URL` | turns the Redis cache on for authors, books and `world` (`GET /authors/{id}`, `GET /books/{id}`, `/db`, `/queries`): change capture is installed in the service's schema at start-up, and a reflector must run (`scripts/run` starts one) | off |
//! | `LIFEGUARD_CACHE_NAMESPACE`, `LIFEGUARD_CACHE_STALENESS_MS` | the cache's namespace and staleness bound `B`, which the reflector must share | `lifeguard`, `2000` |
//! | `LIFEGUARD_REPLICA_WAIT_MS` | at start-up, how long to wait for the replicas to become eligible before serving (reads that prefer a replica would otherwise all fall back to the primary, whose fallback budget is small) | `5000` |
//!
//! With replicas, the service holds at most `(max_size + 1)` connections on each server,
//! so `HTTP_POOL_SIZE` bounds each server separately, not their sum.

use std::time::Duration;

use lifeguard_core::pg::{redact_url, Config as PgConfig};
use lifeguard_core::pool::PoolConfig;

/// Everything the service reads at start-up.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The primary's URL.
    pub primary_url: SecretUrl,
    /// The replicas' URLs.
    pub replica_urls: Vec<SecretUrl>,
    /// Connections per server for the pool (monitor connection not included).
    pub pool_max_size: usize,
    /// The most requests in flight on one pooled connection (`None`: no limit).
    pub pipeline_depth: Option<usize>,
    /// The schema of the service's tables.
    pub schema: String,
    /// The listen address.
    pub listen: String,
    /// Seed authors and books at start-up.
    pub seed: bool,
    /// Serve `GET /debug/where`.
    pub debug_endpoints: bool,
    /// Send `Lifeguard-Served-By`.
    pub served_by: bool,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    /// The largest request body.
    pub max_body: usize,
    /// How long start-up waits for the replicas to become eligible.
    pub replica_wait: Duration,
    /// `may` scheduler threads.
    pub workers: usize,
    /// The HTTP server the service runs on.
    pub http_server: HttpServer,
    /// The Redis cache, when `LIFEGUARD_CACHE_REDIS_URL` is set.
    pub cache: Option<CacheSettings>,
}

/// The cache's settings.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// The Redis server.
    pub redis_url: SecretUrl,
    /// The namespace shared with the reflector.
    pub namespace: String,
    /// The staleness bound `B`, shared with the reflector.
    pub staleness: Duration,
}

/// A connection URL that may carry a password: used as the `str` it holds, printed by
/// `Debug` without the password ([`redact_url`]).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(pub String);

impl std::ops::Deref for SecretUrl {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", redact_url(&self.0))
    }
}

/// Which server runs the service (`LIFEGUARD_HTTP_SERVER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpServer {
    /// Lifeguard's own HTTP/1.1 server (`lifeguard`).
    Lifeguard,
    /// may_minihttp 0.1.11 (`minihttp`).
    MiniHttp,
}

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// `LIFEGUARD_PIPELINE_DEPTH` when unset.
pub const DEFAULT_PIPELINE_DEPTH: usize = 32;

/// The usage line printed by `--help` and on a usage error.
pub const USAGE: &str = "usage: example-service [--listen ADDR]\n\
    environment: DATABASE_URL or LIFEGUARD_PRIMARY_URL (required), LIFEGUARD_REPLICA_URLS, \
    HTTP_POOL_SIZE, LIFEGUARD_SCHEMA, LIFEGUARD_LISTEN, LIFEGUARD_SEED, \
    LIFEGUARD_DEBUG_ENDPOINTS, LIFEGUARD_SERVED_BY, LIFEGUARD_SHUTDOWN_GRACE_MS, LIFEGUARD_MAX_BODY, LIFEGUARD_PIPELINE_DEPTH, LIFEGUARD_REPLICA_WAIT_MS, LIFEGUARD_WORKERS, LIFEGUARD_HTTP_SERVER, \
    LIFEGUARD_CACHE_REDIS_URL, LIFEGUARD_CACHE_NAMESPACE, LIFEGUARD_CACHE_STALENESS_MS";

impl AppConfig {
    /// Reads the process environment and `args` (without the program name).
    ///
    /// # Errors
    ///
    /// A message for the operator: a missing URL, a malformed number or schema name, an
    /// unknown flag.
    pub fn from_env_and_args(args: impl IntoIterator<Item = String>) -> Result<AppConfig, String> {
        Self::from_lookup(|name| std::env::var(name).ok(), args)
    }

    /// As [`AppConfig::from_env_and_args`], reading variables through `var` (tests).
    pub fn from_lookup(
        var: impl Fn(&str) -> Option<String>,
        args: impl IntoIterator<Item = String>,
    ) -> Result<AppConfig, String> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let mut listen = var("LIFEGUARD_LISTEN");
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "--listen" {
                listen = Some(args.next().ok_or("--listen needs an address")?);
            } else if let Some(addr) = arg.strip_prefix("--listen=") {
                listen = Some(addr.to_string());
            } else {
                return Err(format!("unknown argument {arg:?}"));
            }
        }
        let primary_url = var("DATABASE_URL")
            .or_else(|| var("LIFEGUARD_PRIMARY_URL"))
            .map(SecretUrl)
            .ok_or("set DATABASE_URL or LIFEGUARD_PRIMARY_URL")?;
        let replica_urls = var("LIFEGUARD_REPLICA_URLS")
            .map(|l| {
                l.split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(|u| SecretUrl(u.to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let number = |name: &str| -> Result<Option<u64>, String> {
            var(name)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .map_err(|_| format!("{name}={v:?} is not a whole number"))
                })
                .transpose()
        };
        let pool_max_size = match number("HTTP_POOL_SIZE")? {
            Some(n) => (n as usize).saturating_sub(1).max(1),
            None => number("LIFEGUARD_POOL_MAX_SIZE")?.map_or(10, |n| n as usize),
        };
        let schema = var("LIFEGUARD_SCHEMA").unwrap_or_else(|| "example".into());
        if !valid_schema(&schema) {
            return Err(format!(
                "LIFEGUARD_SCHEMA={schema:?}: use lower-case letters, digits and _ (at most 63, not starting with a digit)"
            ));
        }
        let flag = |name: &str, default: bool| match var(name).as_deref().map(str::trim) {
            None => Ok(default),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(other) => Err(format!("{name}={other:?}: expected 1 or 0")),
        };
        Ok(AppConfig {
            primary_url,
            replica_urls,
            pool_max_size,
            pipeline_depth: match number("LIFEGUARD_PIPELINE_DEPTH")? {
                None => Some(DEFAULT_PIPELINE_DEPTH),
                Some(0) => None,
                Some(n) => Some(n as usize),
            },
            schema,
            listen: listen.unwrap_or_else(|| DEFAULT_LISTEN.into()),
            seed: flag("LIFEGUARD_SEED", true)?,
            debug_endpoints: flag("LIFEGUARD_DEBUG_ENDPOINTS", false)?,
            served_by: flag("LIFEGUARD_SERVED_BY", false)?,
            shutdown_grace: Duration::from_millis(
                number("LIFEGUARD_SHUTDOWN_GRACE_MS")?.unwrap_or(5000),
            ),
            max_body: number("LIFEGUARD_MAX_BODY")?.map_or(64 << 10, |n| n as usize),
            replica_wait: Duration::from_millis(
                number("LIFEGUARD_REPLICA_WAIT_MS")?.unwrap_or(5000),
            ),
            workers: match number("LIFEGUARD_WORKERS")? {
                None => 1,
                Some(0) => return Err("LIFEGUARD_WORKERS must be at least 1".into()),
                Some(n) => n as usize,
            },
            http_server: match var("LIFEGUARD_HTTP_SERVER").as_deref().map(str::trim) {
                None | Some("lifeguard") => HttpServer::Lifeguard,
                Some("minihttp") => HttpServer::MiniHttp,
                Some(other) => {
                    return Err(format!(
                        "LIFEGUARD_HTTP_SERVER={other:?}: expected lifeguard or minihttp"
                    ))
                }
            },
            cache: match var("LIFEGUARD_CACHE_REDIS_URL") {
                None => None,
                Some(redis_url) => Some(CacheSettings {
                    redis_url: SecretUrl(redis_url),
                    namespace: var("LIFEGUARD_CACHE_NAMESPACE")
                        .unwrap_or_else(|| "lifeguard".into()),
                    staleness: Duration::from_millis(
                        number("LIFEGUARD_CACHE_STALENESS_MS")?.unwrap_or(2000),
                    ),
                }),
            },
        })
    }

    /// The pool's configuration: every server's connections get
    /// `search_path = <schema>, public` (so unqualified models resolve to the service's
    /// schema first, and to the harness's `world`/`fortune` in `public` when those exist)
    /// and `application_name = example-service:<schema>` (visible in `pg_stat_activity`).
    ///
    /// # Errors
    ///
    /// A URL that does not parse.
    pub fn pool_config(&self) -> lifeguard_core::Result<PoolConfig> {
        let with_path = |url: &str| -> lifeguard_core::Result<PgConfig> {
            let c = PgConfig::parse(url)?;
            let path = format!("-c search_path={},public", self.schema);
            let options = match c.get_options() {
                Some(o) if !o.trim().is_empty() => format!("{o} {path}"),
                _ => path,
            };
            let name = format!("example-service:{}", self.schema);
            Ok(c.options(options).application_name(name))
        };
        let mut config = PoolConfig::new(with_path(&self.primary_url)?)
            .max_size(self.pool_max_size)
            .name("example");
        if let Some(depth) = self.pipeline_depth {
            config = config.pipeline_depth(depth);
        }
        for url in &self.replica_urls {
            config = config.replica(with_path(url)?);
        }
        Ok(config)
    }
}

/// A schema name that needs no quoting.
fn valid_schema(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.as_bytes()[0].is_ascii_digit()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vars: &[(&str, &str)], args: &[&str]) -> Result<AppConfig, String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        AppConfig::from_lookup(
            |n| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()),
            args.iter().map(|a| a.to_string()),
        )
    }

    #[test]
    fn pool_size_leaves_room_for_the_monitor() {
        let c = cfg(
            &[
                ("DATABASE_URL", "postgres://u@h/db"),
                ("HTTP_POOL_SIZE", "4"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.pool_max_size, 3);
        let c = cfg(
            &[
                ("DATABASE_URL", "postgres://u@h/db"),
                ("HTTP_POOL_SIZE", "1"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.pool_max_size, 1);
        let c = cfg(&[("LIFEGUARD_PRIMARY_URL", "postgres://u@h/db")], &[]).unwrap();
        assert_eq!(c.pool_max_size, 10);
        assert_eq!(c.listen, DEFAULT_LISTEN);
        assert_eq!(c.schema, "example");
    }

    #[test]
    fn debug_never_shows_a_password() {
        let c = cfg(
            &[
                ("DATABASE_URL", "postgres://u:pw-primary@h/db"),
                ("LIFEGUARD_REPLICA_URLS", "postgres://u:pw-replica@r/db"),
                ("LIFEGUARD_CACHE_REDIS_URL", "redis://:pw-redis@h:6379"),
            ],
            &[],
        )
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("pw-"), "{debug}");
        assert!(debug.contains("postgres://u:***@r/db"), "{debug}");
        assert_eq!(&*c.primary_url, "postgres://u:pw-primary@h/db");
    }

    #[test]
    fn pipeline_depth_defaults_and_zero_lifts_the_limit() {
        let url = ("DATABASE_URL", "postgres://u@h/db");
        let depth = |v: Option<&str>| {
            let mut vars = vec![url];
            vars.extend(v.map(|v| ("LIFEGUARD_PIPELINE_DEPTH", v)));
            cfg(&vars, &[]).map(|c| c.pipeline_depth)
        };
        assert_eq!(depth(None), Ok(Some(DEFAULT_PIPELINE_DEPTH)));
        assert_eq!(depth(Some("3")), Ok(Some(3)));
        assert_eq!(depth(Some("0")), Ok(None));
        assert!(depth(Some("deep")).is_err());
    }

    #[test]
    fn listen_flag_wins_and_bad_input_is_refused() {
        let c = cfg(
            &[
                ("DATABASE_URL", "postgres://u@h/db"),
                ("LIFEGUARD_LISTEN", "0.0.0.0:1"),
            ],
            &["--listen", "127.0.0.1:9"],
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:9");
        assert!(cfg(&[], &[]).is_err());
        assert!(cfg(
            &[("DATABASE_URL", "x"), ("LIFEGUARD_SCHEMA", "Bad-Name")],
            &[]
        )
        .is_err());
        assert!(cfg(&[("DATABASE_URL", "x"), ("HTTP_POOL_SIZE", "four")], &[]).is_err());
        assert!(cfg(&[("DATABASE_URL", "x")], &["--port"]).is_err());
        assert!(cfg(&[("DATABASE_URL", "x"), ("LIFEGUARD_WORKERS", "0")], &[]).is_err());
    }

    #[test]
    fn one_scheduler_thread_unless_told() {
        assert_eq!(cfg(&[("DATABASE_URL", "x")], &[]).unwrap().workers, 1);
        let c = cfg(&[("DATABASE_URL", "x"), ("LIFEGUARD_WORKERS", "4")], &[]).unwrap();
        assert_eq!(c.workers, 4);
        let server = |v| cfg(&[("DATABASE_URL", "x"), ("LIFEGUARD_HTTP_SERVER", v)], &[]);
        assert_eq!(
            server("minihttp").unwrap().http_server,
            HttpServer::MiniHttp
        );
        assert_eq!(
            server("lifeguard").unwrap().http_server,
            HttpServer::Lifeguard
        );
        assert!(server("hyper").is_err());
    }

    #[test]
    fn connections_get_the_search_path() {
        let c = cfg(
            &[
                ("DATABASE_URL", "postgres://u@h/db"),
                ("LIFEGUARD_SCHEMA", "t1"),
            ],
            &[],
        )
        .unwrap();
        c.pool_config().unwrap().validate().unwrap();
    }
}
