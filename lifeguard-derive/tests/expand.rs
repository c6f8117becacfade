//! What the derives generate, checked without a database.

use lifeguard_core::model::{
    ActiveValue::{self, NotSet, Set, Unchanged},
    ColumnDef, Field, FromRow, LifeModel, LifeRecord, ModelColumn,
};
use lifeguard_core::query::{ColumnExpr, Expr};
use lifeguard_core::{FromRow, LifeModel, LifeRecord};

#[derive(Debug, Clone, PartialEq, LifeModel, LifeRecord)]
#[lifeguard(table_name = "users", schema_name = "app")]
pub struct User {
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    #[lifeguard(column_name = "email_address")]
    pub email: String,
    pub display_name: Option<String>,
    #[lifeguard(default_expr = "now()", column_type = "timestamptz")]
    pub created_at: String,
    pub tags: Vec<String>,
    #[lifeguard(ignore)]
    pub cached: Vec<u32>,
    pub r#type: i16,
}

#[derive(Debug, Clone, LifeModel)]
#[lifeguard(table_name = "we\"ird")]
pub(crate) struct Membership {
    #[lifeguard(primary_key)]
    pub org_id: i64,
    #[lifeguard(primary_key, column_name = "member")]
    pub user_id: uuid::Uuid,
    pub role: Option<i32>,
    pub avatar: Option<Vec<u8>>,
}

#[derive(Debug, FromRow)]
#[allow(dead_code)]
struct Projection {
    domain: String,
    #[lifeguard(column_name = "count")]
    users: i64,
    #[lifeguard(ignore)]
    note: Option<String>,
}

#[derive(Debug, FromRow)]
#[allow(dead_code)]
struct Generic<T> {
    value: T,
    #[lifeguard(ignore)]
    extra: Vec<T>,
}

fn user() -> User {
    User {
        id: 7,
        email: "a@example.com".into(),
        display_name: None,
        created_at: "2024-01-01".into(),
        tags: vec!["x".into()],
        cached: vec![1, 2],
        r#type: 3,
    }
}

fn is_from_row<T: FromRow>() {}

#[test]
fn single_key_constants() {
    assert_eq!(User::TABLE, "users");
    assert_eq!(User::SCHEMA, Some("app"));
    assert_eq!(User::QUALIFIED, r#""app"."users""#);
    assert_eq!(
        User::COLUMN_LIST,
        r#""id", "email_address", "display_name", "created_at", "tags", "type""#
    );
    assert_eq!(
        User::FIND_BY_PK_SQL,
        r#"SELECT "id", "email_address", "display_name", "created_at", "tags", "type" FROM "app"."users" WHERE "id" = $1"#
    );
    assert_eq!(
        User::DELETE_BY_PK_SQL,
        r#"DELETE FROM "app"."users" WHERE "id" = $1"#
    );
}

#[test]
fn single_key_columns() {
    let names: Vec<_> = User::COLUMNS.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "id",
            "email_address",
            "display_name",
            "created_at",
            "tags",
            "type"
        ]
    );
    assert_eq!(
        User::COLUMNS[0],
        ColumnDef {
            name: "id",
            field: "id",
            primary_key: true,
            auto_increment: true,
            nullable: false,
            default_expr: None,
            sql_type: "bigint",
        }
    );
    assert_eq!(
        User::COLUMNS[1],
        ColumnDef {
            name: "email_address",
            field: "email",
            primary_key: false,
            auto_increment: false,
            nullable: false,
            default_expr: None,
            sql_type: "text",
        }
    );
    let display = UserColumn::DisplayName.def();
    assert!(display.nullable);
    assert_eq!(display.sql_type, "text");
    let created = UserColumn::CreatedAt.def();
    assert_eq!(created.default_expr, Some("now()"));
    assert_eq!(created.sql_type, "timestamptz");
    assert_eq!(UserColumn::Tags.def().sql_type, "text[]");
    assert_eq!(UserColumn::Type.def().field, "type");
    assert_eq!(UserColumn::Type.def().sql_type, "smallint");

    assert_eq!(UserColumn::Email.name(), "email_address");
    assert_eq!(<UserColumn as ModelColumn>::TABLE, User::QUALIFIED);
    assert_eq!(
        UserColumn::ALL,
        [
            UserColumn::Id,
            UserColumn::Email,
            UserColumn::DisplayName,
            UserColumn::CreatedAt,
            UserColumn::Tags,
            UserColumn::Type,
        ]
    );
    for (i, c) in UserColumn::ALL.iter().enumerate() {
        assert_eq!(c.def(), &User::COLUMNS[i]);
    }
}

#[test]
fn record_default_is_not_set() {
    let r = UserRecord::default();
    assert!(r.id.is_not_set());
    assert!(r.email.is_not_set());
    assert!(r.display_name.is_not_set());
    assert!(r.created_at.is_not_set());
    assert!(r.tags.is_not_set());
    assert!(r.r#type.is_not_set());
    assert!(LifeRecord::primary_key(&r).is_none());
    assert!(!r.key_unchanged());
    assert!(r.fields().iter().all(|(_, f)| matches!(f, Field::NotSet)));
    assert_eq!(
        format!("{r:?}"),
        "UserRecord { id: NotSet, email: NotSet, display_name: NotSet, created_at: NotSet, \
         tags: NotSet, type: NotSet }"
    );
}

#[test]
fn into_record_is_unchanged() {
    let u = user();
    assert_eq!(LifeModel::primary_key(&u), 7);
    let r = u.clone().into_record();
    assert!(matches!(r.id, Unchanged(7)));
    assert!(matches!(&r.email, Unchanged(e) if e == "a@example.com"));
    assert!(matches!(r.display_name, Unchanged(None)));
    assert!(matches!(r.r#type, Unchanged(3)));
    assert!(r
        .fields()
        .iter()
        .all(|(_, f)| matches!(f, Field::Unchanged(_))));
    assert_eq!(LifeRecord::primary_key(&r), Some(7));
    assert!(r.key_unchanged());

    let via_from: UserRecord = u.into();
    assert!(matches!(via_from.id, Unchanged(7)));
}

#[test]
fn record_fields_and_keys() {
    let mut r = UserRecord {
        email: Set("b@example.com".into()),
        created_at: ActiveValue::Expr(Expr::cust("now()")),
        ..Default::default()
    };
    let cols: Vec<UserColumn> = r.fields().iter().map(|(c, _)| *c).collect();
    assert_eq!(cols, UserColumn::ALL);
    let fields = r.fields();
    assert!(matches!(fields[0].1, Field::NotSet));
    assert!(matches!(fields[1].1, Field::Set(_)));
    assert!(matches!(fields[3].1, Field::Expr(_)));
    assert!(LifeRecord::primary_key(&r).is_none());

    r.id = Set(9);
    assert_eq!(LifeRecord::primary_key(&r), Some(9));
    assert!(!r.key_unchanged(), "a set key means insert on save");
    let copy = r.clone();
    assert!(matches!(copy.id, Set(9)));
    assert_eq!(
        format!("{copy:?}"),
        "UserRecord { id: Set(..), email: Set(..), display_name: NotSet, \
         created_at: Expr(now()), tags: NotSet, type: NotSet }"
    );
}

#[test]
fn queries() {
    let (sql, params) = User::find().filter(UserColumn::Email.eq("x")).build();
    assert_eq!(
        sql,
        r#"SELECT "app"."users"."id", "app"."users"."email_address", "app"."users"."display_name", "app"."users"."created_at", "app"."users"."tags", "app"."users"."type" FROM "app"."users" WHERE ("app"."users"."email_address" = $1)"#
    );
    assert_eq!(params.len(), 1);

    let (sql, params) = User::find_by_id(5).build();
    assert!(
        sql.ends_with(r#" FROM "app"."users" WHERE ("app"."users"."id" = $1)"#),
        "{sql}"
    );
    assert_eq!(params.len(), 1);
    assert_eq!(
        User::key_condition(&5).to_sql_string(),
        r#""app"."users"."id" = $1"#
    );
    assert_eq!(User::key_params(&5).len(), 1);
}

#[test]
fn composite_key() {
    assert_eq!(Membership::SCHEMA, None);
    assert_eq!(Membership::QUALIFIED, r#""we""ird""#);
    assert_eq!(
        Membership::FIND_BY_PK_SQL,
        r#"SELECT "org_id", "member", "role", "avatar" FROM "we""ird" WHERE "org_id" = $1 AND "member" = $2"#
    );
    assert_eq!(
        Membership::DELETE_BY_PK_SQL,
        r#"DELETE FROM "we""ird" WHERE "org_id" = $1 AND "member" = $2"#
    );
    let keys: Vec<_> = Membership::COLUMNS
        .iter()
        .filter(|c| c.primary_key)
        .map(|c| (c.name, c.field, c.sql_type))
        .collect();
    assert_eq!(
        keys,
        [
            ("org_id", "org_id", "bigint"),
            ("member", "user_id", "uuid")
        ]
    );
    assert!(MembershipColumn::Role.def().nullable);
    assert_eq!(MembershipColumn::Role.def().sql_type, "integer");
    assert_eq!(MembershipColumn::Avatar.def().sql_type, "bytea");
    assert_eq!(MembershipColumn::UserId.name(), "member");

    let uid = uuid::Uuid::nil();
    let m = Membership {
        org_id: 1,
        user_id: uid,
        role: Some(2),
        avatar: None,
    };
    let key: <Membership as LifeModel>::PrimaryKey = m.primary_key();
    assert_eq!(key, (1, uid));
    assert_eq!(Membership::key_params(&key).len(), 2);
    assert_eq!(
        Membership::key_condition(&key).to_sql_string(),
        r#"("we""ird"."org_id" = $1) AND ("we""ird"."member" = $2)"#
    );

    let r = m.into_record();
    assert!(r.key_unchanged());
    assert_eq!(LifeRecord::primary_key(&r), Some((1, uid)));

    let partial = MembershipRecord {
        org_id: Set(1),
        user_id: NotSet,
        ..Default::default()
    };
    assert_eq!(LifeRecord::primary_key(&partial), None);
    let mixed = MembershipRecord {
        org_id: Unchanged(1),
        user_id: Set(uid),
        ..Default::default()
    };
    assert_eq!(LifeRecord::primary_key(&mixed), Some((1, uid)));
    assert!(!mixed.key_unchanged());

    let (sql, _) = Membership::find_by_id((1, uid)).build();
    assert!(
        sql.ends_with(r#"WHERE (("we""ird"."org_id" = $1) AND ("we""ird"."member" = $2))"#),
        "{sql}"
    );
}

#[test]
fn from_row_impls_exist() {
    is_from_row::<User>();
    is_from_row::<Membership>();
    is_from_row::<Projection>();
    is_from_row::<Generic<i32>>();
}

// ---- behaviour and relations ----

#[derive(Debug, Clone, LifeModel)]
#[lifeguard(table_name = "docs", schema_name = "app", soft_delete, hooks)]
#[lifeguard(belongs_to(User, from = "owner", to = "id"))]
#[lifeguard(has_many_through(Membership, via = DocShare, from = "id", via_from = "doc_id", via_to = "org_id", to = "org_id"))]
pub struct Doc {
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    pub owner: Option<i64>,
    #[lifeguard(created_at, column_name = "made")]
    pub created: chrono::DateTime<chrono::Utc>,
    #[lifeguard(updated_at)]
    pub touched: Option<chrono::NaiveDateTime>,
    pub deleted_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl lifeguard_core::model::RecordHooks for DocRecord {}

#[derive(Debug, Clone, LifeModel)]
#[lifeguard(table_name = "doc_shares", schema_name = "app")]
pub struct DocShare {
    #[lifeguard(primary_key)]
    pub doc_id: i64,
    #[lifeguard(primary_key)]
    pub org_id: i64,
}

#[test]
fn soft_delete_and_timestamps_write_constant_sql() {
    assert_eq!(Doc::SOFT_DELETE, Some("deleted_at"));
    assert_eq!(Doc::CREATED_AT, Some("made"));
    assert_eq!(Doc::UPDATED_AT, Some("touched"));
    assert_eq!(
        Doc::FIND_BY_PK_SQL,
        r#"SELECT "id", "owner", "made", "touched", "deleted_at" FROM "app"."docs" WHERE "id" = $1 AND "deleted_at" IS NULL"#
    );
    assert_eq!(
        Doc::DELETE_BY_PK_SQL,
        r#"UPDATE "app"."docs" SET "deleted_at" = now(), "touched" = now() WHERE "id" = $1 AND "deleted_at" IS NULL"#
    );
    assert_eq!(
        Doc::FORCE_DELETE_BY_PK_SQL,
        r#"DELETE FROM "app"."docs" WHERE "id" = $1"#
    );
    assert_eq!(
        Doc::RESTORE_BY_PK_SQL,
        Some(r#"UPDATE "app"."docs" SET "deleted_at" = NULL, "touched" = now() WHERE "id" = $1"#)
    );
    // Models without the attributes are unchanged.
    assert_eq!(User::SOFT_DELETE, None);
    assert_eq!(User::CREATED_AT, None);
    assert_eq!(User::RESTORE_BY_PK_SQL, None);
    assert_eq!(User::FORCE_DELETE_BY_PK_SQL, User::DELETE_BY_PK_SQL);
    // find_by_id with deleted rows leaves the constant statement.
    let (sql, _) = Doc::find_by_id(3).with_deleted().build();
    assert!(sql.ends_with(r#"WHERE ("app"."docs"."id" = $1)"#), "{sql}");
}

#[test]
fn relations_generate_related_impls() {
    use lifeguard_core::model::{Related, RelationKind};
    let d = <Doc as Related<User>>::def();
    assert_eq!(d.kind, RelationKind::BelongsTo);
    assert_eq!((d.from_column, d.to_column), ("owner", "id"));
    assert_eq!(d.to_table, r#""app"."users""#);
    let doc = Doc {
        id: 1,
        owner: Some(7),
        created: chrono::Utc::now(),
        touched: None,
        deleted_at: None,
    };
    assert_eq!(<Doc as Related<User>>::related_key(&doc), Some(7));
    let (sql, _) = doc.find_related::<User>().build();
    assert!(sql.ends_with(r#"WHERE ("app"."users"."id" = $1)"#), "{sql}");

    let m2m = <Doc as Related<Membership>>::def();
    assert_eq!(m2m.kind, RelationKind::ManyToMany);
    let via = m2m.via.unwrap();
    assert_eq!(via.table, r#""app"."doc_shares""#);
    let (sql, _) = doc.find_related::<Membership>().build();
    assert!(
        sql.ends_with(r#"WHERE ("we""ird"."org_id" IN (SELECT "app"."doc_shares"."org_id" FROM "app"."doc_shares" WHERE "app"."doc_shares"."doc_id" = $1))"#),
        "{sql}"
    );
    let (sql, _) = Doc::find().find_also_related::<User>().build();
    assert!(
        sql.contains(r#"FROM "app"."docs" LEFT JOIN "app"."users" ON "app"."users"."id" = "app"."docs"."owner" WHERE ("app"."docs"."deleted_at" IS NULL)"#),
        "{sql}"
    );
}

// ---- the list of relations ----

/// One relation of each kind, declared in this order.
#[derive(Debug, Clone, LifeModel)]
#[lifeguard(table_name = "orgs", schema_name = "app")]
#[lifeguard(has_many(Team, from = "id", to = "org_id"))]
#[lifeguard(has_one(Charter, from = "id", to = "org"))]
#[lifeguard(belongs_to(User, from = "admin_id", to = "id"))]
#[lifeguard(has_many_through(crate::Tag, via = OrgTag, from = "id", via_from = "org_id", via_to = "tag_id", to = "id"))]
pub struct Org {
    #[lifeguard(primary_key)]
    pub id: i64,
    pub admin_id: Option<i64>,
}

#[derive(Debug, Clone, LifeModel)]
#[lifeguard(table_name = "teams", schema_name = "app")]
pub struct Team {
    #[lifeguard(primary_key)]
    pub id: i64,
    pub org_id: i64,
}

#[derive(Debug, Clone, LifeModel)]
#[lifeguard(table_name = "charters")]
pub struct Charter {
    #[lifeguard(primary_key)]
    pub id: i64,
    pub org: i64,
}

#[derive(Debug, Clone, LifeModel)]
#[lifeguard(table_name = "tags")]
pub struct Tag {
    #[lifeguard(primary_key)]
    pub id: i64,
}

#[derive(Debug, Clone, LifeModel)]
#[lifeguard(table_name = "org_tags", soft_delete)]
pub struct OrgTag {
    #[lifeguard(primary_key)]
    pub org_id: i64,
    #[lifeguard(primary_key)]
    pub tag_id: i64,
    pub deleted_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[test]
fn relations_lists_every_relation_in_declaration_order() {
    use lifeguard_core::model::{Related, RelationDef, RelationKind, ViaDef};
    let org = |kind, to_model, to_table, to_column| RelationDef {
        kind,
        to_model,
        from_table: r#""app"."orgs""#,
        from_column: "id",
        to_table,
        to_column,
        via: None,
    };
    assert_eq!(
        Org::RELATIONS,
        [
            org(RelationKind::HasMany, "Team", r#""app"."teams""#, "org_id"),
            org(RelationKind::HasOne, "Charter", r#""charters""#, "org"),
            RelationDef {
                from_column: "admin_id",
                ..org(RelationKind::BelongsTo, "User", r#""app"."users""#, "id")
            },
            RelationDef {
                via: Some(ViaDef {
                    table: r#""org_tags""#,
                    from_column: "org_id",
                    to_column: "tag_id",
                    soft_delete: Some("deleted_at"),
                }),
                ..org(RelationKind::ManyToMany, "crate::Tag", r#""tags""#, "id")
            },
        ]
    );
    // Each `Related` impl gives its entry of the list.
    assert_eq!(<Org as Related<Team>>::def(), Org::RELATIONS[0]);
    assert_eq!(<Org as Related<Charter>>::def(), Org::RELATIONS[1]);
    assert_eq!(<Org as Related<User>>::def(), Org::RELATIONS[2]);
    assert_eq!(<Org as Related<Tag>>::def(), Org::RELATIONS[3]);
    // A model without relation attributes lists none.
    assert!(Team::RELATIONS.is_empty());
    assert_eq!(Doc::RELATIONS.len(), 2);
}
