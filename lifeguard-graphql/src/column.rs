//! Column types as GraphQL sees them: the scalar a column maps to, how a row's value becomes a
//! GraphQL value, and how a GraphQL value becomes a bound parameter of the column's exact
//! PostgreSQL type (a binary parameter must match the type the server inferred).

use async_graphql::{Name, Number, Value};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Utc};
use lifeguard_core::pg::{Row, Type};
use lifeguard_core::query::Expr;
use rust_decimal::Decimal;
use uuid::Uuid;

/// What a column holds, from the SQL type the model declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Bool,
    /// `text` and everything read as text (varchar, enums, unknown types: selected `::text`).
    Text,
    Uuid,
    TimestampTz,
    Timestamp,
    Date,
    Time,
    Numeric,
    Json,
    /// An array column: shown as a list, filtered only by `isNull`.
    Array(Elem),
}

/// The element kinds an array column can have (others are read as text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Elem {
    Int4,
    Int8,
    Float8,
    Bool,
    Text,
}

impl Kind {
    /// The kind of a column declared with `sql_type` (as the derive writes it, or the
    /// `column_type` attribute).
    pub(crate) fn of(sql_type: &str) -> Kind {
        let t = sql_type.trim().to_ascii_lowercase();
        if let Some(elem) = t.strip_suffix("[]") {
            return match Kind::of(elem) {
                Kind::Int2 | Kind::Int4 => Kind::Array(Elem::Int4),
                Kind::Int8 => Kind::Array(Elem::Int8),
                Kind::Float8 => Kind::Array(Elem::Float8),
                Kind::Bool => Kind::Array(Elem::Bool),
                _ => Kind::Array(Elem::Text),
            };
        }
        let base = t.split('(').next().unwrap_or("").trim();
        match base {
            "smallint" | "int2" | "smallserial" => Kind::Int2,
            "integer" | "int" | "int4" | "serial" => Kind::Int4,
            "bigint" | "int8" | "bigserial" => Kind::Int8,
            "real" | "float4" => Kind::Float4,
            "double precision" | "float8" | "float" => Kind::Float8,
            "boolean" | "bool" => Kind::Bool,
            "uuid" => Kind::Uuid,
            "timestamptz" | "timestamp with time zone" => Kind::TimestampTz,
            "timestamp" | "timestamp without time zone" => Kind::Timestamp,
            "date" => Kind::Date,
            "time" | "time without time zone" => Kind::Time,
            "numeric" | "decimal" => Kind::Numeric,
            "json" | "jsonb" => Kind::Json,
            _ => Kind::Text,
        }
    }

    /// The GraphQL scalar of a value of this kind (for an array, of its elements).
    pub(crate) fn scalar(self) -> &'static str {
        match self {
            Kind::Int2 | Kind::Int4 | Kind::Array(Elem::Int4) => "Int",
            Kind::Int8 | Kind::Array(Elem::Int8) => "BigInt",
            Kind::Float4 | Kind::Float8 | Kind::Array(Elem::Float8) => "Float",
            Kind::Bool | Kind::Array(Elem::Bool) => "Boolean",
            Kind::Text | Kind::Array(Elem::Text) => "String",
            Kind::Uuid => "UUID",
            Kind::TimestampTz => "DateTime",
            Kind::Timestamp => "LocalDateTime",
            Kind::Date => "Date",
            Kind::Time => "Time",
            Kind::Numeric => "Decimal",
            Kind::Json => "JSON",
        }
    }

    /// Whether the column can be ordered and compared with `<`/`>`.
    pub(crate) fn ordered(self) -> bool {
        !matches!(self, Kind::Json | Kind::Bool | Kind::Array(_))
    }

    /// The column as written in a select list or a condition: text-read kinds are cast, so
    /// an enum or unknown type reads (and compares) as its text.
    pub(crate) fn sql(self, qualified_column: &str) -> String {
        match self {
            Kind::Text => format!("{qualified_column}::text"),
            _ => qualified_column.to_owned(),
        }
    }
}

/// Why an input value cannot be a parameter of a column.
pub(crate) fn mismatch(kind: Kind, what: &str) -> String {
    format!("expected {} ({what})", kind.scalar())
}

/// The custom scalars the generated schema uses, with what each one's values look like.
pub(crate) const CUSTOM_SCALARS: &[(&str, &str)] = &[
    (
        "BigInt",
        "A 64-bit integer, as a string of decimal digits (also accepted as an Int).",
    ),
    ("UUID", "A UUID in its hyphenated text form."),
    (
        "DateTime",
        "A date and time with an offset, RFC 3339 (`2026-12-07T12:00:00Z`).",
    ),
    (
        "LocalDateTime",
        "A date and time without an offset (`2026-12-07T12:00:00`).",
    ),
    ("Date", "A calendar date (`2026-12-07`)."),
    ("Time", "A time of day (`12:00:00`)."),
    ("Decimal", "An exact decimal number, as a string (`12.50`)."),
    ("JSON", "Any JSON value."),
];

/// Column `idx` of `row` as a GraphQL value, by the type the server sent.
pub(crate) fn decode(row: &Row, idx: usize) -> lifeguard_core::Result<Value> {
    let Some(ty) = row.type_of(idx) else {
        return Ok(Value::Null);
    };
    let ty = ty.clone();
    let value = match ty {
        Type::INT2 => opt(row.try_get::<_, Option<i16>>(idx)?, Value::from),
        Type::INT4 => opt(row.try_get::<_, Option<i32>>(idx)?, Value::from),
        Type::INT8 => opt(row.try_get::<_, Option<i64>>(idx)?, |v| {
            Value::String(v.to_string())
        }),
        Type::OID => opt(row.try_get::<_, Option<u32>>(idx)?, Value::from),
        Type::FLOAT4 => opt(row.try_get::<_, Option<f32>>(idx)?, |v| float(v.into())),
        Type::FLOAT8 => opt(row.try_get::<_, Option<f64>>(idx)?, float),
        Type::BOOL => opt(row.try_get::<_, Option<bool>>(idx)?, Value::Boolean),
        Type::UUID => opt(row.try_get::<_, Option<Uuid>>(idx)?, |v| {
            Value::String(v.to_string())
        }),
        Type::TIMESTAMPTZ => opt(row.try_get::<_, Option<DateTime<Utc>>>(idx)?, |v| {
            Value::String(v.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        }),
        Type::TIMESTAMP => opt(row.try_get::<_, Option<NaiveDateTime>>(idx)?, |v| {
            Value::String(v.format("%Y-%m-%dT%H:%M:%S%.f").to_string())
        }),
        Type::DATE => opt(row.try_get::<_, Option<NaiveDate>>(idx)?, |v| {
            Value::String(v.to_string())
        }),
        Type::TIME => opt(row.try_get::<_, Option<NaiveTime>>(idx)?, |v| {
            Value::String(v.to_string())
        }),
        Type::NUMERIC => opt(row.try_get::<_, Option<Decimal>>(idx)?, |v| {
            Value::String(v.to_string())
        }),
        Type::JSON | Type::JSONB => opt(row.try_get::<_, Option<serde_json::Value>>(idx)?, |v| {
            Value::from_json(v).unwrap_or(Value::Null)
        }),
        Type::INT4_ARRAY | Type::INT2_ARRAY => list(
            row.try_get::<_, Option<Vec<Option<i32>>>>(idx)?,
            Value::from,
        ),
        Type::INT8_ARRAY => list(row.try_get::<_, Option<Vec<Option<i64>>>>(idx)?, |v| {
            Value::String(v.to_string())
        }),
        Type::FLOAT8_ARRAY => list(row.try_get::<_, Option<Vec<Option<f64>>>>(idx)?, float),
        Type::BOOL_ARRAY => list(
            row.try_get::<_, Option<Vec<Option<bool>>>>(idx)?,
            Value::Boolean,
        ),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => list(
            row.try_get::<_, Option<Vec<Option<String>>>>(idx)?,
            Value::String,
        ),
        _ => opt(row.try_get::<_, Option<String>>(idx)?, Value::String),
    };
    Ok(value)
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
    v.map_or(Value::Null, f)
}

fn list<T>(v: Option<Vec<Option<T>>>, f: impl Fn(T) -> Value) -> Value {
    v.map_or(Value::Null, |items| {
        Value::List(
            items
                .into_iter()
                .map(|i| i.map_or(Value::Null, &f))
                .collect(),
        )
    })
}

/// A float as GraphQL can carry it (NaN and infinities have no JSON form: null).
fn float(v: f64) -> Value {
    Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// `value` as one bound parameter of a column of `kind`.
pub(crate) fn param(kind: Kind, value: &Value) -> Result<Expr, String> {
    Ok(match kind {
        Kind::Int2 => Expr::val(i16::try_from(int(value, kind)?).map_err(|_| range(kind))?),
        Kind::Int4 => Expr::val(i32::try_from(int(value, kind)?).map_err(|_| range(kind))?),
        Kind::Int8 => Expr::val(int(value, kind)?),
        Kind::Float4 => Expr::val(number(value, kind)? as f32),
        Kind::Float8 => Expr::val(number(value, kind)?),
        Kind::Bool => match value {
            Value::Boolean(b) => Expr::val(*b),
            _ => return Err(mismatch(kind, "a boolean")),
        },
        Kind::Text => Expr::val(text(value, kind)?.to_owned()),
        Kind::Uuid => Expr::val(parse::<Uuid>(value, kind)?),
        Kind::TimestampTz => Expr::val(
            DateTime::parse_from_rfc3339(text(value, kind)?)
                .map_err(|_| mismatch(kind, "RFC 3339"))?
                .with_timezone(&Utc),
        ),
        Kind::Timestamp => Expr::val(parse::<NaiveDateTime>(value, kind)?),
        Kind::Date => Expr::val(parse::<NaiveDate>(value, kind)?),
        Kind::Time => Expr::val(parse::<NaiveTime>(value, kind)?),
        Kind::Numeric => Expr::val(decimal(value, kind)?),
        Kind::Json => Expr::val(
            value
                .clone()
                .into_json()
                .map_err(|_| mismatch(kind, "JSON"))?,
        ),
        Kind::Array(_) => return Err("array columns compare only with isNull".into()),
    })
}

/// `values` as one array parameter of a column of `kind` (for `= ANY($1)`).
pub(crate) fn list_param(kind: Kind, values: &[Value]) -> Result<Expr, String> {
    fn each<T: lifeguard_core::pg::ToSql + Send + Sync + 'static>(
        values: &[Value],
        f: impl Fn(&Value) -> Result<T, String>,
    ) -> Result<Expr, String> {
        Ok(Expr::val(
            values.iter().map(f).collect::<Result<Vec<T>, String>>()?,
        ))
    }
    match kind {
        Kind::Int2 => each(values, |v| {
            i16::try_from(int(v, kind)?).map_err(|_| range(kind))
        }),
        Kind::Int4 => each(values, |v| {
            i32::try_from(int(v, kind)?).map_err(|_| range(kind))
        }),
        Kind::Int8 => each(values, |v| int(v, kind)),
        Kind::Float4 => each(values, |v| number(v, kind).map(|f| f as f32)),
        Kind::Float8 => each(values, |v| number(v, kind)),
        Kind::Bool => each(values, |v| match v {
            Value::Boolean(b) => Ok(*b),
            _ => Err(mismatch(kind, "a boolean")),
        }),
        Kind::Text => each(values, |v| text(v, kind).map(str::to_owned)),
        Kind::Uuid => each(values, |v| parse::<Uuid>(v, kind)),
        Kind::TimestampTz => each(values, |v| {
            DateTime::parse_from_rfc3339(text(v, kind)?)
                .map(|d| d.with_timezone(&Utc))
                .map_err(|_| mismatch(kind, "RFC 3339"))
        }),
        Kind::Timestamp => each(values, |v| parse::<NaiveDateTime>(v, kind)),
        Kind::Date => each(values, |v| parse::<NaiveDate>(v, kind)),
        Kind::Time => each(values, |v| parse::<NaiveTime>(v, kind)),
        Kind::Numeric => each(values, |v| decimal(v, kind)),
        Kind::Json | Kind::Array(_) => Err(format!("{} values cannot be listed", kind.scalar())),
    }
}

fn range(kind: Kind) -> String {
    format!("out of range for {}", kind.scalar())
}

fn int(value: &Value, kind: Kind) -> Result<i64, String> {
    match value {
        Value::Number(n) => n.as_i64().ok_or_else(|| mismatch(kind, "an integer")),
        // BigInt travels as a string.
        Value::String(s) if kind == Kind::Int8 => {
            s.trim().parse().map_err(|_| mismatch(kind, "digits"))
        }
        _ => Err(mismatch(kind, "an integer")),
    }
}

fn number(value: &Value, kind: Kind) -> Result<f64, String> {
    match value {
        Value::Number(n) => n.as_f64().ok_or_else(|| mismatch(kind, "a number")),
        _ => Err(mismatch(kind, "a number")),
    }
}

fn text(value: &Value, kind: Kind) -> Result<&str, String> {
    match value {
        Value::String(s) => Ok(s),
        // Enum columns read as text; a GraphQL enum literal names the label.
        Value::Enum(name) => Ok(Name::as_str(name)),
        _ => Err(mismatch(kind, "a string")),
    }
}

fn parse<T: std::str::FromStr>(value: &Value, kind: Kind) -> Result<T, String> {
    text(value, kind)?
        .parse()
        .map_err(|_| mismatch(kind, "malformed"))
}

fn decimal(value: &Value, kind: Kind) -> Result<Decimal, String> {
    match value {
        Value::Number(n) => n
            .to_string()
            .parse()
            .map_err(|_| mismatch(kind, "malformed")),
        _ => parse(value, kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_map_to_kinds() {
        assert_eq!(Kind::of("bigint"), Kind::Int8);
        assert_eq!(Kind::of("varchar(40)"), Kind::Text);
        assert_eq!(Kind::of("double precision"), Kind::Float8);
        assert_eq!(Kind::of("text[]"), Kind::Array(Elem::Text));
        assert_eq!(Kind::of("integer[]"), Kind::Array(Elem::Int4));
        assert_eq!(Kind::of("mood"), Kind::Text);
        assert_eq!(Kind::of("timestamptz").scalar(), "DateTime");
    }

    #[test]
    fn parameters_refuse_what_does_not_fit_the_column() {
        assert!(param(Kind::Int4, &Value::from(7)).is_ok());
        assert_eq!(
            param(Kind::Int2, &Value::from(70_000)).unwrap_err(),
            "out of range for Int"
        );
        assert!(param(Kind::Int8, &Value::String("9007199254740993".into())).is_ok());
        assert!(param(Kind::Int4, &Value::String("7".into())).is_err());
        assert!(param(Kind::Uuid, &Value::String("nope".into())).is_err());
        assert!(param(Kind::Numeric, &Value::String("12.50".into())).is_ok());
        assert!(list_param(Kind::Int4, &[Value::from(1), Value::from(2)]).is_ok());
        assert!(list_param(Kind::Int4, &[Value::from(1), Value::Boolean(true)]).is_err());
    }
}
