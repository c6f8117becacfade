//! Lua scripts run by `EVALSHA`, loaded on demand.

use redis::Cmd;

/// A Lua script and its SHA-1, run with [`RedisClient::eval_until`](super::RedisClient::eval_until).
///
/// ```
/// use lifeguard_core::cache::redis::Script;
///
/// let script = Script::new("return redis.call('GET', KEYS[1])");
/// assert_eq!(script.hash().len(), 40);
/// ```
#[derive(Debug, Clone)]
pub struct Script {
    code: String,
    hash: String,
}

impl Script {
    /// A script from its source.
    pub fn new(code: &str) -> Script {
        Script {
            code: code.to_owned(),
            hash: redis::Script::new(code).get_hash().to_owned(),
        }
    }

    /// The script's SHA-1, as `EVALSHA` names it.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// `EVALSHA hash numkeys keys... args...`.
    pub(crate) fn evalsha(&self, keys: &[&[u8]], args: &[&[u8]]) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.hash).arg(keys.len());
        for key in keys {
            cmd.arg(*key);
        }
        for arg in args {
            cmd.arg(*arg);
        }
        cmd
    }

    /// `SCRIPT LOAD code`.
    pub(crate) fn load(&self) -> Cmd {
        let mut cmd = redis::cmd("SCRIPT");
        cmd.arg("LOAD").arg(&self.code);
        cmd
    }
}
