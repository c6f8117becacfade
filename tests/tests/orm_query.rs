//! The ORM query builder against the real primary: comparisons, lists, patterns, NULLs,
//! nested conditions, optional filters, order and paging, count and exists, grouping,
//! projections, distinct, joins, row locks, raw SQL, bound values and the SQL it builds.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use lifeguard_core::model::ActiveValue::Set;
use lifeguard_core::model::{LifeModel, LifeRecord};
use lifeguard_core::query::{ColumnExpr, Condition, Expr, JoinType, Order};
use lifeguard_core::{Error, Executor, ExecutorExt};
use lifeguard_tests::orm::{
    connect, email, like_prefix, new_users, run_id, Counting, Mood, Post, PostColumn, PostRecord,
    User, UserColumn, UserRecord, UserSummary,
};

fn ids(users: &[User]) -> Vec<i64> {
    users.iter().map(|u| u.id).collect()
}

/// Sets `visits = i` on the i-th user and returns the stored rows.
fn with_visits(conn: &impl Executor, users: Vec<User>) -> Vec<User> {
    users
        .into_iter()
        .enumerate()
        .map(|(i, u)| {
            let mut change = u.into_record();
            change.visits = Set(i as i32);
            change.update(conn).unwrap()
        })
        .collect()
}

fn visits_of(conn: &impl Executor, mine: &[i64], condition: Expr) -> Vec<i32> {
    User::find()
        .filter(UserColumn::Id.is_in(mine.to_vec()))
        .filter(condition)
        .order_by_asc(UserColumn::Visits)
        .all(conn)
        .unwrap()
        .iter()
        .map(|u| u.visits)
        .collect()
}

#[test]
fn comparisons() {
    let conn = connect();
    let run = run_id("q_cmp");
    let users = with_visits(&conn, new_users(&conn, &run, 5));
    let mine = ids(&users);
    assert_eq!(visits_of(&conn, &mine, UserColumn::Visits.eq(2)), vec![2]);
    assert_eq!(
        visits_of(&conn, &mine, UserColumn::Visits.ne(2)),
        vec![0, 1, 3, 4]
    );
    assert_eq!(
        visits_of(&conn, &mine, UserColumn::Visits.gt(2)),
        vec![3, 4]
    );
    assert_eq!(
        visits_of(&conn, &mine, UserColumn::Visits.gte(2)),
        vec![2, 3, 4]
    );
    assert_eq!(
        visits_of(&conn, &mine, UserColumn::Visits.lt(2)),
        vec![0, 1]
    );
    assert_eq!(
        visits_of(&conn, &mine, UserColumn::Visits.lte(2)),
        vec![0, 1, 2]
    );
    assert_eq!(
        visits_of(&conn, &mine, UserColumn::Visits.between(1, 3)),
        vec![1, 2, 3]
    );
    assert_eq!(
        visits_of(&conn, &mine, UserColumn::Visits.between(3, 1)),
        Vec::<i32>::new()
    );
    // A string column, an enum column and NOT.
    assert_eq!(
        visits_of(&conn, &mine, UserColumn::Email.eq(email(&run, 4))),
        vec![4]
    );
    assert_eq!(
        visits_of(&conn, &mine, UserColumn::Visits.eq(2).not()),
        vec![0, 1, 3, 4]
    );
    let mut change = users[1].clone().into_record();
    change.mood = Set(Some(Mood::Happy));
    change.update(&conn).unwrap();
    assert_eq!(
        visits_of(&conn, &mine, UserColumn::Mood.eq(Mood::Happy)),
        vec![1]
    );
}

#[test]
fn is_in_shares_one_statement_for_every_list_length() {
    let conn = connect();
    let run = run_id("q_in");
    let users = new_users(&conn, &run, 3);
    let mine = ids(&users);
    // Warm up the model's types and the count statement's neighbours.
    User::find_by_id(mine[0]).one(&conn).unwrap();
    let before = conn.cached_statements();
    let none = User::find()
        .filter(UserColumn::Id.is_in(Vec::<i64>::new()))
        .all(&conn)
        .unwrap();
    assert!(none.is_empty());
    let one = User::find()
        .filter(UserColumn::Id.is_in([mine[1]]))
        .all(&conn)
        .unwrap();
    assert_eq!(ids(&one), vec![mine[1]]);
    // 100 values, 97 of them matching nothing of ours.
    let hundred: Vec<i64> = mine.iter().copied().chain((1..=97).map(|i| -i)).collect();
    assert_eq!(hundred.len(), 100);
    let all = User::find()
        .filter(UserColumn::Id.is_in(hundred))
        .order_by_asc(UserColumn::Id)
        .all(&conn)
        .unwrap();
    // The ORDER BY changes the text; without it, all three share one statement.
    let after_unordered = {
        let some = User::find()
            .filter(UserColumn::Id.is_in(mine.clone()))
            .all(&conn)
            .unwrap();
        assert_eq!(some.len(), 3);
        conn.cached_statements()
    };
    assert_eq!(ids(&all), mine);
    assert_eq!(
        after_unordered,
        before + 2,
        "one statement for 0, 1, 3 values, one more for the ordered query"
    );
    // Strings too.
    let by_email = User::find()
        .filter(UserColumn::Email.is_in([email(&run, 0), email(&run, 2), "nobody".into()]))
        .order_by_asc(UserColumn::Id)
        .all(&conn)
        .unwrap();
    assert_eq!(ids(&by_email), vec![mine[0], mine[2]]);
}

#[test]
fn is_not_in() {
    let conn = connect();
    let run = run_id("q_notin");
    let users = new_users(&conn, &run, 4);
    let mine = ids(&users);
    let rest = User::find()
        .filter(UserColumn::Id.is_in(mine.clone()))
        .filter(UserColumn::Id.is_not_in([mine[0], mine[2]]))
        .order_by_asc(UserColumn::Id)
        .all(&conn)
        .unwrap();
    assert_eq!(ids(&rest), vec![mine[1], mine[3]]);
    // NOT IN of nothing excludes nothing.
    let all = User::find()
        .filter(UserColumn::Id.is_in(mine.clone()))
        .filter(UserColumn::Id.is_not_in(Vec::<i64>::new()))
        .count(&conn)
        .unwrap();
    assert_eq!(all, 4);
}

#[test]
fn like_and_ilike() {
    let conn = connect();
    let run = run_id("q_like");
    let users = new_users(&conn, &run, 3);
    let mine = ids(&users);
    let upper = run.to_uppercase();
    let like = User::find()
        .filter(UserColumn::Email.like(like_prefix(&run)))
        .order_by_asc(UserColumn::Id)
        .all(&conn)
        .unwrap();
    assert_eq!(ids(&like), mine);
    assert_eq!(
        User::find()
            .filter(UserColumn::Email.like(like_prefix(&upper)))
            .count(&conn)
            .unwrap(),
        0,
        "LIKE is case-sensitive"
    );
    let ilike = User::find()
        .filter(UserColumn::Email.ilike(like_prefix(&upper)))
        .order_by_asc(UserColumn::Id)
        .all(&conn)
        .unwrap();
    assert_eq!(ids(&ilike), mine);
    let suffix = User::find()
        .filter(UserColumn::Email.like(format!(
            "{}-1@orm.test",
            like_prefix(&run).trim_end_matches('%')
        )))
        .all(&conn)
        .unwrap();
    assert_eq!(ids(&suffix), vec![mine[1]]);
}

#[test]
fn is_null_and_is_not_null() {
    let conn = connect();
    let run = run_id("q_null");
    let users = new_users(&conn, &run, 3);
    let mine = ids(&users);
    let mut change = users[1].clone().into_record();
    change.external_id = Set(Some(uuid::Uuid::new_v4()));
    change.update(&conn).unwrap();
    let nulls = User::find()
        .filter(UserColumn::Id.is_in(mine.clone()))
        .filter(UserColumn::ExternalId.is_null())
        .order_by_asc(UserColumn::Id)
        .all(&conn)
        .unwrap();
    assert_eq!(ids(&nulls), vec![mine[0], mine[2]]);
    let set = User::find()
        .filter(UserColumn::Id.is_in(mine.clone()))
        .filter(UserColumn::ExternalId.is_not_null())
        .all(&conn)
        .unwrap();
    assert_eq!(ids(&set), vec![mine[1]]);
    // `eq(None)` is `= NULL`, which matches nothing: that is what is_null is for.
    let eq_none = User::find()
        .filter(UserColumn::Id.is_in(mine.clone()))
        .filter(UserColumn::ExternalId.eq(None::<uuid::Uuid>))
        .count(&conn)
        .unwrap();
    assert_eq!(eq_none, 0);
}

#[test]
fn conditions_nest() {
    let conn = connect();
    let run = run_id("q_cond");
    let users = with_visits(&conn, new_users(&conn, &run, 6));
    let mine = ids(&users);
    // visits = 0 OR (visits >= 3 AND visits < 5) OR email = <user 5>
    let c = Condition::any()
        .add(UserColumn::Visits.eq(0))
        .add(
            Condition::all()
                .add(UserColumn::Visits.gte(3))
                .add(UserColumn::Visits.lt(5)),
        )
        .add(UserColumn::Email.eq(email(&run, 5)));
    assert_eq!(visits_of(&conn, &mine, c.into()), vec![0, 3, 4, 5]);
    // NOT of a nested condition, and the empty conditions.
    let c = Condition::any()
        .add(UserColumn::Visits.lt(2))
        .add(UserColumn::Visits.gt(3));
    assert_eq!(visits_of(&conn, &mine, Expr::from(c).not()), vec![2, 3]);
    assert_eq!(
        visits_of(&conn, &mine, Condition::all().into()),
        vec![0, 1, 2, 3, 4, 5]
    );
    assert!(visits_of(&conn, &mine, Condition::any().into()).is_empty());
    // add_option, and several filters are ANDed.
    let c = Condition::all()
        .add_option(Some(UserColumn::Visits.gt(1)))
        .add_option(None::<Expr>);
    let found = User::find()
        .filter(UserColumn::Id.is_in(mine.clone()))
        .filter(c)
        .filter(UserColumn::Visits.lt(4))
        .order_by_asc(UserColumn::Visits)
        .all(&conn)
        .unwrap();
    assert_eq!(
        found.iter().map(|u| u.visits).collect::<Vec<_>>(),
        vec![2, 3]
    );
}

#[test]
fn filter_opt_and_apply_if() {
    let conn = connect();
    let run = run_id("q_opt");
    let users = with_visits(&conn, new_users(&conn, &run, 4));
    let mine = ids(&users);
    let search = |min: Option<i32>, limit: Option<u64>| -> Vec<i32> {
        User::find()
            .filter(UserColumn::Id.is_in(mine.clone()))
            .filter_opt(min.map(|m| UserColumn::Visits.gte(m)))
            .apply_if(limit, |q, n| q.limit(n))
            .order_by_asc(UserColumn::Visits)
            .all(&conn)
            .unwrap()
            .iter()
            .map(|u| u.visits)
            .collect()
    };
    assert_eq!(search(None, None), vec![0, 1, 2, 3]);
    assert_eq!(search(Some(2), None), vec![2, 3]);
    assert_eq!(search(None, Some(1)), vec![0]);
    assert_eq!(search(Some(1), Some(2)), vec![1, 2]);
}

#[test]
fn order_limit_offset() {
    let conn = connect();
    let run = run_id("q_page");
    let users = with_visits(&conn, new_users(&conn, &run, 7));
    let mine = ids(&users);
    let page = |order: Order, limit: u64, offset: u64| -> Vec<i32> {
        User::find()
            .filter(UserColumn::Id.is_in(mine.clone()))
            .order_by(UserColumn::Visits, order)
            .limit(limit)
            .offset(offset)
            .all(&conn)
            .unwrap()
            .iter()
            .map(|u| u.visits)
            .collect()
    };
    assert_eq!(page(Order::Asc, 3, 0), vec![0, 1, 2]);
    assert_eq!(page(Order::Asc, 3, 3), vec![3, 4, 5]);
    assert_eq!(page(Order::Asc, 3, 6), vec![6]);
    assert_eq!(page(Order::Asc, 3, 9), Vec::<i32>::new());
    assert_eq!(page(Order::Desc, 2, 1), vec![5, 4]);
    assert_eq!(page(Order::Asc, 0, 0), Vec::<i32>::new());
    // Two keys, the second breaking ties, and ordering by an expression.
    for (i, u) in users.iter().enumerate() {
        let mut change = u.clone().into_record();
        change.name = Set(Some(if i % 2 == 0 { "even" } else { "odd" }.into()));
        change.update(&conn).unwrap();
    }
    let sorted = User::find()
        .filter(UserColumn::Id.is_in(mine.clone()))
        .order_by_desc(UserColumn::Name)
        .order_by_asc(UserColumn::Visits)
        .all(&conn)
        .unwrap();
    let got: Vec<(String, i32)> = sorted
        .iter()
        .map(|u| (u.name.clone().unwrap(), u.visits))
        .collect();
    assert_eq!(
        got,
        vec![
            ("odd".into(), 1),
            ("odd".into(), 3),
            ("odd".into(), 5),
            ("even".into(), 0),
            ("even".into(), 2),
            ("even".into(), 4),
            ("even".into(), 6),
        ]
    );
    let by_expr = User::find()
        .filter(UserColumn::Id.is_in(mine.clone()))
        .order_by_asc(Expr::cust("abs(visits - 3)"))
        .order_by_desc(UserColumn::Visits)
        .limit(3)
        .all(&conn)
        .unwrap();
    assert_eq!(
        by_expr.iter().map(|u| u.visits).collect::<Vec<_>>(),
        vec![3, 4, 2]
    );
}

#[test]
fn count_and_exists() {
    let conn = connect();
    let run = run_id("q_count");
    let users = with_visits(&conn, new_users(&conn, &run, 5));
    let mine = ids(&users);
    let q = User::find().filter(UserColumn::Id.is_in(mine.clone()));
    assert_eq!(q.count(&conn).unwrap(), 5);
    assert!(q.exists(&conn).unwrap());
    let q2 = q.clone().filter(UserColumn::Visits.gte(3));
    assert_eq!(q2.count(&conn).unwrap(), 2);
    // Order is irrelevant to both; a lock is dropped for them.
    assert_eq!(
        q2.clone()
            .order_by_desc(UserColumn::Id)
            .for_update()
            .count(&conn)
            .unwrap(),
        2
    );
    let none = q.clone().filter(UserColumn::Visits.gt(100));
    assert_eq!(none.count(&conn).unwrap(), 0);
    assert!(!none.exists(&conn).unwrap());
    // A paged count counts the page.
    assert_eq!(q.clone().limit(2).count(&conn).unwrap(), 2);
    assert_eq!(q.clone().offset(4).count(&conn).unwrap(), 1);
    assert!(!q.clone().offset(5).exists(&conn).unwrap());
}

#[test]
fn group_by_having_into_tuples() {
    let conn = connect();
    let run = run_id("q_group");
    let users = new_users(&conn, &run, 6);
    let mine = ids(&users);
    for (i, u) in users.iter().enumerate() {
        let mut change = u.clone().into_record();
        change.name = Set(Some(format!("g{}", i % 3)));
        change.visits = Set(i as i32);
        change.update(&conn).unwrap();
    }
    // g0: users 0, 3; g1: 1, 4; g2: 2, 5. Drop g0 with HAVING sum(visits) > 3.
    let groups: Vec<(String, i64)> = User::find()
        .columns([UserColumn::Name.expr(), Expr::cust("count(*)")])
        .filter(UserColumn::Id.is_in(mine.clone()))
        .group_by(UserColumn::Name)
        .having(Expr::cust("sum(visits) > ").append(Expr::val(3i64)))
        .order_by_asc(UserColumn::Name)
        .into_model::<(String, i64)>()
        .all(&conn)
        .unwrap();
    assert_eq!(groups, vec![("g1".into(), 2), ("g2".into(), 2)]);
    // Three-element tuples, with a bound value in the projection.
    let sums: Vec<(String, i64, i32)> = User::find()
        .columns([
            UserColumn::Name.expr(),
            Expr::cust("sum(visits)::int8"),
            Expr::cust("max(visits) + ").append(Expr::val(100i32)),
        ])
        .filter(UserColumn::Id.is_in(mine.clone()))
        .group_by(UserColumn::Name)
        .order_by_desc(UserColumn::Name)
        .into_model::<(String, i64, i32)>()
        .all(&conn)
        .unwrap();
    assert_eq!(
        sums,
        vec![
            ("g2".into(), 7, 105),
            ("g1".into(), 5, 104),
            ("g0".into(), 3, 103)
        ]
    );
    // `one` on a projection.
    let top: Option<(String,)> = User::find()
        .columns([UserColumn::Name.expr()])
        .filter(UserColumn::Id.is_in(mine.clone()))
        .order_by_desc(UserColumn::Visits)
        .into_model::<(String,)>()
        .one(&conn)
        .unwrap();
    assert_eq!(top, Some(("g2".to_string(),)));
}

#[test]
fn projection_into_a_from_row_struct() {
    let conn = connect();
    let run = run_id("q_proj");
    let users = with_visits(&conn, new_users(&conn, &run, 3));
    let mine = ids(&users);
    let rows: Vec<UserSummary> = User::find()
        .columns([UserColumn::Name.expr()])
        .column_as(UserColumn::Email.expr(), "address")
        .column_as(Expr::cust("visits * 2"), "double_visits")
        .filter(UserColumn::Id.is_in(mine.clone()))
        .order_by_asc(UserColumn::Id)
        .into_model::<UserSummary>()
        .all(&conn)
        .unwrap();
    assert_eq!(
        rows,
        (0..3)
            .map(|i| UserSummary {
                address: email(&run, i),
                double_visits: 2 * i as i32,
                name: Some(run.clone()),
            })
            .collect::<Vec<_>>()
    );
    // column_as alone, in another order than the struct's fields.
    let row = User::find()
        .column_as(Expr::cust("visits + 10"), "double_visits")
        .column_as(Expr::cust("NULL::text"), "name")
        .column_as(UserColumn::Email.expr(), "address")
        .filter(UserColumn::Id.eq(mine[2]))
        .into_model::<UserSummary>()
        .one(&conn)
        .unwrap()
        .unwrap();
    assert_eq!(row.double_visits, 12);
    assert_eq!(row.name, None);
    // A missing column is an error naming it.
    let e = User::find()
        .columns([UserColumn::Name.expr()])
        .filter(UserColumn::Id.eq(mine[0]))
        .into_model::<UserSummary>()
        .all(&conn)
        .unwrap_err();
    match &e {
        Error::ColumnNotFound { column } => assert!(column.contains("address"), "{e}"),
        other => panic!("expected ColumnNotFound, got {other:?}"),
    }
}

#[test]
fn distinct_and_distinct_on() {
    let conn = connect();
    let run = run_id("q_dist");
    let users = new_users(&conn, &run, 5);
    let mine = ids(&users);
    for (i, u) in users.iter().enumerate() {
        let mut change = u.clone().into_record();
        change.name = Set(Some(format!("n{}", i % 2)));
        change.visits = Set(i as i32);
        change.update(&conn).unwrap();
    }
    let names: Vec<(Option<String>,)> = User::find()
        .columns([UserColumn::Name.expr()])
        .filter(UserColumn::Id.is_in(mine.clone()))
        .distinct()
        .order_by_asc(UserColumn::Name)
        .into_model::<(Option<String>,)>()
        .all(&conn)
        .unwrap();
    assert_eq!(
        names,
        vec![(Some("n0".to_string()),), (Some("n1".to_string()),)]
    );
    // The user with the most visits per name.
    let top = User::find()
        .filter(UserColumn::Id.is_in(mine.clone()))
        .distinct_on([UserColumn::Name.expr()])
        .order_by_asc(UserColumn::Name)
        .order_by_desc(UserColumn::Visits)
        .all(&conn)
        .unwrap();
    let got: Vec<(Option<String>, i32)> = top.iter().map(|u| (u.name.clone(), u.visits)).collect();
    assert_eq!(got, vec![(Some("n0".into()), 4), (Some("n1".into()), 3)]);
}

/// Three authors: a with posts scored 1 and 9, b with one scored 5, c with none.
fn authors_and_posts(conn: &impl Executor, run: &str) -> (Vec<User>, Vec<Post>) {
    let users = new_users(conn, run, 3);
    let mut posts = Vec::new();
    for (author, title, score) in [(0, "a1", 1.0), (0, "a2", 9.0), (1, "b1", 5.0)] {
        posts.push(
            PostRecord {
                author_id: Set(users[author].id),
                title: Set(format!("{run}-{title}")),
                score: Set(score),
                published_on: Set(NaiveDate::from_ymd_opt(2024, 1, 1 + author as u32)),
                ..Default::default()
            }
            .insert(conn)
            .unwrap(),
        );
    }
    (users, posts)
}

fn on_author() -> Expr {
    PostColumn::AuthorId
        .expr()
        .append_sql(" = ")
        .append(UserColumn::Id.expr())
}

#[test]
fn inner_and_left_joins() {
    let conn = connect();
    let run = run_id("q_join");
    let (users, _posts) = authors_and_posts(&conn, &run);
    let mine = ids(&users);
    // Authors with a post scored above 3.
    let inner = User::find()
        .join::<Post>(JoinType::Inner, on_author())
        .filter(UserColumn::Id.is_in(mine.clone()))
        .filter(PostColumn::Score.gt(3.0))
        .order_by_asc(UserColumn::Id)
        .all(&conn)
        .unwrap();
    assert_eq!(ids(&inner), vec![mine[0], mine[1]]);
    // Every author with any post, once.
    let any = User::find()
        .join::<Post>(JoinType::Inner, on_author())
        .filter(UserColumn::Id.is_in(mine.clone()))
        .distinct()
        .count(&conn)
        .unwrap();
    assert_eq!(any, 2);
    // Authors without posts: left join, then IS NULL.
    let lonely = User::find()
        .join::<Post>(
            JoinType::Left,
            Expr::cust(r#""orm_test"."posts"."author_id" = "orm_test"."users"."id""#),
        )
        .filter(UserColumn::Id.is_in(mine.clone()))
        .filter(PostColumn::Id.is_null())
        .all(&conn)
        .unwrap();
    assert_eq!(ids(&lonely), vec![mine[2]]);
    // A projection over both tables, NULLs from the left join.
    let pairs: Vec<(String, Option<String>, Option<f64>)> = User::find()
        .columns([
            UserColumn::Email.expr(),
            PostColumn::Title.expr(),
            PostColumn::Score.expr(),
        ])
        .join::<Post>(JoinType::Left, on_author())
        .filter(UserColumn::Id.is_in(mine.clone()))
        .order_by_asc(UserColumn::Id)
        .order_by_asc(PostColumn::Score)
        .into_model::<(String, Option<String>, Option<f64>)>()
        .all(&conn)
        .unwrap();
    assert_eq!(
        pairs,
        vec![
            (email(&run, 0), Some(format!("{run}-a1")), Some(1.0)),
            (email(&run, 0), Some(format!("{run}-a2")), Some(9.0)),
            (email(&run, 1), Some(format!("{run}-b1")), Some(5.0)),
            (email(&run, 2), None, None),
        ]
    );
    // A join condition with a bound value, numbered before the filter's.
    let high = User::find()
        .join::<Post>(JoinType::Inner, on_author().and(PostColumn::Score.gte(9.0)))
        .filter(UserColumn::Id.is_in(mine.clone()))
        .all(&conn)
        .unwrap();
    assert_eq!(ids(&high), vec![mine[0]]);
    // Posts with their author, the other way round.
    let posts_of_b = Post::find()
        .join::<User>(JoinType::Inner, on_author())
        .filter(UserColumn::Email.eq(email(&run, 1)))
        .all(&conn)
        .unwrap();
    assert_eq!(posts_of_b.len(), 1);
    assert_eq!(posts_of_b[0].title, format!("{run}-b1"));
}

#[test]
fn for_update_locks_rows_until_the_transaction_ends() {
    let mut conn = connect();
    let other = connect();
    other.batch_execute("SET lock_timeout = '200ms'").unwrap();
    let run = run_id("q_lock");
    let users = new_users(&conn, &run, 2);
    let (locked, free) = (users[0].id, users[1].id);
    conn.transaction(|tx| {
        let row = User::find()
            .filter(UserColumn::Id.eq(locked))
            .for_update()
            .one(tx)?
            .expect("row");
        assert_eq!(row.id, locked);
        // Another session cannot lock or update it...
        let e = User::find()
            .filter(UserColumn::Id.eq(locked))
            .for_update()
            .one(&other)
            .unwrap_err();
        assert_eq!(e.sqlstate(), Some("55P03"), "{e:?}");
        let mut change = users[0].clone().into_record();
        change.visits = Set(1);
        let e = change.update(&other).unwrap_err();
        assert_eq!(e.sqlstate(), Some("55P03"), "{e:?}");
        // ...NOWAIT fails at once...
        let e = User::find()
            .filter(UserColumn::Id.eq(locked))
            .for_update_nowait()
            .one(&other)
            .unwrap_err();
        assert_eq!(e.sqlstate(), Some("55P03"), "{e:?}");
        // ...but the other row is free, and plain reads do not block.
        assert!(User::find()
            .filter(UserColumn::Id.eq(free))
            .for_update()
            .one(&other)?
            .is_some());
        assert!(User::find_by_id(locked).one(&other)?.is_some());
        Ok(())
    })
    .unwrap();
    // Committed: the lock is gone.
    let mut change = users[0].clone().into_record();
    change.visits = Set(1);
    assert_eq!(change.update(&other).unwrap().visits, 1);
    // FOR SHARE blocks writers but not other sharers.
    conn.transaction(|tx| {
        User::find()
            .filter(UserColumn::Id.eq(locked))
            .for_share()
            .one(tx)?;
        assert!(User::find()
            .filter(UserColumn::Id.eq(locked))
            .for_share()
            .one(&other)?
            .is_some());
        let e = User::delete_by_id(&other, locked).unwrap_err();
        assert_eq!(e.sqlstate(), Some("55P03"), "{e:?}");
        Ok(())
    })
    .unwrap();
}

#[test]
fn for_update_skip_locked_hands_out_disjoint_rows() {
    let mut a = connect();
    let mut b = connect();
    let run = run_id("q_skip");
    let users = new_users(&a, &run, 4);
    let mine = ids(&users);
    let batch = || {
        User::find()
            .filter(UserColumn::Id.is_in(mine.clone()))
            .order_by_asc(UserColumn::Id)
            .limit(2)
            .for_update_skip_locked()
    };
    let ta = a.begin().unwrap();
    let tb = b.begin().unwrap();
    let got_a = ids(&batch().all(&ta).unwrap());
    let got_b = ids(&batch().all(&tb).unwrap());
    assert_eq!(got_a, vec![mine[0], mine[1]]);
    assert_eq!(got_b, vec![mine[2], mine[3]]);
    // A third worker finds nothing left.
    let c = connect();
    assert!(batch().all(&c).unwrap().is_empty());
    // One worker commits; its rows come free, the other's stay locked.
    ta.commit().unwrap();
    let got_c = ids(&batch().all(&c).unwrap());
    assert_eq!(got_c, vec![mine[0], mine[1]]);
    tb.rollback().unwrap();
    let union: BTreeSet<i64> = got_a.iter().chain(&got_b).copied().collect();
    assert_eq!(union.len(), 4);
}

#[test]
fn raw_sql_through_query_as() {
    let conn = connect();
    let run = run_id("q_raw");
    let users = with_visits(&conn, new_users(&conn, &run, 3));
    let mine = ids(&users);
    // Models decode from raw SQL selecting their columns in order.
    let raw: Vec<User> = conn
        .query_as(
            &format!(
                "SELECT {} FROM orm_test.users WHERE id = ANY($1) ORDER BY id DESC",
                User::COLUMN_LIST
            ),
            &[&mine],
        )
        .unwrap();
    assert_eq!(ids(&raw), mine.iter().rev().copied().collect::<Vec<_>>());
    assert_eq!(raw[0].email, email(&run, 2));
    // Projections by name, in any column order.
    let summary: UserSummary = conn
        .query_one_as(
            "SELECT visits * 2 AS double_visits, name, email AS address \
             FROM orm_test.users WHERE id = $1",
            &[&mine[1]],
        )
        .unwrap();
    assert_eq!(summary.double_visits, 2);
    assert_eq!(summary.address, email(&run, 1));
    let none: Option<UserSummary> = conn
        .query_opt_as(
            "SELECT 0 AS double_visits, NULL::text AS name, '' AS address WHERE false",
            &[],
        )
        .unwrap();
    assert!(none.is_none());
    let tuples: Vec<(i64, String)> = conn
        .query_as(
            "SELECT id, email FROM orm_test.users WHERE name = $1 ORDER BY id",
            &[&run],
        )
        .unwrap();
    assert_eq!(tuples.len(), 3);
    assert_eq!(tuples[2], (mine[2], email(&run, 2)));
    // NotFound / TooManyRows from query_one_as.
    let e = conn
        .query_one_as::<(i64,)>("SELECT id FROM orm_test.users WHERE id = -1", &[])
        .unwrap_err();
    assert!(matches!(e, Error::NotFound), "{e:?}");
    let e = conn
        .query_one_as::<(i64,)>("SELECT id FROM orm_test.users WHERE name = $1", &[&run])
        .unwrap_err();
    assert!(matches!(e, Error::TooManyRows(3)), "{e:?}");
}

#[test]
fn values_are_bound_not_interpolated() {
    let conn = connect();
    let run = run_id("q_inject");
    let nasty = format!("{run}'; DROP TABLE orm_test.users; --");
    assert!(User::find()
        .filter(UserColumn::Email.eq(nasty.clone()))
        .one(&conn)
        .unwrap()
        .is_none());
    assert_eq!(
        User::find()
            .filter(UserColumn::Name.like(format!("%{nasty}%")))
            .count(&conn)
            .unwrap(),
        0
    );
    // Stored and found back verbatim.
    let user = UserRecord {
        email: Set(nasty.clone()),
        name: Set(Some("x' OR '1'='1".into())),
        tags: Set(vec!["'); DELETE FROM orm_test.users; --".into()]),
        ..Default::default()
    }
    .insert(&conn)
    .unwrap();
    let found = User::find()
        .filter(UserColumn::Email.eq(nasty.clone()))
        .filter(UserColumn::Name.eq("x' OR '1'='1".to_string()))
        .all(&conn)
        .unwrap();
    assert_eq!(ids(&found), vec![user.id]);
    assert_eq!(found[0].tags, vec!["'); DELETE FROM orm_test.users; --"]);
    let (sql, params) = User::find()
        .filter(UserColumn::Email.eq(nasty.clone()))
        .build();
    assert!(!sql.contains("DROP"), "{sql}");
    assert_eq!(params.len(), 1);
    // The table is still there.
    let tables: i64 = conn
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'orm_test' AND tablename = 'users'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 1);
}

#[test]
fn built_sql_text() {
    const COLS: &str = r#""orm_test"."users"."id", "orm_test"."users"."email", "orm_test"."users"."name", "orm_test"."users"."visits", "orm_test"."users"."created_at", "orm_test"."users"."tags", "orm_test"."users"."profile", "orm_test"."users"."balance", "orm_test"."users"."external_id", "orm_test"."users"."mood""#;
    let (sql, params) = User::find().build();
    assert_eq!(sql, format!(r#"SELECT {COLS} FROM "orm_test"."users""#));
    assert!(params.is_empty());

    let (sql, params) = User::find()
        .filter(UserColumn::Email.eq("a@b".to_string()))
        .filter(UserColumn::Visits.between(1, 5))
        .order_by_desc(UserColumn::Id)
        .limit(10)
        .offset(20)
        .build();
    assert_eq!(
        sql,
        format!(
            r#"SELECT {COLS} FROM "orm_test"."users" WHERE ("orm_test"."users"."email" = $1) AND ("orm_test"."users"."visits" BETWEEN $2 AND $3) ORDER BY "orm_test"."users"."id" DESC LIMIT $4 OFFSET $5"#
        )
    );
    assert_eq!(params.len(), 5, "the limit and the offset are bound");

    let (sql, params) = User::find()
        .filter(
            Condition::any()
                .add(UserColumn::Id.is_in(vec![1i64, 2, 3]))
                .add(UserColumn::Name.is_null()),
        )
        .for_update_skip_locked()
        .build();
    assert_eq!(
        sql,
        format!(
            r#"SELECT {COLS} FROM "orm_test"."users" WHERE ((("orm_test"."users"."id" = ANY($1)) OR ("orm_test"."users"."name" IS NULL))) FOR UPDATE SKIP LOCKED"#
        )
    );
    assert_eq!(params.len(), 1, "the list is one array parameter");

    let (sql, _) = Post::find()
        .columns([PostColumn::AuthorId.expr(), Expr::cust("count(*)")])
        .join::<User>(JoinType::Left, on_author())
        .group_by(PostColumn::AuthorId)
        .having(Expr::cust("count(*) > ").append(Expr::val(1i64)))
        .distinct()
        .build();
    assert_eq!(
        sql,
        r#"SELECT DISTINCT "orm_test"."posts"."author_id", count(*) FROM "orm_test"."posts" LEFT JOIN "orm_test"."users" ON "orm_test"."posts"."author_id" = "orm_test"."users"."id" GROUP BY "orm_test"."posts"."author_id" HAVING count(*) > $1"#
    );

    let (sql, params) = User::find_by_id(7).build();
    assert_eq!(
        sql,
        format!(r#"SELECT {COLS} FROM "orm_test"."users" WHERE ("orm_test"."users"."id" = $1)"#)
    );
    assert_eq!(params.len(), 1);
    assert_eq!(
        User::FIND_BY_PK_SQL,
        r#"SELECT "id", "email", "name", "visits", "created_at", "tags", "profile", "balance", "external_id", "mood" FROM "orm_test"."users" WHERE "id" = $1"#
    );
    assert_eq!(
        User::DELETE_BY_PK_SQL,
        r#"DELETE FROM "orm_test"."users" WHERE "id" = $1"#
    );
    // Post's renamed column, selected under its SQL name.
    let (sql, _) = Post::find().filter(PostColumn::Title.like("x%")).build();
    assert!(
        sql.contains(r#""orm_test"."posts"."post_title" LIKE $1"#),
        "{sql}"
    );
}

/// An unrefined `find()` sends one constant text (formatted once per model), the same as
/// `build()` gives; anything added builds afresh.
#[test]
fn unrefined_find_sends_a_constant_statement() {
    let conn = connect();
    let counting = Counting::new(&conn);
    let first = User::find().all(&counting).unwrap();
    let again = User::find().all(&counting).unwrap();
    assert_eq!(first.len(), again.len());
    User::find().limit(1).all(&counting).unwrap();
    let sent = counting.sent();
    let (plain, _) = User::find().build();
    assert_eq!(sent[..2], [plain.clone(), plain.clone()]);
    assert_eq!(sent[2], format!("{plain} LIMIT $1"));
}

/// Every page of a query is one statement text (the limit and offset are bound), so paging
/// never churns the connection's statement cache: numbered pages and keyset pages alike.
#[test]
fn every_page_is_one_statement() {
    let conn = connect();
    let run = run_id("q_pages");
    new_users(&conn, &run, 5);
    let counting = Counting::new(&conn);
    let mine = || User::find().filter(UserColumn::Email.like(like_prefix(&run)));
    let pages = mine().paginate(&counting, 2);
    let rows: Vec<usize> = (0..3).map(|p| pages.fetch_page(p).unwrap().len()).collect();
    assert_eq!(rows, [2, 2, 1]);
    let first = mine()
        .cursor_by(UserColumn::Id)
        .first(2)
        .all(&counting)
        .unwrap();
    let last = first.last().expect("a first page");
    mine()
        .cursor_by(UserColumn::Id)
        .first(3)
        .after_model(last)
        .all(&counting)
        .unwrap();
    let sent = counting.sent();
    assert_eq!(sent.len(), 5);
    assert!(sent[..3].iter().all(|s| *s == sent[0]), "{sent:#?}");
    assert!(!sent[0].contains("OFFSET 2"), "{}", sent[0]);
    assert_ne!(sent[3], sent[4], "a bound cursor adds a condition");
    assert!(sent[4].ends_with("LIMIT $3"), "{}", sent[4]);
}

#[test]
fn find_by_id_with_more_conditions_still_works() {
    let conn = connect();
    let run = run_id("q_byid");
    let users = with_visits(&conn, new_users(&conn, &run, 2));
    let u = &users[1];
    assert!(User::find_by_id(u.id)
        .filter(UserColumn::Visits.eq(1))
        .one(&conn)
        .unwrap()
        .is_some());
    assert!(User::find_by_id(u.id)
        .filter(UserColumn::Visits.eq(2))
        .one(&conn)
        .unwrap()
        .is_none());
    assert_eq!(User::find_by_id(u.id).count(&conn).unwrap(), 1);
    assert!(User::find_by_id(u.id).exists(&conn).unwrap());
    assert!(!User::find_by_id(-5).exists(&conn).unwrap());
    assert!(User::find_by_id(u.id)
        .limit(0)
        .all(&conn)
        .unwrap()
        .is_empty());
    // Joined: the key condition must not be ambiguous between the two tables' `id`.
    let joined = User::find_by_id(u.id)
        .join::<Post>(JoinType::Left, on_author())
        .all(&conn);
    assert!(joined.is_ok(), "{joined:?}");
    assert_eq!(joined.unwrap().len(), 1);
}

#[test]
fn enum_lists_and_composite_keys_in_built_queries() {
    use lifeguard_tests::orm::{Membership, MembershipColumn, MembershipRecord};
    let conn = connect();
    let run = run_id("q_enum");
    let users = new_users(&conn, &run, 3);
    let mine = ids(&users);
    for (u, mood) in users.iter().zip([Mood::Sad, Mood::Ok, Mood::Happy]) {
        let mut change = u.clone().into_record();
        change.mood = Set(Some(mood));
        change.update(&conn).unwrap();
    }
    let found = User::find()
        .filter(UserColumn::Id.is_in(mine.clone()))
        .filter(UserColumn::Mood.is_in(vec![Mood::Happy, Mood::Sad]))
        .order_by_asc(UserColumn::Id)
        .all(&conn)
        .unwrap();
    assert_eq!(ids(&found), vec![mine[0], mine[2]]);
    let found = User::find()
        .filter(UserColumn::Id.is_in(mine.clone()))
        .filter(UserColumn::Mood.is_not_in(vec![Mood::Ok]))
        .count(&conn)
        .unwrap();
    assert_eq!(found, 2);
    // A composite key through the built (not constant) statement.
    let org = run_id("q_org");
    for uid in [1i64, 2] {
        MembershipRecord {
            org: Set(org.clone()),
            user_id: Set(uid),
            role: Set(format!("r{uid}")),
        }
        .insert(&conn)
        .unwrap();
    }
    let m = Membership::find_by_id((org.clone(), 2))
        .filter(MembershipColumn::Role.eq("r2".to_string()))
        .one(&conn)
        .unwrap()
        .expect("found through the built statement");
    assert_eq!((m.org.as_str(), m.user_id), (org.as_str(), 2));
    assert!(Membership::find_by_id((org.clone(), 2))
        .filter(MembershipColumn::Role.eq("r1".to_string()))
        .one(&conn)
        .unwrap()
        .is_none());
    assert_eq!(
        Membership::find_by_id((org.clone(), 1))
            .count(&conn)
            .unwrap(),
        1
    );
    let (sql, params) = Membership::find_by_id((org.clone(), 1)).build();
    assert!(
        sql.contains(r#""orm_test"."memberships"."org" = $1"#)
            && sql.contains(r#""orm_test"."memberships"."user_id" = $2"#),
        "{sql}"
    );
    assert_eq!(params.len(), 2);
}
