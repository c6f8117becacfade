//! Write behaviour against the real primary: lifecycle hooks (order, mutation, failure),
//! field-level validation that sends no SQL (counted by a wrapping executor), soft delete
//! (hidden rows, `with_deleted`/`only_deleted`, restore, force delete) and automatic
//! `created_at`/`updated_at`.
//!
//! The tables live in the schema `orm_rel` (shared with `orm_relations`), created once per
//! binary under an advisory lock; tests isolate themselves by unique values.

use std::cell::RefCell;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use lifeguard_core::model::ActiveValue::{NotSet, Set, Unchanged};
use lifeguard_core::model::{LifeModel, LifeRecord, RecordHooks, ValidationErrors};
use lifeguard_core::pg::Connection;
use lifeguard_core::query::ColumnExpr;
use lifeguard_core::{Error, Executor, LifeModel, LifeRecord, Result};
use lifeguard_tests::orm::Counting;
use lifeguard_tests::{pg, unique_name};

const DDL: &str = r#"
SELECT pg_advisory_xact_lock(4243);
CREATE SCHEMA IF NOT EXISTS orm_rel;
CREATE TABLE IF NOT EXISTS orm_rel.accounts (
  id bigserial PRIMARY KEY,
  email text NOT NULL UNIQUE,
  name text NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  deleted_at timestamptz
);
CREATE TABLE IF NOT EXISTS orm_rel.notes (
  id bigserial PRIMARY KEY,
  body text NOT NULL,
  made timestamp NOT NULL,
  changed timestamp,
  removed_at timestamptz
);
"#;

fn connect() -> Connection {
    static ONCE: pg::SchemaOnce = pg::SchemaOnce::new();
    pg::connect_with_schema(&ONCE, DDL)
}

// ------------------------------------------------------------------- models --

/// Hooks, validation, soft delete and both timestamps.
#[derive(Debug, Clone, PartialEq, LifeModel, LifeRecord)]
#[lifeguard(table_name = "accounts", schema_name = "orm_rel", hooks, soft_delete)]
pub struct Account {
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    pub email: String,
    pub name: String,
    #[lifeguard(created_at)]
    pub created_at: DateTime<Utc>,
    #[lifeguard(updated_at)]
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

thread_local! {
    /// The hooks each test thread saw, in order.
    static CALLS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn called(what: impl Into<String>) {
    CALLS.with(|c| c.borrow_mut().push(what.into()));
}

fn take_calls() -> Vec<String> {
    CALLS.with(|c| std::mem::take(&mut *c.borrow_mut()))
}

impl RecordHooks for AccountRecord {
    fn before_save(&mut self) -> Result<()> {
        called("before_save");
        Ok(())
    }

    fn before_insert(&mut self) -> Result<()> {
        called("before_insert");
        // Fill a field the caller left out, and normalize one it set.
        if self.name.is_not_set() {
            self.name = Set("from-hook".into());
        }
        if let Set(email) = &mut self.email {
            *email = email.trim().to_lowercase();
        }
        if self.name.as_ref().is_some_and(|n| n == "explode") {
            return Err(Error::config("before_insert refused the record"));
        }
        Ok(())
    }

    fn before_update(&mut self) -> Result<()> {
        called("before_update");
        Ok(())
    }

    fn validate(&self) -> std::result::Result<(), ValidationErrors> {
        called("validate");
        let mut errors = ValidationErrors::new();
        if let Some(email) = self.email.as_ref() {
            if !email.contains('@') {
                errors.add("email", "must contain `@`");
            }
        }
        if let Some(name) = self.name.as_ref() {
            if name.is_empty() {
                errors.add("name", "must not be empty");
            }
            if name.len() > 20 {
                errors.add("name", "must be at most 20 characters");
            }
        }
        errors.into_result()
    }

    fn after_insert(&self, model: &Account) -> Result<()> {
        called(format!("after_insert {}", model.name));
        Ok(())
    }

    fn after_update(&self, model: &Account) -> Result<()> {
        called(format!("after_update {}", model.name));
        Ok(())
    }

    fn after_save(&self, _model: &Account) -> Result<()> {
        called("after_save");
        Ok(())
    }

    fn before_delete(&mut self) -> Result<()> {
        called("before_delete");
        Ok(())
    }

    fn after_delete(&self, rows: u64) -> Result<()> {
        called(format!("after_delete {rows}"));
        Ok(())
    }
}

/// No hooks; a custom soft-delete column and `NaiveDateTime` timestamps with other names.
#[derive(Debug, Clone, PartialEq, LifeModel, LifeRecord)]
#[lifeguard(
    table_name = "notes",
    schema_name = "orm_rel",
    soft_delete = "removed_at"
)]
pub struct Note {
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    pub body: String,
    #[lifeguard(created_at)]
    pub made: NaiveDateTime,
    #[lifeguard(updated_at)]
    pub changed: Option<NaiveDateTime>,
    pub removed_at: Option<DateTime<Utc>>,
}

// ------------------------------------------------------------------ helpers --

fn new_email(run: &str) -> String {
    format!("{run}@behaviour.test")
}

fn account(db: &impl Executor, email: &str, name: &str) -> Account {
    AccountRecord {
        email: Set(email.to_owned()),
        name: Set(name.to_owned()),
        ..Default::default()
    }
    .insert(db)
    .unwrap()
}

fn db_now(db: &impl Executor) -> DateTime<Utc> {
    db.query_one("SELECT now()", &[]).unwrap().get(0)
}

// -------------------------------------------------------------------- hooks --

#[test]
fn hooks_run_in_order_and_before_insert_can_fill_fields() {
    let conn = connect();
    let run = unique_name("bh_hooks");
    take_calls();
    let stored = AccountRecord {
        email: Set(format!("  {}  ", new_email(&run).to_uppercase())),
        ..Default::default()
    }
    .insert(&conn)
    .unwrap();
    assert_eq!(stored.name, "from-hook", "before_insert filled the name");
    assert_eq!(
        stored.email,
        new_email(&run),
        "before_insert normalized the email"
    );
    assert_eq!(
        take_calls(),
        [
            "before_save",
            "before_insert",
            "validate",
            "after_insert from-hook",
            "after_save"
        ]
    );

    let mut change = stored.clone().into_record();
    change.name = Set("renamed".into());
    let updated = change.update(&conn).unwrap();
    assert_eq!(updated.name, "renamed");
    assert_eq!(
        take_calls(),
        [
            "before_save",
            "before_update",
            "validate",
            "after_update renamed",
            "after_save"
        ]
    );

    // save() on a loaded record is an update, on a new one an insert.
    let mut change = updated.clone().into_record();
    change.name = Set("saved".into());
    change.save(&conn).unwrap();
    assert_eq!(take_calls()[1], "before_update");
    AccountRecord {
        email: Set(new_email(&format!("{run}-2"))),
        name: Set("second".into()),
        ..Default::default()
    }
    .save(&conn)
    .unwrap();
    assert_eq!(take_calls()[1], "before_insert");

    // Deleting through the record runs the delete hooks (a soft delete here).
    assert_eq!(updated.into_record().delete(&conn).unwrap(), 1);
    assert_eq!(take_calls(), ["before_delete", "after_delete 1"]);
}

#[test]
fn a_failing_before_hook_sends_nothing() {
    let conn = connect();
    let counting = Counting::new(&conn);
    let run = unique_name("bh_boom");
    take_calls();
    let e = AccountRecord {
        email: Set(new_email(&run)),
        name: Set("explode".into()),
        ..Default::default()
    }
    .insert(&counting)
    .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    assert_eq!(counting.take(), 0);
    assert_eq!(take_calls(), ["before_save", "before_insert"]);
}

// --------------------------------------------------------------- validation --

#[test]
fn validation_rejects_with_field_errors_and_sends_no_sql() {
    let conn = connect();
    let counting = Counting::new(&conn);
    let run = unique_name("bh_valid");

    let e = AccountRecord {
        email: Set("not-an-email".into()),
        name: Set(String::new()),
        ..Default::default()
    }
    .insert(&counting)
    .unwrap_err();
    assert_eq!(counting.take(), 0, "nothing reached the server");
    let Error::Validation(errors) = &e else {
        panic!("expected a validation error, got {e:?}");
    };
    assert_eq!(errors.fields(), ["email", "name"]);
    assert_eq!(
        errors.messages("email").collect::<Vec<_>>(),
        ["must contain `@`"]
    );
    assert_eq!(
        e.to_string(),
        "validation failed: email: must contain `@`; name: must not be empty"
    );

    // Two errors on one field.
    let e = AccountRecord {
        email: Set(new_email(&run)),
        name: Set("x".repeat(21)),
        ..Default::default()
    }
    .insert(&counting)
    .unwrap_err();
    assert!(
        matches!(&e, Error::Validation(v) if v.fields() == ["name"] && v.len() == 1),
        "{e:?}"
    );
    assert_eq!(counting.take(), 0);

    // Updates are validated too.
    let stored = account(&counting, &new_email(&run), "valid");
    assert_eq!(counting.take(), 1);
    let mut change = stored.clone().into_record();
    change.email = Set("broken".into());
    let e = change.update(&counting).unwrap_err();
    assert!(
        matches!(&e, Error::Validation(v) if v.fields() == ["email"]),
        "{e:?}"
    );
    assert_eq!(counting.take(), 0);
    // ... and save, whichever way it goes.
    let mut change = stored.into_record();
    change.name = Set(String::new());
    assert!(matches!(change.save(&counting), Err(Error::Validation(_))));
    assert_eq!(counting.take(), 0);
}

// -------------------------------------------------------------- soft delete --

#[test]
fn soft_delete_hides_restores_and_force_deletes() {
    let conn = connect();
    let run = unique_name("bh_soft");
    let a = account(&conn, &new_email(&run), "soft");
    let b = account(&conn, &new_email(&format!("{run}-b")), "soft");
    let ours = || Account::find().filter(AccountColumn::Email.like(format!("{run}%")));
    assert_eq!(ours().count(&conn).unwrap(), 2);

    // delete marks the row instead of removing it
    assert_eq!(a.delete(&conn).unwrap(), 1);
    assert_eq!(a.delete(&conn).unwrap(), 0, "already deleted");
    assert_eq!(Account::find_by_id(a.id).one(&conn).unwrap(), None);
    assert_eq!(ours().count(&conn).unwrap(), 1);
    assert!(!ours()
        .filter(AccountColumn::Id.eq(a.id))
        .exists(&conn)
        .unwrap());
    let marked = Account::find_by_id(a.id)
        .with_deleted()
        .one(&conn)
        .unwrap()
        .expect("still stored");
    let deleted_at = marked.deleted_at.expect("marked deleted");
    assert!((db_now(&conn) - deleted_at).num_seconds().abs() < 60);
    assert!(
        marked.updated_at >= a.updated_at,
        "delete touches updated_at"
    );
    assert_eq!(ours().with_deleted().count(&conn).unwrap(), 2);
    let only: Vec<i64> = ours()
        .only_deleted()
        .all(&conn)
        .unwrap()
        .into_iter()
        .map(|x| x.id)
        .collect();
    assert_eq!(only, [a.id]);

    // restore brings it back
    assert_eq!(a.restore(&conn).unwrap(), 1);
    let back = Account::find_by_id(a.id).one(&conn).unwrap().unwrap();
    assert_eq!(back.deleted_at, None);

    // delete_by_id is soft too; force_delete is real
    assert_eq!(Account::delete_by_id(&conn, b.id).unwrap(), 1);
    assert_eq!(ours().only_deleted().count(&conn).unwrap(), 1);
    assert_eq!(b.force_delete(&conn).unwrap(), 1);
    assert_eq!(
        Account::find_by_id(b.id).with_deleted().one(&conn).unwrap(),
        None
    );
    assert_eq!(Account::force_delete_by_id(&conn, a.id).unwrap(), 1);
    assert_eq!(ours().with_deleted().count(&conn).unwrap(), 0);
}

#[test]
fn soft_delete_with_a_custom_column_and_no_hooks() {
    let conn = connect();
    let body = unique_name("bh_note");
    assert_eq!(Note::SOFT_DELETE, Some("removed_at"));
    let note = NoteRecord {
        body: Set(body.clone()),
        ..Default::default()
    }
    .insert(&conn)
    .unwrap();
    let ours = || Note::find().filter(NoteColumn::Body.eq(body.clone()));
    // Deleting through the record is soft as well.
    assert_eq!(note.clone().into_record().delete(&conn).unwrap(), 1);
    assert_eq!(ours().count(&conn).unwrap(), 0);
    let stored = ours().with_deleted().one(&conn).unwrap().unwrap();
    assert!(stored.removed_at.is_some());
    assert!(stored.changed.is_some(), "the delete touched `changed`");
    assert_eq!(Note::restore_by_id(&conn, note.id).unwrap(), 1);
    assert_eq!(ours().count(&conn).unwrap(), 1);
    note.force_delete(&conn).unwrap();
    assert_eq!(ours().with_deleted().count(&conn).unwrap(), 0);
}

#[test]
fn restore_needs_a_soft_delete_model() {
    #[derive(Debug, Clone, LifeModel)]
    #[lifeguard(table_name = "plain", schema_name = "orm_rel")]
    pub struct Plain {
        #[lifeguard(primary_key)]
        pub id: i64,
    }
    assert_eq!(Plain::SOFT_DELETE, None);
    assert_eq!(Plain::FORCE_DELETE_BY_PK_SQL, Plain::DELETE_BY_PK_SQL);
    let conn = connect();
    let e = Plain { id: 1 }.restore(&conn).unwrap_err();
    assert!(
        matches!(&e, Error::InvalidUse(m) if m.contains("soft_delete")),
        "{e}"
    );
}

// --------------------------------------------------------------- timestamps --

#[test]
fn timestamps_are_set_on_insert_and_advance_on_update() {
    let conn = connect();
    let run = unique_name("bh_time");
    let before = db_now(&conn);
    let a = account(&conn, &new_email(&run), "clock");
    assert!(a.created_at >= before && (a.created_at - before).num_seconds() < 60);
    assert_eq!(a.created_at, a.updated_at, "one statement, one now()");

    std::thread::sleep(Duration::from_millis(20));
    let mut change = a.clone().into_record();
    change.name = Set("ticked".into());
    let b = change.update(&conn).unwrap();
    assert_eq!(b.created_at, a.created_at, "created_at never moves");
    assert!(b.updated_at > a.updated_at, "updated_at advanced");

    // An update that changes nothing writes nothing, so updated_at stays.
    let c = b.clone().into_record().update(&conn).unwrap();
    assert_eq!(c.updated_at, b.updated_at);

    // An explicit value wins over the automatic one.
    let fixed: DateTime<Utc> = "2020-01-02T03:04:05Z".parse().unwrap();
    let mut change = c.into_record();
    change.updated_at = Set(fixed);
    assert_eq!(change.update(&conn).unwrap().updated_at, fixed);
    let explicit = AccountRecord {
        email: Set(new_email(&format!("{run}-x"))),
        name: Set("explicit".into()),
        created_at: Set(fixed),
        updated_at: NotSet,
        ..Default::default()
    }
    .insert(&conn)
    .unwrap();
    assert_eq!(explicit.created_at, fixed);
    assert!(explicit.updated_at > fixed);
}

#[test]
fn update_without_returning_runs_the_hooks_and_touches_updated_at() {
    let conn = connect();
    let counting = Counting::new(&conn);
    let run = unique_name("bh_noret");
    let a = account(&conn, &new_email(&run), "before");
    take_calls();
    std::thread::sleep(Duration::from_millis(20));
    let mut change = a.clone().into_record();
    change.name = Set("after".into());
    assert_eq!(change.update_without_returning(&counting).unwrap(), 1);
    assert_eq!(counting.take(), 1);
    assert_eq!(
        take_calls(),
        [
            "before_save",
            "before_update",
            "validate",
            "after_update after",
            "after_save"
        ],
        "the after hooks got the stored row"
    );
    let stored = Account::find_by_id(a.id).one(&conn).unwrap().unwrap();
    assert_eq!(stored.name, "after");
    assert!(stored.updated_at > a.updated_at, "updated_at advanced");

    // Validation refuses before any SQL.
    let mut change = stored.clone().into_record();
    change.email = Set("broken".into());
    let e = change.update_without_returning(&counting).unwrap_err();
    assert!(matches!(e, Error::Validation(_)), "{e:?}");
    assert_eq!(counting.take(), 0);

    // No row with the key: 0, and no after hooks, for nothing was written.
    take_calls();
    let gone = AccountRecord {
        id: Unchanged(-1),
        name: Set("nobody".into()),
        ..Default::default()
    };
    assert_eq!(gone.update_without_returning(&conn).unwrap(), 0);
    assert_eq!(take_calls(), ["before_save", "before_update", "validate"]);

    // Without hooks the statement returns nothing; updated_at still advances.
    let n = NoteRecord {
        body: Set(run.clone()),
        ..Default::default()
    }
    .insert(&conn)
    .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let change = NoteRecord {
        id: Unchanged(n.id),
        body: Set(format!("{run}-edited")),
        ..Default::default()
    };
    assert_eq!(change.update_without_returning(&conn).unwrap(), 1);
    let edited = Note::find_by_id(n.id).one(&conn).unwrap().unwrap();
    assert_eq!(edited.body, format!("{run}-edited"));
    assert!(
        edited.changed > n.changed,
        "the automatic timestamp advanced"
    );
}

#[test]
fn timestamps_without_hooks_and_in_insert_many() {
    let conn = connect();
    let run = unique_name("bh_many");
    // NaiveDateTime fields, the updated one nullable: both filled on insert.
    let n = NoteRecord {
        body: Set(run.clone()),
        ..Default::default()
    }
    .insert(&conn)
    .unwrap();
    assert_eq!(n.changed, Some(n.made));

    let rows = NoteRecord::insert_many((0..3).map(|i| NoteRecord {
        body: Set(format!("{run}-{i}")),
        ..Default::default()
    }))
    .exec_with_returning(&conn)
    .unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.changed == Some(r.made)));
    // The same batch with the timestamps given: a statement of its own, not the one above
    // with now() in their place.
    let fixed = chrono::NaiveDate::from_ymd_opt(2001, 2, 3)
        .and_then(|d| d.and_hms_opt(4, 5, 6))
        .unwrap();
    let given = NoteRecord::insert_many((0..3).map(|i| NoteRecord {
        body: Set(format!("{run}-given-{i}")),
        made: Set(fixed),
        changed: Set(Some(fixed)),
        ..Default::default()
    }))
    .exec_with_returning(&conn)
    .unwrap();
    assert!(given
        .iter()
        .all(|r| r.made == fixed && r.changed == Some(fixed)));
    let accounts = AccountRecord::insert_many((0..2).map(|i| AccountRecord {
        email: Set(new_email(&format!("{run}-{i}"))),
        name: Set("bulk".into()),
        ..Default::default()
    }))
    .exec(&conn)
    .unwrap();
    assert_eq!(accounts, 2);
}

#[test]
fn bulk_writes_respect_soft_delete_and_touch_updated_at() {
    let conn = connect();
    let body = unique_name("bh_bulk");
    for _ in 0..3 {
        NoteRecord {
            body: Set(body.clone()),
            ..Default::default()
        }
        .insert(&conn)
        .unwrap();
    }
    let ours = || Note::find().filter(NoteColumn::Body.eq(body.clone()));
    // delete_many on a soft-delete model marks rows deleted and touches `changed`.
    let gone = Note::delete_many()
        .filter(NoteColumn::Body.eq(body.clone()))
        .exec(&conn)
        .unwrap();
    assert_eq!(gone, 3);
    assert_eq!(ours().count(&conn).unwrap(), 0);
    let deleted = ours().only_deleted().all(&conn).unwrap();
    assert_eq!(deleted.len(), 3);
    assert!(deleted
        .iter()
        .all(|n| n.removed_at.is_some() && n.changed.is_some()));
    // update_many leaves deleted rows alone; a second delete_many finds nothing live.
    let touched = Note::update_many()
        .set_value(NoteColumn::Body, format!("{body}-x"))
        .filter(NoteColumn::Body.eq(body.clone()))
        .exec(&conn)
        .unwrap();
    assert_eq!(touched, 0);
    assert_eq!(
        Note::delete_many()
            .filter(NoteColumn::Body.eq(body.clone()))
            .exec(&conn)
            .unwrap(),
        0
    );
    // force() deletes for real.
    let forced = Note::delete_many()
        .filter(NoteColumn::Body.eq(body.clone()))
        .force()
        .exec(&conn)
        .unwrap();
    assert_eq!(forced, 3);
    assert_eq!(ours().with_deleted().count(&conn).unwrap(), 0);
}
