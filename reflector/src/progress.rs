//! Where the leader is in the outbox: the checkpoint it may store, and the rows it has
//! already handled past it.
//!
//! Outbox ids are not commit order: a row with a lower id can become visible after one
//! with a higher id, so a watermark on `id` would skip it. Rows are read in `(txid, id)`
//! order, and the checkpoint only passes transactions older than every transaction still
//! running (`txid < xmin` of the pass's snapshot), which can gain no more rows. Rows of
//! younger transactions that have committed are handled at once anyway (speculatively), so
//! a long transaction holding `xmin` back delays the checkpoint, never the refreshes; they
//! are remembered here so later passes skip them, and forgotten once the checkpoint
//! covers them.

use std::collections::BTreeMap;

/// A row's place in the outbox: `(txid, id)`.
pub(crate) type Position = (u64, i64);

/// What one pass read, for [`Progress::advance`].
pub(crate) struct Pass<'a> {
    /// The snapshot's `xmin`: every transaction below it has ended.
    pub xmin: u64,
    /// The rows' positions, in `(txid, id)` order.
    pub rows: &'a [Position],
    /// Whether the pass took as many rows as it may (more may be waiting).
    pub full: bool,
}

/// The checkpoint and the rows handled beyond it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    checkpoint: Position,
    /// Transactions at or past `xmin` handled beyond the checkpoint: txid → the last id
    /// handled (`i64::MAX` when all of its rows were).
    handled: BTreeMap<u64, i64>,
}

impl Progress {
    /// Progress from a stored checkpoint.
    pub(crate) fn from_checkpoint(checkpoint: Position) -> Progress {
        Progress {
            checkpoint,
            handled: BTreeMap::new(),
        }
    }

    /// Every row at or before this has been handled.
    pub(crate) fn checkpoint(&self) -> Position {
        self.checkpoint
    }

    /// The handled transactions past the checkpoint, as `(txid, last id)`, for the next
    /// pass to skip.
    pub(crate) fn handled(&self) -> impl Iterator<Item = (u64, i64)> + '_ {
        self.handled.iter().map(|(t, i)| (*t, *i))
    }

    /// Records a pass whose rows have all been reflected, and returns whether the
    /// checkpoint moved.
    pub(crate) fn advance(&mut self, pass: &Pass<'_>) -> bool {
        let before = self.checkpoint;
        // Safe rows come first in (txid, id) order; the last of them is a checkpoint,
        // since every row before it was either read by this pass or handled earlier.
        if let Some(last_safe) = pass.rows.iter().rev().find(|(t, _)| *t < pass.xmin) {
            self.checkpoint = self.checkpoint.max(*last_safe);
        }
        if !pass.full {
            // Nothing more is visible: every transaction below xmin is wholly handled.
            self.checkpoint = self.checkpoint.max((pass.xmin, 0));
        }
        let last = pass.rows.last().copied();
        for &(txid, id) in pass.rows.iter().filter(|(t, _)| *t >= pass.xmin) {
            // A full pass may have cut the last transaction short: only the ids it saw.
            let upto = match (pass.full, last) {
                (true, Some((last_txid, _))) if last_txid == txid => id,
                _ => i64::MAX,
            };
            let entry = self.handled.entry(txid).or_insert(upto);
            *entry = (*entry).max(upto);
        }
        let floor = self.checkpoint.0;
        self.handled.retain(|txid, _| *txid >= floor);
        self.checkpoint != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(xmin: u64, rows: &[Position], full: bool) -> Pass<'_> {
        Pass { xmin, rows, full }
    }

    #[test]
    fn the_checkpoint_never_passes_a_running_transaction() {
        // T1 (txid 10) holds the oldest id and is still running; T2 (txid 11) committed.
        let mut p = Progress::default();
        assert!(p.advance(&pass(10, &[(11, 2)], false)));
        assert_eq!(p.checkpoint(), (10, 0), "up to, not past, T1");
        assert_eq!(p.handled().collect::<Vec<_>>(), vec![(11, i64::MAX)]);
        // T1 commits: xmin moves past both; T1's row is read, T2's is skipped.
        assert!(p.advance(&pass(12, &[(10, 1)], false)));
        assert_eq!(p.checkpoint(), (12, 0));
        assert_eq!(p.handled().count(), 0, "covered by the checkpoint");
    }

    #[test]
    fn a_full_pass_stops_at_its_last_safe_row_and_remembers_a_cut_transaction() {
        let mut p = Progress::from_checkpoint((5, 9));
        let rows = [(6, 1), (6, 2), (9, 3), (9, 4)];
        assert!(p.advance(&pass(8, &rows, true)));
        assert_eq!(p.checkpoint(), (6, 2));
        assert_eq!(
            p.handled().collect::<Vec<_>>(),
            vec![(9, 4)],
            "txid 9 may have more rows"
        );
        // The next pass sees the rest of txid 9 and is not full.
        assert!(p.advance(&pass(8, &[(9, 5)], false)));
        assert_eq!(p.checkpoint(), (8, 0));
        assert_eq!(p.handled().collect::<Vec<_>>(), vec![(9, i64::MAX)]);
    }

    #[test]
    fn the_checkpoint_only_grows() {
        let mut p = Progress::from_checkpoint((20, 0));
        assert!(
            !p.advance(&pass(15, &[], false)),
            "an older xmin changes nothing"
        );
        assert_eq!(p.checkpoint(), (20, 0));
    }
}
