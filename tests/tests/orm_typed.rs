//! Typed columns (`User::COL_EMAIL`) against the real primary: every comparison, nullable
//! columns, lists, patterns, order, grouping, cursors, bulk updates, the value kinds of the
//! `typed` table, and queries that mix typed and untyped filters.

use chrono::{NaiveDate, TimeZone, Utc};
use lifeguard_core::model::ActiveValue::{NotSet, Set};
use lifeguard_core::model::{LifeModel, LifeRecord};
use lifeguard_core::pg::Json;
use lifeguard_core::query::{ColumnExpr, Condition, Expr};
use lifeguard_core::Executor;
use lifeguard_tests::orm::{
    connect, email, like_prefix, new_users, run_id, Email, Mood, Profile, Typed, TypedRecord, User,
    UserColumn,
};
use rust_decimal::Decimal;
use uuid::Uuid;

fn ids(users: &[User]) -> Vec<i64> {
    users.iter().map(|u| u.id).collect()
}

/// `n` users of this run with `visits = i` on the i-th, written with a typed bulk update.
fn users_with_visits(db: &impl Executor, run: &str, n: usize) -> Vec<i64> {
    let mine = ids(&new_users(db, run, n));
    for (i, id) in mine.iter().enumerate() {
        User::update_many()
            .set_value(User::COL_VISITS, i as i32)
            .filter(User::COL_ID.eq(id))
            .exec(db)
            .unwrap();
    }
    mine
}

/// The visits of this run's users matching `condition`, ascending.
fn visits_where(db: &impl Executor, mine: &[i64], condition: Expr) -> Vec<i32> {
    User::find()
        .filter(User::COL_ID.is_in(mine))
        .filter(condition)
        .order_by_asc(User::COL_VISITS)
        .all(db)
        .unwrap()
        .iter()
        .map(|u| u.visits)
        .collect()
}

#[test]
fn every_comparison() {
    let conn = connect();
    let run = run_id("typed_cmp");
    let mine = users_with_visits(&conn, &run, 5);
    let visits = |e| visits_where(&conn, &mine, e);
    assert_eq!(visits(User::COL_VISITS.eq(2)), vec![2]);
    assert_eq!(visits(User::COL_VISITS.ne(2)), vec![0, 1, 3, 4]);
    assert_eq!(visits(User::COL_VISITS.gt(2)), vec![3, 4]);
    assert_eq!(visits(User::COL_VISITS.gte(2)), vec![2, 3, 4]);
    assert_eq!(visits(User::COL_VISITS.lt(2)), vec![0, 1]);
    assert_eq!(visits(User::COL_VISITS.lte(2)), vec![0, 1, 2]);
    assert_eq!(visits(User::COL_VISITS.between(1, 3)), vec![1, 2, 3]);
    assert_eq!(visits(User::COL_VISITS.is_in([0, 4, 9])), vec![0, 4]);
    assert_eq!(visits(User::COL_VISITS.is_not_in([0, 4])), vec![1, 2, 3]);
    // Text: a literal, a borrowed String, an owned one.
    let fourth = email(&run, 4);
    assert_eq!(visits(User::COL_EMAIL.eq(fourth.as_str())), vec![4]);
    assert_eq!(visits(User::COL_EMAIL.eq(&fourth)), vec![4]);
    assert_eq!(visits(User::COL_EMAIL.ne(fourth.clone())), vec![0, 1, 2, 3]);
    assert_eq!(
        visits(User::COL_EMAIL.like(like_prefix(&run))),
        vec![0, 1, 2, 3, 4]
    );
    assert_eq!(
        visits(User::COL_EMAIL.like(like_prefix(&run.to_uppercase()))),
        Vec::<i32>::new(),
        "LIKE is case-sensitive"
    );
    assert_eq!(
        visits(User::COL_EMAIL.ilike(like_prefix(&run.to_uppercase()))),
        vec![0, 1, 2, 3, 4]
    );
    // A timestamp column compared with a chrono value.
    let epoch = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
    assert_eq!(visits(User::COL_CREATED_AT.gt(epoch)).len(), 5);
}

#[test]
fn nullable_columns() {
    let conn = connect();
    let run = run_id("typed_null");
    let mine = users_with_visits(&conn, &run, 4);
    // `new_users` sets `name = run`; clear one, give one a mood and an external id.
    let external = Uuid::new_v4();
    User::update_many()
        .set_value(User::COL_NAME, None)
        .filter(User::COL_ID.eq(mine[0]))
        .exec(&conn)
        .unwrap();
    User::update_many()
        .set_value(User::COL_MOOD, Mood::Happy)
        .set_value(User::COL_EXTERNAL_ID, external)
        .filter(User::COL_ID.eq(mine[3]))
        .exec(&conn)
        .unwrap();
    let visits = |e| visits_where(&conn, &mine, e);
    // An `Option<String>` column takes `&str`, `&String`, `String` and `Some(String)`.
    assert_eq!(visits(User::COL_NAME.eq(run.as_str())), vec![1, 2, 3]);
    assert_eq!(visits(User::COL_NAME.eq(&run)), vec![1, 2, 3]);
    assert_eq!(visits(User::COL_NAME.eq(Some(run.clone()))), vec![1, 2, 3]);
    assert_eq!(visits(User::COL_NAME.ne(run.clone())), Vec::<i32>::new());
    assert_eq!(
        visits(User::COL_NAME.like(like_prefix(&run))),
        vec![1, 2, 3]
    );
    assert_eq!(
        visits(User::COL_NAME.is_in([run.as_str(), "x"])),
        vec![1, 2, 3]
    );
    assert_eq!(visits(User::COL_NAME.is_null()), vec![0]);
    assert_eq!(visits(User::COL_NAME.is_not_null()), vec![1, 2, 3]);
    // A nullable enum and a nullable uuid, by their inner types.
    assert_eq!(visits(User::COL_MOOD.eq(Mood::Happy)), vec![3]);
    assert_eq!(
        visits(User::COL_MOOD.is_in([Mood::Sad, Mood::Happy])),
        vec![3]
    );
    assert_eq!(visits(User::COL_EXTERNAL_ID.eq(external)), vec![3]);
    assert_eq!(visits(User::COL_EXTERNAL_ID.is_null()), vec![0, 1, 2]);
}

#[test]
fn lists_bind_one_array() {
    let conn = connect();
    let run = run_id("typed_in");
    let mine = users_with_visits(&conn, &run, 3);
    let count = |e| {
        User::find()
            .filter(User::COL_ID.is_in(&mine))
            .filter(e)
            .count(&conn)
            .unwrap()
    };
    assert_eq!(count(User::COL_ID.is_in(Vec::<i64>::new())), 0);
    assert_eq!(count(User::COL_ID.is_not_in(Vec::<i64>::new())), 3);
    assert_eq!(count(User::COL_ID.is_in(mine[1..].iter())), 2);
    let emails = [email(&run, 0), email(&run, 2), "nobody".to_owned()];
    assert_eq!(count(User::COL_EMAIL.is_in(&emails)), 2);
    assert_eq!(count(User::COL_EMAIL.is_not_in(emails)), 1);
    // Every list length shares one statement, as with the untyped helpers.
    let (short, params) = User::find().filter(User::COL_ID.is_in([1])).build();
    let (long, _) = User::find().filter(User::COL_ID.is_in(1..=100)).build();
    assert_eq!(short, long);
    assert_eq!(params.len(), 1);
}

#[test]
fn order_group_cursor_and_bulk_writes() {
    let conn = connect();
    let run = run_id("typed_order");
    let mine = users_with_visits(&conn, &run, 4);
    let ordered = User::find()
        .filter(User::COL_ID.is_in(&mine))
        .order_by_desc(User::COL_VISITS)
        .all(&conn)
        .unwrap();
    assert_eq!(
        ids(&ordered),
        mine.iter().rev().copied().collect::<Vec<_>>()
    );

    // Grouped counts: a typed column in the projection, the grouping and the order.
    let per_name: Vec<(Option<String>, i64)> = User::find()
        .columns([User::COL_NAME.expr(), Expr::cust("count(*)")])
        .filter(User::COL_ID.is_in(&mine))
        .group_by(User::COL_NAME)
        .order_by_asc(User::COL_NAME)
        .into_model()
        .all(&conn)
        .unwrap();
    assert_eq!(per_name, vec![(Some(run.clone()), 4)]);

    // Keyset pages on a typed column.
    let page = User::find()
        .filter(User::COL_ID.is_in(&mine))
        .cursor_by(User::COL_VISITS)
        .after((1_i32, mine[1]))
        .first(2)
        .all(&conn)
        .unwrap();
    assert_eq!(ids(&page), mine[2..].to_vec());

    // A counter and a value set through typed columns.
    let changed = User::update_many()
        .set(User::COL_VISITS, User::COL_VISITS.add(10))
        .set_value(User::COL_NAME, "renamed")
        .filter(User::COL_ID.is_in(&mine))
        .filter(User::COL_VISITS.gte(2))
        .exec(&conn)
        .unwrap();
    assert_eq!(changed, 2);
    User::update_many()
        .set(User::COL_VISITS, User::COL_VISITS.sub(1))
        .filter(User::COL_ID.eq(mine[3]))
        .exec(&conn)
        .unwrap();
    assert_eq!(
        visits_where(&conn, &mine, User::COL_NAME.eq("renamed")),
        vec![12, 12]
    );
}

#[test]
fn typed_and_untyped_filters_mix() {
    let conn = connect();
    let run = run_id("typed_mix");
    let mine = users_with_visits(&conn, &run, 5);
    let found = User::find()
        .filter(UserColumn::Id.is_in(mine.clone()))
        .filter(
            Condition::any()
                .add(User::COL_VISITS.lt(1))
                .add(UserColumn::Visits.gt(3))
                .add(User::COL_EMAIL.eq(email(&run, 2))),
        )
        .filter(
            UserColumn::Name
                .eq(run.clone())
                .and(User::COL_NAME.is_not_null()),
        )
        .order_by_asc(UserColumn::Visits)
        .all(&conn)
        .unwrap();
    assert_eq!(
        found.iter().map(|u| u.visits).collect::<Vec<_>>(),
        vec![0, 2, 4]
    );
    // The typed column's plain column works with the untyped helpers.
    assert_eq!(
        visits_where(&conn, &mine, User::COL_VISITS.column().eq(3)),
        vec![3]
    );
}

#[test]
fn value_kinds_of_the_typed_table() {
    let conn = connect();
    let run = run_id("typed_kinds");
    let uid = Uuid::new_v4();
    let at = Utc.with_ymd_and_hms(2001, 2, 3, 4, 5, 6).unwrap();
    let day = NaiveDate::from_ymd_opt(2001, 2, 3).unwrap();
    let profile = Profile {
        nick: run.clone(),
        age: 7,
        likes: vec!["sql".into()],
    };
    let bytes = vec![0_u8, 1, 255];
    let row = TypedRecord {
        id: NotSet,
        uid: Set(uid),
        at: Set(at),
        local_at: Set(at.naive_utc()),
        day: Set(day),
        clock: Set(at.time()),
        doc: Set(Json(profile.clone())),
        raw: Set(serde_json::json!({ "run": run })),
        amount: Set(Decimal::new(12_345, 2)),
        ints: Set(vec![1, 2, 3]),
        names: Set(vec!["a".into(), "b".into()]),
        mood: Set(Mood::Ok),
        moods: Set(vec![Mood::Sad]),
        contact: Set(Email(format!("{run}@orm.test"))),
        flag: Set(true),
        small: Set(3),
        ratio: Set(0.75),
        bytes: Set(bytes.clone()),
        maybe_text: Set(None),
        maybe_int: Set(Some(2001)),
        maybe_uuid: Set(None),
        maybe_doc: Set(None),
        maybe_day: Set(Some(day)),
        maybe_amount: Set(Some(Decimal::new(5, 1))),
        maybe_mood: Set(Some(Mood::Happy)),
        maybe_contact: Set(None),
    }
    .insert(&conn)
    .unwrap();
    let names = ["a".to_owned(), "b".to_owned()];
    let checks: Vec<(&str, Expr)> = vec![
        ("uuid", Typed::COL_UID.eq(uid)),
        ("timestamptz", Typed::COL_AT.eq(at)),
        ("timestamp", Typed::COL_LOCAL_AT.lte(at.naive_utc())),
        ("date", Typed::COL_DAY.between(day, day)),
        ("time", Typed::COL_CLOCK.eq(at.time())),
        ("jsonb", Typed::COL_DOC.eq(Json(profile))),
        ("numeric", Typed::COL_AMOUNT.eq(Decimal::new(12_345, 2))),
        ("int4[] by array", Typed::COL_INTS.eq([1, 2, 3])),
        ("text[] by slice", Typed::COL_NAMES.eq(&names[..])),
        ("enum", Typed::COL_MOOD.eq(Mood::Ok)),
        ("enum[]", Typed::COL_MOODS.eq(vec![Mood::Sad])),
        (
            "newtype",
            Typed::COL_CONTACT.eq(Email(format!("{run}@orm.test"))),
        ),
        ("bool", Typed::COL_FLAG.eq(true)),
        ("int2 literal", Typed::COL_SMALL.eq(3)),
        ("float4 literal", Typed::COL_RATIO.gt(0.5)),
        ("bytea by slice", Typed::COL_BYTES.eq(&bytes[..])),
        ("bytea by literal", Typed::COL_BYTES.eq(b"\x00\x01\xff")),
        ("nullable int8 literal", Typed::COL_MAYBE_INT.eq(2001)),
        ("nullable int8 Some", Typed::COL_MAYBE_INT.eq(Some(2001))),
        (
            "nullable int8 list",
            Typed::COL_MAYBE_INT.is_in([2000, 2001]),
        ),
        ("nullable date", Typed::COL_MAYBE_DAY.gte(day)),
        ("nullable numeric", Typed::COL_MAYBE_AMOUNT.lt(Decimal::ONE)),
        ("nullable enum", Typed::COL_MAYBE_MOOD.ne(Mood::Sad)),
        ("nullable text", Typed::COL_MAYBE_TEXT.is_null()),
    ];
    for (what, check) in checks {
        let found = Typed::find()
            .filter(Typed::COL_ID.eq(row.id))
            .filter(check)
            .all(&conn)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(found.len(), 1, "{what}");
    }
}
