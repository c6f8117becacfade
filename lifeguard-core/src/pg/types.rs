//! Type support: the `ToSql`/`FromSql` boundary and the lookup of user-defined types.
//!
//! Built-in types come from `postgres-types`; enums, domains, composites, ranges and arrays
//! of them are described by the server once per connection and cached.

pub use postgres_types::{FromSql, IsNull, Json, Kind, ToSql, Type, WrongType};

use postgres_types::Field;

use super::call::Call;
use crate::error::{Error, Result};
use crate::rt::lock;

const TYPE_SQL: &str = "SELECT t.typname::text, t.typtype::text, n.nspname::text, t.typelem, \
     t.typbasetype, t.typrelid, COALESCE(r.rngsubtype, 0::oid), t.typcategory::text, \
     CASE WHEN t.typtype = 'e' THEN ARRAY(SELECT e.enumlabel::text FROM pg_catalog.pg_enum e \
          WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder) END \
     FROM pg_catalog.pg_type t \
     JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace \
     LEFT JOIN pg_catalog.pg_range r ON r.rngtypid = t.oid \
     WHERE t.oid = $1";

const FIELDS_SQL: &str = "SELECT attname::text, atttypid FROM pg_catalog.pg_attribute \
     WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum";

/// How deep a type may nest (an array of a domain over a composite with a range field...)
/// before the lookup gives up. Real schemas stay in single digits; a server describing a
/// cycle or an endless chain would otherwise recurse until the stack overflows.
const MAX_TYPE_DEPTH: usize = 32;

/// Asks the server what the type with `oid` is, recursing into element and base types.
pub(crate) fn lookup(call: &Call<'_>, oid: u32) -> Result<Type> {
    lookup_at(call, oid, 0)
}

fn lookup_at(call: &Call<'_>, oid: u32, depth: usize) -> Result<Type> {
    if depth >= MAX_TYPE_DEPTH {
        return Err(Error::protocol(format!(
            "type OID {oid} nests more than {MAX_TYPE_DEPTH} levels deep (a cycle in the \
             server's type descriptions?)"
        )));
    }
    let (rows, _) = call.query(TYPE_SQL, &[&oid])?;
    let row = rows
        .first()
        .ok_or_else(|| Error::protocol(format!("the server reported unknown type OID {oid}")))?;
    let name: String = row.try_get(0)?;
    let typtype: String = row.try_get(1)?;
    let schema: String = row.try_get(2)?;
    let elem: u32 = row.try_get(3)?;
    let base: u32 = row.try_get(4)?;
    let relid: u32 = row.try_get(5)?;
    let range_of: u32 = row.try_get(6)?;
    let category: String = row.try_get(7)?;
    let labels: Option<Vec<String>> = row.try_get(8)?;
    let kind = match typtype.as_str() {
        "e" => Kind::Enum(labels.unwrap_or_default()),
        "p" => Kind::Pseudo,
        "d" => Kind::Domain(resolve(call, base, depth)?),
        "r" => Kind::Range(resolve(call, range_of, depth)?),
        "c" => {
            let (rows, _) = call.query(FIELDS_SQL, &[&relid])?;
            let fields = rows
                .iter()
                .map(|r| {
                    Ok(Field::new(
                        r.try_get(0)?,
                        resolve(call, r.try_get(1)?, depth)?,
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            Kind::Composite(fields)
        }
        _ if category == "A" && elem != 0 => Kind::Array(resolve(call, elem, depth)?),
        _ => Kind::Simple,
    };
    Ok(Type::new(name, oid, kind, schema))
}

/// A nested type: built-in or cached, else looked up one level deeper (and then cached, as
/// [`Call::resolve_type`] does for top-level types).
fn resolve(call: &Call<'_>, oid: u32, depth: usize) -> Result<Type> {
    if let Some(t) = Type::from_oid(oid) {
        return Ok(t);
    }
    if let Some(t) = lock(&call.conn.types).get(&oid) {
        return Ok(t.clone());
    }
    let t = lookup_at(call, oid, depth + 1)?;
    lock(&call.conn.types).insert(oid, t.clone());
    Ok(t)
}

/// PostgreSQL's own limit on array dimensions (`MAXDIM`).
const MAX_ARRAY_DIMS: i32 = 6;

/// Checks that the sizes a binary array or composite value claims fit in its bytes, before
/// `FromSql` trusts them: `postgres-types` sizes a `Vec` from the header's element count,
/// so a header claiming 2^31-1 elements would make it allocate tens of gigabytes (and abort
/// the process) for a value of a few bytes. Elements of nested arrays and composites are
/// checked too; values of simple types cost one `match`.
pub(crate) fn check_claimed_sizes(ty: &Type, raw: &[u8]) -> std::result::Result<(), String> {
    check_at(ty, raw, 0)
}

fn check_at(ty: &Type, raw: &[u8], depth: usize) -> std::result::Result<(), String> {
    if depth >= MAX_TYPE_DEPTH {
        return Err(format!(
            "value nests more than {MAX_TYPE_DEPTH} levels deep"
        ));
    }
    match ty.kind() {
        Kind::Domain(base) => check_at(base, raw, depth + 1),
        Kind::Array(elem) => check_array(elem, raw, depth),
        Kind::Composite(fields) => check_composite(fields, raw, depth),
        _ => Ok(()),
    }
}

fn check_array(elem: &Type, raw: &[u8], depth: usize) -> std::result::Result<(), String> {
    let mut r = Reader(raw);
    let dims = r.i32()?;
    if !(0..=MAX_ARRAY_DIMS).contains(&dims) {
        return Err(format!("array claims {dims} dimensions"));
    }
    r.take(8)?; // has-nulls flag and element OID
    let mut count: u64 = if dims == 0 { 0 } else { 1 };
    for _ in 0..dims {
        let len = r.i32()?;
        r.take(4)?; // lower bound
        let len = u64::try_from(len).map_err(|_| format!("array dimension of length {len}"))?;
        count = count.saturating_mul(len);
    }
    // Every element carries at least its 4-byte length (-1 for NULL).
    let room = (r.0.len() / 4) as u64;
    if count > room {
        return Err(format!(
            "array claims {count} elements but carries {} bytes",
            r.0.len()
        ));
    }
    if !needs_check(elem) {
        return Ok(());
    }
    for _ in 0..count {
        if let Some(value) = r.value()? {
            check_at(elem, value, depth + 1)?;
        }
    }
    Ok(())
}

fn check_composite(fields: &[Field], raw: &[u8], depth: usize) -> std::result::Result<(), String> {
    let mut r = Reader(raw);
    let count = r.i32()?;
    // Every field carries at least its OID and its length.
    let room = r.0.len() / 8;
    if usize::try_from(count).map_or(true, |n| n > room) {
        return Err(format!(
            "composite claims {count} fields but carries {} bytes",
            r.0.len()
        ));
    }
    for i in 0..count as usize {
        r.take(4)?; // field OID
        let value = r.value()?;
        if let (Some(value), Some(field)) = (value, fields.get(i)) {
            if needs_check(field.type_()) {
                check_at(field.type_(), value, depth + 1)?;
            }
        }
    }
    Ok(())
}

/// Whether values of `ty` carry counts that `FromSql` would trust.
pub(crate) fn needs_check(ty: &Type) -> bool {
    matches!(
        ty.kind(),
        Kind::Array(_) | Kind::Composite(_) | Kind::Domain(_)
    )
}

/// A cursor over a value's bytes whose reads fail instead of panicking past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("value ends early".to_owned());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn i32(&mut self) -> std::result::Result<i32, String> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A length-prefixed value; `None` for NULL (a negative length).
    fn value(&mut self) -> std::result::Result<Option<&'a [u8]>, String> {
        match usize::try_from(self.i32()?) {
            Ok(n) => self.take(n).map(Some),
            Err(_) => Ok(None),
        }
    }
}

/// Fuzz entry point: the first byte picks an array or composite type, the rest is a binary
/// value of it; values that pass [`check_claimed_sizes`] are then decoded by `FromSql`, so
/// an allocation sized from a count the bytes cannot back shows up as an abort.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn fuzz_value(bytes: &[u8]) {
    let Some((&pick, raw)) = bytes.split_first() else {
        return;
    };
    let pair = Type::new(
        "pair".into(),
        99_999,
        Kind::Composite(vec![
            Field::new("xs".into(), Type::INT4_ARRAY),
            Field::new("name".into(), Type::TEXT),
        ]),
        "public".into(),
    );
    let pairs = Type::new(
        "_pair".into(),
        99_998,
        Kind::Array(pair.clone()),
        "public".into(),
    );
    let ty = match pick % 5 {
        0 => Type::INT4_ARRAY,
        1 => Type::TEXT_ARRAY,
        2 => Type::INT8_ARRAY,
        3 => pair,
        _ => pairs,
    };
    if check_claimed_sizes(&ty, raw).is_err() {
        return;
    }
    match pick % 5 {
        0 => drop(Vec::<Option<i32>>::from_sql(&ty, raw)),
        1 => drop(Vec::<Option<String>>::from_sql(&ty, raw)),
        2 => drop(Vec::<Option<i64>>::from_sql(&ty, raw)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn array_header(dims: &[i32], elem: Type) -> Vec<u8> {
        let mut out = (dims.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&elem.oid().to_be_bytes());
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
        }
        out
    }

    #[test]
    fn an_array_claiming_more_elements_than_bytes_is_refused() {
        let raw = array_header(&[i32::MAX], Type::TEXT);
        let e = check_claimed_sizes(&Type::TEXT_ARRAY, &raw).unwrap_err();
        assert!(e.contains("2147483647 elements"), "{e}");
        // Dimensions whose product overflows.
        let raw = array_header(&[i32::MAX, i32::MAX, 4], Type::INT4);
        assert!(check_claimed_sizes(&Type::INT4_ARRAY, &raw).is_err());
        assert!(check_claimed_sizes(&Type::INT4_ARRAY, &array_header(&[-1], Type::INT4)).is_err());
        assert!(check_claimed_sizes(&Type::INT4_ARRAY, &[0, 0]).is_err());
    }

    #[test]
    fn honest_arrays_pass() {
        let mut raw = array_header(&[2], Type::INT4);
        for v in [7i32, 8] {
            raw.extend_from_slice(&4i32.to_be_bytes());
            raw.extend_from_slice(&v.to_be_bytes());
        }
        check_claimed_sizes(&Type::INT4_ARRAY, &raw).unwrap();
        check_claimed_sizes(&Type::INT4_ARRAY, &array_header(&[], Type::INT4)).unwrap();
        check_claimed_sizes(&Type::INT4, &[1]).unwrap();
    }

    #[test]
    fn arrays_inside_composites_are_checked() {
        let ty = Type::new(
            "pair".into(),
            99_999,
            Kind::Composite(vec![Field::new("xs".into(), Type::INT4_ARRAY)]),
            "public".into(),
        );
        let inner = array_header(&[i32::MAX], Type::INT4);
        let mut raw = 1i32.to_be_bytes().to_vec();
        raw.extend_from_slice(&Type::INT4_ARRAY.oid().to_be_bytes());
        raw.extend_from_slice(&(inner.len() as i32).to_be_bytes());
        raw.extend_from_slice(&inner);
        assert!(check_claimed_sizes(&ty, &raw).is_err());
        let mut lying = i32::MAX.to_be_bytes().to_vec();
        lying.extend_from_slice(&[0; 8]);
        assert!(check_claimed_sizes(&ty, &lying).is_err());
    }
}
