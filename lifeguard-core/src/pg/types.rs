//! Type support: the `ToSql`/`FromSql` boundary and the lookup of user-defined types.
//!
//! Built-in types come from `postgres-types`; enums, domains, composites, ranges and arrays
//! of them are described by the server once per connection and cached.

pub use postgres_types::{FromSql, IsNull, Json, Kind, ToSql, Type, WrongType};

use postgres_types::Field;

use super::call::Call;
use crate::error::{Error, Result};

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

/// Asks the server what the type with `oid` is, recursing into element and base types.
pub(crate) fn lookup(call: &Call<'_>, oid: u32) -> Result<Type> {
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
        "d" => Kind::Domain(resolve(call, base)?),
        "r" => Kind::Range(resolve(call, range_of)?),
        "c" => {
            let (rows, _) = call.query(FIELDS_SQL, &[&relid])?;
            let fields = rows
                .iter()
                .map(|r| Ok(Field::new(r.try_get(0)?, resolve(call, r.try_get(1)?)?)))
                .collect::<Result<Vec<_>>>()?;
            Kind::Composite(fields)
        }
        _ if category == "A" && elem != 0 => Kind::Array(resolve(call, elem)?),
        _ => Kind::Simple,
    };
    Ok(Type::new(name, oid, kind, schema))
}

fn resolve(call: &Call<'_>, oid: u32) -> Result<Type> {
    call.resolve_type(oid)
}
