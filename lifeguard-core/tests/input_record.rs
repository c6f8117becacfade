//! `#[derive(LifeModel)]` records set from JSON (`InputRecord`), `LifeEnum` as input, and the
//! `graphql(...)` exposure hints. No database: these are the generated impls alone.

use chrono::{DateTime, Utc};
use lifeguard_core::model::{
    ActiveValue, Exposure, FieldExposure, FromInput, InputEnum, InputError, InputRecord, LifeModel,
    LifeRecord as _,
};
use lifeguard_core::pg::types::{FromSql, IsNull, ToSql, Type};
use lifeguard_core::{LifeEnum, LifeModel, LifeRecord};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use uuid::Uuid;

type BoxError = Box<dyn std::error::Error + Sync + Send>;

/// A user type with its own wire impls and no `FromInput`: the record must still compile.
#[derive(Debug, Clone, PartialEq)]
pub struct Cents(i64);

impl ToSql for Cents {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        self.0.to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty)
    }

    fn to_sql_checked(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        if !<Self as ToSql>::accepts(ty) {
            return Err(format!("Cents cannot be sent as {ty}").into());
        }
        self.to_sql(ty, out)
    }
}

impl<'a> FromSql<'a> for Cents {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        i64::from_sql(ty, raw).map(Cents)
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as FromSql>::accepts(ty)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, LifeEnum)]
pub enum Stock {
    InStock,
    #[lifeguard(rename = "gone")]
    SoldOut,
    BackOrder,
}

/// `Upper`'s GraphQL form is `Shout`'s label: the label wins.
#[derive(Debug, Clone, Copy, PartialEq, LifeEnum)]
pub enum Case {
    Upper,
    #[lifeguard(rename = "UPPER")]
    Shout,
}

#[derive(Debug, Clone, Copy, PartialEq, LifeEnum)]
#[lifeguard(repr = "i16")]
pub enum Priority {
    Low = 1,
    High = 9,
}

#[derive(Debug, Clone, LifeModel, LifeRecord)]
#[lifeguard(table_name = "items")]
pub struct Item {
    #[lifeguard(primary_key)]
    pub id: i32,
    pub views: i64,
    #[lifeguard(column_name = "title_text")]
    pub title: String,
    pub note: Option<String>,
    pub token: Uuid,
    pub seen_at: DateTime<Utc>,
    pub price: Decimal,
    pub extra: Value,
    pub stock: Stock,
    pub maybe_stock: Option<Stock>,
    pub priority: Priority,
    pub tags: Vec<String>,
    pub cost: Cents,
    pub maybe_cost: Option<Cents>,
    #[lifeguard(ignore)]
    pub cached: u32,
}

fn set(record: &mut ItemRecord, column: &str, value: Value) -> Result<(), InputError> {
    record.set_input(column, &value)
}

#[test]
fn every_supported_field_is_set_from_json() {
    let mut r = ItemRecord::default();
    let token = "67e55044-10b1-426f-9247-bb680e5fe0c8";
    for (column, value) in [
        ("id", json!(7)),
        ("views", json!("9007199254740993")),
        ("title_text", json!("Lamp")),
        ("note", json!(null)),
        ("token", json!(token)),
        ("seen_at", json!("2024-05-01T12:00:00+02:00")),
        ("price", json!("19.90")),
        ("extra", json!({"k": [1, 2]})),
        ("stock", json!("IN_STOCK")),
        ("maybe_stock", json!("gone")),
        ("priority", json!("HIGH")),
        ("tags", json!(["a", "b"])),
    ] {
        assert!(ItemRecord::accepts_input(column), "{column}");
        assert_eq!(set(&mut r, column, value), Ok(()), "{column}");
    }
    assert!(matches!(r.id, ActiveValue::Set(7)));
    assert!(matches!(r.views, ActiveValue::Set(9_007_199_254_740_993)));
    assert!(matches!(&r.title, ActiveValue::Set(t) if t == "Lamp"));
    assert!(matches!(r.note, ActiveValue::Set(None)));
    assert!(matches!(r.token, ActiveValue::Set(u) if u.to_string() == token));
    assert!(
        matches!(r.seen_at, ActiveValue::Set(t) if t.to_rfc3339() == "2024-05-01T10:00:00+00:00")
    );
    assert!(matches!(r.price, ActiveValue::Set(p) if p == Decimal::new(1990, 2)));
    assert!(matches!(&r.extra, ActiveValue::Set(v) if *v == json!({"k": [1, 2]})));
    assert!(matches!(r.stock, ActiveValue::Set(Stock::InStock)));
    assert!(matches!(
        r.maybe_stock,
        ActiveValue::Set(Some(Stock::SoldOut))
    ));
    assert!(matches!(r.priority, ActiveValue::Set(Priority::High)));
    assert!(matches!(&r.tags, ActiveValue::Set(t) if t == &["a", "b"]));
    // What the record writes is what was set.
    let set_columns: Vec<&str> = r
        .fields()
        .as_ref()
        .iter()
        .filter(|(_, field)| matches!(field, lifeguard_core::model::Field::Set(_)))
        .map(|(column, _)| lifeguard_core::model::ModelColumn::name(*column))
        .collect();
    assert_eq!(set_columns.len(), 12, "{set_columns:?}");
}

#[test]
fn a_field_type_without_from_input_is_not_writable() {
    assert!(!ItemRecord::accepts_input("cost"));
    assert!(!ItemRecord::accepts_input("maybe_cost"));
    let mut r = ItemRecord::default();
    assert_eq!(set(&mut r, "cost", json!(5)), Err(InputError::NotWritable));
    assert_eq!(
        set(&mut r, "maybe_cost", json!(null)),
        Err(InputError::NotWritable)
    );
    assert!(r.cost.is_not_set() && r.maybe_cost.is_not_set());
}

#[test]
fn unknown_columns_are_refused() {
    let mut r = ItemRecord::default();
    // The SQL name counts, not the field name; an ignored field has no column.
    for column in ["title", "cached", "nope", ""] {
        assert!(!ItemRecord::accepts_input(column), "{column}");
        assert_eq!(
            set(&mut r, column, json!("x")),
            Err(InputError::UnknownColumn)
        );
    }
}

#[test]
fn a_value_of_the_wrong_type_is_invalid_and_leaves_the_field() {
    let mut r = ItemRecord {
        id: ActiveValue::Unchanged(3),
        ..Default::default()
    };
    let invalid = |m: &str| Err(InputError::Invalid(m.to_owned()));
    assert_eq!(
        set(&mut r, "id", json!("3")),
        invalid("expected an integer, got a string")
    );
    assert!(matches!(r.id, ActiveValue::Unchanged(3)));
    assert_eq!(
        set(&mut r, "id", json!(1_u64 << 40)),
        invalid("out of range for a 32-bit integer")
    );
    assert_eq!(
        set(&mut r, "token", json!("abc")),
        invalid("\"abc\" is not a UUID")
    );
    assert_eq!(
        set(&mut r, "stock", json!("lost")),
        invalid("\"lost\" is not a Stock value")
    );
    assert_eq!(
        set(&mut r, "stock", json!(1)),
        invalid("expected a Stock value, got a number")
    );
    assert_eq!(
        set(&mut r, "priority", json!(4)),
        invalid("4 is not a Priority value")
    );
    assert_eq!(
        set(&mut r, "tags", json!(["a", 2])),
        invalid("item 1: expected a string, got a number")
    );
    assert_eq!(
        set(&mut r, "title_text", json!(null)),
        invalid("expected a string, got null")
    );
    let message = set(&mut r, "seen_at", json!("z".repeat(10_000)))
        .expect_err("not a date-time")
        .to_string();
    assert!(message.len() < 100, "{message}");
}

#[test]
fn life_enums_take_labels_graphql_names_and_stored_integers() {
    let cases = [
        ("in_stock", Stock::InStock),
        ("IN_STOCK", Stock::InStock),
        ("gone", Stock::SoldOut),
        ("GONE", Stock::SoldOut),
        ("SOLD_OUT", Stock::SoldOut),
        ("back_order", Stock::BackOrder),
        ("BACK_ORDER", Stock::BackOrder),
    ];
    for (text, stock) in cases {
        assert_eq!(Stock::from_input(&json!(text)), Ok(stock), "{text}");
    }
    assert!(Stock::from_input(&json!("InStock")).is_err());
    assert_eq!(Case::from_input(&json!("upper")), Ok(Case::Upper));
    assert_eq!(Case::from_input(&json!("UPPER")), Ok(Case::Shout));
    let labels: Vec<_> = Stock::VARIANTS.iter().map(|v| (v.label, v.name)).collect();
    assert_eq!(
        labels,
        [
            ("in_stock", Some("IN_STOCK")),
            ("gone", Some("GONE")),
            ("back_order", Some("BACK_ORDER"))
        ]
    );
    assert!(Stock::VARIANTS.iter().all(|v| v.stored.is_none()));
    assert_eq!(Priority::from_input(&json!("low")), Ok(Priority::Low));
    assert_eq!(Priority::from_input(&json!(9)), Ok(Priority::High));
    let stored: Vec<_> = Priority::VARIANTS
        .iter()
        .map(|v| (v.name, v.stored))
        .collect();
    assert_eq!(stored, [(Some("LOW"), Some(1)), (Some("HIGH"), Some(9))]);
    assert_eq!(ItemRecord::input_enum("stock"), Some(Stock::VARIANTS));
    assert_eq!(ItemRecord::input_enum("maybe_stock"), Some(Stock::VARIANTS));
    assert_eq!(ItemRecord::input_enum("priority"), Some(Priority::VARIANTS));
    for column in ["title_text", "cost", "nope"] {
        assert_eq!(ItemRecord::input_enum(column), None, "{column}");
    }
}

#[derive(Debug, Clone, LifeModel, LifeRecord)]
#[lifeguard(table_name = "authors", graphql(name = "Writer", read_only))]
pub struct Author {
    #[lifeguard(primary_key, graphql(read_only))]
    pub id: i64,
    #[lifeguard(column_name = "full_name", graphql(name = "fullName"))]
    pub name: String,
    #[lifeguard(graphql(skip))]
    pub password_hash: String,
    pub bio: Option<String>,
}

#[derive(Debug, Clone, LifeModel)]
#[lifeguard(table_name = "tags")]
pub struct Tag {
    #[lifeguard(primary_key)]
    pub id: i64,
    #[lifeguard(graphql(name = "label"))]
    pub name: String,
}

const fn field(
    column: &'static str,
    name: Option<&'static str>,
    skip: bool,
    read_only: bool,
) -> FieldExposure {
    FieldExposure {
        column,
        name,
        skip,
        read_only,
    }
}

#[test]
fn graphql_hints_round_trip_into_exposure() {
    const AUTHOR: Exposure = Exposure {
        name: Some("Writer"),
        read_only: true,
        fields: &[
            field("id", None, false, true),
            field("full_name", Some("fullName"), false, false),
            field("password_hash", None, true, false),
        ],
    };
    // A field hint alone leaves the model's own settings at their defaults.
    const TAG: Exposure = Exposure {
        fields: &[field("name", Some("label"), false, false)],
        ..Exposure::DEFAULT
    };
    assert_eq!(Author::EXPOSURE, AUTHOR);
    assert_eq!(Author::EXPOSURE.field("bio"), None);
    assert_eq!(
        Author::EXPOSURE.field("full_name").and_then(|f| f.name),
        Some("fullName")
    );
    assert_eq!(Tag::EXPOSURE, TAG);
    assert_eq!(Item::EXPOSURE, Exposure::DEFAULT);
}
