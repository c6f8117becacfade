//! A tour of the coroutine-native client: pipelined queries from many coroutines on one
//! connection, a transaction, COPY, and LISTEN/NOTIFY.
//!
//! ```sh
//! scripts/services up && eval "$(scripts/services env)"
//! cargo run -p lifeguard-core --example pg_tour
//! ```

use std::sync::Arc;
use std::time::Duration;

use lifeguard_core::pg::Connection;
use lifeguard_core::{Error, Executor, Result};

fn main() -> Result<()> {
    // Stack size is in words; 32 KiB words leaves room for query building and decoding.
    may::config().set_workers(2).set_stack_size(0x8000);
    let url = std::env::var("LIFEGUARD_PRIMARY_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:55432/lifeguard".into());

    // One connection, 1,000 coroutines: their statements are pipelined on the socket.
    let conn = Arc::new(Connection::open(&url)?);
    let workers: Vec<_> = (0..1000i32)
        .map(|i| {
            let conn = conn.clone();
            may::go!(move || -> Result<i32> {
                conn.query_one("SELECT $1::int4 * 2", &[&i])?.try_get(0)
            })
        })
        .collect();
    let mut sum = 0i64;
    for w in workers {
        sum += i64::from(w.join().expect("worker panicked")?);
    }
    println!("1,000 pipelined queries, sum of results {sum}");

    // Exclusive work borrows a connection of its own.
    let mut conn = Connection::open(&url)?;
    conn.batch_execute("CREATE TEMP TABLE tour (id int PRIMARY KEY, note text)")?;
    conn.transaction(|tx| {
        tx.execute("INSERT INTO tour VALUES (1, 'committed')", &[])?;
        Ok(())
    })?;
    let failed: Result<()> = conn.transaction(|tx| {
        tx.execute("INSERT INTO tour VALUES (2, 'rolled back')", &[])?;
        tx.execute("INSERT INTO tour VALUES (1, 'duplicate')", &[])?;
        Ok(())
    });
    if let Err(Error::UniqueViolation { constraint, .. }) = &failed {
        println!("rolled back on {constraint:?}");
    }

    let mut copy = conn.copy_in("COPY tour FROM STDIN")?;
    for id in 10..20 {
        copy.send(format!("{id}\tcopied\n").as_bytes())?;
    }
    println!("copied {} rows", copy.finish()?);

    conn.listen("tour")?;
    conn.execute("SELECT pg_notify('tour', 'hello')", &[])?;
    if let Some(n) = conn.next_notification(Duration::from_secs(1))? {
        println!("notification on {}: {}", n.channel, n.payload);
    }

    let late = conn
        .timeout(Duration::from_millis(100))
        .execute("SELECT pg_sleep(2)", &[]);
    println!(
        "deadline: {}",
        late.map(|_| "finished".to_owned())
            .unwrap_or_else(|e| e.to_string())
    );
    Ok(())
}
