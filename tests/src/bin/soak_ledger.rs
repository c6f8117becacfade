//! The ledger client of `scripts/soak`, in two modes.
//!
//! `soak_ledger write ADDR BOOK_IDS RUN WRITERS INTERVAL_MS STOP_FILE OUT` runs `WRITERS` threads,
//! each pausing `INTERVAL_MS` between writes and sending `POST /books/{id}/reviews` over one keep-alive connection (reopened after an error)
//! with a unique marker `RUN-w<writer>-<seq>` as the review's body, until `STOP_FILE` exists.
//! A write is never retried, so a marker that is in the table twice was written twice by the
//! service. Each attempt becomes one line of `OUT`: `start_ms marker outcome latency_us`, where
//! `outcome` is the HTTP status or `conn:<what>` for a connection error.
//!
//! `soak_ledger report LEDGER PHASES COUNTS` prints errors and latencies per phase and checks the
//! ledger against `COUNTS` (`marker|count` lines from the table): a 2xx marker must be there
//! exactly once, a 4xx marker not at all, any other at most once. `PHASES` has one `start_ms name`
//! line per phase; an attempt belongs to the last phase started before it. Phases other than
//! `before` and `after` are faults and make up "during". Exits 1 when the ledger check fails.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Past this, an answer counts as lost (`conn:timeout`); well above the service's deadlines.
const IO_TIMEOUT: Duration = Duration::from_secs(15);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["write", addr, books, run, writers, interval, stop, out] => {
            write_mode(addr, books, run, writers, interval, stop, out)
        }
        ["report", ledger, phases, counts] => report_mode(ledger, phases, counts),
        _ => {
            eprintln!(
                "usage: soak_ledger write ADDR BOOK_IDS RUN WRITERS INTERVAL_MS STOP_FILE OUT\n       soak_ledger report LEDGER PHASES COUNTS"
            );
            2
        }
    };
    std::process::exit(code);
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

// ------------------------------------------------------------------ write --

fn write_mode(
    addr: &str,
    books: &str,
    run: &str,
    writers: &str,
    interval: &str,
    stop: &str,
    out: &str,
) -> i32 {
    let books: Vec<i64> = books
        .split(',')
        .filter_map(|b| b.trim().parse().ok())
        .collect();
    let (Ok(writers), Ok(interval)) = (writers.parse::<usize>(), interval.parse::<u64>()) else {
        eprintln!("soak_ledger: WRITERS and INTERVAL_MS must be numbers");
        return 2;
    };
    let interval = Duration::from_millis(interval);
    if books.is_empty() || writers == 0 {
        eprintln!("soak_ledger: need at least one book id and one writer");
        return 2;
    }
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let (addr, run, stop) = (addr.to_string(), run.to_string(), stop.to_string());
            let book = books[w % books.len()];
            std::thread::spawn(move || {
                writer(
                    &addr,
                    book,
                    &format!("{run}-w{w}"),
                    interval,
                    Path::new(&stop),
                )
            })
        })
        .collect();
    let mut lines = Vec::new();
    for h in handles {
        match h.join() {
            Ok(mut l) => lines.append(&mut l),
            Err(_) => {
                eprintln!("soak_ledger: a writer thread panicked");
                return 1;
            }
        }
    }
    let written = fs::File::create(out).and_then(|f| {
        let mut f = BufWriter::new(f);
        for l in &lines {
            writeln!(f, "{l}")?;
        }
        f.flush()
    });
    match written {
        Ok(()) => {
            println!("soak_ledger: {} writes recorded in {out}", lines.len());
            0
        }
        Err(e) => {
            eprintln!("soak_ledger: writing {out}: {e}");
            1
        }
    }
}

/// One writer's attempts, as ledger lines.
fn writer(addr: &str, book: i64, prefix: &str, interval: Duration, stop: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut seq = 0u64;
    while !stop.exists() {
        seq += 1;
        let marker = format!("{prefix}-{seq}");
        let body = format!(r#"{{"reviewer":"soak","rating":4,"body":"{marker}"}}"#);
        let req = format!(
            "POST /books/{book}/reviews HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let start_ms = now_ms();
        let t0 = Instant::now();
        let outcome = post(addr, &mut conn, req.as_bytes());
        let us = t0.elapsed().as_micros();
        let outcome = match outcome {
            Ok((status, keep)) => {
                if !keep {
                    conn = None;
                }
                status.to_string()
            }
            Err(what) => {
                conn = None;
                // Refused connects come back at once: do not spin through thousands of markers.
                std::thread::sleep(Duration::from_millis(50));
                format!("conn:{what}")
            }
        };
        lines.push(format!("{start_ms} {marker} {outcome} {us}"));
        std::thread::sleep(interval);
    }
    lines
}

/// Sends one request (connecting first when needed); the status and whether the connection
/// may be reused, or what went wrong.
fn post(
    addr: &str,
    conn: &mut Option<BufReader<TcpStream>>,
    req: &[u8],
) -> Result<(u16, bool), &'static str> {
    if conn.is_none() {
        let s = TcpStream::connect(addr).map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "refused",
            _ => "connect",
        })?;
        s.set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|_| "connect")?;
        s.set_write_timeout(Some(IO_TIMEOUT))
            .map_err(|_| "connect")?;
        s.set_nodelay(true).map_err(|_| "connect")?;
        *conn = Some(BufReader::new(s));
    }
    let Some(r) = conn.as_mut() else {
        return Err("connect");
    };
    r.get_mut().write_all(req).map_err(io_kind)?;
    let mut status_line = String::new();
    if r.read_line(&mut status_line).map_err(io_kind)? == 0 {
        return Err("eof");
    }
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("bad-response")?;
    let (mut len, mut keep) = (0usize, !status_line.starts_with("HTTP/1.0"));
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).map_err(io_kind)? == 0 {
            return Err("eof");
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "content-length" {
                len = value.parse().map_err(|_| "bad-response")?;
            } else if name == "connection" && value.eq_ignore_ascii_case("close") {
                keep = false;
            } else if name == "transfer-encoding" {
                // The service frames with Content-Length; anything else cannot be skipped here.
                keep = false;
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).map_err(io_kind)?;
    Ok((status, keep))
}

fn io_kind(e: std::io::Error) -> &'static str {
    use std::io::ErrorKind::*;
    match e.kind() {
        WouldBlock | TimedOut => "timeout",
        ConnectionReset => "reset",
        BrokenPipe => "broken-pipe",
        UnexpectedEof => "eof",
        _ => "io",
    }
}

// ----------------------------------------------------------------- report --

struct Attempt {
    start_ms: u64,
    marker: String,
    outcome: String,
    us: u64,
}

fn read_lines(path: &str) -> Result<Vec<String>, String> {
    fs::read_to_string(path)
        .map(|s| s.lines().map(str::to_string).collect())
        .map_err(|e| format!("reading {path}: {e}"))
}

fn report_mode(ledger: &str, phases: &str, counts: &str) -> i32 {
    match report(ledger, phases, counts) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("soak_ledger: {e}");
            1
        }
    }
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

fn latency_line(name: &str, lat: &mut [u64], errors: &BTreeMap<String, usize>) -> String {
    lat.sort_unstable();
    let errs: Vec<String> = errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "  {name:<16} {:>7} writes  p50 {:>8.1} ms  p99 {:>8.1} ms  max {:>8.1} ms  errors: {}",
        lat.len(),
        pct(lat, 0.50),
        pct(lat, 0.99),
        lat.last().map_or(0.0, |&m| m as f64 / 1000.0),
        if errs.is_empty() {
            "none".to_string()
        } else {
            errs.join(" ")
        }
    )
}

fn report(ledger: &str, phases: &str, counts: &str) -> Result<bool, String> {
    let mut attempts = Vec::new();
    for l in read_lines(ledger)? {
        let f: Vec<&str> = l.split(' ').collect();
        let [start, marker, outcome, us] = f[..] else {
            return Err(format!("bad ledger line {l:?}"));
        };
        attempts.push(Attempt {
            start_ms: start
                .parse()
                .map_err(|_| format!("bad ledger line {l:?}"))?,
            marker: marker.to_string(),
            outcome: outcome.to_string(),
            us: us.parse().map_err(|_| format!("bad ledger line {l:?}"))?,
        });
    }
    let mut phase_starts: Vec<(u64, String)> = Vec::new();
    for l in read_lines(phases)? {
        if let Some((t, name)) = l.split_once(' ') {
            phase_starts.push((
                t.parse().map_err(|_| format!("bad phase line {l:?}"))?,
                name.to_string(),
            ));
        }
    }
    phase_starts.sort();
    let mut in_table: HashMap<String, u64> = HashMap::new();
    for l in read_lines(counts)? {
        if let Some((m, n)) = l.split_once('|') {
            in_table.insert(
                m.to_string(),
                n.parse().map_err(|_| format!("bad count line {l:?}"))?,
            );
        }
    }

    // Per phase, in order of first appearance; and the three groups.
    let mut order: Vec<String> = Vec::new();
    let mut per_phase: HashMap<String, (Vec<u64>, BTreeMap<String, usize>)> = HashMap::new();
    let mut groups: BTreeMap<&str, (Vec<u64>, BTreeMap<String, usize>)> = BTreeMap::new();
    for a in &attempts {
        let phase = phase_starts
            .iter()
            .rev()
            .find(|(t, _)| *t <= a.start_ms)
            .map_or("before", |(_, n)| n.as_str())
            .to_string();
        let group = match phase.as_str() {
            "before" => "1 before",
            "after" => "3 after",
            _ => "2 during",
        };
        if !per_phase.contains_key(&phase) {
            order.push(phase.clone());
        }
        let ok = a.outcome.starts_with('2');
        for (lat, errs) in [
            per_phase.entry(phase).or_default(),
            groups.entry(group).or_default(),
        ] {
            lat.push(a.us);
            if !ok {
                *errs.entry(a.outcome.clone()).or_default() += 1;
            }
        }
    }
    println!("ledger writes (POST /books/{{id}}/reviews) per phase:");
    for p in &order {
        if let Some((lat, errs)) = per_phase.get_mut(p) {
            println!("{}", latency_line(p, lat, errs));
        }
    }
    println!("ledger writes before / during / after the faults:");
    for (g, (lat, errs)) in groups.iter_mut() {
        println!("{}", latency_line(&g[2..], lat, errs));
    }

    // The check: a 2xx marker is in the table exactly once, any other at most once, and the
    // table holds nothing the ledger did not send.
    let (mut ok_missing, mut dup, mut refused_committed) = (0, 0, 0);
    let (mut failed_committed, mut failed_absent) = (0, 0);
    let mut bad_examples = Vec::new();
    let mut sent = std::collections::HashSet::new();
    for a in &attempts {
        sent.insert(a.marker.as_str());
        let n = in_table.get(&a.marker).copied().unwrap_or(0);
        if n > 1 {
            dup += 1;
            bad_examples.push(format!(
                "{} ({}) is in the table {n} times",
                a.marker, a.outcome
            ));
        } else if a.outcome.starts_with('2') && n == 0 {
            ok_missing += 1;
            bad_examples.push(format!(
                "{} was answered {} but is not in the table",
                a.marker, a.outcome
            ));
        } else if a.outcome.starts_with('4') && n == 1 {
            // A 4xx is a definite refusal: the service says nothing was written.
            refused_committed += 1;
            bad_examples.push(format!(
                "{} was refused {} but is in the table",
                a.marker, a.outcome
            ));
        } else if !a.outcome.starts_with('2') && n == 1 {
            failed_committed += 1;
        } else if !a.outcome.starts_with('2') {
            failed_absent += 1;
        }
    }
    let strangers: Vec<&String> = in_table
        .keys()
        .filter(|m| !sent.contains(m.as_str()))
        .collect();
    for m in strangers.iter().take(5) {
        bad_examples.push(format!("{m} is in the table but was never sent"));
    }
    let acked = attempts
        .iter()
        .filter(|a| a.outcome.starts_with('2'))
        .count();
    println!(
        "ledger check: {} markers sent, {acked} answered 2xx; {ok_missing} acknowledged but missing, {dup} duplicated, {} in the table but never sent; {refused_committed} refused (4xx) but committed; of {} other failures (5xx, connection errors: outcome unknown): {failed_committed} committed, {failed_absent} absent",
        attempts.len(),
        strangers.len(),
        failed_committed + failed_absent
    );
    for e in bad_examples.iter().take(10) {
        println!("  LEDGER VIOLATION: {e}");
    }
    let pass =
        ok_missing == 0 && dup == 0 && refused_committed == 0 && strangers.is_empty() && acked > 0;
    println!("ledger check: {}", if pass { "PASS" } else { "FAIL" });
    Ok(pass)
}
