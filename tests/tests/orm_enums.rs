//! `#[derive(LifeEnum)]`: Rust enums stored as native PostgreSQL enums, as text, and as
//! integers, through models and filters, with unknown values reported as decode errors.

use lifeguard_core::model::{ActiveValue::Set, LifeModel, LifeRecord};
use lifeguard_core::query::ColumnExpr;
use lifeguard_core::{Error, Executor, LifeEnum, LifeModel, LifeRecord};
use lifeguard_tests::pg::{connect, init};
use lifeguard_tests::unique_name;

#[derive(Debug, Clone, Copy, PartialEq, Eq, LifeEnum)]
pub enum Stage {
    Draft,
    InReview,
    #[lifeguard(rename = "live")]
    Published,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, LifeEnum)]
#[lifeguard(repr = "i16")]
pub enum Priority {
    Low = 1,
    Normal = 5,
    High = 9,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, LifeEnum)]
#[lifeguard(rename_all = "UPPERCASE")]
pub enum Channel {
    Email,
    Sms,
}

#[derive(Debug, Clone, PartialEq, LifeModel, LifeRecord)]
#[lifeguard(table_name = "tickets", schema_name = "orm_enum")]
pub struct Ticket {
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    pub title: String,
    /// A native enum column.
    pub stage: Stage,
    /// An integer column.
    pub priority: Priority,
    /// A text column.
    pub channel: Option<Channel>,
}

fn setup() -> lifeguard_core::pg::Connection {
    init();
    let conn = connect();
    conn.batch_execute(
        "SELECT pg_advisory_xact_lock(4343); \
         CREATE SCHEMA IF NOT EXISTS orm_enum; \
         DO $$ BEGIN CREATE TYPE orm_enum.stage AS ENUM ('draft', 'in_review', 'live'); \
         EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
         CREATE TABLE IF NOT EXISTS orm_enum.tickets (id bigserial PRIMARY KEY, title text NOT NULL, \
         stage orm_enum.stage NOT NULL, priority smallint NOT NULL, channel text)",
    )
    .unwrap();
    conn
}

#[test]
fn enums_round_trip_in_every_representation() {
    let conn = setup();
    let title = unique_name("ticket");
    let stored = TicketRecord {
        title: Set(title.clone()),
        stage: Set(Stage::InReview),
        priority: Set(Priority::High),
        channel: Set(Some(Channel::Sms)),
        ..Default::default()
    }
    .insert(&conn)
    .unwrap();
    assert_eq!(stored.stage, Stage::InReview);
    assert_eq!(stored.priority, Priority::High);
    assert_eq!(stored.channel, Some(Channel::Sms));

    // What the server holds: the labels and the discriminant.
    let row = conn
        .query_one(
            "SELECT stage::text, priority, channel FROM orm_enum.tickets WHERE id = $1",
            &[&stored.id],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "in_review");
    assert_eq!(row.get::<_, i16>(1), 9);
    assert_eq!(row.get::<_, String>(2), "SMS");

    // Filters bind enum values like any other.
    let found = Ticket::find()
        .filter(TicketColumn::Title.eq(title.clone()))
        .filter(TicketColumn::Stage.eq(Stage::InReview))
        .filter(TicketColumn::Priority.is_in([Priority::High, Priority::Low]))
        .all(&conn)
        .unwrap();
    assert_eq!(found, vec![stored.clone()]);

    let mut change = stored.into_record();
    change.stage = Set(Stage::Published);
    change.channel = Set(None);
    let updated = change.update(&conn).unwrap();
    assert_eq!(updated.stage, Stage::Published);
    assert_eq!(updated.channel, None);
}

#[test]
fn unknown_values_are_decode_errors_naming_the_enum() {
    let conn = setup();
    let title = unique_name("odd");
    conn.execute(
        "INSERT INTO orm_enum.tickets (title, stage, priority, channel) VALUES ($1, 'draft', 7, 'FAX')",
        &[&title],
    )
    .unwrap();
    let err = Ticket::find()
        .filter(TicketColumn::Title.eq(title))
        .one(&conn)
        .unwrap_err();
    match &err {
        Error::Decode {
            rust_type,
            source: Some(source),
            ..
        } => {
            assert!(
                rust_type.contains("Priority") || rust_type.contains("Channel"),
                "{err}"
            );
            let reason = source.to_string();
            assert!(
                reason.contains("Priority") || reason.contains("Channel"),
                "{err}"
            );
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    // A label column of the wrong type is refused before anything is sent.
    let wrong = conn
        .query_one("SELECT $1::int4", &[&Stage::Draft])
        .unwrap_err();
    assert!(matches!(wrong, Error::Encode { .. }), "{wrong:?}");
}
