//! Records set field by field from JSON values: what generated APIs (GraphQL) use to write
//! through the ORM while knowing a model only as a type parameter.
//!
//! [`FromInput`] turns one JSON value into a field type; [`InputRecord`], implemented by
//! `#[derive(LifeModel)]` for every record, sets a field by its SQL column name. A field
//! whose type has no `FromInput` impl (a user newtype with its own `ToSql`/`FromSql`) still
//! compiles: the record reports it [`InputError::NotWritable`].

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;

use super::LifeRecord;

/// A field type a record can take from a JSON value.
pub trait FromInput: Sized {
    /// Converts `value`, or says in a short message why it cannot (the message never
    /// echoes more than a few dozen characters of the input).
    fn from_input(value: &Value) -> Result<Self, String>;
}

/// A record whose fields can be set by SQL column name from JSON values (implemented by
/// `#[derive(LifeModel)]`, which writes the record, for every record).
///
/// ```
/// use lifeguard_core::model::{ActiveValue, InputError, InputRecord};
/// use lifeguard_core::LifeModel;
/// use serde_json::json;
///
/// #[derive(Debug, Clone, LifeModel)]
/// #[lifeguard(table_name = "users")]
/// pub struct User {
///     #[lifeguard(primary_key, auto_increment)]
///     pub id: i64,
///     #[lifeguard(column_name = "email_address")]
///     pub email: String,
///     pub nickname: Option<String>,
/// }
///
/// let mut record = UserRecord::default();
/// record.set_input("email_address", &json!("a@example.com")).unwrap();
/// record.set_input("nickname", &json!(null)).unwrap();
/// assert!(matches!(&record.email, ActiveValue::Set(e) if e == "a@example.com"));
/// assert!(matches!(record.nickname, ActiveValue::Set(None)));
/// // GraphQL sends a BigInt as a string.
/// record.set_input("id", &json!("9007199254740993")).unwrap();
///
/// assert!(UserRecord::accepts_input("email_address"));
/// assert!(!UserRecord::accepts_input("email")); // the SQL name, not the field name
/// assert_eq!(record.set_input("email", &json!("x")), Err(InputError::UnknownColumn));
/// assert_eq!(
///     record.set_input("nickname", &json!(7)),
///     Err(InputError::Invalid("expected a string, got a number".to_owned()))
/// );
/// ```
pub trait InputRecord: LifeRecord {
    /// Whether the column exists and its field type implements [`FromInput`].
    fn accepts_input(column: &str) -> bool;

    /// Sets that field to `Set(value)`; on an error the field is left as it was.
    fn set_input(&mut self, column: &str, value: &Value) -> Result<(), InputError>;

    /// The variants of the column's `#[derive(LifeEnum)]` type (see [`InputEnum`]), also
    /// through `Option` and `Vec`; `None` for any other column. It lets a generated schema
    /// declare an enum type knowing the model only as a type parameter.
    fn input_enum(column: &str) -> Option<&'static [EnumVariant]> {
        let _ = column;
        None
    }
}

/// Why [`InputRecord::set_input`] refused a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    /// The record has no column of that SQL name.
    UnknownColumn,
    /// The column's field type does not implement [`FromInput`].
    NotWritable,
    /// The value does not fit the field type; the message says why.
    Invalid(String),
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::UnknownColumn => f.write_str("no such column"),
            InputError::NotWritable => f.write_str("this column cannot be set from input"),
            InputError::Invalid(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for InputError {}

/// A `#[derive(LifeEnum)]` type's variants, in declaration order, as input and generated
/// schemas see them.
///
/// ```
/// use lifeguard_core::model::{EnumVariant, InputEnum};
/// use lifeguard_core::LifeEnum;
///
/// #[derive(Debug, Clone, Copy, PartialEq, LifeEnum)]
/// #[lifeguard(repr = "i16")]
/// pub enum Priority { Low = 1, InReview = 5 }
///
/// assert_eq!(
///     Priority::VARIANTS[1],
///     EnumVariant { label: "in_review", name: Some("IN_REVIEW"), stored: Some(5) }
/// );
/// ```
pub trait InputEnum {
    /// Every variant, in declaration order.
    const VARIANTS: &'static [EnumVariant];
}

/// One variant of a [`InputEnum`] type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnumVariant {
    /// Its label (`in_stock`): what a text column stores.
    pub label: &'static str,
    /// The label in GraphQL enum value form (`IN_STOCK`: ASCII letters and digits upper-cased,
    /// anything else `_`), which `FromInput` accepts too; `None` when that form is not a
    /// GraphQL name (`1ST`, `__X`).
    pub name: Option<&'static str>,
    /// The integer an integer column stores (`repr = "i16"`, ...); `None` when the column
    /// stores the label.
    pub stored: Option<i64>,
}

/// The longest piece of input an error message repeats.
const ECHO_CHARS: usize = 40;

/// `text` quoted for a message, cut to [`ECHO_CHARS`] characters.
pub(crate) fn echo(text: &str) -> String {
    match text.char_indices().nth(ECHO_CHARS) {
        Some((cut, _)) => format!("{:?}...", &text[..cut]),
        None => format!("{text:?}"),
    }
}

/// What kind of JSON value `value` is, for "expected X, got Y".
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The message for a value of the wrong JSON kind.
fn expected(what: &str, value: &Value) -> String {
    format!("expected {what}, got {}", kind(value))
}

/// The string inside `value`, or the wrong-kind message naming `what`.
fn string<'a>(value: &'a Value, what: &str) -> Result<&'a str, String> {
    value.as_str().ok_or_else(|| expected(what, value))
}

impl FromInput for bool {
    fn from_input(value: &Value) -> Result<Self, String> {
        value.as_bool().ok_or_else(|| expected("a boolean", value))
    }
}

/// A JSON integer, whatever its size; the callers check the range.
fn integer(value: &Value, bits: u32) -> Result<i64, String> {
    match value {
        Value::Number(n) => match (n.as_i64(), n.is_u64()) {
            (Some(i), _) => Ok(i),
            (None, true) => Err(out_of_range(bits)),
            (None, false) => Err("expected an integer, got a fractional number".to_owned()),
        },
        other => Err(expected("an integer", other)),
    }
}

fn out_of_range(bits: u32) -> String {
    format!("out of range for a {bits}-bit integer")
}

impl FromInput for i16 {
    fn from_input(value: &Value) -> Result<Self, String> {
        i16::try_from(integer(value, 16)?).map_err(|_| out_of_range(16))
    }
}

impl FromInput for i32 {
    fn from_input(value: &Value) -> Result<Self, String> {
        i32::try_from(integer(value, 32)?).map_err(|_| out_of_range(32))
    }
}

/// A JSON integer, or a decimal string: GraphQL sends a `BigInt` as a string because
/// JavaScript numbers lose precision past 2^53.
impl FromInput for i64 {
    fn from_input(value: &Value) -> Result<Self, String> {
        let Value::String(s) = value else {
            return integer(value, 64);
        };
        let digits = s.strip_prefix('-').unwrap_or(s);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{} is not an integer", echo(s)));
        }
        s.parse().map_err(|_| out_of_range(64))
    }
}

impl FromInput for f64 {
    fn from_input(value: &Value) -> Result<Self, String> {
        value.as_f64().ok_or_else(|| expected("a number", value))
    }
}

impl FromInput for f32 {
    fn from_input(value: &Value) -> Result<Self, String> {
        let wide = f64::from_input(value)?;
        // Rounding to the nearest f32 is the point; only overflow to infinity is refused.
        #[allow(clippy::cast_possible_truncation)]
        let narrow = wide as f32;
        if narrow.is_finite() {
            Ok(narrow)
        } else {
            Err("out of range for a 32-bit float".to_owned())
        }
    }
}

impl FromInput for String {
    fn from_input(value: &Value) -> Result<Self, String> {
        string(value, "a string").map(str::to_owned)
    }
}

impl FromInput for uuid::Uuid {
    fn from_input(value: &Value) -> Result<Self, String> {
        let s = string(value, "a UUID string")?;
        uuid::Uuid::parse_str(s).map_err(|_| format!("{} is not a UUID", echo(s)))
    }
}

/// `YYYY-MM-DD`.
impl FromInput for NaiveDate {
    fn from_input(value: &Value) -> Result<Self, String> {
        let s = string(value, "a date string")?;
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map_err(|_| format!("{} is not a date (YYYY-MM-DD)", echo(s)))
    }
}

/// `HH:MM:SS`, with optional fractional seconds.
impl FromInput for NaiveTime {
    fn from_input(value: &Value) -> Result<Self, String> {
        let s = string(value, "a time string")?;
        NaiveTime::parse_from_str(s, "%H:%M:%S%.f")
            .map_err(|_| format!("{} is not a time (HH:MM:SS)", echo(s)))
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.f]`; an RFC 3339 string with an offset is taken in UTC.
impl FromInput for NaiveDateTime {
    fn from_input(value: &Value) -> Result<Self, String> {
        let s = string(value, "a date-time string")?;
        NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
            .or_else(|_| DateTime::parse_from_rfc3339(s).map(|t| t.naive_utc()))
            .map_err(|_| format!("{} is not a date-time (RFC 3339)", echo(s)))
    }
}

/// An RFC 3339 string with an offset, converted to UTC.
impl FromInput for DateTime<Utc> {
    fn from_input(value: &Value) -> Result<Self, String> {
        DateTime::<FixedOffset>::from_input(value).map(|t| t.with_timezone(&Utc))
    }
}

/// An RFC 3339 string with an offset.
impl FromInput for DateTime<FixedOffset> {
    fn from_input(value: &Value) -> Result<Self, String> {
        let s = string(value, "a date-time string")?;
        DateTime::parse_from_rfc3339(s)
            .map_err(|_| format!("{} is not an RFC 3339 date-time with an offset", echo(s)))
    }
}

/// A decimal string (`"12.50"`, `"1e3"`) or a JSON number; a number is read from its JSON
/// text, not through a float, so `0.1` stays exactly `0.1`.
impl FromInput for Decimal {
    fn from_input(value: &Value) -> Result<Self, String> {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => return Err(expected("a decimal string or a number", other)),
        };
        Decimal::from_str(&text)
            .or_else(|_| Decimal::from_scientific(&text))
            .map_err(|_| format!("{} is not a decimal number", echo(&text)))
    }
}

/// Any JSON, as it is.
impl FromInput for Value {
    fn from_input(value: &Value) -> Result<Self, String> {
        Ok(value.clone())
    }
}

/// `null` is `None`.
impl<T: FromInput> FromInput for Option<T> {
    fn from_input(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            other => T::from_input(other).map(Some),
        }
    }
}

/// A JSON list; an error names the item's index.
impl<T: FromInput> FromInput for Vec<T> {
    fn from_input(value: &Value) -> Result<Self, String> {
        let Value::Array(items) = value else {
            return Err(expected("a list", value));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| T::from_input(item).map_err(|e| format!("item {i}: {e}")))
            .collect()
    }
}

pub(crate) mod probe;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn from<T: FromInput>(value: Value) -> Result<T, String> {
        T::from_input(&value)
    }

    #[test]
    fn integers_take_json_integers_in_range() {
        assert_eq!(from::<i16>(json!(-32768)), Ok(i16::MIN));
        assert_eq!(from::<i16>(json!(32768)), Err(out_of_range(16)));
        assert_eq!(from::<i32>(json!(7)), Ok(7));
        assert_eq!(
            from::<i32>(json!(2_147_483_648_i64)),
            Err("out of range for a 32-bit integer".to_owned())
        );
        assert_eq!(from::<i64>(json!(i64::MIN)), Ok(i64::MIN));
        assert_eq!(from::<i64>(json!(u64::MAX)), Err(out_of_range(64)));
        assert_eq!(
            from::<i32>(json!(1.5)),
            Err("expected an integer, got a fractional number".to_owned())
        );
        assert_eq!(
            from::<i32>(json!("7")),
            Err("expected an integer, got a string".to_owned())
        );
        assert_eq!(
            from::<i32>(json!(null)),
            Err("expected an integer, got null".to_owned())
        );
    }

    #[test]
    fn i64_also_takes_a_decimal_string() {
        assert_eq!(
            from::<i64>(json!("9007199254740993")),
            Ok(9_007_199_254_740_993)
        );
        assert_eq!(from::<i64>(json!("-42")), Ok(-42));
        assert_eq!(
            from::<i64>(json!("9223372036854775808")),
            Err(out_of_range(64))
        );
        for bad in ["", "-", "+1", " 1", "1.0", "1e3", "0x10"] {
            assert_eq!(
                from::<i64>(json!(bad)),
                Err(format!("{bad:?} is not an integer")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn floats_bools_and_strings() {
        assert_eq!(from::<f64>(json!(3)), Ok(3.0));
        assert_eq!(from::<f32>(json!(0.5)), Ok(0.5));
        assert_eq!(
            from::<f32>(json!(1e300)),
            Err("out of range for a 32-bit float".to_owned())
        );
        assert_eq!(
            from::<f64>(json!("1")),
            Err("expected a number, got a string".to_owned())
        );
        assert_eq!(from::<bool>(json!(true)), Ok(true));
        assert_eq!(
            from::<bool>(json!(1)),
            Err("expected a boolean, got a number".to_owned())
        );
        assert_eq!(from::<String>(json!("héllo")), Ok("héllo".to_owned()));
        assert_eq!(
            from::<String>(json!([])),
            Err("expected a string, got a list".to_owned())
        );
    }

    #[test]
    fn uuids_and_dates_parse_from_strings() {
        let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        assert_eq!(
            from::<uuid::Uuid>(json!(id)).map(|u| u.to_string()),
            Ok(id.to_owned())
        );
        assert_eq!(
            from::<uuid::Uuid>(json!("nope")),
            Err("\"nope\" is not a UUID".to_owned())
        );
        assert_eq!(
            from::<NaiveDate>(json!("2024-02-29")),
            Ok(NaiveDate::from_ymd_opt(2024, 2, 29).expect("a real date"))
        );
        assert!(from::<NaiveDate>(json!("2023-02-29")).is_err());
        assert_eq!(
            from::<NaiveTime>(json!("13:05:00.25")),
            Ok(NaiveTime::from_hms_milli_opt(13, 5, 0, 250).expect("a real time"))
        );
        let utc = from::<DateTime<Utc>>(json!("2024-01-02T03:04:05+02:00")).map(|t| t.to_rfc3339());
        assert_eq!(utc, Ok("2024-01-02T01:04:05+00:00".to_owned()));
        let fixed = from::<DateTime<FixedOffset>>(json!("2024-01-02T03:04:05-05:30"));
        assert_eq!(
            fixed.map(|t| t.offset().local_minus_utc()),
            Ok(-(5 * 3600 + 1800))
        );
        assert!(from::<DateTime<Utc>>(json!("2024-01-02T03:04:05")).is_err());
        let naive = NaiveDate::from_ymd_opt(2024, 1, 2)
            .and_then(|d| d.and_hms_opt(3, 4, 5))
            .expect("a real date-time");
        assert_eq!(
            from::<NaiveDateTime>(json!("2024-01-02T03:04:05")),
            Ok(naive)
        );
        assert_eq!(
            from::<NaiveDateTime>(json!("2024-01-02T05:04:05+02:00")),
            Ok(naive)
        );
        assert_eq!(
            from::<NaiveDate>(json!(20240102)),
            Err("expected a date string, got a number".to_owned())
        );
    }

    #[test]
    fn decimals_keep_their_digits() {
        assert_eq!(
            from::<Decimal>(json!("12.50")).map(|d| d.to_string()),
            Ok("12.50".to_owned())
        );
        assert_eq!(from::<Decimal>(json!(0.1)), Ok(Decimal::new(1, 1)));
        assert_eq!(from::<Decimal>(json!("1e3")), Ok(Decimal::new(1000, 0)));
        assert_eq!(from::<Decimal>(json!(12)), Ok(Decimal::new(12, 0)));
        assert_eq!(
            from::<Decimal>(json!("ten")),
            Err("\"ten\" is not a decimal number".to_owned())
        );
        assert_eq!(
            from::<Decimal>(json!(true)),
            Err("expected a decimal string or a number, got a boolean".to_owned())
        );
    }

    #[test]
    fn json_options_and_lists() {
        let doc = json!({"a": [1, null]});
        assert_eq!(from::<Value>(doc.clone()), Ok(doc));
        assert_eq!(from::<Option<i32>>(json!(null)), Ok(None));
        assert_eq!(from::<Option<i32>>(json!(3)), Ok(Some(3)));
        assert_eq!(from::<Vec<i64>>(json!([1, "2"])), Ok(vec![1, 2]));
        assert_eq!(
            from::<Vec<i32>>(json!([1, "x"])),
            Err("item 1: expected an integer, got a string".to_owned())
        );
        assert_eq!(
            from::<Vec<Option<bool>>>(json!([null, true])),
            Ok(vec![None, Some(true)])
        );
        assert_eq!(
            from::<Vec<i32>>(json!(1)),
            Err("expected a list, got a number".to_owned())
        );
    }

    #[test]
    fn messages_never_echo_much_input() {
        let huge = "x".repeat(1_000_000);
        for err in [
            from::<uuid::Uuid>(json!(huge)),
            from::<i64>(json!(huge)).map(|_| uuid::Uuid::nil()),
            from::<Decimal>(json!(huge)).map(|_| uuid::Uuid::nil()),
            from::<DateTime<Utc>>(json!(huge)).map(|_| uuid::Uuid::nil()),
        ] {
            let message = err.expect_err("not a valid value");
            assert!(message.len() < 100, "{message}");
            assert!(message.contains(&"x".repeat(ECHO_CHARS)), "{message}");
        }
        // The cut falls on a character boundary.
        assert_eq!(echo(&"é".repeat(50)), format!("{:?}...", "é".repeat(40)));
    }

    #[test]
    fn input_errors_display_their_reason() {
        assert_eq!(InputError::UnknownColumn.to_string(), "no such column");
        assert_eq!(
            InputError::NotWritable.to_string(),
            "this column cannot be set from input"
        );
        assert_eq!(InputError::Invalid("bad".into()).to_string(), "bad");
    }
}
