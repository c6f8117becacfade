//! Several hosts in one configuration: try them in turn (or in a random order) and keep the
//! first whose server is the kind `target_session_attrs` asks for, as libpq does.
//!
//! The kind is read from what the server reports at start-up (`in_hot_standby` and
//! `default_transaction_read_only`, PostgreSQL 14 and later), or asked with one query from
//! older servers, so after a failover the same host list finds the new primary.

use rand::seq::SliceRandom;

use super::config::{Config, LoadBalanceHosts, TargetSessionAttrs};
use super::connection::Connection;
use crate::error::{Error, Result};
use crate::executor::Executor;

/// Connects to the first host of `config` that answers and fits.
pub(crate) fn connect(config: &Config) -> Result<Connection> {
    config.check_tls()?;
    let attrs = config.get_target_session_attrs();
    let mut targets = config.targets()?;
    if targets.len() == 1 && attrs == TargetSessionAttrs::Any {
        return Connection::connect_one(&targets[0]);
    }
    if config.get_load_balance_hosts() == LoadBalanceHosts::Random {
        targets.shuffle(&mut rand::thread_rng());
    }
    // prefer-standby takes a standby on the first pass and anything on the second.
    let passes: &[TargetSessionAttrs] = match attrs {
        TargetSessionAttrs::PreferStandby => {
            &[TargetSessionAttrs::Standby, TargetSessionAttrs::Any]
        }
        _ => std::slice::from_ref(&attrs),
    };
    let mut last_error = None;
    let mut misfits = Vec::new();
    for &want in passes {
        for target in &targets {
            let conn = match Connection::connect_one(target) {
                Ok(conn) => conn,
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            };
            match kind(&conn) {
                Ok(kind) if fits(kind, want) => return Ok(conn),
                Ok(kind) => misfits.push(format!(
                    "{} is {}",
                    target.display_target(),
                    kind.describe()
                )),
                Err(e) => last_error = Some(e),
            }
        }
    }
    let hosts: Vec<String> = targets.iter().map(Config::display_target).collect();
    match last_error {
        Some(e) if misfits.is_empty() => Err(e),
        last => Err(Error::connection(
            format!(
                "no host of {} is {} (target_session_attrs): {}{}",
                hosts.join(", "),
                describe_wanted(attrs),
                misfits.join("; "),
                last.map(|e| format!("; last failure: {e}"))
                    .unwrap_or_default()
            ),
            None,
        )),
    }
}

/// What a server is, as far as `target_session_attrs` cares.
#[derive(Clone, Copy)]
struct Kind {
    standby: bool,
    read_only: bool,
}

impl Kind {
    fn describe(self) -> &'static str {
        match (self.standby, self.read_only) {
            (true, _) => "a standby",
            (false, true) => "a primary that defaults to read-only transactions",
            (false, false) => "a read-write primary",
        }
    }
}

fn kind(conn: &Connection) -> Result<Kind> {
    let reported = |name| conn.parameter(name).map(|v| v == "on");
    if let (Some(standby), Some(read_only)) = (
        reported("in_hot_standby"),
        reported("default_transaction_read_only"),
    ) {
        return Ok(Kind { standby, read_only });
    }
    let row = conn.query_one(
        "SELECT pg_catalog.pg_is_in_recovery(), \
         pg_catalog.current_setting('transaction_read_only') = 'on'",
        &[],
    )?;
    Ok(Kind {
        standby: row.try_get(0)?,
        read_only: row.try_get(1)?,
    })
}

fn fits(kind: Kind, want: TargetSessionAttrs) -> bool {
    match want {
        TargetSessionAttrs::Any => true,
        TargetSessionAttrs::ReadWrite => !kind.standby && !kind.read_only,
        TargetSessionAttrs::ReadOnly => kind.standby || kind.read_only,
        TargetSessionAttrs::Primary => !kind.standby,
        TargetSessionAttrs::Standby | TargetSessionAttrs::PreferStandby => kind.standby,
    }
}

fn describe_wanted(attrs: TargetSessionAttrs) -> &'static str {
    match attrs {
        TargetSessionAttrs::Any => "reachable",
        TargetSessionAttrs::ReadWrite => "read-write",
        TargetSessionAttrs::ReadOnly => "read-only",
        TargetSessionAttrs::Primary => "a primary",
        TargetSessionAttrs::Standby | TargetSessionAttrs::PreferStandby => "a standby",
    }
}
