//! Redis Cluster slots: a key's (CRC16-XMODEM of its hash tag), a command's (that of its
//! first key), and what the servers say about them (`MOVED`, `ASK`, `CLUSTER NODES`).

use redis::{Arg, Cmd, Value};

/// How many slots a Redis Cluster divides its keys into.
pub(super) const SLOTS: usize = 16384;

/// CRC16-XMODEM (polynomial 0x1021, initial value 0, no reflection), one table entry per
/// byte value, built at compile time.
const CRC16: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = (byte as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
};

fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ CRC16[usize::from((crc >> 8) as u8 ^ b)]
    })
}

/// The Redis Cluster slot of `key`: CRC16 of its hash tag (what lies between the first `{`
/// and the first `}` after it, when that is not empty) or else of the whole key, modulo
/// 16384. Keys with the same hash tag share a slot, which is what lets one command or
/// script use several of them in a cluster.
///
/// ```
/// use lifeguard_core::cache::redis::key_slot;
///
/// assert_eq!(key_slot(b"foo"), 12182);
/// assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
/// ```
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    // SLOTS is a power of two, so the modulo keeps the low 14 bits.
    crc16(hashed) & (SLOTS as u16 - 1)
}

/// Where a command's first key is.
enum KeyAt {
    /// It has none: any node can run it.
    Nowhere,
    /// At this argument (the command's name is argument 0).
    Arg(usize),
    /// `EVAL`-like: argument 2 counts the keys, which follow it.
    AfterNumkeys,
}

/// Commands that name no key (or are served by any node), by upper-case name.
const KEYLESS: &[&str] = &[
    "ACL",
    "ASKING",
    "AUTH",
    "BGREWRITEAOF",
    "BGSAVE",
    "CLIENT",
    "CLUSTER",
    "COMMAND",
    "CONFIG",
    "DBSIZE",
    "ECHO",
    "FLUSHALL",
    "FLUSHDB",
    "FUNCTION",
    "HELLO",
    "INFO",
    "LASTSAVE",
    "LATENCY",
    "PING",
    "PUBLISH",
    "RANDOMKEY",
    "READONLY",
    "READWRITE",
    "ROLE",
    "SAVE",
    "SCAN",
    "SCRIPT",
    "SELECT",
    "SLOWLOG",
    "TIME",
    "WAIT",
];

/// Commands whose first key follows a subcommand or an operation.
const KEY_SECOND: &[&str] = &["BITOP", "MEMORY", "OBJECT", "XGROUP", "XINFO"];

/// Commands whose keys follow a key count.
const SCRIPTED: &[&str] = &[
    "EVAL",
    "EVALSHA",
    "EVALSHA_RO",
    "EVAL_RO",
    "FCALL",
    "FCALL_RO",
];

fn key_at(name: &[u8]) -> KeyAt {
    let is = |names: &[&str]| {
        names
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
    };
    if is(SCRIPTED) {
        KeyAt::AfterNumkeys
    } else if is(KEYLESS) {
        KeyAt::Nowhere
    } else if is(KEY_SECOND) {
        KeyAt::Arg(2)
    } else {
        // Nearly every other command takes its (first) key first.
        KeyAt::Arg(1)
    }
}

/// The slot of `cmd`'s first key, `None` for a command without keys. Commands whose key
/// is elsewhere than this table says are sent to a wrong node, which answers `MOVED`.
pub(super) fn command_slot(cmd: &Cmd) -> Option<u16> {
    let arg = |i: usize| match cmd.args_iter().nth(i)? {
        Arg::Simple(bytes) => Some(bytes),
        _ => None,
    };
    let at = match key_at(arg(0)?) {
        KeyAt::Nowhere => return None,
        KeyAt::Arg(i) => i,
        KeyAt::AfterNumkeys => {
            let keys: usize = std::str::from_utf8(arg(2)?).ok()?.parse().ok()?;
            if keys == 0 {
                return None;
            }
            3
        }
    };
    arg(at).map(key_slot)
}

/// A `MOVED` or `ASK` reply: `slot` is served by `host:port` (for good, or for `ASK`, for
/// the next command after `ASKING`).
pub(super) struct Redirect {
    pub(super) ask: bool,
    pub(super) slot: u16,
    pub(super) host: String,
    pub(super) port: u16,
}

/// The redirect `reply` is, if any; `replied` is the host of the node that sent it, which an
/// empty host in the reply stands for.
pub(super) fn redirect(reply: &Value, replied: &str) -> Option<Redirect> {
    let Value::ServerError(e) = reply else {
        return None;
    };
    let ask = match e.code() {
        "MOVED" => false,
        "ASK" => true,
        _ => return None,
    };
    let mut words = e.details()?.split_whitespace();
    let slot = words.next()?.parse::<u16>().ok()?;
    let (host, port) = words.next()?.rsplit_once(':')?;
    let port = port.parse().ok()?;
    (usize::from(slot) < SLOTS).then(|| Redirect {
        ask,
        slot,
        host: if host.is_empty() { replied } else { host }.to_owned(),
        port,
    })
}

/// The slot ranges of the masters in a `CLUSTER NODES` reply (`start`, `end`, host, port),
/// `replied` standing for an empty host. `CLUSTER NODES` rather than `CLUSTER SLOTS`: its
/// reply is one string, where `CLUSTER SLOTS` nests arrays three deep, and the connection's
/// reader parses replies by recursion on a small stack.
///
/// Each line is `<id> <ip:port@bus[,hostname]> <flags> <master> <ping> <pong> <epoch>
/// <link> <slots>...`, a slot being `n`, `a-b`, or `[n->-id]`/`[n-<-id]` while it migrates
/// (its owner still serves it, so that is left out).
pub(super) fn parse_nodes(text: &str, replied: &str) -> Vec<(u16, u16, String, u16)> {
    let mut ranges = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(endpoint), Some(flags)) = (fields.get(1), fields.get(2)) else {
            continue;
        };
        let usable = |flag: &str| !flags.split(',').any(|f| f == flag);
        if !flags.split(',').any(|f| f == "master") || !usable("noaddr") || !usable("handshake") {
            continue;
        }
        let client = endpoint.split(['@', ',']).next().unwrap_or_default();
        let Some((host, port)) = client.rsplit_once(':') else {
            continue;
        };
        let (Ok(port), host) = (
            port.parse::<u16>(),
            if host.is_empty() { replied } else { host },
        ) else {
            continue;
        };
        for range in fields.iter().skip(8).filter(|r| !r.starts_with('[')) {
            let (start, end) = range.split_once('-').unwrap_or((range, range));
            if let (Ok(start), Ok(end)) = (start.parse::<u16>(), end.parse::<u16>()) {
                if start <= end && usize::from(end) < SLOTS {
                    ranges.push((start, end, host.to_owned(), port));
                }
            }
        }
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_is_xmodem() {
        // The standard check value of CRC-16/XMODEM.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(crc16(b""), 0);
    }

    #[test]
    fn slots_follow_hash_tags() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"123456789"), 0x31c3 & 0x3fff);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"{user1000}.followers"), key_slot(b"user1000"));
        // Only the first `{` counts, up to the first `}` after it.
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        // An empty tag, or none closed, hashes the whole key.
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") & 0x3fff);
        assert_eq!(key_slot(b"foo{bar"), crc16(b"foo{bar") & 0x3fff);
        assert!(usize::from(key_slot(&[0xff; 64])) < SLOTS);
    }

    #[test]
    fn commands_are_routed_by_their_first_key() {
        let slot = Some(key_slot(b"k"));
        assert_eq!(command_slot(redis::cmd("GET").arg("k")), slot);
        assert_eq!(command_slot(redis::cmd("hmget").arg("k").arg("a")), slot);
        assert_eq!(command_slot(redis::cmd("DEL").arg("k").arg("j")), slot);
        assert_eq!(
            command_slot(redis::cmd("EVALSHA").arg("abc").arg(2).arg("k").arg("j")),
            slot
        );
        assert_eq!(command_slot(redis::cmd("EVALSHA").arg("abc").arg(0)), None);
        assert_eq!(
            command_slot(redis::cmd("OBJECT").arg("ENCODING").arg("k")),
            slot
        );
        assert_eq!(command_slot(redis::cmd("INFO").arg("server")), None);
        assert_eq!(command_slot(&redis::cmd("PING")), None);
        assert_eq!(
            command_slot(redis::cmd("SCRIPT").arg("LOAD").arg("return 1")),
            None
        );
        // No key where one was expected: any node, which redirects if it must.
        assert_eq!(command_slot(&redis::cmd("GET")), None);
    }

    /// The error reply `text`, as the server would send it.
    fn error(text: &str) -> Value {
        redis::parse_redis_value(format!("-{text}\r\n").as_bytes()).expect("an error reply")
    }

    #[test]
    fn redirects_parse() {
        let moved = redirect(&error("MOVED 3999 127.0.0.1:6381"), "h").unwrap();
        assert_eq!(
            (moved.ask, moved.slot, moved.host.as_str(), moved.port),
            (false, 3999, "127.0.0.1", 6381)
        );
        let ask = redirect(&error("ASK 1 :7000"), "10.0.0.9").unwrap();
        assert_eq!(
            (ask.ask, ask.host.as_str(), ask.port),
            (true, "10.0.0.9", 7000)
        );
        let v6 = redirect(&error("MOVED 5 ::1:7001"), "h").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 7001));
        for other in [
            "MOVED 16384 h:1",
            "MOVED x h:1",
            "MOVED 1 ?",
            "TRYAGAIN x",
            "ERR no",
        ] {
            assert!(redirect(&error(other), "h").is_none(), "{other}");
        }
        assert!(redirect(&Value::Okay, "h").is_none());
    }

    #[test]
    fn cluster_nodes_parse() {
        let text = "\
a1 10.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460 [5461->-b2]
b2 :7001@17001,host-b master - 0 1 2 connected 5461-10921 10922
c3 10.0.0.3:7002@17002 master,fail - 0 1 3 disconnected 10923-16383
d4 10.0.0.4:7003@17003 slave a1 0 1 1 connected
e5 :0@0 master,noaddr - 0 1 4 disconnected 16000
f6 10.0.0.6:7005@17005 master - 0 1 5 connected 16384 9-3 x
";
        assert_eq!(
            parse_nodes(text, "seed"),
            [
                (0, 5460, "10.0.0.1".to_owned(), 7000),
                (5461, 10921, "seed".to_owned(), 7001),
                (10922, 10922, "seed".to_owned(), 7001),
                (10923, 16383, "10.0.0.3".to_owned(), 7002),
            ]
        );
        assert!(parse_nodes("", "seed").is_empty());
    }
}
