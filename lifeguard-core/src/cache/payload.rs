//! What the reflector shares with the application besides the key scheme: the payload
//! format of a cached row and the Lua scripts that change one.

use crate::pg::Row;

/// A cached row's payload: the values of `row`'s columns from index `from` on (the
/// model's columns and then `row_version`), in a `DataRow`'s layout. The application's
/// fills and the reflector's refreshes both write it with this function.
pub fn encode_payload(row: &Row, from: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    row.write_values(from..row.len(), &mut out);
    out
}

/// The Lua scripts that change cached rows and the heartbeat.
pub mod scripts {
    use std::sync::OnceLock;

    use crate::cache::redis::Script;

    /// A reader's fill (`KEYS`: row, lease; `ARGV`: lease token, version, payload, TTL ms);
    /// replies `stored`, `rejected_lease` or `rejected_version`.
    pub fn fill() -> &'static Script {
        static S: OnceLock<Script> = OnceLock::new();
        S.get_or_init(|| Script::new(include_str!("scripts/fill.lua")))
    }

    /// The reflector's change to one row (`KEYS`: row, lease; `ARGV`: epoch, version,
    /// payload, `r`efresh or `d`rop); replies `refreshed`, `invalidated`,
    /// `skipped_inactive`, `lease_cleared`, `rejected_version` or `fenced`.
    pub fn reflect() -> &'static Script {
        static S: OnceLock<Script> = OnceLock::new();
        S.get_or_init(|| Script::new(include_str!("scripts/reflect.lua")))
    }

    /// The leader's heartbeat (`KEYS`: heartbeat, epoch; `ARGV`: epoch, value, lifetime
    /// ms, and optionally the server's expected `run_id`); replies 1, 0 when a newer epoch
    /// holds the namespace (fenced), or -1 when the server's run id is not the expected one
    /// (it restarted).
    pub fn heartbeat() -> &'static Script {
        static S: OnceLock<Script> = OnceLock::new();
        S.get_or_init(|| Script::new(include_str!("scripts/heartbeat.lua")))
    }
}
