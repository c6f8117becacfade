//! Issue 16 point 6: statement logging as sqlx and SeaORM users expect. The pool's
//! `db.statement` span carries the SQL text and never a parameter value, statements over the
//! slow-statement threshold are logged once at WARN with what is needed to find them, and the
//! statement-duration histogram counts by operation.
//!
//! The capture is a minimal `tracing` subscriber of the test's own, installed per test with
//! `with_default`, so parallel tests do not see each other's events. Pool calls from the test
//! thread run their statement telemetry on that thread.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lifeguard_core::pool::{Pool, PoolConfig};
use lifeguard_core::Executor;
use lifeguard_tests::pg::{init, scratch_table};
use lifeguard_tests::pool::{cfg, metrics_text, text_metric};
use lifeguard_tests::{pg_port, primary_url, unique_name};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// A span or an event as the capture saw it.
#[derive(Debug, Clone)]
struct Seen {
    name: String,
    target: String,
    level: Level,
    fields: BTreeMap<String, String>,
}

#[derive(Default)]
struct Log {
    spans: Vec<Seen>,
    events: Vec<Seen>,
}

/// Records every span (with the fields recorded later) and every event.
#[derive(Clone, Default)]
struct Capture {
    log: Arc<Mutex<Log>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = BTreeMap::new();
        span.record(&mut Fields(&mut fields));
        let meta = span.metadata();
        let mut log = self.log.lock().unwrap();
        log.spans.push(Seen {
            name: meta.name().to_owned(),
            target: meta.target().to_owned(),
            level: *meta.level(),
            fields,
        });
        // Ids start at 1; span `n` is `spans[n - 1]`.
        Id::from_u64(log.spans.len() as u64)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut log = self.log.lock().unwrap();
        if let Some(seen) = log.spans.get_mut(span.into_u64() as usize - 1) {
            values.record(&mut Fields(&mut seen.fields));
        }
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let meta = event.metadata();
        self.log.lock().unwrap().events.push(Seen {
            name: meta.name().to_owned(),
            target: meta.target().to_owned(),
            level: *meta.level(),
            fields,
        });
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

impl Capture {
    /// Runs `f` with this capture as the thread's subscriber.
    fn during<T>(&self, f: impl FnOnce() -> T) -> T {
        tracing::subscriber::with_default(self.clone(), f)
    }

    fn statement_spans(&self) -> Vec<Seen> {
        let log = self.log.lock().unwrap();
        log.spans
            .iter()
            .filter(|s| s.name == "db.statement")
            .cloned()
            .collect()
    }

    fn slow_warnings(&self) -> Vec<Seen> {
        let log = self.log.lock().unwrap();
        log.events
            .iter()
            .filter(|e| e.target == "lifeguard::statement" && e.level == Level::WARN)
            .cloned()
            .collect()
    }

    /// Every field value of every span and event.
    fn all_values(&self) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.spans
            .iter()
            .chain(&log.events)
            .flat_map(|s| s.fields.values().cloned())
            .collect()
    }
}

fn pool_with(config: impl FnOnce(PoolConfig) -> PoolConfig) -> Pool {
    init();
    let base = PoolConfig::new(cfg(&primary_url())).name(unique_name("stmt_log"));
    Pool::connect(config(base)).expect("pool")
}

#[test]
fn the_statement_span_carries_the_sql_and_no_parameter_value() {
    let pool = pool_with(|c| c);
    let capture = Capture::default();
    let sql = "SELECT $1::text AS secret_column";
    let secret = "s3cr3t-parameter-value";
    let rows = capture.during(|| pool.query(sql, &[&secret]).expect("query"));
    assert_eq!(rows[0].get::<_, String>(0), secret);

    let spans = capture.statement_spans();
    let span = spans
        .iter()
        .find(|s| s.fields.get("db.query.text").map(String::as_str) == Some(sql))
        .unwrap_or_else(|| panic!("no db.statement span with the SQL text: {spans:?}"));
    assert_eq!(span.fields["db.operation.name"], "select");
    assert_eq!(span.fields["db.system"], "postgresql");
    assert_eq!(
        span.fields["server.address"],
        format!("127.0.0.1:{}", pg_port())
    );
    let leaked: Vec<_> = capture
        .all_values()
        .into_iter()
        .filter(|v| v.contains(secret))
        .collect();
    assert!(
        leaked.is_empty(),
        "a parameter value was recorded: {leaked:?}"
    );
}

#[test]
fn a_statement_over_the_threshold_is_logged_once_at_warn() {
    let threshold = Duration::from_millis(200);
    let pool = pool_with(|c| c.slow_statement_threshold(Some(threshold)));
    pool.query("SELECT 1", &[]).expect("warm up the connection");
    let capture = Capture::default();
    capture.during(|| {
        pool.query("SELECT pg_sleep(0.01)", &[]).expect("fast");
        pool.execute("SELECT pg_sleep(0.3)", &[]).expect("slow");
    });
    let warnings = capture.slow_warnings();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    let w = &warnings[0].fields;
    assert_eq!(w["db.query.text"], "SELECT pg_sleep(0.3)");
    assert_eq!(w["db.operation.name"], "select");
    assert_eq!(w["server.address"], format!("127.0.0.1:{}", pg_port()));
    assert_eq!(w["db.query.truncated"], "false");
    let secs: f64 = w["elapsed_secs"].parse().expect("seconds");
    assert!((0.3..5.0).contains(&secs), "{secs}");
    assert!(w["message"].contains("slow statement"), "{w:?}");
}

#[test]
fn no_statement_is_logged_without_a_threshold_and_long_sql_is_cut() {
    let off = pool_with(|c| c.slow_statement_threshold(None));
    let capture = Capture::default();
    capture.during(|| off.query("SELECT pg_sleep(0.05)", &[]).expect("query"));
    assert!(capture.slow_warnings().is_empty());

    let pool = pool_with(|c| c.slow_statement_threshold(Some(Duration::from_millis(1))));
    let long = format!("SELECT pg_sleep(0.01) /* {} */", "x".repeat(5000));
    let capture = Capture::default();
    capture.during(|| pool.query(&long, &[]).expect("query"));
    let warnings = capture.slow_warnings();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    let text = &warnings[0].fields["db.query.text"];
    assert_eq!(text.len(), 2048);
    assert!(long.starts_with(text.as_str()));
    assert_eq!(warnings[0].fields["db.query.truncated"], "true");
}

#[test]
fn the_duration_histogram_counts_statements_by_operation() {
    let pool = pool_with(|c| c);
    let table = scratch_table(&pool, "v int");
    for _ in 0..3 {
        pool.query("SELECT 1", &[]).expect("select");
    }
    for v in 0..2i32 {
        pool.execute(&format!("INSERT INTO {} (v) VALUES ($1)", &*table), &[&v])
            .expect("insert");
    }
    pool.execute(
        &format!("  /* hint */ UPDATE {} SET v = v + 1", &*table),
        &[],
    )
    .expect("update");
    pool.execute("SET LOCAL work_mem = '8MB'", &[])
        .expect("set");
    let text = metrics_text(&pool);
    let count = |op: &str| {
        text_metric(
            &text,
            "lifeguard_query_duration_seconds_count",
            &[("role", "primary"), ("operation", op)],
        )
    };
    assert_eq!(count("select"), 3.0, "{text}");
    assert_eq!(count("insert"), 2.0);
    assert_eq!(count("update"), 1.0);
    assert_eq!(count("create"), 1.0);
    assert_eq!(count("set"), 1.0);
    assert_eq!(count("delete"), 0.0);
    // Only operations that ran have series, each a keyword of the fixed set.
    for line in text
        .lines()
        .filter(|l| l.starts_with("lifeguard_query_duration_seconds_count"))
    {
        assert!(line.contains("operation=\""), "{line}");
    }
}
