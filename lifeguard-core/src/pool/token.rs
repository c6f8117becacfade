//! Consistency tokens: the WAL position a client must see for read-your-writes.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::pg::Row;

/// The WAL block and segment sizes as two `int8` columns, for [`record_end_in_row`].
macro_rules! wal_sizes_sql {
    () => {
        "pg_catalog.current_setting('wal_block_size')::int8, \
         pg_catalog.pg_size_bytes(pg_catalog.current_setting('wal_segment_size'))"
    };
}
pub(crate) use wal_sizes_sql;

/// The primary's insert position with the identity a token needs: identity and position
/// from the same server in one row, with no dependence on the monitor having sampled yet.
/// Run after a commit's `ReadyForQuery`, its position covers that commit.
pub(crate) const TOKEN_SQL: &str = concat!(
    "SELECT pg_catalog.pg_current_wal_insert_lsn()::text, \
     ('x' || substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_insert_lsn()), 1, 8))::bit(32)::int, \
     (SELECT system_identifier FROM pg_catalog.pg_control_system()), ",
    wal_sizes_sql!()
);

/// The size of a WAL page's header (`SizeOfXLogShortPHD`) and of the longer one that opens
/// each segment (`SizeOfXLogLongPHD`), on the 64-bit builds PostgreSQL ships.
const SHORT_PAGE_HEADER: u64 = 24;
const LONG_PAGE_HEADER: u64 = 40;

/// The end of the last WAL record before the insert position `insert`.
///
/// `pg_current_wal_insert_lsn()` tells where the next record will start. When the last
/// record ended exactly on a page boundary, that is past the next page's header, while a
/// replica's replay position stops at the boundary: a token taken there would wait for a
/// further write that an idle primary may never make. No record ends inside a header, so
/// moving back to the boundary leaves nothing out.
pub(crate) fn record_end(insert: u64, block_size: u64, segment_size: u64) -> u64 {
    if segment_size != 0 && insert % segment_size == LONG_PAGE_HEADER {
        insert - LONG_PAGE_HEADER
    } else if block_size != 0 && insert % block_size == SHORT_PAGE_HEADER {
        insert - SHORT_PAGE_HEADER
    } else {
        insert
    }
}

/// [`record_end`] of `insert` with the sizes [`wal_sizes_sql`] put in columns `at` and
/// `at + 1` of `row`.
pub(crate) fn record_end_in_row(row: &Row, insert: u64, at: usize) -> Result<u64> {
    let size = |i: usize| -> Result<u64> {
        let v: i64 = row.try_get(i)?;
        u64::try_from(v).map_err(|_| Error::protocol(format!("negative WAL size {v}")))
    };
    Ok(record_end(insert, size(at)?, size(at + 1)?))
}

/// The token in a row of [`TOKEN_SQL`].
pub(crate) fn from_row(row: &Row) -> Result<ConsistencyToken> {
    let text: String = row.try_get(0)?;
    let insert =
        parse_pg_lsn(&text).ok_or_else(|| Error::protocol(format!("unparseable LSN {text:?}")))?;
    let lsn = record_end_in_row(row, insert, 3)?;
    let timeline: i32 = row.try_get(1)?;
    let system_id: i64 = row.try_get(2)?;
    let timeline = u32::try_from(timeline).map_err(|_| Error::protocol("negative timeline"))?;
    // system_identifier is unsigned in pg_control and only shown as bigint.
    Ok(ConsistencyToken::new(system_id as u64, timeline, lsn))
}

/// A commit position on one primary history: system identifier, timeline and LSN.
///
/// A replica may serve a read carrying a token only when it belongs to the same system and
/// timeline and has replayed at least to the token's LSN. The text form is
/// `v1.<system-id>.<timeline>.<lsn hex>`; it is not a secret, it only steers routing.
///
/// ```
/// use lifeguard_core::pool::ConsistencyToken;
///
/// let a: ConsistencyToken = "v1.7300000000000000001.1.16B374D848".parse()?;
/// let b = ConsistencyToken::new(a.system_id(), 1, 0x16B374D849);
/// assert_eq!(a.merge(&b), b);
/// assert_eq!(b.to_string(), "v1.7300000000000000001.1.16B374D849");
/// # Ok::<(), lifeguard_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConsistencyToken {
    system_id: u64,
    timeline: u32,
    lsn: u64,
}

impl ConsistencyToken {
    /// A token for `lsn` on the given system and timeline.
    pub fn new(system_id: u64, timeline: u32, lsn: u64) -> ConsistencyToken {
        ConsistencyToken {
            system_id,
            timeline,
            lsn,
        }
    }

    /// The cluster's `system_identifier` (from `pg_control_system()`).
    pub fn system_id(&self) -> u64 {
        self.system_id
    }

    /// The timeline the LSN belongs to.
    pub fn timeline(&self) -> u32 {
        self.timeline
    }

    /// The WAL position, as a 64-bit number.
    pub fn lsn(&self) -> u64 {
        self.lsn
    }

    /// The fresher of two tokens: the higher LSN on one timeline; a newer timeline wins over
    /// an older one; for different systems the newest argument wins (the client moved to
    /// another cluster, so the old token means nothing there).
    #[must_use]
    pub fn merge(&self, other: &ConsistencyToken) -> ConsistencyToken {
        if self.system_id != other.system_id {
            return *other;
        }
        match self.timeline.cmp(&other.timeline) {
            std::cmp::Ordering::Less => *other,
            std::cmp::Ordering::Greater => *self,
            std::cmp::Ordering::Equal if other.lsn > self.lsn => *other,
            std::cmp::Ordering::Equal => *self,
        }
    }

    /// Merges every token parsed from `values` (e.g. several header values, each possibly
    /// comma-separated). Any malformed value is an error naming it.
    pub fn merge_all<'a>(
        values: impl IntoIterator<Item = &'a str>,
    ) -> Result<Option<ConsistencyToken>> {
        let mut merged: Option<ConsistencyToken> = None;
        for value in values {
            for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let token: ConsistencyToken = part.parse()?;
                merged = Some(match merged {
                    Some(m) => m.merge(&token),
                    None => token,
                });
            }
        }
        Ok(merged)
    }
}

impl fmt::Display for ConsistencyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v1.{}.{}.{:X}", self.system_id, self.timeline, self.lsn)
    }
}

impl FromStr for ConsistencyToken {
    type Err = Error;

    fn from_str(s: &str) -> Result<ConsistencyToken> {
        let bad = || {
            Error::invalid_use(format!(
                "malformed consistency token {s:?}: expected v1.<system-id>.<timeline>.<lsn hex>"
            ))
        };
        let mut parts = s.split('.');
        if parts.next() != Some("v1") {
            return Err(bad());
        }
        let system_id = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let timeline = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let lsn = parts
            .next()
            .filter(|p| !p.is_empty() && p.len() <= 16)
            .and_then(|p| u64::from_str_radix(p, 16).ok())
            .ok_or_else(bad)?;
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(ConsistencyToken::new(system_id, timeline, lsn))
    }
}

/// How far past the primary's last sampled position a token may claim to be: more WAL
/// than a primary writes between a few monitor samples (at 250 ms, over 250 MB/s), far less
/// than the whole address space a forged token can name.
pub(crate) const FUTURE_LSN_MARGIN: u64 = 64 << 20;

/// What routing makes of a token, measured against the primary's last sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Vetted {
    /// It may have come from this primary: routed on as it is.
    Kept,
    /// From another cluster (another system identifier): it means nothing here and is
    /// ignored (`reason` `foreign_system`).
    Foreign,
    /// Ahead of anything the primary has written (a later timeline, or an LSN past its
    /// position plus [`FUTURE_LSN_MARGIN`]): no replica will reach it, so the read goes to
    /// the primary once, without waiting for a replica or taking the fallback budget
    /// (`reason` `future_lsn`).
    Future,
}

impl Vetted {
    /// The `reason` label of `lifeguard_consistency_token_rejected_total`.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Vetted::Kept => "kept",
            Vetted::Foreign => "foreign_system",
            Vetted::Future => "future_lsn",
        }
    }
}

/// Vets `token` against the primary's identity and position (`system_id` 0: not sampled
/// yet, and nothing is judged).
pub(crate) fn vet(token: &ConsistencyToken, system_id: u64, timeline: u32, lsn: u64) -> Vetted {
    if system_id == 0 {
        return Vetted::Kept;
    }
    if token.system_id != system_id {
        return Vetted::Foreign;
    }
    let ahead = match token.timeline.cmp(&timeline) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Equal => token.lsn > lsn.saturating_add(FUTURE_LSN_MARGIN),
        // An older timeline's token is genuine after a failover: the primary serves it.
        std::cmp::Ordering::Less => false,
    };
    if ahead {
        Vetted::Future
    } else {
        Vetted::Kept
    }
}

/// Parses PostgreSQL's `X/Y` text form of an LSN.
pub(crate) fn parse_pg_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    (hi <= u64::from(u32::MAX) && lo <= u64::from(u32::MAX)).then_some((hi << 32) | lo)
}

/// Formats an LSN the way PostgreSQL writes it (`X/Y`), e.g. for `$1::pg_lsn`.
pub(crate) fn format_pg_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let t = ConsistencyToken::new(42, 3, 0xABCDEF);
        assert_eq!(t.to_string().parse::<ConsistencyToken>().unwrap(), t);
        for bad in [
            "",
            "v2.1.1.0",
            "v1.x.1.0",
            "v1.1.1",
            "v1.1.1.zz",
            "v1.1.1.0.0",
            "v1.1.1.11111111111111111",
        ] {
            assert!(bad.parse::<ConsistencyToken>().is_err(), "{bad}");
        }
    }

    #[test]
    fn merges_by_timeline_then_lsn() {
        let a = ConsistencyToken::new(1, 1, 100);
        let b = ConsistencyToken::new(1, 1, 50);
        let c = ConsistencyToken::new(1, 2, 10);
        assert_eq!(a.merge(&b), a);
        assert_eq!(b.merge(&a), a);
        assert_eq!(a.merge(&c), c);
        assert_eq!(c.merge(&a), c);
        let all = ConsistencyToken::merge_all(["v1.1.1.64, v1.1.1.32", "v1.1.1.10"]).unwrap();
        assert_eq!(all, Some(a));
        assert!(ConsistencyToken::merge_all(["v1.1.1.64, nope"]).is_err());
    }

    #[test]
    fn an_insert_position_past_a_page_header_backs_up_to_the_boundary() {
        let (block, segment) = (8192, 16 << 20);
        let end = |lsn| record_end(lsn, block, segment);
        assert_eq!(end(0x2400_4018), 0x2400_4000, "past a page header");
        assert_eq!(end(0x2400_0028), 0x2400_0000, "past a segment's header");
        assert_eq!(
            end(0x2400_4028),
            0x2400_4028,
            "40 bytes into a page mid-segment"
        );
        assert_eq!(end(0x2400_4020), 0x2400_4020, "mid-page");
        assert_eq!(end(0x2400_4000), 0x2400_4000, "on a boundary");
        assert_eq!(record_end(0x2400_4018, 0, 0), 0x2400_4018, "unknown sizes");
    }

    #[test]
    fn tokens_this_primary_cannot_have_issued_are_caught() {
        let (system, timeline, lsn) = (7, 2, 0x5000_0000);
        let vet = |t: ConsistencyToken| vet(&t, system, timeline, lsn);
        assert_eq!(vet(ConsistencyToken::new(7, 2, lsn)), Vetted::Kept);
        assert_eq!(
            vet(ConsistencyToken::new(7, 2, lsn + FUTURE_LSN_MARGIN)),
            Vetted::Kept,
            "within a few samples' worth of WAL"
        );
        assert_eq!(vet(ConsistencyToken::new(7, 1, u64::MAX)), Vetted::Kept);
        assert_eq!(vet(ConsistencyToken::new(8, 2, 0)), Vetted::Foreign);
        assert_eq!(vet(ConsistencyToken::new(7, 3, 0)), Vetted::Future);
        assert_eq!(vet(ConsistencyToken::new(7, 2, u64::MAX)), Vetted::Future);
        // Nothing sampled yet: nothing to judge by.
        assert_eq!(
            super::vet(&ConsistencyToken::new(8, 9, u64::MAX), 0, 0, 0),
            Vetted::Kept
        );
    }

    #[test]
    fn pg_lsn_text() {
        assert_eq!(parse_pg_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(format_pg_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse_pg_lsn("nope"), None);
    }
}
