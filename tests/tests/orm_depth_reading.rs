//! Reading at scale against the real primary: offset pagination, keyset cursors with ties
//! (forwards and backwards), and streaming through a server-side cursor with flat memory.
//!
//! Tables live in the schema `orm_depth`; tests isolate themselves by a unique `tag`.

use std::time::Instant;

use lifeguard_core::model::ActiveValue::Set;
use lifeguard_core::model::{LifeModel, LifeRecord};
use lifeguard_core::pg::{Connection, TransactionStatus};
use lifeguard_core::pool::{Pool, PoolConfig};
use lifeguard_core::query::ColumnExpr;
use lifeguard_core::{Error, Executor, LifeModel, LifeRecord};
use lifeguard_tests::pg;
use lifeguard_tests::pool::metric;

const DDL: &str = r#"
SELECT pg_advisory_xact_lock(4243);
CREATE SCHEMA IF NOT EXISTS orm_depth;
CREATE TABLE IF NOT EXISTS orm_depth.items (
  id bigserial PRIMARY KEY,
  tag text NOT NULL,
  grp int4 NOT NULL,
  name text NOT NULL,
  score int4 NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS items_tag_grp_idx ON orm_depth.items (tag, grp, id);
CREATE OR REPLACE VIEW orm_depth.series AS
  SELECT g::int8 AS id, md5(g::text) AS label, (g % 7)::int4 AS bucket
  FROM generate_series(1, 1000000) AS g;
"#;

fn connect() -> Connection {
    static ONCE: pg::SchemaOnce = pg::SchemaOnce::new();
    pg::connect_with_schema(&ONCE, DDL)
}

/// `orm_depth.items`.
#[derive(Debug, Clone, PartialEq, LifeModel, LifeRecord)]
#[lifeguard(table_name = "items", schema_name = "orm_depth")]
pub struct Item {
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    pub tag: String,
    pub grp: i32,
    pub name: String,
    pub score: i32,
}

/// `orm_depth.series`: a view of a million generated rows.
#[derive(Debug, Clone, LifeModel, LifeRecord)]
#[lifeguard(table_name = "series", schema_name = "orm_depth")]
pub struct Series {
    #[lifeguard(primary_key)]
    pub id: i64,
    pub label: String,
    pub bucket: i32,
}

/// Inserts `n` items tagged `tag`, `grp = i % groups` (many ties), names `n{i}`.
fn seed(conn: &Connection, tag: &str, n: usize, groups: i32) -> Vec<Item> {
    ItemRecord::insert_many((0..n).map(|i| ItemRecord {
        tag: Set(tag.to_owned()),
        grp: Set(i as i32 % groups),
        name: Set(format!("n{:03}", (n - i) % 5)),
        ..Default::default()
    }))
    .exec_with_returning(conn)
    .unwrap()
}

fn ids(items: &[Item]) -> Vec<i64> {
    items.iter().map(|i| i.id).collect()
}

#[test]
fn paginate_counts_pages_and_orders_by_key_without_an_order() {
    let conn = connect();
    let tag = lifeguard_tests::unique_name("pg_cnt");
    let seeded = seed(&conn, &tag, 23, 3);
    let mut pages = Item::find()
        .filter(ItemColumn::Tag.eq(tag.clone()))
        .paginate(&conn, 5);
    assert_eq!(pages.num_items().unwrap(), 23);
    assert_eq!(pages.num_pages().unwrap(), 5);
    let both = pages.num_items_and_pages().unwrap();
    assert_eq!((both.number_of_items, both.number_of_pages), (23, 5));
    let sizes: Vec<usize> = (0..6).map(|p| pages.fetch_page(p).unwrap().len()).collect();
    assert_eq!(sizes, [5, 5, 5, 5, 3, 0]);
    // No order given: key order, so pages concatenate to the ids in insert order.
    let mut all = Vec::new();
    assert_eq!(pages.cur_page(), 0);
    assert_eq!(ids(&pages.fetch().unwrap()), ids(&seeded[..5]));
    while let Some(page) = pages.fetch_and_next().unwrap() {
        all.extend(page);
    }
    assert_eq!(pages.cur_page(), 5);
    assert_eq!(ids(&all), ids(&seeded));
    // The iterator walks from the current page on.
    pages.set_page(3);
    let rest: Vec<Vec<Item>> = pages.by_ref().collect::<Result<_, _>>().unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(ids(&rest.concat()), ids(&seeded[15..]));
    // Page size 0 is 1; an empty result has no pages.
    let none = Item::find()
        .filter(ItemColumn::Tag.eq(format!("{tag}-none")))
        .paginate(&conn, 0);
    assert_eq!(none.page_size(), 1);
    assert_eq!(none.num_pages().unwrap(), 0);
    assert!(none.fetch().unwrap().is_empty());
}

#[test]
fn paginate_over_tied_sort_values_never_repeats_or_skips() {
    let conn = connect();
    let tag = lifeguard_tests::unique_name("pg_tie");
    seed(&conn, &tag, 40, 2);
    let expected = Item::find()
        .filter(ItemColumn::Tag.eq(tag.clone()))
        .order_by_desc(ItemColumn::Grp)
        .order_by_asc(ItemColumn::Id)
        .all(&conn)
        .unwrap();
    let pages: Vec<Vec<Item>> = Item::find()
        .filter(ItemColumn::Tag.eq(tag.clone()))
        .order_by_desc(ItemColumn::Grp)
        .paginate(&conn, 6)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(pages.len(), 7);
    assert_eq!(ids(&pages.concat()), ids(&expected));
}

#[test]
fn cursor_pages_forwards_and_backwards_over_duplicates() {
    let conn = connect();
    let tag = lifeguard_tests::unique_name("cur_dup");
    seed(&conn, &tag, 50, 3);
    let base = || {
        Item::find()
            .filter(ItemColumn::Tag.eq(tag.clone()))
            .cursor_by(ItemColumn::Grp)
    };
    let mut expected = Item::find()
        .filter(ItemColumn::Tag.eq(tag.clone()))
        .all(&conn)
        .unwrap();
    expected.sort_by_key(|i| (i.grp, i.id));
    assert_eq!(base().columns(), [ItemColumn::Grp, ItemColumn::Id]);

    // Forwards, 7 at a time, each page after the last row of the one before.
    let mut forward = Vec::new();
    let mut page = base().first(7).all(&conn).unwrap();
    let mut count = 0;
    while !page.is_empty() {
        count += 1;
        assert!(page.len() <= 7);
        let last = page.last().unwrap().clone();
        forward.extend(page);
        page = base().after_model(&last).first(7).all(&conn).unwrap();
    }
    assert_eq!(count, 8);
    assert_eq!(ids(&forward), ids(&expected));

    // Backwards from the end: last(7) before the first row of each page, ascending.
    let mut backward: Vec<Vec<Item>> = Vec::new();
    let mut page = base().last(7).all(&conn).unwrap();
    assert_eq!(ids(&page), ids(&expected[43..]));
    while !page.is_empty() {
        let first = page[0].clone();
        backward.push(page);
        page = base().before_model(&first).last(7).all(&conn).unwrap();
    }
    backward.reverse();
    assert_eq!(ids(&backward.concat()), ids(&expected));

    // A position as plain values (cursor column, then key) is the same as the row.
    let pivot = &expected[20];
    let by_values = base()
        .after((pivot.grp, pivot.id))
        .first(10)
        .all(&conn)
        .unwrap();
    assert_eq!(ids(&by_values), ids(&expected[21..31]));
    // Both bounds: strictly between.
    let between = base()
        .after_model(&expected[5])
        .before((expected[9].grp, expected[9].id))
        .all(&conn)
        .unwrap();
    assert_eq!(ids(&between), ids(&expected[6..9]));
    // Descending.
    let desc = base()
        .desc()
        .after_model(pivot)
        .first(5)
        .all(&conn)
        .unwrap();
    let mut rev = expected.clone();
    rev.reverse();
    let at = rev.iter().position(|i| i.id == pivot.id).unwrap();
    assert_eq!(ids(&desc), ids(&rev[at + 1..at + 6]));
    // The wrong number of values is an error, not a silent mismatch.
    let wrong = base().after(3i32).first(5).all(&conn);
    assert!(matches!(wrong, Err(Error::InvalidUse(_))), "{wrong:?}");
}

#[test]
fn cursor_on_several_columns_and_on_the_key_alone() {
    let conn = connect();
    let tag = lifeguard_tests::unique_name("cur_multi");
    seed(&conn, &tag, 30, 2);
    let mut expected = Item::find()
        .filter(ItemColumn::Tag.eq(tag.clone()))
        .all(&conn)
        .unwrap();
    expected.sort_by(|a, b| (a.grp, &a.name, a.id).cmp(&(b.grp, &b.name, b.id)));
    let cursor = || {
        Item::find()
            .filter(ItemColumn::Tag.eq(tag.clone()))
            .cursor_by([ItemColumn::Grp, ItemColumn::Name])
    };
    let mut all = Vec::new();
    let mut after: Option<Item> = None;
    loop {
        let c = match &after {
            Some(row) => cursor().after_model(row),
            None => cursor(),
        };
        let page = c.first(4).all(&conn).unwrap();
        let Some(last) = page.last().cloned() else {
            break;
        };
        all.extend(page);
        after = Some(last);
    }
    assert_eq!(ids(&all), ids(&expected));

    // On the key alone the key is not repeated: one value.
    let by_id = Item::find()
        .filter(ItemColumn::Tag.eq(tag.clone()))
        .cursor_by(ItemColumn::Id);
    assert_eq!(by_id.columns(), [ItemColumn::Id]);
    let mut sorted = ids(&expected);
    sorted.sort();
    let page = by_id.after(sorted[9]).first(3).all(&conn).unwrap();
    assert_eq!(ids(&page), sorted[10..13]);
    // An ordering already on the query does not disturb the cursor's.
    let page = Item::find()
        .filter(ItemColumn::Tag.eq(tag.clone()))
        .order_by_desc(ItemColumn::Name)
        .cursor_by(ItemColumn::Id)
        .first(3)
        .all(&conn)
        .unwrap();
    assert_eq!(ids(&page), sorted[..3]);
}

/// Open cursors of this session.
fn open_cursors(db: &impl Executor) -> i64 {
    db.query_one(
        "SELECT count(*) FROM pg_cursors WHERE name LIKE 'lifeguard_cur_%'",
        &[],
    )
    .unwrap()
    .get(0)
}

#[test]
fn stream_owns_a_read_only_transaction_on_an_exclusive_connection() {
    let mut conn = connect();
    let tag = lifeguard_tests::unique_name("st_own");
    let seeded = seed(&conn, &tag, 25, 4);
    let select = Item::find()
        .filter(ItemColumn::Tag.eq(tag.clone()))
        .order_by_asc(ItemColumn::Id);
    let streamed: Vec<Item> = select
        .stream(&mut conn, 4)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(streamed, seeded);
    assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
    // That the cursor leaves no lasting session state is checked through a pool below.
    assert_eq!(open_cursors(&conn), 0);

    // Exactly a multiple of the batch size, and an empty result.
    let n = select.stream(&mut conn, 5).unwrap().count();
    assert_eq!(n, 25);
    let empty = Item::find()
        .filter(ItemColumn::Tag.eq(format!("{tag}-none")))
        .stream(&mut conn, 5)
        .unwrap()
        .count();
    assert_eq!(empty, 0);

    // The cursor is named for its stream.
    {
        let stream = select.stream(&mut conn, 2).unwrap();
        assert!(format!("{stream:?}").contains("lifeguard_cur_"));
        drop(stream);
    }
    // Dropped half way: the cursor and the transaction end, the connection is usable.
    {
        let mut stream = select.stream(&mut conn, 3).unwrap();
        let first: Vec<Item> = stream.by_ref().take(5).collect::<Result<_, _>>().unwrap();
        assert_eq!(first, seeded[..5]);
    }
    assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
    assert_eq!(open_cursors(&conn), 0);
    // close() reports.
    let mut stream = select.stream(&mut conn, 3).unwrap();
    assert!(stream.next().unwrap().is_ok());
    stream.close().unwrap();
    assert_eq!(conn.transaction_status(), TransactionStatus::Idle);

    // A failing query fails at `stream`, leaving no transaction behind.
    let bad = Item::find()
        .filter(lifeguard_core::query::Expr::cust("1/0 = 1"))
        .stream(&mut conn, 3)
        .and_then(|s| s.collect::<Result<Vec<_>, _>>());
    assert!(bad.is_err());
    assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
    assert_eq!(conn.query_one("SELECT 1", &[]).unwrap().get::<_, i32>(0), 1);
}

#[test]
fn stream_inside_a_callers_transaction_and_on_a_lease() {
    let mut conn = connect();
    let tag = lifeguard_tests::unique_name("st_tx");
    let seeded = seed(&conn, &tag, 10, 3);
    let select = Item::find().filter(ItemColumn::Tag.eq(tag.clone()));
    {
        let tx = conn.begin().unwrap();
        // The stream sees the transaction's own uncommitted writes.
        ItemRecord {
            tag: Set(tag.clone()),
            grp: Set(9),
            name: Set("late".into()),
            ..Default::default()
        }
        .insert(&tx)
        .unwrap();
        let a = select.stream(&tx, 3).unwrap();
        let b = select.stream(&tx, 4).unwrap();
        assert_ne!(a.cursor_name(), b.cursor_name());
        let (a, b): (Vec<Item>, Vec<Item>) = (
            a.collect::<Result<_, _>>().unwrap(),
            b.collect::<Result<_, _>>().unwrap(),
        );
        assert_eq!(a.len(), 11);
        assert_eq!(b.len(), 11);
        // Both cursors closed, the transaction still open and usable.
        assert_eq!(open_cursors(&tx), 0);
        assert_eq!(
            tx.connection().transaction_status(),
            TransactionStatus::InTransaction
        );
        tx.rollback().unwrap();
    }
    assert_eq!(select.all(&conn).unwrap().len(), seeded.len());

    let pool = Pool::connect(
        PoolConfig::from_env()
            .expect("pool config from env")
            .max_size(2),
    )
    .expect("connect pool");
    let lease = pool.lease_primary().unwrap();
    let n = select.stream(&lease, 3).unwrap().count();
    assert_eq!(n, 10);
    assert_eq!(
        lease.connection().transaction_status(),
        TransactionStatus::Idle
    );
    drop(lease);
    // A connection whose session state a statement changed is retired when released.
    assert_eq!(
        metric(
            &pool,
            "lifeguard_pool_connections_closed_total",
            &[("reason", "session_state")]
        ),
        0.0,
        "a transaction-scoped cursor is no lasting state"
    );
    pool.close();
}

/// The resident set size of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS value");
    kb * 1024
}

/// A million rows of ~50 bytes each (about 100 MiB as buffered `Row`s and models) stream
/// through in bounded memory.
#[test]
fn stream_a_million_rows_in_flat_memory() {
    let mut conn = connect();
    let started = Instant::now();
    let before = rss();
    let mut peak = before;
    let (mut count, mut sum, mut label_bytes) = (0u64, 0i64, 0usize);
    let mut buckets = [0u64; 7];
    for series in Series::find().stream(&mut conn, 10_000).unwrap() {
        let series = series.unwrap();
        count += 1;
        sum += series.id;
        label_bytes += series.label.len();
        buckets[series.bucket as usize] += 1;
        if count % 50_000 == 0 {
            peak = peak.max(rss());
        }
    }
    let after = rss();
    peak = peak.max(after);
    let elapsed = started.elapsed();
    eprintln!(
        "streamed {count} rows in {elapsed:?}; RSS before {} KiB, peak {} KiB, after {} KiB",
        before / 1024,
        peak / 1024,
        after / 1024
    );
    assert_eq!(count, 1_000_000);
    assert_eq!(sum, 1_000_000 * 1_000_001 / 2);
    assert_eq!(label_bytes, 32_000_000);
    assert_eq!(buckets.iter().sum::<u64>(), 1_000_000);
    let growth = peak.saturating_sub(before);
    assert!(
        growth < 64 * 1024 * 1024,
        "memory grew by {} MiB while streaming",
        growth / (1024 * 1024)
    );
    assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
}
