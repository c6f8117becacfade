//! Type round trips through the `lifeguard_core::pg` client: parameters, literals, NULLs,
//! one-dimensional arrays, user-defined enums, and the decode/encode errors.
//!
//! Values are compared through their `Debug` text, so NaN equals NaN and a numeric keeps its
//! scale.

use std::fmt::Debug;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use lifeguard_core::pg::{Connection, FromSql, Json, ToSql};
use lifeguard_core::{Error, Executor};
use lifeguard_tests::pg::{connect, in_coroutine, scratch_table};
use postgres_types::{FromSql as DeriveFromSql, ToSql as DeriveToSql};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

fn same<T: Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

/// `SELECT $1::<pg>` with `value` must give `value` back.
fn param_roundtrip<T>(conn: &Connection, pg: &str, value: &T)
where
    T: ToSql + Sync + for<'a> FromSql<'a> + Debug,
{
    let sql = format!("SELECT $1::{pg} AS v");
    let row = conn
        .query_one(&sql, &[value])
        .unwrap_or_else(|e| panic!("{sql} with {value:?}: {e}"));
    let back: T = row
        .try_get("v")
        .unwrap_or_else(|e| panic!("{sql} with {value:?}: {e}"));
    assert!(same(&back, value), "{sql}: sent {value:?}, got {back:?}");
}

/// `SELECT <literal>` must decode to `expected`.
fn literal_is<T>(conn: &Connection, literal: &str, expected: &T)
where
    T: for<'a> FromSql<'a> + Debug,
{
    let sql = format!("SELECT {literal}");
    let row = conn
        .query_one(&sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let back: T = row.try_get(0).unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert!(
        same(&back, expected),
        "{sql}: expected {expected:?}, got {back:?}"
    );
}

/// Every case for one type: each value, NULL, `Some`, arrays with and without NULLs (through
/// parameters), and each `(literal, value)` pair, NULL, and an array of the literals (through
/// `SELECT`).
fn check_type<T>(pg: &str, values: &[T], literals: &[(&str, T)])
where
    T: ToSql + Sync + for<'a> FromSql<'a> + Debug + Clone,
{
    let conn = connect();
    check_type_on(&conn, pg, values, literals);
}

fn check_type_on<T>(conn: &Connection, pg: &str, values: &[T], literals: &[(&str, T)])
where
    T: ToSql + Sync + for<'a> FromSql<'a> + Debug + Clone,
{
    assert!(!values.is_empty());
    // Parameters.
    for v in values {
        param_roundtrip(conn, pg, v);
        param_roundtrip(conn, pg, &Some(v.clone()));
    }
    param_roundtrip::<Option<T>>(conn, pg, &None);
    let arr = format!("{pg}[]");
    param_roundtrip(conn, &arr, &values.to_vec());
    param_roundtrip::<Vec<T>>(conn, &arr, &Vec::new());
    let mut with_nulls: Vec<Option<T>> = vec![None];
    for v in values {
        with_nulls.push(Some(v.clone()));
        with_nulls.push(None);
    }
    param_roundtrip(conn, &arr, &with_nulls);
    param_roundtrip::<Option<Vec<T>>>(conn, &arr, &None);

    // Literals.
    for (lit, expected) in literals {
        literal_is(conn, &format!("{lit}::{pg}"), expected);
        literal_is(conn, &format!("{lit}::{pg}"), &Some(expected.clone()));
    }
    literal_is::<Option<T>>(conn, &format!("NULL::{pg}"), &None);
    if !literals.is_empty() {
        let lits: Vec<String> = literals.iter().map(|(l, _)| format!("{l}::{pg}")).collect();
        let expected: Vec<T> = literals.iter().map(|(_, v)| v.clone()).collect();
        literal_is(
            conn,
            &format!("ARRAY[{}]::{arr}", lits.join(", ")),
            &expected,
        );
        let expected_nulls: Vec<Option<T>> = std::iter::once(None)
            .chain(expected.iter().cloned().map(Some))
            .collect();
        literal_is(
            conn,
            &format!("ARRAY[NULL, {}]::{arr}", lits.join(", ")),
            &expected_nulls,
        );
    }
    literal_is(conn, &format!("'{{}}'::{arr}"), &Vec::<T>::new());
}

#[test]
fn bool_roundtrip() {
    check_type(
        "bool",
        &[true, false],
        &[("true", true), ("false", false), ("'t'", true)],
    );
}

#[test]
fn int2_roundtrip() {
    check_type(
        "int2",
        &[0i16, 1, -1, i16::MIN, i16::MAX],
        &[("0", 0), ("'-32768'", i16::MIN), ("32767", i16::MAX)],
    );
}

#[test]
fn int4_roundtrip() {
    check_type(
        "int4",
        &[0i32, 42, -42, i32::MIN, i32::MAX],
        &[
            ("7", 7),
            ("'-2147483648'", i32::MIN),
            ("2147483647", i32::MAX),
        ],
    );
}

#[test]
fn int8_roundtrip() {
    check_type(
        "int8",
        &[0i64, 1 << 40, -(1 << 40), i64::MIN, i64::MAX],
        &[
            ("'-9223372036854775808'", i64::MIN),
            ("9223372036854775807", i64::MAX),
        ],
    );
}

#[test]
fn float4_roundtrip_with_nan_and_infinities() {
    check_type(
        "float4",
        &[
            0.0f32,
            -0.0,
            1.5,
            -2.25,
            f32::MIN_POSITIVE,
            f32::MAX,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ],
        &[
            ("1.5", 1.5),
            ("'NaN'", f32::NAN),
            ("'Infinity'", f32::INFINITY),
            ("'-Infinity'", f32::NEG_INFINITY),
        ],
    );
}

#[test]
fn float8_roundtrip_with_nan_and_infinities() {
    check_type(
        "float8",
        &[
            0.0f64,
            -0.0,
            std::f64::consts::PI,
            -1e300,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ],
        &[
            ("0.125", 0.125),
            ("'NaN'", f64::NAN),
            ("'Infinity'", f64::INFINITY),
            ("'-Infinity'", f64::NEG_INFINITY),
        ],
    );
}

#[test]
fn text_roundtrip_unicode_and_empty() {
    let values: Vec<String> = [
        "",
        "plain",
        "héllo wörld",
        "日本語テキスト",
        "emoji 🦀🐘",
        "quote ' and \" and \\ backslash",
        "line\nbreak\ttab",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    check_type(
        "text",
        &values,
        &[
            ("''", String::new()),
            ("'日本語'", "日本語".to_string()),
            ("'it''s'", "it's".to_string()),
            ("E'\\u00e9'", "é".to_string()),
        ],
    );
    // varchar decodes into String too.
    let conn = connect();
    literal_is(&conn, "'ünï'::varchar(10)", &"ünï".to_string());
}

#[test]
fn str_parameters_and_borrowed_results() {
    let conn = connect();
    for s in ["", "ascii", "ünïcödé 🦀"] {
        let row = conn.query_one("SELECT $1::text", &[&s]).unwrap();
        let back: &str = row.get(0);
        assert_eq!(back, s);
    }
    let row = conn
        .query_one("SELECT $1::text[]", &[&vec!["a", "", "ß"]])
        .unwrap();
    let back: Vec<&str> = row.get(0);
    assert_eq!(back, vec!["a", "", "ß"]);
}

#[test]
fn bytea_roundtrip_all_byte_values() {
    let all: Vec<u8> = (0..=255u8).collect();
    let hex: String = all.iter().map(|b| format!("{b:02x}")).collect();
    let literal = format!("'\\x{hex}'");
    check_type(
        "bytea",
        &[all.clone(), Vec::new(), vec![0u8], vec![255u8; 1000]],
        &[(literal.as_str(), all.clone()), ("''", Vec::new())],
    );
    // Borrowed decode as &[u8].
    let conn = connect();
    let row = conn.query_one("SELECT $1::bytea", &[&all]).unwrap();
    let back: &[u8] = row.get(0);
    assert_eq!(back, &all[..]);
}

#[test]
fn uuid_roundtrip() {
    let fixed = Uuid::parse_str("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap();
    check_type(
        "uuid",
        &[Uuid::new_v4(), Uuid::nil(), Uuid::max(), fixed],
        &[
            ("'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", fixed),
            ("'00000000-0000-0000-0000-000000000000'", Uuid::nil()),
        ],
    );
}

#[test]
fn date_roundtrip() {
    let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
    check_type(
        "date",
        &[
            d(2000, 1, 1),
            d(1970, 1, 1),
            d(1, 1, 1),
            d(2024, 2, 29),
            d(9999, 12, 31),
        ],
        &[
            ("'2024-02-29'", d(2024, 2, 29)),
            ("'1999-12-31'", d(1999, 12, 31)),
        ],
    );
}

#[test]
fn time_roundtrip() {
    let t = |h, m, s, us| NaiveTime::from_hms_micro_opt(h, m, s, us).unwrap();
    check_type(
        "time",
        &[
            t(0, 0, 0, 0),
            t(12, 34, 56, 789_012),
            t(23, 59, 59, 999_999),
        ],
        &[
            ("'12:34:56.789012'", t(12, 34, 56, 789_012)),
            ("'00:00'", t(0, 0, 0, 0)),
        ],
    );
}

#[test]
fn timestamp_roundtrip() {
    let ts = |y, mo, d, h, mi, s, us| -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_micro_opt(h, mi, s, us)
            .unwrap()
    };
    check_type(
        "timestamp",
        &[
            ts(2000, 1, 1, 0, 0, 0, 0),
            ts(1969, 12, 31, 23, 59, 59, 999_999),
            ts(2038, 1, 19, 3, 14, 8, 123_456),
            ts(1, 1, 1, 0, 0, 0, 0),
        ],
        &[(
            "'2038-01-19 03:14:08.123456'",
            ts(2038, 1, 19, 3, 14, 8, 123_456),
        )],
    );
}

#[test]
fn timestamptz_roundtrip() {
    let now_us = Utc::now().timestamp_micros();
    let now = DateTime::<Utc>::from_timestamp_micros(now_us).unwrap();
    let fixed = Utc.with_ymd_and_hms(2021, 6, 1, 12, 0, 0).unwrap();
    check_type(
        "timestamptz",
        &[now, fixed, DateTime::<Utc>::from_timestamp(0, 0).unwrap()],
        &[
            ("'2021-06-01 12:00:00+00'", fixed),
            // Another zone names the same instant.
            ("'2021-06-01 14:00:00+02'", fixed),
        ],
    );
}

#[test]
fn json_and_jsonb_values_roundtrip() {
    let values = vec![
        json!({"a": 1, "b": [true, false, null], "c": {"d": "é🦀"}}),
        json!([1, 2, 3]),
        json!("just a string"),
        json!(42),
        json!(null),
        json!({}),
    ];
    let literals = [
        ("'{\"k\": [1, 2]}'", json!({"k": [1, 2]})),
        ("'\"s\"'", json!("s")),
    ];
    check_type("json", &values, &literals);
    check_type("jsonb", &values, &literals);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    name: String,
    age: u32,
    tags: Vec<String>,
    nickname: Option<String>,
}

#[test]
fn typed_json_roundtrip() {
    let p = Profile {
        name: "Zoë".into(),
        age: 37,
        tags: vec!["a".into(), "b".into()],
        nickname: None,
    };
    let conn = connect();
    for pg in ["json", "jsonb"] {
        param_roundtrip(&conn, pg, &Json(p.clone()));
        param_roundtrip::<Option<Json<Profile>>>(&conn, pg, &None);
        param_roundtrip(
            &conn,
            &format!("{pg}[]"),
            &vec![Json(p.clone()), Json(p.clone())],
        );
        literal_is(
            &conn,
            &format!(
                "'{{\"name\": \"Zoë\", \"age\": 37, \"tags\": [\"a\", \"b\"], \"nickname\": null}}'::{pg}"
            ),
            &Json(p.clone()),
        );
    }
    // A JSON document that does not fit the struct is a decode error, not a panic.
    let row = conn
        .query_one("SELECT '{\"x\": 1}'::jsonb AS doc", &[])
        .unwrap();
    match row.try_get::<_, Json<Profile>>("doc") {
        Err(Error::Decode {
            column, pg_type, ..
        }) => {
            assert_eq!(column, "doc");
            assert_eq!(pg_type, "jsonb");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[test]
fn numeric_roundtrip_with_big_scale_and_negatives() {
    let dec = |s: &str| s.parse::<Decimal>().unwrap();
    check_type(
        "numeric",
        &[
            dec("0"),
            dec("1.50"),
            dec("-1.5"),
            dec("123456789012345678901234.5678"),
            dec("-0.0000000000000000000000000001"),
            dec("0.1234567890123456789012345678"),
            dec("79228162514264337593543950335"),
            dec("-79228162514264337593543950335"),
            dec("10000000000"),
        ],
        &[
            ("'-12345.678900'", dec("-12345.678900")),
            (
                "'0.0000000000000000000000000001'",
                dec("0.0000000000000000000000000001"),
            ),
            ("1e10", dec("10000000000")),
        ],
    );
}

#[test]
fn numeric_nan_and_out_of_range_are_decode_errors() {
    let conn = connect();
    let row = conn
        .query_one(
            "SELECT 'NaN'::numeric AS nan, 1e40::numeric AS huge, 1.5::numeric AS ok",
            &[],
        )
        .unwrap();
    for col in ["nan", "huge"] {
        match row.try_get::<_, Decimal>(col) {
            Err(Error::Decode {
                column, pg_type, ..
            }) => {
                assert_eq!(column, col);
                assert_eq!(pg_type, "numeric");
            }
            other => panic!("{col}: expected Decode, got {other:?}"),
        }
    }
    assert_eq!(
        row.get::<_, Decimal>("ok"),
        "1.5".parse::<Decimal>().unwrap()
    );
}

#[test]
fn large_values_roundtrip() {
    let conn = connect();
    // Several MiB, so replies span many socket reads.
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    let back: Vec<u8> = conn.query_one("SELECT $1::bytea", &[&big]).unwrap().get(0);
    assert!(back == big, "5 MB bytea changed on the way");
    let text = "ü🦀".repeat(300_000);
    let back: String = conn.query_one("SELECT $1::text", &[&text]).unwrap().get(0);
    assert_eq!(back.len(), text.len());
    assert!(back == text);
    let many: Vec<i64> = (0..200_000).collect();
    let back: Vec<i64> = conn
        .query_one("SELECT $1::int8[]", &[&many])
        .unwrap()
        .get(0);
    assert_eq!(back, many);
    let rows = conn
        .query(
            "SELECT g, repeat('x', 100) FROM generate_series(1, 50000) g",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 50_000);
    assert_eq!(rows[49_999].get::<_, i32>(0), 50_000);
}

#[derive(Debug, Clone, Copy, PartialEq, DeriveToSql, DeriveFromSql)]
#[postgres(name = "lg_test_mood")]
enum Mood {
    #[postgres(name = "sad")]
    Sad,
    #[postgres(name = "ok")]
    Ok,
    #[postgres(name = "happy")]
    Happy,
}

/// Creates the enum type once; concurrent creators race on the catalog, so both the
/// "already exists" and the unique-index error are swallowed.
fn create_mood_type(conn: &Connection) {
    conn.batch_execute(
        "DO $$ BEGIN \
           CREATE TYPE lg_test_mood AS ENUM ('sad', 'ok', 'happy'); \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; \
         END $$",
    )
    .unwrap();
}

#[test]
fn user_enum_roundtrip_and_arrays() {
    let setup = connect();
    create_mood_type(&setup);
    drop(setup);
    // A fresh connection learns the type from the server.
    let conn = connect();
    check_type_on(
        &conn,
        "lg_test_mood",
        &[Mood::Sad, Mood::Ok, Mood::Happy],
        &[("'happy'", Mood::Happy), ("'sad'", Mood::Sad)],
    );
    // Through a table column of the enum and of its array type.
    let t = scratch_table(
        &conn,
        "id int4 PRIMARY KEY, m lg_test_mood, ms lg_test_mood[]",
    );
    conn.execute(
        &format!("INSERT INTO {t} (id, m, ms) VALUES (1, $1, $2), (2, NULL, NULL)"),
        &[&Mood::Ok, &vec![Mood::Happy, Mood::Sad]],
    )
    .unwrap();
    let rows = conn
        .query(&format!("SELECT m, ms FROM {t} ORDER BY id"), &[])
        .unwrap();
    assert_eq!(rows[0].get::<_, Mood>("m"), Mood::Ok);
    assert_eq!(
        rows[0].get::<_, Vec<Mood>>("ms"),
        vec![Mood::Happy, Mood::Sad]
    );
    assert_eq!(rows[1].get::<_, Option<Mood>>("m"), None);
    assert_eq!(rows[1].get::<_, Option<Vec<Mood>>>("ms"), None);
    // The server's own text for the label.
    let row = conn
        .query_one("SELECT $1::lg_test_mood::text", &[&Mood::Happy])
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "happy");
}

#[test]
fn every_type_through_a_table_row() {
    let conn = connect();
    let t = scratch_table(
        &conn,
        "id serial PRIMARY KEY, b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, \
         s text, by bytea, u uuid, d date, tm time, ts timestamp, tz timestamptz, j json, \
         jb jsonb, n numeric, ai int4[], at text[]",
    );
    let d = NaiveDate::from_ymd_opt(2020, 5, 17).unwrap();
    let tm = NaiveTime::from_hms_micro_opt(1, 2, 3, 4).unwrap();
    let ts = d.and_time(tm);
    let tz = Utc.from_utc_datetime(&ts);
    let u = Uuid::new_v4();
    let j = json!({"x": [1, "two"]});
    let n: Decimal = "-98765.4321".parse().unwrap();
    let bytes: Vec<u8> = (0..=255u8).rev().collect();
    let ai: Vec<Option<i32>> = vec![Some(1), None, Some(3)];
    let at = vec!["x".to_string(), String::new()];
    let sql = format!(
        "INSERT INTO {t} (b, i2, i4, i8, f4, f8, s, by, u, d, tm, ts, tz, j, jb, n, ai, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
         RETURNING id"
    );
    let id: i32 = conn
        .query_one(
            &sql,
            &[
                &true,
                &-7i16,
                &70000i32,
                &-(1i64 << 50),
                &2.5f32,
                &f64::NAN,
                &"säge",
                &bytes,
                &u,
                &d,
                &tm,
                &ts,
                &tz,
                &j,
                &j,
                &n,
                &ai,
                &at,
            ],
        )
        .unwrap()
        .get("id");
    // An all-NULL row.
    conn.execute(&format!("INSERT INTO {t} DEFAULT VALUES"), &[])
        .unwrap();

    let rows = conn
        .query(&format!("SELECT * FROM {t} ORDER BY id"), &[])
        .unwrap();
    assert_eq!(rows.len(), 2);
    let r = &rows[0];
    assert_eq!(r.get::<_, i32>("id"), id);
    assert!(r.get::<_, bool>("b"));
    assert_eq!(r.get::<_, i16>("i2"), -7);
    assert_eq!(r.get::<_, i32>("i4"), 70000);
    assert_eq!(r.get::<_, i64>("i8"), -(1i64 << 50));
    assert_eq!(r.get::<_, f32>("f4"), 2.5);
    assert!(r.get::<_, f64>("f8").is_nan());
    assert_eq!(r.get::<_, String>("s"), "säge");
    assert_eq!(r.get::<_, Vec<u8>>("by"), bytes);
    assert_eq!(r.get::<_, Uuid>("u"), u);
    assert_eq!(r.get::<_, NaiveDate>("d"), d);
    assert_eq!(r.get::<_, NaiveTime>("tm"), tm);
    assert_eq!(r.get::<_, NaiveDateTime>("ts"), ts);
    assert_eq!(r.get::<_, DateTime<Utc>>("tz"), tz);
    assert_eq!(r.get::<_, serde_json::Value>("j"), j);
    assert_eq!(r.get::<_, serde_json::Value>("jb"), j);
    assert_eq!(r.get::<_, Decimal>("n"), n);
    assert_eq!(r.get::<_, Vec<Option<i32>>>("ai"), ai);
    assert_eq!(r.get::<_, Vec<String>>("at"), at);

    let null = &rows[1];
    for col in [
        "b", "i2", "i4", "i8", "f4", "f8", "s", "by", "u", "d", "tm", "ts", "tz", "j", "jb", "n",
        "ai", "at",
    ] {
        assert!(
            null.raw(column_index(null, col)).is_none(),
            "{col} not NULL"
        );
    }
    assert_eq!(null.get::<_, Option<i64>>("i8"), None);
    assert_eq!(null.get::<_, Option<String>>("s"), None);
    assert_eq!(null.get::<_, Option<Vec<i32>>>("ai"), None);
    assert_eq!(null.get::<_, Option<DateTime<Utc>>>("tz"), None);
}

fn column_index(row: &lifeguard_core::pg::Row, name: &str) -> usize {
    row.columns()
        .iter()
        .position(|c| c.name() == name)
        .unwrap_or_else(|| panic!("no column {name}"))
}

#[test]
fn get_by_name_and_by_index() {
    let conn = connect();
    let row = conn
        .query_one(
            "SELECT 1::int4 AS one, 'two'::text AS \"Two\", 3::int8 AS three",
            &[],
        )
        .unwrap();
    assert_eq!(row.len(), 3);
    assert_eq!(row.get::<_, i32>(0), 1);
    assert_eq!(row.get::<_, i32>("one"), 1);
    assert_eq!(row.get::<_, String>(1), "two");
    assert_eq!(row.get::<_, String>("Two"), "two");
    // Names fall back to a case-insensitive match.
    assert_eq!(row.get::<_, String>("two"), "two");
    assert_eq!(row.get::<_, i64>(2), 3);
    assert_eq!(row.get::<_, i64>("three"), 3);
    assert_eq!(row.columns()[2].name(), "three");
    assert_eq!(row.columns()[2].type_().name(), "int8");
    let name = String::from("three");
    assert_eq!(row.get::<_, i64>(name.as_str()), 3);
}

#[test]
fn type_mismatch_on_get_is_a_decode_error() {
    let conn = connect();
    let row = conn
        .query_one("SELECT 7::int4 AS n, NULL::text AS missing, 1", &[])
        .unwrap();
    for err in [
        row.try_get::<_, String>("n").unwrap_err(),
        row.try_get::<_, String>(0).unwrap_err(),
    ] {
        match &err {
            Error::Decode {
                column,
                rust_type,
                pg_type,
                ..
            } => {
                assert_eq!(column, "n");
                assert_eq!(*rust_type, std::any::type_name::<String>());
                assert_eq!(pg_type, "int4");
            }
            other => panic!("expected Decode, got {other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.contains("`n`") && text.contains("int4") && text.contains("String"),
            "{text}"
        );
    }
    // Wider and narrower integers are different types.
    assert!(matches!(
        row.try_get::<_, i64>("n"),
        Err(Error::Decode { .. })
    ));
    assert!(matches!(
        row.try_get::<_, i16>("n"),
        Err(Error::Decode { .. })
    ));
    // NULL into a non-Option type.
    match row.try_get::<_, String>("missing") {
        Err(Error::Decode {
            column, pg_type, ..
        }) => {
            assert_eq!(column, "missing");
            assert_eq!(pg_type, "text");
        }
        other => panic!("expected Decode for NULL, got {other:?}"),
    }
    // An unnamed column is labelled by its index.
    match row.try_get::<_, String>(2) {
        Err(Error::Decode {
            column, pg_type, ..
        }) => {
            assert_eq!(column, "#2");
            assert_eq!(pg_type, "int4");
        }
        other => panic!("expected Decode, got {other:?}"),
    }
}

#[test]
fn missing_column_is_column_not_found() {
    let conn = connect();
    let row = conn.query_one("SELECT 1::int4 AS a", &[]).unwrap();
    match row.try_get::<_, i32>("nope") {
        Err(e @ Error::ColumnNotFound { .. }) => {
            assert!(matches!(&e, Error::ColumnNotFound { column } if column == "nope"));
            assert!(e.to_string().contains("`nope`"), "{e}");
        }
        other => panic!("expected ColumnNotFound, got {other:?}"),
    }
    match row.try_get::<_, i32>(5) {
        Err(Error::ColumnNotFound { column }) => assert_eq!(column, "5"),
        other => panic!("expected ColumnNotFound, got {other:?}"),
    }
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _: i32 = row.get("nope");
    }));
    assert!(panicked.is_err(), "Row::get of a missing column must panic");
}

#[test]
fn parameter_type_mismatch_is_an_encode_error() {
    let conn = connect();
    let err = conn
        .query_one("SELECT $1::int4, $2::int4", &[&1i32, &"not a number"])
        .unwrap_err();
    match &err {
        Error::Encode { index, pg_type, .. } => {
            assert_eq!(*index, 1);
            assert_eq!(pg_type, "int4");
        }
        other => panic!("expected Encode, got {other:?}"),
    }
    assert!(err.to_string().contains("$2"), "{err}");

    let err = conn.query_one("SELECT $1::text", &[&5i64]).unwrap_err();
    assert!(
        matches!(&err, Error::Encode { index: 0, pg_type, .. } if pg_type == "text"),
        "{err:?}"
    );

    // Wrong parameter count.
    let err = conn.query_one("SELECT $1::int4", &[]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ParameterCount {
                expected: 1,
                given: 0
            }
        ),
        "{err:?}"
    );

    // The connection is fine afterwards.
    let row = conn.query_one("SELECT $1::int4", &[&3i32]).unwrap();
    assert_eq!(row.get::<_, i32>(0), 3);
}

#[test]
fn type_roundtrips_inside_a_coroutine() {
    in_coroutine(|| {
        check_type("int4", &[1i32, -1], &[("5", 5)]);
        check_type(
            "text",
            &["ä".to_string(), String::new()],
            &[("'x'", "x".to_string())],
        );
        let conn = connect();
        create_mood_type(&conn);
        drop(conn);
        let conn = connect();
        check_type_on(&conn, "lg_test_mood", &[Mood::Happy], &[("'ok'", Mood::Ok)]);
    });
}

#[test]
fn domain_parameters_encode_as_their_base_type() {
    let conn = connect();
    conn.batch_execute(
        "DO $$ BEGIN CREATE DOMAIN lg_test_positive AS int4 CHECK (VALUE > 0); \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
    )
    .unwrap();
    let row = conn
        .query_one("SELECT $1::lg_test_positive AS v", &[&7i32])
        .unwrap();
    assert_eq!(row.get::<_, i32>("v"), 7);
    let err = conn
        .query_one("SELECT $1::lg_test_positive", &[&-1i32])
        .unwrap_err();
    assert_eq!(err.sqlstate(), Some("23514"), "{err}");
}
