//! The command line of `lifeguard-bench`: the harness's contract plus Lifeguard's own flags.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Shared, pipelined connections used directly.
    Raw,
    /// The same statements through a `Pool` (primary only, `max_size` = `--connections`):
    /// routing, metrics and spans included.
    Pool,
    /// Models and the query builder on the raw mode's shared connections.
    Orm,
    /// `point` through the ORM and the Redis cache, on the pool of `Pool`.
    Cached,
}

impl Mode {
    pub(crate) fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "raw" => Ok(Mode::Raw),
            "pool" => Ok(Mode::Pool),
            "orm" => Ok(Mode::Orm),
            "cached" => Ok(Mode::Cached),
            other => Err(format!(
                "unknown --mode {other:?} (expected raw, pool, orm or cached)"
            )),
        }
    }

    pub(crate) fn peer_name(self) -> &'static str {
        match self {
            Mode::Raw => "lifeguard-raw",
            Mode::Pool => "lifeguard-pool",
            Mode::Orm => "lifeguard-orm",
            Mode::Cached => "lifeguard-cached",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Workload {
    Point,
    Fortunes,
    Update,
    InsertBatch,
    Eager,
}

impl Workload {
    pub(crate) const ALL: [Workload; 5] = [
        Workload::Point,
        Workload::Fortunes,
        Workload::Update,
        Workload::InsertBatch,
        Workload::Eager,
    ];

    /// Whether the workload's statements write.
    pub(crate) fn writes(self) -> bool {
        matches!(self, Workload::Update | Workload::InsertBatch)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::Point => "point",
            Workload::Fortunes => "fortunes",
            Workload::Update => "update",
            Workload::InsertBatch => "insert_batch",
            Workload::Eager => "eager",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Workload, String> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| format!("unknown workload {s:?}"))
    }
}

// No `Debug`: the URLs may carry passwords.
#[derive(Clone)]
pub(crate) struct Args {
    pub(crate) mode: Mode,
    pub(crate) url: String,
    pub(crate) workload: Workload,
    pub(crate) concurrency: usize,
    pub(crate) connections: usize,
    pub(crate) seconds: f64,
    /// `--mode pool`: a replica to add to the pool.
    pub(crate) replica: Option<String>,
    /// `--mode pool`: connections per server (default `--connections` - 1, as the monitor
    /// holds one).
    pub(crate) pool_size: Option<usize>,
    /// `--mode pool`: requests in flight per shared connection (`PoolConfig::pipeline_depth`).
    pub(crate) pipeline_depth: Option<usize>,
    /// `may` scheduler threads (default 2, one per core of the benchmark machine).
    pub(crate) workers: usize,
    /// `--mode cached`: the Redis server.
    pub(crate) redis: Option<String>,
}

impl Args {
    /// `--flag value` or `--flag=value`; `--mode`, `--url` and `--workload` are required, the
    /// rest default to concurrency 1, 4 connections, 5 seconds and 2 scheduler threads.
    pub(crate) fn parse(argv: impl IntoIterator<Item = String>) -> Result<Args, String> {
        let (mut mode, mut url, mut workload) = (None, None, None);
        let (mut concurrency, mut connections, mut seconds) = (1, 4, 5.0);
        let (mut replica, mut pool_size, mut pipeline_depth, mut workers) = (None, None, None, 2);
        let mut redis = std::env::var("LIFEGUARD_REDIS_URL").ok();
        let mut argv = argv.into_iter();
        while let Some(arg) = argv.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
                None => (arg, None),
            };
            let value = match inline {
                Some(v) => v,
                None => argv.next().ok_or_else(|| format!("{flag} needs a value"))?,
            };
            match flag.as_str() {
                "--mode" => mode = Some(Mode::parse(&value)?),
                "--url" => url = Some(value),
                "--workload" => workload = Some(Workload::parse(&value)?),
                "--concurrency" => concurrency = positive(&flag, &value)?,
                "--connections" => connections = positive(&flag, &value)?,
                "--replica" => replica = Some(value),
                "--pool-size" => pool_size = Some(positive(&flag, &value)?),
                "--pipeline-depth" => pipeline_depth = Some(positive(&flag, &value)?),
                "--workers" => workers = positive(&flag, &value)?,
                "--redis" => redis = Some(value),
                "--seconds" => {
                    seconds = value
                        .parse::<f64>()
                        .ok()
                        .filter(|s| s.is_finite() && *s > 0.0)
                        .ok_or_else(|| {
                            format!("--seconds wants a positive number, got {value:?}")
                        })?
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(Args {
            mode: mode.ok_or("--mode is required")?,
            url: url.ok_or("--url is required")?,
            workload: workload.ok_or("--workload is required")?,
            concurrency,
            connections,
            seconds,
            replica,
            pool_size,
            pipeline_depth,
            workers,
            redis,
        })
    }
}

fn positive(flag: &str, raw: &str) -> Result<usize, String> {
    raw.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{flag} wants a positive integer, got {raw:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Args, String> {
        Args::parse(line.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn parses_the_contract() {
        let a = parse("--mode raw --url postgres://x/db --workload=eager --concurrency 32 --connections=4 --seconds 2.5")
            .unwrap();
        assert_eq!(
            (a.mode, a.workload, a.concurrency, a.connections),
            (Mode::Raw, Workload::Eager, 32, 4)
        );
        assert_eq!(a.seconds, 2.5);
        assert!(parse("--mode sql --url u --workload point").is_err());
        assert_eq!(
            parse("--mode pool --url u --workload point").unwrap().mode,
            Mode::Pool
        );
        assert!(parse("--mode raw --url u --workload nope").is_err());
        assert!(parse("--url u --workload point").is_err());
        assert!(parse("--mode raw --url u --workload point --concurrency 0").is_err());
    }
}
