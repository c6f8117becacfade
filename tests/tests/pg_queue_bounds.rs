//! What the server sends is bounded on the client side: a flood of `NOTIFY` cannot grow a
//! listener's queue past `notification_queue`, a reply read slowly cannot make the reader
//! buffer more than `reply_buffer`, and a message over `max_message_size` fails the
//! connection with a clear error instead of being buffered.
//!
//! Needs the services: `scripts/services up && eval "$(scripts/services env)"`.

use std::time::{Duration, Instant};

use lifeguard_core::pg::Connection;
use lifeguard_core::{Error, Executor};
use lifeguard_tests::pg::{connect, connect_url, in_coroutine_within};
use lifeguard_tests::{primary_url, unique_name};

/// The primary's URL with extra connection parameters.
fn url_with(params: &str) -> String {
    let url = primary_url();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

/// A second connection floods 5,000 notifications on a channel the listener does not
/// drain: the listener keeps the latest 1,000, counts exactly 4,000 dropped, still answers
/// queries, and draining yields the 1,000 newest in order. Unbounded, the queue held all
/// 5,000.
#[test]
fn a_notify_flood_is_capped_and_the_drops_are_counted() {
    const CAP: usize = 1_000;
    const SENT: usize = 5_000;
    in_coroutine_within(Duration::from_secs(10), || {
        let listener = connect_url(&url_with(&format!("notification_queue={CAP}")));
        let channel = unique_name("flood");
        listener.listen(&channel).expect("LISTEN");
        let sender = connect();
        sender
            .execute(
                "SELECT pg_notify($1, g::text) FROM generate_series(1, $2::int4) g",
                &[&channel, &(SENT as i32)],
            )
            .expect("the flood");
        // Notifications reach the listener's backend asynchronously: each query gives it a
        // chance to forward what it has.
        let until = Instant::now() + Duration::from_secs(5);
        while listener.notifications_dropped() < (SENT - CAP) as u64 && Instant::now() < until {
            let one: i32 = listener
                .query_one("SELECT 1", &[])
                .expect("a query on the listening connection")
                .get(0);
            assert_eq!(one, 1);
            may::coroutine::sleep(Duration::from_millis(20));
        }
        assert_eq!(listener.notifications_dropped(), (SENT - CAP) as u64);
        let two: i32 = listener.query_one("SELECT 2", &[]).expect("query").get(0);
        assert_eq!(two, 2);
        let kept = listener.drain_notifications();
        assert_eq!(kept.len(), CAP, "the queue holds exactly its cap");
        let payloads: Vec<usize> = kept
            .iter()
            .map(|n| n.payload.parse().expect("a numeric payload"))
            .collect();
        let newest: Vec<usize> = (SENT - CAP + 1..=SENT).collect();
        assert_eq!(payloads, newest, "the oldest were dropped");
        assert!(kept.iter().all(|n| n.channel == channel));
        assert_eq!(listener.notifications_dropped(), (SENT - CAP) as u64);
    });
}

/// `COPY ... TO STDOUT` of 200,000 rows of 1,000 bytes (200 MB) read with pauses through a
/// connection with a 1 MiB `reply_buffer`: the bytes the process holds for callers never
/// go much past the cap (one 64 KiB read and the other tests' small replies on top), and
/// every byte arrives. Unbounded, a pause let the reader buffer tens of megabytes.
#[test]
fn a_slow_copy_out_reader_holds_back_the_server_instead_of_buffering() {
    const CAP: usize = 1 << 20;
    const ROWS: usize = 200_000;
    in_coroutine_within(Duration::from_secs(20), || {
        let mut conn = connect_url(&url_with(&format!("reply_buffer={CAP}")));
        let mut copy = conn
            .copy_out(&format!(
                "COPY (SELECT repeat('x', 1000) FROM generate_series(1, {ROWS})) TO STDOUT"
            ))
            .expect("copy_out");
        let (mut bytes, mut lines, mut chunks, mut peak) = (0usize, 0usize, 0usize, 0usize);
        while let Some(chunk) = copy.next_chunk().expect("a chunk") {
            bytes += chunk.len();
            lines += chunk.iter().filter(|&&b| b == b'\n').count();
            chunks += 1;
            if chunks % 40_000 == 1 {
                // A slow consumer: the server goes on sending meanwhile.
                may::coroutine::sleep(Duration::from_millis(300));
            }
            peak = peak.max(Connection::buffered_reply_bytes());
        }
        assert_eq!(lines, ROWS);
        assert_eq!(bytes, ROWS * 1001);
        assert!(
            peak < CAP + 512 * 1024,
            "the process held {peak} bytes for a reply capped at {CAP}"
        );
        drop(copy);
        let after: i32 = conn.query_one("SELECT 3", &[]).expect("query").get(0);
        assert_eq!(after, 3);
    });
}

/// A reply held back for a slow caller is this side's silence, not the server's: with the
/// liveness probe at 1 s, a `COPY TO STDOUT` whose reader pauses for 4 s mid-way (the
/// backend meanwhile blocked on its write to us) keeps its connection and all its data.
/// Taken for a dead server, the watch found the backend in `ClientWrite` and failed it.
#[test]
fn a_held_back_reply_is_not_taken_for_a_dead_server() {
    const ROWS: usize = 20_000;
    in_coroutine_within(Duration::from_secs(15), || {
        let mut conn = connect_url(&url_with("reply_buffer=65536"));
        conn.set_liveness_probe(Some(Duration::from_secs(1)));
        let mut copy = conn
            .copy_out(&format!(
                "COPY (SELECT repeat('x', 1000) FROM generate_series(1, {ROWS})) TO STDOUT"
            ))
            .expect("copy_out");
        let (mut lines, mut chunks) = (0usize, 0usize);
        while let Some(chunk) = copy.next_chunk().expect("a chunk: the connection stands") {
            lines += chunk.iter().filter(|&&b| b == b'\n').count();
            chunks += 1;
            if chunks == 100 {
                may::coroutine::sleep(Duration::from_secs(4));
            }
        }
        assert_eq!(lines, ROWS);
        drop(copy);
        assert!(!conn.is_broken());
    });
}

/// Callers pipelined on one shared connection with a small `reply_buffer`, each reading a
/// 5 MB result while others wait behind it, all get their complete rows: the reader waits
/// only for the caller whose reply it is reading, and that caller is always reading.
#[test]
fn pipelined_callers_with_large_replies_all_finish() {
    const ROWS: i64 = 5_000;
    in_coroutine_within(Duration::from_secs(20), || {
        let conn = std::sync::Arc::new(connect_url(&url_with("reply_buffer=65536")));
        let callers: Vec<_> = (0..6)
            .map(|i| {
                let conn = conn.clone();
                may::go!(move || {
                    if i % 2 == 0 {
                        conn.query(
                            "SELECT repeat('x', 1000) FROM generate_series(1, $1::int8)",
                            &[&ROWS],
                        )
                        .map(|rows| rows.len() as i64)
                    } else {
                        conn.query_one("SELECT $1::int8", &[&(i as i64)])
                            .map(|r| r.get::<_, i64>(0))
                    }
                })
            })
            .collect();
        for (i, c) in callers.into_iter().enumerate() {
            let got = c.join().expect("a caller panicked").expect("its query");
            assert_eq!(got, if i % 2 == 0 { ROWS } else { i as i64 });
        }
        assert_eq!(conn.in_flight(), 0);
    });
}

/// With `max_message_size` at 64 KiB a row of 100,000 bytes fails the connection with a
/// protocol error naming the cap, before the row is buffered; smaller rows pass. Without the
/// setting the row was accepted (the cap was a fixed 1 GiB).
#[test]
fn a_message_over_max_message_size_fails_the_connection_clearly() {
    in_coroutine_within(Duration::from_secs(10), || {
        let conn = connect_url(&url_with("max_message_size=65536"));
        let small: String = conn
            .query_one("SELECT repeat('x', 60000)", &[])
            .expect("a row under the cap")
            .get(0);
        assert_eq!(small.len(), 60_000);
        let r = conn.query_one("SELECT repeat('x', 100000)", &[]);
        match r {
            Err(Error::Protocol(m)) => {
                assert!(m.contains("exceeds max_message_size (65536 bytes)"), "{m}")
            }
            other => panic!("expected a protocol error, got {other:?}"),
        }
        assert!(conn.is_broken(), "the connection is failed");
        assert!(conn.query_one("SELECT 1", &[]).is_err());
    });
}
