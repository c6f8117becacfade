//! The typed column constants the derive generates, checked without a database: their
//! types, their names, and that they go wherever a plain column goes.

use lifeguard_core::model::{LifeModel, OnConflict, Returning};
use lifeguard_core::query::{ColumnExpr, Expr, TypedColumn};
use lifeguard_core::{LifeEnum, LifeModel};

mod ids {
    /// A key type written through a path and an alias.
    pub type Id = i64;
}

/// An alias of a generic type: the constant must name it as written.
type Stamp = chrono::DateTime<chrono::Utc>;

#[derive(Debug, Clone, Copy, PartialEq, LifeEnum)]
pub enum Status {
    Draft,
    Live,
}

#[derive(Debug, Clone, LifeModel)]
#[lifeguard(table_name = "docs")]
pub struct Doc {
    #[lifeguard(primary_key)]
    pub id: ids::Id,
    #[lifeguard(column_name = "heading")]
    pub title: std::string::String,
    pub body: Option<String>,
    #[lifeguard(created_at)]
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub published: Option<Stamp>,
    pub status: Status,
    pub r#type: core::option::Option<i16>,
    pub blob: Vec<u8>,
    pub visits: i32,
    #[lifeguard(ignore)]
    pub cached: u32,
    secret: String,
}

/// Pins a constant's type: compiles only when `_column` is `TypedColumn<DocColumn, T>`.
fn typed<T>(_column: TypedColumn<DocColumn, T>) {}

#[test]
fn one_constant_per_stored_field_with_the_field_type() {
    typed::<i64>(Doc::COL_ID);
    typed::<String>(Doc::COL_TITLE);
    typed::<Option<String>>(Doc::COL_BODY);
    typed::<chrono::DateTime<chrono::Utc>>(Doc::COL_CREATED_AT);
    typed::<Option<chrono::DateTime<chrono::Utc>>>(Doc::COL_PUBLISHED);
    typed::<Status>(Doc::COL_STATUS);
    typed::<Option<i16>>(Doc::COL_TYPE);
    typed::<Vec<u8>>(Doc::COL_BLOB);
    typed::<String>(Doc::COL_SECRET);
    assert_eq!(Doc::COL_TITLE.column(), DocColumn::Title);
    assert_eq!(Doc::COL_TYPE.column(), DocColumn::Type);
    // The trait's constant is untouched by the field of the same name.
    assert_eq!(<Doc as LifeModel>::CREATED_AT, Some("created_at"));
    assert_eq!(Doc::CREATED_AT, Some("created_at"));
}

#[test]
fn comparisons_write_the_untyped_sql() {
    let pairs: [(Expr, Expr); 9] = [
        (Doc::COL_TITLE.eq("a"), DocColumn::Title.eq("a")),
        (Doc::COL_ID.ne(5), DocColumn::Id.ne(5_i64)),
        (Doc::COL_BODY.like("x%"), DocColumn::Body.like("x%")),
        (Doc::COL_BODY.ilike("x%"), DocColumn::Body.ilike("x%")),
        (
            Doc::COL_TYPE.between(1, 2),
            DocColumn::Type.between(1_i16, 2),
        ),
        (
            Doc::COL_STATUS.is_in([Status::Live]),
            DocColumn::Status.is_in([Status::Live]),
        ),
        (
            Doc::COL_ID.is_not_in(vec![1, 2]),
            DocColumn::Id.is_not_in(vec![1_i64, 2]),
        ),
        (Doc::COL_BLOB.is_not_null(), DocColumn::Blob.is_not_null()),
        (Doc::COL_VISITS.sub(1), DocColumn::Visits.sub(1)),
    ];
    for (typed, plain) in pairs {
        assert_eq!(typed.to_sql_string(), plain.to_sql_string());
    }
    assert_eq!(Doc::COL_TITLE.expr().to_sql_string(), r#""docs"."heading""#);
}

#[test]
fn accepted_value_forms() {
    let owned = String::from("t");
    let bytes: Vec<u8> = vec![1, 2];
    let stamp = chrono::Utc::now();
    // Each compiles: that is the test; the SQL is the same for all.
    let exprs = [
        Doc::COL_TITLE.eq("t"),
        Doc::COL_TITLE.eq(&owned),
        Doc::COL_TITLE.eq(owned.clone()),
        Doc::COL_BODY.eq("t"),
        Doc::COL_BODY.eq(&owned),
        Doc::COL_BODY.eq(Some(owned.clone())),
        Doc::COL_TYPE.eq(3),
        Doc::COL_TYPE.eq(Some(3)),
        Doc::COL_BLOB.eq(&bytes[..]),
        Doc::COL_BLOB.eq(b"ab"),
        Doc::COL_BLOB.eq(&bytes),
        Doc::COL_CREATED_AT.eq(stamp),
        Doc::COL_PUBLISHED.eq(stamp),
        Doc::COL_STATUS.eq(Status::Draft),
    ];
    for e in exprs {
        assert!(e.to_sql_string().ends_with(" = $1"), "{e:?}");
    }
    // Lists of borrowed values convert element by element.
    let names = vec![String::from("a"), String::from("b")];
    let e = Doc::COL_TITLE.is_in(&names);
    assert_eq!(e.to_sql_string(), r#""docs"."heading" = ANY($1)"#);
    let e = Doc::COL_TITLE.is_in(["a", "b"]);
    assert_eq!(e.to_sql_string(), r#""docs"."heading" = ANY($1)"#);
}

#[test]
fn typed_columns_go_where_columns_go() {
    let typed = Doc::find()
        .columns([Doc::COL_TITLE.expr()])
        .filter(Doc::COL_VISITS.gt(1))
        .group_by(Doc::COL_TITLE)
        .order_by_desc(Doc::COL_CREATED_AT)
        .build()
        .0;
    let plain = Doc::find()
        .columns([DocColumn::Title.expr()])
        .filter(DocColumn::Visits.gt(1))
        .group_by(DocColumn::Title)
        .order_by_desc(DocColumn::CreatedAt)
        .build()
        .0;
    assert_eq!(typed, plain);

    let cursor = Doc::find().cursor_by(Doc::COL_CREATED_AT);
    assert_eq!(cursor.columns(), [DocColumn::CreatedAt, DocColumn::Id]);
    let cursor = Doc::find().cursor_by([Doc::COL_TITLE.column(), DocColumn::Secret]);
    assert_eq!(
        cursor.columns(),
        [DocColumn::Title, DocColumn::Secret, DocColumn::Id]
    );

    let update = Doc::update_many()
        .set(Doc::COL_VISITS, Doc::COL_VISITS.add(1))
        .set_value(Doc::COL_TITLE, "t".to_string())
        .filter(Doc::COL_ID.eq(1));
    assert_eq!(
        update.build(Returning::Nothing).0,
        r#"UPDATE "docs" SET "visits" = "visits" + $1, "heading" = $2 WHERE ("docs"."id" = $3)"#
    );

    let upsert = OnConflict::columns([Doc::COL_TITLE.column()])
        .do_update([DocColumn::Body])
        .update_expr(Doc::COL_VISITS, Doc::COL_VISITS.add(1));
    assert_eq!(
        upsert.to_sql_string(),
        r#" ON CONFLICT ("heading") DO UPDATE SET "body" = EXCLUDED."body", "visits" = "visits" + $1"#
    );
}
