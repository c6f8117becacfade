//! ORM CRUD against the real primary: insert with database defaults, find, update of only
//! the set columns, expressions, NULLs, save, delete, composite keys, type round trips, and
//! statement reuse per record shape.

use chrono::{Duration as ChronoDuration, NaiveDate, NaiveTime, TimeZone, Utc};
use lifeguard_core::model::ActiveValue::{self, NotSet, Set, Unchanged};
use lifeguard_core::model::{LifeModel, LifeRecord, ModelColumn};
use lifeguard_core::pg::Json;
use lifeguard_core::query::{ColumnExpr, Expr};
use lifeguard_core::{Error, Executor};
use lifeguard_tests::orm::{
    connect, email, new_user, run_id, Counting, Email, Membership, MembershipColumn,
    MembershipRecord, Mood, Post, PostColumn, PostRecord, Profile, Typed, TypedRecord, User,
    UserColumn, UserRecord,
};
use rust_decimal::Decimal;
use serde_json::json;
use uuid::Uuid;

#[test]
fn insert_returns_the_row_with_database_defaults() {
    let conn = connect();
    let run = run_id("crud_ins");
    let before = Utc::now() - ChronoDuration::seconds(5);
    let user = UserRecord {
        email: Set(email(&run, 0)),
        ..Default::default()
    }
    .insert(&conn)
    .unwrap();
    assert!(user.id > 0);
    assert_eq!(user.email, email(&run, 0));
    assert_eq!(user.name, None);
    assert_eq!(user.visits, 0);
    assert!(user.created_at >= before, "{:?}", user.created_at);
    assert!(user.created_at <= Utc::now() + ChronoDuration::seconds(5));
    assert!(user.tags.is_empty());
    assert_eq!(user.profile, json!({}));
    assert_eq!(user.balance, Decimal::ZERO);
    assert_eq!(user.external_id, None);
    assert_eq!(user.mood, None);
    // The same row as stored.
    let (id, visits): (i64, i32) = {
        let row = conn
            .query_one(
                "SELECT id, visits FROM orm_test.users WHERE email = $1",
                &[&email(&run, 0)],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((id, visits), (user.id, 0));
    // A second insert gets the next id.
    let second = new_user(&conn, &email(&run, 1), &run);
    assert!(second.id > user.id);
    assert_eq!(second.name.as_deref(), Some(run.as_str()));
}

#[test]
fn insert_with_every_column_set_and_an_expression() {
    let conn = connect();
    let run = run_id("crud_full");
    let ext = Uuid::new_v4();
    let at = Utc.with_ymd_and_hms(2020, 2, 29, 12, 30, 0).unwrap();
    let user = UserRecord {
        id: NotSet,
        email: Set(email(&run, 0)),
        name: Set(Some("Ann".into())),
        visits: ActiveValue::Expr(Expr::cust("40 + 2")),
        created_at: Set(at),
        tags: Set(vec!["a".into(), "b c".into(), "".into()]),
        profile: Set(json!({"k": [1, 2, {"n": null}]})),
        balance: Set(Decimal::new(12345, 2)),
        external_id: Set(Some(ext)),
        mood: Set(Some(Mood::Happy)),
    }
    .insert(&conn)
    .unwrap();
    assert_eq!(user.visits, 42);
    assert_eq!(user.created_at, at);
    assert_eq!(user.tags, vec!["a", "b c", ""]);
    assert_eq!(user.profile, json!({"k": [1, 2, {"n": null}]}));
    assert_eq!(user.balance.to_string(), "123.45");
    assert_eq!(user.external_id, Some(ext));
    assert_eq!(user.mood, Some(Mood::Happy));
    assert_eq!(user.name.as_deref(), Some("Ann"));
}

#[test]
fn insert_writes_set_values_only_unchanged_ones_are_left_to_defaults() {
    // Documented behaviour (crud.rs: Unchanged is "not written"): a record from a loaded
    // model inserts only what is Set, unlike SeaORM, whose insert also writes Unchanged.
    let conn = connect();
    let run = run_id("b_copy");
    let original = new_user(&conn, &email(&run, 0), &run);
    let mut copy = original.clone().into_record();
    copy.id = ActiveValue::NotSet;
    copy.email = Set(email(&run, 1));
    let copied = copy.insert(&conn).unwrap();
    assert_ne!(copied.id, original.id);
    assert_eq!(copied.email, email(&run, 1));
    assert_eq!(copied.name, None, "the Unchanged name was not copied");
}

#[test]
fn find_by_id_hit_and_miss() {
    let conn = connect();
    let run = run_id("crud_find");
    let user = new_user(&conn, &email(&run, 0), &run);
    let found = User::find_by_id(user.id)
        .one(&conn)
        .unwrap()
        .expect("found");
    assert_eq!(found.id, user.id);
    assert_eq!(found.email, user.email);
    assert_eq!(found.created_at, user.created_at);
    assert!(User::find_by_id(-1).one(&conn).unwrap().is_none());
    assert!(User::find_by_id(i64::MAX).one(&conn).unwrap().is_none());
    // As a list.
    let all = User::find_by_id(user.id).all(&conn).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].id, user.id);
}

#[test]
fn find_each_by_id_keeps_the_keys_order_in_one_batch() {
    let conn = connect();
    let run = run_id("crud_find_each");
    let a = new_user(&conn, &email(&run, 0), &run);
    let b = new_user(&conn, &email(&run, 1), &run);
    let found = User::find_each_by_id(&conn, &[b.id, -1, a.id, b.id]).unwrap();
    let ids: Vec<Option<i64>> = found.iter().map(|u| u.as_ref().map(|u| u.id)).collect();
    assert_eq!(ids, [Some(b.id), None, Some(a.id), Some(b.id)]);
    assert!(User::find_each_by_id(&conn, &[]).unwrap().is_empty());
}

#[test]
fn one_and_all_on_a_filter() {
    let conn = connect();
    let run = run_id("crud_one");
    let users: Vec<User> = (0..3)
        .map(|i| new_user(&conn, &email(&run, i), &run))
        .collect();
    let one = User::find()
        .filter(UserColumn::Email.eq(email(&run, 1)))
        .one(&conn)
        .unwrap()
        .expect("one");
    assert_eq!(one.id, users[1].id);
    assert!(User::find()
        .filter(UserColumn::Email.eq(email(&run, 99)))
        .one(&conn)
        .unwrap()
        .is_none());
    // `one` on several matches is the first, not an error.
    let first = User::find()
        .filter(UserColumn::Name.eq(run.clone()))
        .order_by_asc(UserColumn::Id)
        .one(&conn)
        .unwrap()
        .expect("first");
    assert_eq!(first.id, users[0].id);
    let all = User::find()
        .filter(UserColumn::Name.eq(run.clone()))
        .order_by_asc(UserColumn::Id)
        .all(&conn)
        .unwrap();
    let ids: Vec<i64> = all.iter().map(|u| u.id).collect();
    assert_eq!(ids, users.iter().map(|u| u.id).collect::<Vec<_>>());
}

#[test]
fn update_writes_only_the_set_columns() {
    let conn = connect();
    let other = connect();
    let run = run_id("crud_upd");
    let user = new_user(&conn, &email(&run, 0), &run);
    // Someone else changes `name` and `balance` after we loaded the row.
    other
        .execute(
            "UPDATE orm_test.users SET name = 'changed elsewhere', balance = 7 WHERE id = $1",
            &[&user.id],
        )
        .unwrap();
    let mut change = user.clone().into_record();
    change.visits = Set(5);
    change.tags = Set(vec!["x".into()]);
    let updated = change.update(&conn).unwrap();
    assert_eq!(updated.visits, 5);
    assert_eq!(updated.tags, vec!["x"]);
    // Not overwritten with the stale values the record carried as Unchanged.
    assert_eq!(updated.name.as_deref(), Some("changed elsewhere"));
    assert_eq!(updated.balance, Decimal::from(7));
    assert_eq!(updated.created_at, user.created_at);
    let stored = User::find_by_id(user.id).one(&other).unwrap().unwrap();
    assert_eq!(stored.name.as_deref(), Some("changed elsewhere"));
    assert_eq!(stored.visits, 5);
    // A record built from scratch with only the key and one column.
    let updated = UserRecord {
        id: Unchanged(user.id),
        mood: Set(Some(Mood::Sad)),
        ..Default::default()
    }
    .update(&conn)
    .unwrap();
    assert_eq!(updated.mood, Some(Mood::Sad));
    assert_eq!(updated.visits, 5);
    assert_eq!(updated.email, user.email);
}

#[test]
fn update_with_nothing_set_returns_the_stored_row() {
    let conn = connect();
    let run = run_id("crud_noop");
    let user = new_user(&conn, &email(&run, 0), &run);
    conn.execute(
        "UPDATE orm_test.users SET visits = 9 WHERE id = $1",
        &[&user.id],
    )
    .unwrap();
    let same = user.clone().into_record().update(&conn).unwrap();
    assert_eq!(same.id, user.id);
    assert_eq!(same.visits, 9, "the row as stored, not as loaded");
    // Key only.
    let same = UserRecord {
        id: Set(user.id),
        ..Default::default()
    }
    .update(&conn)
    .unwrap();
    assert_eq!(same.visits, 9);
}

#[test]
fn update_of_a_missing_key_is_not_found() {
    let conn = connect();
    let e = UserRecord {
        id: Unchanged(-42),
        visits: Set(1),
        ..Default::default()
    }
    .update(&conn)
    .unwrap_err();
    assert!(matches!(e, Error::NotFound), "{e:?}");
    // Also with nothing set.
    let e = UserRecord {
        id: Unchanged(-42),
        ..Default::default()
    }
    .update(&conn)
    .unwrap_err();
    assert!(matches!(e, Error::NotFound), "{e:?}");
    // Without a key it is a configuration error, not a blind UPDATE of every row.
    let e = UserRecord {
        visits: Set(1),
        ..Default::default()
    }
    .update(&conn)
    .unwrap_err();
    assert!(matches!(e, Error::InvalidUse(_)), "{e:?}");
}

#[test]
fn update_without_returning_counts_the_rows_it_changed() {
    let conn = connect();
    let other = connect();
    let counting = Counting::new(&conn);
    let run = run_id("crud_noret");
    let user = new_user(&conn, &email(&run, 0), &run);
    other
        .execute(
            "UPDATE orm_test.users SET name = 'changed elsewhere' WHERE id = $1",
            &[&user.id],
        )
        .unwrap();
    let mut change = user.clone().into_record();
    change.visits = Set(5);
    assert_eq!(change.update_without_returning(&conn).unwrap(), 1);
    let stored = User::find_by_id(user.id).one(&other).unwrap().unwrap();
    assert_eq!(stored.visits, 5);
    assert_eq!(
        stored.name.as_deref(),
        Some("changed elsewhere"),
        "only the set column was written"
    );
    // An expression.
    let mut change = stored.into_record();
    change.visits = ActiveValue::Expr(UserColumn::Visits.add(1));
    assert_eq!(change.update_without_returning(&counting).unwrap(), 1);
    assert_eq!(counting.take(), 1);
    let stored = User::find_by_id(user.id).one(&conn).unwrap().unwrap();
    assert_eq!(stored.visits, 6);
    // No row with the key: 0, not an error.
    let missing = UserRecord {
        id: Unchanged(-42),
        visits: Set(1),
        ..Default::default()
    };
    assert_eq!(missing.update_without_returning(&conn).unwrap(), 0);
    // Nothing set: 0, and nothing is sent.
    let unchanged = stored.clone().into_record();
    assert_eq!(unchanged.update_without_returning(&counting).unwrap(), 0);
    assert_eq!(counting.take(), 0);
    // Without a key it is a configuration error, as for `update`.
    let keyless = UserRecord {
        visits: Set(1),
        ..Default::default()
    };
    let e = keyless.update_without_returning(&conn).unwrap_err();
    assert!(matches!(e, Error::InvalidUse(_)), "{e:?}");
    // Errors keep their kind.
    let taken = new_user(&conn, &email(&run, 1), &run);
    let mut change = stored.into_record();
    change.email = Set(taken.email.clone());
    let e = change.update_without_returning(&conn).unwrap_err();
    assert!(
        matches!(&e, Error::UniqueViolation { constraint: Some(c), .. } if c == "users_email_key"),
        "{e:?}"
    );
}

#[test]
fn expression_update_increments_in_the_database() {
    let conn = connect();
    let run = run_id("crud_expr");
    let user = new_user(&conn, &email(&run, 0), &run);
    for expected in 1..=2 {
        let mut change = user.clone().into_record();
        change.visits = ActiveValue::Expr(UserColumn::Visits.add(1));
        let updated = change.update(&conn).unwrap();
        assert_eq!(updated.visits, expected);
    }
    let stored = User::find_by_id(user.id).one(&conn).unwrap().unwrap();
    assert_eq!(stored.visits, 2);
    // Expression and value together, and subtraction.
    let mut change = stored.into_record();
    change.visits = ActiveValue::Expr(UserColumn::Visits.sub(5));
    change.name = Set(Some("both".into()));
    let updated = change.update(&conn).unwrap();
    assert_eq!(updated.visits, -3);
    assert_eq!(updated.name.as_deref(), Some("both"));
}

#[test]
fn expression_values_in_filters_and_updates_use_parameters() {
    // `Expr::cust_with_values` in an update's SET and in a filter.
    let conn = connect();
    let run = run_id("b_custv");
    let u = new_user(&conn, &email(&run, 0), &run);
    let mut change = u.clone().into_record();
    change.name = ActiveValue::Expr(Expr::cust_with_values(
        "upper($1) || $2",
        [Expr::val("it's ".to_string()), Expr::val(run.clone())],
    ));
    let updated = change.update(&conn).unwrap();
    assert_eq!(updated.name, Some(format!("IT'S {run}")));
    let found = User::find()
        .filter(Expr::cust_with_values(
            "lower(name) = lower($1)",
            [Expr::val(format!("IT'S {run}"))],
        ))
        .all(&conn)
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, u.id);
}

#[test]
fn set_null_writes_null() {
    let conn = connect();
    let run = run_id("crud_null");
    let ext = Uuid::new_v4();
    let user = UserRecord {
        email: Set(email(&run, 0)),
        name: Set(Some("someone".into())),
        external_id: Set(Some(ext)),
        mood: Set(Some(Mood::Ok)),
        ..Default::default()
    }
    .insert(&conn)
    .unwrap();
    assert_eq!(user.external_id, Some(ext));
    let mut change = user.clone().into_record();
    change.name = ActiveValue::set_null();
    change.external_id = ActiveValue::set_null();
    change.mood = ActiveValue::set_null();
    let updated = change.update(&conn).unwrap();
    assert_eq!(updated.name, None);
    assert_eq!(updated.external_id, None);
    assert_eq!(updated.mood, None);
    let nulls: i64 = conn
        .query_one(
            "SELECT count(*) FROM orm_test.users WHERE id = $1 AND name IS NULL \
             AND external_id IS NULL AND mood IS NULL",
            &[&user.id],
        )
        .unwrap()
        .get(0);
    assert_eq!(nulls, 1);
}

#[test]
fn save_inserts_fresh_records_and_updates_loaded_ones() {
    let conn = connect();
    let run = run_id("crud_save");
    let saved = UserRecord {
        email: Set(email(&run, 0)),
        ..Default::default()
    }
    .save(&conn)
    .unwrap();
    assert!(saved.id > 0);
    assert_eq!(saved.visits, 0);
    let mut change = saved.clone().into_record();
    change.visits = Set(3);
    let resaved = change.save(&conn).unwrap();
    assert_eq!(resaved.id, saved.id, "updated, not inserted again");
    assert_eq!(resaved.visits, 3);
    let count = User::find()
        .filter(UserColumn::Email.eq(email(&run, 0)))
        .count(&conn)
        .unwrap();
    assert_eq!(count, 1);
}

#[test]
fn delete_and_delete_by_id_return_counts() {
    let conn = connect();
    let run = run_id("crud_del");
    let a = new_user(&conn, &email(&run, 0), &run);
    let b = new_user(&conn, &email(&run, 1), &run);
    let c = new_user(&conn, &email(&run, 2), &run);
    // A post of `c`, deleted with it by the cascade.
    PostRecord {
        author_id: Set(c.id),
        title: Set("bye".into()),
        ..Default::default()
    }
    .insert(&conn)
    .unwrap();
    assert_eq!(a.delete(&conn).unwrap(), 1);
    assert_eq!(a.delete(&conn).unwrap(), 0);
    assert_eq!(User::delete_by_id(&conn, b.id).unwrap(), 1);
    assert_eq!(User::delete_by_id(&conn, b.id).unwrap(), 0);
    assert_eq!(c.clone().into_record().delete(&conn).unwrap(), 1);
    assert!(User::find_by_id(c.id).one(&conn).unwrap().is_none());
    assert_eq!(
        Post::find()
            .filter(PostColumn::AuthorId.eq(c.id))
            .count(&conn)
            .unwrap(),
        0
    );
    // A record without its key cannot delete.
    let e = UserRecord::default().delete(&conn).unwrap_err();
    assert!(matches!(e, Error::InvalidUse(_)), "{e:?}");
}

#[test]
fn column_name_and_ignored_fields() {
    let conn = connect();
    let run = run_id("crud_post");
    let author = new_user(&conn, &email(&run, 0), &run);
    let post = PostRecord {
        author_id: Set(author.id),
        title: Set("Hello".into()),
        published_on: Set(NaiveDate::from_ymd_opt(2024, 2, 29)),
        ..Default::default()
    }
    .insert(&conn)
    .unwrap();
    assert_eq!(post.title, "Hello");
    assert_eq!(post.score, 0.0);
    assert!(post.comments.is_empty(), "ignored field takes its default");
    // Stored under the column_name.
    let title: String = conn
        .query_one(
            "SELECT post_title FROM orm_test.posts WHERE id = $1",
            &[&post.id],
        )
        .unwrap()
        .get(0);
    assert_eq!(title, "Hello");
    let found = Post::find()
        .filter(PostColumn::Title.eq("Hello".to_string()))
        .filter(PostColumn::AuthorId.eq(author.id))
        .one(&conn)
        .unwrap()
        .expect("by renamed column");
    assert_eq!(found.id, post.id);
    assert_eq!(PostColumn::Title.name(), "post_title");
    assert!(Post::COLUMNS.iter().all(|c| c.name != "comments"));
    assert_eq!(Post::COLUMNS.len(), 5);
    // Column metadata from the attributes.
    let created = User::COLUMNS
        .iter()
        .find(|c| c.name == "created_at")
        .unwrap();
    assert_eq!(created.default_expr, Some("now()"));
    let mood = User::COLUMNS.iter().find(|c| c.name == "mood").unwrap();
    assert_eq!(mood.sql_type, "orm_test.orm_test_mood");
    assert!(mood.nullable);
    let id = User::COLUMNS.iter().find(|c| c.name == "id").unwrap();
    assert!(id.primary_key && id.auto_increment && !id.nullable);
    assert_eq!(User::TABLE, "users");
    assert_eq!(User::SCHEMA, Some("orm_test"));
    assert_eq!(User::QUALIFIED, r#""orm_test"."users""#);
}

#[test]
fn composite_key_entity() {
    let conn = connect();
    let org = run_id("crud_org");
    let m = MembershipRecord {
        org: Set(org.clone()),
        user_id: Set(7),
        ..Default::default()
    }
    .insert(&conn)
    .unwrap();
    assert_eq!(m.role, "member", "database default");
    assert_eq!(m.primary_key(), (org.clone(), 7));
    MembershipRecord {
        org: Set(org.clone()),
        user_id: Set(8),
        role: Set("admin".into()),
    }
    .insert(&conn)
    .unwrap();
    let found = Membership::find_by_id((org.clone(), 7))
        .one(&conn)
        .unwrap()
        .expect("found");
    assert_eq!(found.role, "member");
    assert!(Membership::find_by_id((org.clone(), 9))
        .one(&conn)
        .unwrap()
        .is_none());
    // Update through the loaded record: only (org, 7) changes.
    let mut change = found.into_record();
    change.role = Set("owner".into());
    let updated = change.update(&conn).unwrap();
    assert_eq!(updated.role, "owner");
    let other = Membership::find_by_id((org.clone(), 8))
        .one(&conn)
        .unwrap()
        .unwrap();
    assert_eq!(other.role, "admin");
    // save: insert a fresh one, update a loaded one.
    let saved = MembershipRecord {
        org: Set(org.clone()),
        user_id: Set(9),
        role: Set("guest".into()),
    }
    .save(&conn)
    .unwrap();
    assert_eq!(saved.role, "guest");
    let mut change = saved.into_record();
    change.role = Set("regular".into());
    assert_eq!(change.save(&conn).unwrap().role, "regular");
    let all = Membership::find()
        .filter(MembershipColumn::Org.eq(org.clone()))
        .order_by_asc(MembershipColumn::UserId)
        .all(&conn)
        .unwrap();
    let roles: Vec<(i64, &str)> = all.iter().map(|m| (m.user_id, m.role.as_str())).collect();
    assert_eq!(roles, vec![(7, "owner"), (8, "admin"), (9, "regular")]);
    // Delete.
    assert_eq!(updated.delete(&conn).unwrap(), 1);
    assert_eq!(
        Membership::delete_by_id(&conn, (org.clone(), 8)).unwrap(),
        1
    );
    assert_eq!(
        Membership::delete_by_id(&conn, (org.clone(), 8)).unwrap(),
        0
    );
    assert_eq!(
        Membership::find()
            .filter(MembershipColumn::Org.eq(org.clone()))
            .count(&conn)
            .unwrap(),
        1
    );
    // Missing composite key: update is NotFound.
    let e = MembershipRecord {
        org: Unchanged(org.clone()),
        user_id: Unchanged(100),
        role: Set("x".into()),
    }
    .update(&conn)
    .unwrap_err();
    assert!(matches!(e, Error::NotFound), "{e:?}");
    // A key with only one of its fields set is not a key.
    let e = MembershipRecord {
        org: Unchanged(org.clone()),
        role: Set("x".into()),
        ..Default::default()
    }
    .update(&conn)
    .unwrap_err();
    assert!(matches!(e, Error::InvalidUse(_)), "{e:?}");
}

fn profile() -> Profile {
    Profile {
        nick: "zoë \"quoted\" 🐟".into(),
        age: 42,
        likes: vec!["sql".into(), "".into()],
    }
}

fn full_typed(run: &str) -> TypedRecord {
    TypedRecord {
        id: NotSet,
        uid: Set(Uuid::new_v4()),
        at: Set(Utc.with_ymd_and_hms(1999, 12, 31, 23, 59, 59).unwrap()
            + ChronoDuration::microseconds(123_456)),
        local_at: Set(NaiveDate::from_ymd_opt(2038, 1, 19)
            .unwrap()
            .and_hms_micro_opt(3, 14, 7, 999_999)
            .unwrap()),
        day: Set(NaiveDate::from_ymd_opt(1, 1, 1).unwrap()),
        clock: Set(NaiveTime::from_hms_micro_opt(23, 59, 59, 1).unwrap()),
        doc: Set(Json(profile())),
        raw: Set(json!({"a": [1, 2.5, "x", null, true], "nested": {"deep": {}}})),
        amount: Set("-12345678901234.123456".parse().unwrap()),
        ints: Set(vec![i32::MIN, 0, i32::MAX]),
        names: Set(vec![
            "O'Brien".into(),
            "a,b".into(),
            "{}".into(),
            "NULL".into(),
        ]),
        mood: Set(Mood::Happy),
        moods: Set(vec![Mood::Sad, Mood::Ok, Mood::Sad]),
        contact: Set(Email(format!("{run}@orm.test"))),
        flag: Set(true),
        small: Set(i16::MIN),
        ratio: Set(1.5),
        bytes: Set(vec![0, 1, 255, 0]),
        maybe_text: Set(Some("there".into())),
        maybe_int: Set(Some(i64::MIN)),
        maybe_uuid: Set(Some(Uuid::nil())),
        maybe_doc: Set(Some(Json(profile()))),
        maybe_day: Set(NaiveDate::from_ymd_opt(2000, 2, 29)),
        maybe_amount: Set(Some(Decimal::new(-5, 3))),
        maybe_mood: Set(Some(Mood::Ok)),
        maybe_contact: Set(Some(Email("x@y".into()))),
    }
}

#[test]
fn every_type_round_trips_through_a_model() {
    let conn = connect();
    let run = run_id("crud_types");
    let record = full_typed(&run);
    let expect_uid = record.uid.as_ref().copied().unwrap();
    let inserted = record.insert(&conn).unwrap();
    let found = Typed::find_by_id(inserted.id).one(&conn).unwrap().unwrap();
    for t in [&inserted, &found] {
        assert_eq!(t.uid, expect_uid);
        assert_eq!(
            t.at,
            Utc.with_ymd_and_hms(1999, 12, 31, 23, 59, 59).unwrap()
                + ChronoDuration::microseconds(123_456)
        );
        assert_eq!(t.local_at.to_string(), "2038-01-19 03:14:07.999999");
        assert_eq!(t.day, NaiveDate::from_ymd_opt(1, 1, 1).unwrap());
        assert_eq!(
            t.clock,
            NaiveTime::from_hms_micro_opt(23, 59, 59, 1).unwrap()
        );
        assert_eq!(t.doc.0, profile());
        assert_eq!(
            t.raw,
            json!({"a": [1, 2.5, "x", null, true], "nested": {"deep": {}}})
        );
        assert_eq!(t.amount.to_string(), "-12345678901234.123456");
        assert_eq!(t.ints, vec![i32::MIN, 0, i32::MAX]);
        assert_eq!(t.names, vec!["O'Brien", "a,b", "{}", "NULL"]);
        assert_eq!(t.mood, Mood::Happy);
        assert_eq!(t.moods, vec![Mood::Sad, Mood::Ok, Mood::Sad]);
        assert_eq!(t.contact, Email(format!("{run}@orm.test")));
        assert!(t.flag);
        assert_eq!(t.small, i16::MIN);
        assert_eq!(t.ratio, 1.5);
        assert_eq!(t.bytes, vec![0, 1, 255, 0]);
        assert_eq!(t.maybe_text.as_deref(), Some("there"));
        assert_eq!(t.maybe_int, Some(i64::MIN));
        assert_eq!(t.maybe_uuid, Some(Uuid::nil()));
        assert_eq!(t.maybe_doc.as_ref().map(|j| &j.0), Some(&profile()));
        assert_eq!(t.maybe_day, NaiveDate::from_ymd_opt(2000, 2, 29));
        assert_eq!(
            t.maybe_amount.map(|d| d.to_string()).as_deref(),
            Some("-0.005")
        );
        assert_eq!(t.maybe_mood, Some(Mood::Ok));
        assert_eq!(t.maybe_contact, Some(Email("x@y".into())));
    }
    // The server sees real values of its own types, not text.
    let row = conn
        .query_one(
            "SELECT doc->>'nick', raw->'a'->>1, mood::text, moods[2]::text, \
             array_length(ints, 1), amount * 2 FROM orm_test.typed WHERE id = $1",
            &[&inserted.id],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), profile().nick);
    assert_eq!(row.get::<_, String>(1), "2.5");
    assert_eq!(row.get::<_, String>(2), "happy");
    assert_eq!(row.get::<_, String>(3), "ok");
    assert_eq!(row.get::<_, i32>(4), 3);
    assert_eq!(
        row.get::<_, Decimal>(5).to_string(),
        "-24691357802468.246912"
    );
    // Every Option back to None; filters on the newtype and the enum.
    let mut change = found.into_record();
    change.maybe_text = Set(None);
    change.maybe_int = Set(None);
    change.maybe_uuid = Set(None);
    change.maybe_doc = Set(None);
    change.maybe_day = Set(None);
    change.maybe_amount = Set(None);
    change.maybe_mood = Set(None);
    change.maybe_contact = Set(None);
    change.ints = Set(vec![]);
    change.moods = Set(vec![]);
    let cleared = change.update(&conn).unwrap();
    assert_eq!(cleared.maybe_text, None);
    assert_eq!(cleared.maybe_int, None);
    assert_eq!(cleared.maybe_uuid, None);
    assert!(cleared.maybe_doc.is_none());
    assert_eq!(cleared.maybe_day, None);
    assert_eq!(cleared.maybe_amount, None);
    assert_eq!(cleared.maybe_mood, None);
    assert_eq!(cleared.maybe_contact, None);
    assert!(cleared.ints.is_empty() && cleared.moods.is_empty());
    let by_newtype = Typed::find()
        .filter(lifeguard_tests::orm::TypedColumn::Contact.eq(Email(format!("{run}@orm.test"))))
        .filter(lifeguard_tests::orm::TypedColumn::Mood.eq(Mood::Happy))
        .all(&conn)
        .unwrap();
    assert_eq!(by_newtype.len(), 1);
    assert_eq!(by_newtype[0].id, inserted.id);
}

#[test]
fn statement_text_is_reused_for_the_same_record_shape() {
    let conn = connect();
    let run = run_id("crud_cache");
    // Warm up: the first insert of this shape prepares its statement (and learns the types).
    let first = UserRecord {
        email: Set(email(&run, 0)),
        name: Set(Some(run.clone())),
        visits: Set(1),
        ..Default::default()
    }
    .insert(&conn)
    .unwrap();
    let mut change = first.into_record();
    change.visits = Set(2);
    change.clone().update(&conn).unwrap();
    // The same shape without RETURNING is a statement of its own.
    change.update_without_returning(&conn).unwrap();
    let warm = conn.cached_statements();
    for i in 1..=100 {
        let user = UserRecord {
            email: Set(email(&run, i)),
            name: Set(Some(run.clone())),
            visits: Set(i as i32),
            ..Default::default()
        }
        .insert(&conn)
        .unwrap();
        assert_eq!(user.visits, i as i32);
        let mut change = user.into_record();
        change.visits = Set(-(i as i32));
        assert_eq!(change.clone().update(&conn).unwrap().visits, -(i as i32));
        assert_eq!(change.update_without_returning(&conn).unwrap(), 1);
    }
    assert_eq!(
        conn.cached_statements(),
        warm,
        "100 inserts and updates of one shape prepared nothing new"
    );
    // find_by_id and delete_by_id run constant statements too.
    let ids: Vec<i64> = User::find()
        .filter(UserColumn::Name.eq(run.clone()))
        .all(&conn)
        .unwrap()
        .iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(ids.len(), 101);
    User::find_by_id(ids[0]).one(&conn).unwrap().unwrap();
    User::delete_by_id(&conn, ids[0]).unwrap();
    let warm = conn.cached_statements();
    for id in &ids[1..] {
        User::find_by_id(*id).one(&conn).unwrap().unwrap();
        assert_eq!(User::delete_by_id(&conn, *id).unwrap(), 1);
    }
    assert_eq!(conn.cached_statements(), warm);
}

#[test]
fn identifiers_that_need_quoting() {
    use lifeguard_tests::orm::{OddEvent, OddEventColumn, OddEventRecord};
    let conn = connect();
    let run = run_id("crud_odd");
    let e = OddEventRecord {
        r#type: Set("select".into()),
        user_name: Set(run.clone()),
        quoted: Set(Some("\"hi\"".into())),
        ..Default::default()
    }
    .insert(&conn)
    .unwrap();
    assert_eq!((e.r#type.as_str(), e.count), ("select", 0));
    assert_eq!(OddEvent::QUALIFIED, r#""orm_test"."Odd Events""#);
    assert_eq!(OddEventColumn::Type.name(), "type");
    assert_eq!(OddEventColumn::Quoted.name(), "say \"hi\"");
    let found = OddEvent::find()
        .filter(OddEventColumn::UserName.eq(run.clone()))
        .filter(OddEventColumn::Type.eq("select".to_string()))
        .filter(OddEventColumn::Count.eq(0))
        .filter(OddEventColumn::Quoted.is_not_null())
        .order_by_desc(OddEventColumn::Count)
        .all(&conn)
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].quoted.as_deref(), Some("\"hi\""));
    let mut change = found[0].clone().into_record();
    change.count = Set(5);
    change.quoted = Set(None);
    let updated = change.update(&conn).unwrap();
    assert_eq!((updated.count, updated.quoted), (5, None));
    assert!(OddEvent::find_by_id(e.id).one(&conn).unwrap().is_some());
    assert_eq!(OddEvent::delete_by_id(&conn, e.id).unwrap(), 1);
}

#[test]
fn expression_update_of_a_column_whose_name_has_a_dot() {
    use lifeguard_tests::orm::{OddEventColumn, OddEventRecord};
    let conn = connect();
    let run = run_id("crud_dot");
    let e = OddEventRecord {
        r#type: Set("t".into()),
        user_name: Set(run),
        ..Default::default()
    }
    .insert(&conn)
    .unwrap();
    let mut change = e.into_record();
    change.count = ActiveValue::Expr(OddEventColumn::Count.add(2));
    let updated = change.update(&conn).unwrap();
    assert_eq!(updated.count, 2);
}
