//! The key scheme shared by the application and the reflector.
//!
//! ```text
//! lg:{<ns>}:hb                                     heartbeat: "<epoch> <gen> <lsn> <unix ms>"
//! lg:{<ns>}:epoch                                  the reflector leader's epoch (fencing)
//! lg:<ns>:<fmt>:<gen>:{<schema.table>:<tenant>:<pk>}         the row: HASH v, p, e
//! lg:<ns>:<fmt>:<gen>:{<schema.table>:<tenant>:<pk>}:lease   a fill's lease token
//! ```
//!
//! - The row's hash tag is `{table:tenant:pk}`, so a row and its lease share a Redis
//!   Cluster slot and every script touches one slot only. The heartbeat and the epoch share
//!   the namespace's slot.
//! - `fmt` is a hash of the model's layout (table, columns, types and the payload format),
//!   so a deploy that changes the struct never decodes an old payload.
//! - `gen` is the generation, bumped by the reflector after events that may leave Redis
//!   ahead of or behind PostgreSQL (a Redis restart from a snapshot, a PostgreSQL
//!   timeline change); readers learn it from the heartbeat, so a bump retires every key at
//!   once.
//! - `pk` and `tenant` are canonical, type-tagged and escaped ([`KeyPart`]): `i:42`,
//!   `u:<uuid>`, `s:<hex of UTF-8>`, parts of a composite key joined by `,`. The capture
//!   trigger renders the same text in SQL ([`KeyPart`]'s `sql_*` functions), so both sides
//!   name a row alike.

use std::fmt::Write as _;

/// A value that can be part of a cached row's key: integers, text and UUIDs (and tuples of
/// them for composite keys).
///
/// ```
/// use lifeguard_core::cache::KeyPart;
///
/// let mut key = String::new();
/// 42i64.write_key(&mut key);
/// assert_eq!(key, "i:42");
/// key.clear();
/// (7i32, "a:b".to_string()).write_key(&mut key);
/// assert_eq!(key, "i:7,s:613a62");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a cache key",
    note = "the key and tenant columns of a cached model must be integers (i16, i32, i64), text or UUIDs"
)]
pub trait KeyPart {
    /// Appends the canonical text of the value.
    fn write_key(&self, out: &mut String);
}

macro_rules! integer_key_part {
    ($($t:ty),*) => {$(
        impl KeyPart for $t {
            fn write_key(&self, out: &mut String) {
                out.push_str("i:");
                push_decimal(out, i64::from(*self));
            }
        }
    )*};
}
integer_key_part!(i16, i32, i64);

/// Appends `n` in decimal, as `Display` writes it, without the formatting machinery: a key
/// is built on every cached read.
fn push_decimal(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    push_unsigned(out, n.unsigned_abs());
}

/// Appends `n` in decimal.
fn push_unsigned(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        // `n % 10` is below 10, so the digit is ASCII.
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    push_ascii(out, &digits[at..]);
}

/// Appends `n` as eight lowercase hex digits (`{:08x}`).
fn push_hex8(out: &mut String, n: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 8];
    for (i, d) in digits.iter_mut().enumerate() {
        *d = HEX[((n >> ((7 - i) * 4)) & 0xf) as usize];
    }
    push_ascii(out, &digits);
}

/// Appends digits written as ASCII bytes, in one copy.
fn push_ascii(out: &mut String, ascii: &[u8]) {
    // Always ASCII, so always valid UTF-8; checking is cheaper than a push per character.
    out.push_str(std::str::from_utf8(ascii).unwrap_or_default());
}

impl KeyPart for str {
    fn write_key(&self, out: &mut String) {
        out.push_str("s:");
        for b in self.as_bytes() {
            let _ = write!(out, "{b:02x}");
        }
    }
}

impl KeyPart for String {
    fn write_key(&self, out: &mut String) {
        self.as_str().write_key(out)
    }
}

impl KeyPart for uuid::Uuid {
    fn write_key(&self, out: &mut String) {
        let _ = write!(out, "u:{}", self.hyphenated());
    }
}

impl<T: KeyPart + ?Sized> KeyPart for &T {
    fn write_key(&self, out: &mut String) {
        (**self).write_key(out)
    }
}

macro_rules! tuple_key_part {
    ($($name:ident),+) => {
        impl<$($name: KeyPart),+> KeyPart for ($($name,)+) {
            #[allow(non_snake_case)]
            fn write_key(&self, out: &mut String) {
                let ($($name,)+) = self;
                let mut first = true;
                $(
                    if !std::mem::take(&mut first) {
                        out.push(',');
                    }
                    $name.write_key(out);
                )+
            }
        }
    };
}
tuple_key_part!(A);
tuple_key_part!(A, B);
tuple_key_part!(A, B, C);
tuple_key_part!(A, B, C, D);

/// How a key part of SQL type `sql_type` is rendered from the expression `expr` in SQL, the
/// same text [`KeyPart`] writes; `None` for a type the cache cannot key on.
pub(crate) fn sql_key_part(expr: &str, sql_type: &str) -> Option<String> {
    Some(match key_kind(sql_type)? {
        KeyKind::Integer => format!("('i:' || ({expr})::text)"),
        KeyKind::Text => format!("('s:' || encode(convert_to(({expr})::text, 'UTF8'), 'hex'))"),
        KeyKind::Uuid => format!("('u:' || ({expr})::text)"),
    })
}

/// The SQL expression turning key part `part` (text) back into a value of `sql_type`.
pub(crate) fn sql_key_value(part: &str, sql_type: &str) -> Option<String> {
    Some(match key_kind(sql_type)? {
        KeyKind::Integer => format!("(substr({part}, 3)::{sql_type})"),
        KeyKind::Text => {
            format!("(convert_from(decode(substr({part}, 3), 'hex'), 'UTF8')::{sql_type})")
        }
        KeyKind::Uuid => format!("(substr({part}, 3)::uuid)"),
    })
}

enum KeyKind {
    Integer,
    Text,
    Uuid,
}

fn key_kind(sql_type: &str) -> Option<KeyKind> {
    let t = sql_type.trim().to_ascii_lowercase();
    let base = t.split('(').next().unwrap_or(&t).trim();
    match base {
        "smallint" | "integer" | "int" | "bigint" | "int2" | "int4" | "int8" | "serial"
        | "bigserial" | "smallserial" => Some(KeyKind::Integer),
        "text" | "varchar" | "character varying" | "citext" => Some(KeyKind::Text),
        "uuid" => Some(KeyKind::Uuid),
        _ => None,
    }
}

/// The keys of one cached model's rows in one namespace and generation.
///
/// ```
/// use lifeguard_core::cache::key::{lease_key, KeySpace};
///
/// let space = KeySpace::new("app", 0x1234_abcd, 0, "public.authors");
/// let row = space.row("", "i:7");
/// assert_eq!(row, "lg:app:1234abcd:0:{public.authors::i:7}");
/// assert_eq!(lease_key(&row), format!("{row}:lease"));
/// ```
#[derive(Debug, Clone)]
pub struct KeySpace {
    /// `lg:<ns>:<fmt>:<gen>:{<table>:`, everything a row's key starts with.
    prefix: String,
}

impl KeySpace {
    /// The rows of `table` (`schema.table`) with layout hash `layout`, generation `gen`.
    pub fn new(ns: &str, layout: u32, gen: u64, table: &str) -> KeySpace {
        let mut prefix = String::with_capacity(PREFIX_FIXED + ns.len() + table.len());
        write_prefix(&mut prefix, ns, layout, gen, None, table);
        KeySpace { prefix }
    }

    /// The row key for the canonical `tenant` (empty when none) and `pk` texts.
    pub fn row(&self, tenant: &str, pk: &str) -> String {
        let mut key = String::with_capacity(self.prefix.len() + tenant.len() + pk.len() + 2);
        key.push_str(&self.prefix);
        key.push_str(tenant);
        key.push(':');
        key.push_str(pk);
        key.push('}');
        key
    }
}

/// The room a row key takes besides its namespace, table, tenant and key: `lg:`, the
/// layout's 8 hex digits, a generation of up to 20 digits, the separators and the braces.
const PREFIX_FIXED: usize = 3 + 1 + 8 + 1 + 20 + 2 + 1;

/// Writes `lg:<ns>:<fmt>:<gen>:{<table>:`, the table being `schema.table` when `schema` is
/// given.
fn write_prefix(
    out: &mut String,
    ns: &str,
    layout: u32,
    gen: u64,
    schema: Option<&str>,
    table: &str,
) {
    out.push_str("lg:");
    out.push_str(&ns_text(ns));
    out.push(':');
    push_hex8(out, layout);
    out.push(':');
    push_unsigned(out, gen);
    out.push_str(":{");
    if let Some(schema) = schema {
        out.push_str(schema);
        out.push('.');
    }
    out.push_str(table);
    out.push(':');
}

/// What the keys of one model's rows start with, borrowed, for building a single row's key
/// in one allocation (a read of one key has no prefix to share).
pub(crate) struct RowPrefix<'a> {
    /// The namespace.
    pub(crate) ns: &'a str,
    /// The layout hash.
    pub(crate) layout: u32,
    /// The generation.
    pub(crate) gen: u64,
    /// The table's schema, when its model names one: keys then say `schema.table`, as the
    /// outbox and the registry do (`capture::table_name`).
    pub(crate) schema: Option<&'a str>,
    /// The table.
    pub(crate) table: &'a str,
}

impl RowPrefix<'_> {
    /// The key of the row whose canonical key text `pk` writes, for the canonical `tenant`
    /// (empty when none): the same text as [`KeySpace::row`].
    pub(crate) fn row(&self, tenant: &str, pk: impl FnOnce(&mut String)) -> String {
        // Room for an integer key (`i:` and up to 20 digits); longer keys grow it once.
        let schema = self.schema.map_or(0, |s| s.len() + 1);
        let mut key = String::with_capacity(
            PREFIX_FIXED + self.ns.len() + schema + self.table.len() + tenant.len() + 24,
        );
        write_prefix(
            &mut key,
            self.ns,
            self.layout,
            self.gen,
            self.schema,
            self.table,
        );
        key.push_str(tenant);
        key.push(':');
        pk(&mut key);
        key.push('}');
        key
    }

    /// The key space of these rows, for building many keys on one prefix.
    pub(crate) fn space(&self) -> KeySpace {
        let schema = self.schema.map_or(0, |s| s.len() + 1);
        let mut prefix =
            String::with_capacity(PREFIX_FIXED + self.ns.len() + schema + self.table.len());
        write_prefix(
            &mut prefix,
            self.ns,
            self.layout,
            self.gen,
            self.schema,
            self.table,
        );
        KeySpace { prefix }
    }
}

/// The namespace as keys carry it: braces (and `%`) escaped, so that a namespace cannot
/// change which part of a key Redis Cluster hashes (a `{}` in it would part a row from
/// its lease). A namespace without them is used as it is.
fn ns_text(ns: &str) -> std::borrow::Cow<'_, str> {
    if !ns.contains(['{', '}', '%']) {
        return std::borrow::Cow::Borrowed(ns);
    }
    std::borrow::Cow::Owned(
        ns.replace('%', "%25")
            .replace('{', "%7B")
            .replace('}', "%7D"),
    )
}

/// The lease key of a row key.
pub fn lease_key(row_key: &str) -> String {
    format!("{row_key}:lease")
}

/// The heartbeat key of namespace `ns`.
pub fn heartbeat_key(ns: &str) -> String {
    format!("lg:{{{}}}:hb", ns_text(ns))
}

/// The epoch key of namespace `ns`.
pub fn epoch_key(ns: &str) -> String {
    format!("lg:{{{}}}:epoch", ns_text(ns))
}

/// The heartbeat key of shard `shard` of `shards` reflectors splitting namespace `ns`
/// ([`heartbeat_key`] when there is one): every shard's key shares the namespace's slot.
///
/// ```
/// use lifeguard_core::cache::key::shard_heartbeat_key;
/// assert_eq!(shard_heartbeat_key("app", 0, 1), "lg:{app}:hb");
/// assert_eq!(shard_heartbeat_key("app", 1, 2), "lg:{app}:hb:1");
/// ```
pub fn shard_heartbeat_key(ns: &str, shard: u32, shards: u32) -> String {
    match shards {
        0 | 1 => heartbeat_key(ns),
        _ => format!("lg:{{{}}}:hb:{shard}", ns_text(ns)),
    }
}

/// The epoch key of shard `shard` of `shards` ([`epoch_key`] when there is one).
pub fn shard_epoch_key(ns: &str, shard: u32, shards: u32) -> String {
    match shards {
        0 | 1 => epoch_key(ns),
        _ => format!("lg:{{{}}}:epoch:{shard}", ns_text(ns)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(part: impl KeyPart) -> String {
        let mut out = String::new();
        part.write_key(&mut out);
        out
    }

    #[test]
    fn parts_are_tagged_and_escaped() {
        assert_eq!(key(-5i16), "i:-5");
        for n in [0i64, 7, -1, 10, 99, 100, -100, i64::MAX, i64::MIN] {
            assert_eq!(key(n), format!("i:{n}"));
        }
        assert_eq!(key("}{:,"), "s:7d7b3a2c");
        let id = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(key(id), "u:01234567-89ab-cdef-0123-456789abcdef");
        assert_eq!(key((1i64, 2i64, "x")), "i:1,i:2,s:78");
    }

    #[test]
    fn braces_in_a_namespace_cannot_move_the_hash_tag() {
        let space = KeySpace::new("a{}b%", 1, 0, "t");
        let row = space.row("", "i:1");
        assert_eq!(row, "lg:a%7B%7Db%25:00000001:0:{t::i:1}");
        assert_eq!(heartbeat_key("{x}"), "lg:{%7Bx%7D}:hb");
        assert_eq!(
            crate::cache::redis::key_slot(row.as_bytes()),
            crate::cache::redis::key_slot(lease_key(&row).as_bytes())
        );
    }

    #[test]
    fn a_row_and_its_lease_share_the_hash_tag() {
        let space = KeySpace::new("app", 0xdead_beef, 3, "public.authors");
        let row = space.row("", "i:42");
        assert_eq!(row, "lg:app:deadbeef:3:{public.authors::i:42}");
        assert_eq!(
            lease_key(&row),
            "lg:app:deadbeef:3:{public.authors::i:42}:lease"
        );
        assert_eq!(heartbeat_key("app"), "lg:{app}:hb");
    }

    #[test]
    fn a_single_row_key_is_the_key_its_key_space_builds() {
        for (schema, table) in [(Some("public"), "authors"), (None, "authors")] {
            let qualified = match schema {
                Some(s) => format!("{s}.{table}"),
                None => table.to_owned(),
            };
            for (layout, gen) in [(0u32, 0u64), (0x0000_00af, 17), (u32::MAX, u64::MAX)] {
                let prefix = RowPrefix {
                    ns: "app",
                    layout,
                    gen,
                    schema,
                    table,
                };
                let space = KeySpace::new("app", layout, gen, &qualified);
                let row = prefix.row("s:74", |out| out.push_str("i:42"));
                assert_eq!(row, space.row("s:74", "i:42"));
                assert_eq!(
                    row,
                    format!("lg:app:{layout:08x}:{gen}:{{{qualified}:s:74:i:42}}")
                );
                assert_eq!(prefix.space().row("", "i:1"), space.row("", "i:1"));
            }
        }
    }

    #[test]
    fn sql_renders_what_rust_writes() {
        assert_eq!(
            sql_key_part("NEW.id", "bigint").unwrap(),
            "('i:' || (NEW.id)::text)"
        );
        assert!(sql_key_part("NEW.at", "timestamptz").is_none());
        assert_eq!(
            sql_key_value("k", "varchar(40)").unwrap(),
            "(convert_from(decode(substr(k, 3), 'hex'), 'UTF8')::varchar(40))"
        );
    }
}
