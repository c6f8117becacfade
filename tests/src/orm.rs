//! Models and schema for the ORM tests (`orm_crud`, `orm_query`, `orm_errors_and_transactions`,
//! `orm_pool_concurrency`), and helpers the others share.
//!
//! Models need fixed table names, so every table lives in the schema `orm_test`, created
//! once per test binary by [`setup`]. Several binaries (and several runs) share the tables:
//! tests isolate themselves by unique values ([`run_id`]) and only touch their own rows.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use lifeguard_core::model::ActiveValue::Set;
use lifeguard_core::model::{LifeModel as _, LifeRecord as _};
use lifeguard_core::pg::{Connection, Json};
use lifeguard_core::query::ColumnExpr as _;
use lifeguard_core::{Executor, FromRow, LifeModel, LifeRecord};
use postgres_types::{FromSql, ToSql};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::pg;

/// The DDL of every ORM test table. Runs as one implicit transaction under a
/// transaction-scoped advisory lock, so concurrent binaries never race on the catalog.
pub const SCHEMA_DDL: &str = r#"
SELECT pg_advisory_xact_lock(4242);
CREATE SCHEMA IF NOT EXISTS orm_test;
DO $$ BEGIN
  CREATE TYPE orm_test.orm_test_mood AS ENUM ('sad', 'ok', 'happy');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
CREATE TABLE IF NOT EXISTS orm_test.users (
  id bigserial PRIMARY KEY,
  email text NOT NULL CONSTRAINT users_email_key UNIQUE,
  name text,
  visits int4 NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now(),
  tags text[] NOT NULL DEFAULT '{}',
  profile jsonb NOT NULL DEFAULT '{}',
  balance numeric NOT NULL DEFAULT 0 CONSTRAINT users_balance_check CHECK (balance >= 0),
  external_id uuid,
  mood orm_test.orm_test_mood
);
CREATE INDEX IF NOT EXISTS users_name_idx ON orm_test.users (name);
CREATE TABLE IF NOT EXISTS orm_test.posts (
  id bigserial PRIMARY KEY,
  author_id int8 NOT NULL CONSTRAINT posts_author_id_fkey
    REFERENCES orm_test.users (id) ON DELETE CASCADE,
  post_title text NOT NULL,
  published_on date,
  score float8 NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS posts_author_idx ON orm_test.posts (author_id);
CREATE TABLE IF NOT EXISTS orm_test.memberships (
  org text NOT NULL,
  user_id int8 NOT NULL,
  role text NOT NULL DEFAULT 'member',
  PRIMARY KEY (org, user_id)
);
CREATE TABLE IF NOT EXISTS orm_test.typed (
  id bigserial PRIMARY KEY,
  uid uuid NOT NULL,
  at timestamptz NOT NULL,
  local_at timestamp NOT NULL,
  day date NOT NULL,
  clock time NOT NULL,
  doc jsonb NOT NULL,
  raw json NOT NULL,
  amount numeric(20, 6) NOT NULL,
  ints int4[] NOT NULL,
  names text[] NOT NULL,
  mood orm_test.orm_test_mood NOT NULL,
  moods orm_test.orm_test_mood[] NOT NULL,
  contact text NOT NULL,
  flag bool NOT NULL,
  small int2 NOT NULL,
  ratio float4 NOT NULL,
  bytes bytea NOT NULL,
  maybe_text text,
  maybe_int int8,
  maybe_uuid uuid,
  maybe_doc jsonb,
  maybe_day date,
  maybe_amount numeric,
  maybe_mood orm_test.orm_test_mood,
  maybe_contact text
);
CREATE TABLE IF NOT EXISTS orm_test."Odd Events" (
  id bigserial PRIMARY KEY,
  "type" text NOT NULL,
  "user" text NOT NULL,
  "Count.Total" int4 NOT NULL DEFAULT 0,
  "say ""hi""" text
);
CREATE TABLE IF NOT EXISTS orm_test.mismatch (
  id bigserial PRIMARY KEY,
  n text NOT NULL
);
"#;

/// A connection to the primary, with the `orm_test` schema in place.
pub fn connect() -> Connection {
    static ONCE: pg::SchemaOnce = pg::SchemaOnce::new();
    pg::connect_with_schema(&ONCE, SCHEMA_DDL)
}

/// A value unique to this call, for emails, org names and `name` tags.
pub fn run_id(prefix: &str) -> String {
    crate::unique_name(prefix)
}

/// A unique email for `run`: `<run>-<i>@orm.test`.
pub fn email(run: &str, i: usize) -> String {
    format!("{run}-{i}@orm.test")
}

/// A `LIKE` pattern matching every value that starts with `prefix` (its `_` and `%` escaped).
pub fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 2);
    for c in prefix.chars() {
        if matches!(c, '_' | '%' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// A PostgreSQL enum, `orm_test.orm_test_mood`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSql, FromSql)]
#[postgres(name = "orm_test_mood")]
pub enum Mood {
    /// `sad`
    #[postgres(name = "sad")]
    Sad,
    /// `ok`
    #[postgres(name = "ok")]
    Ok,
    /// `happy`
    #[postgres(name = "happy")]
    Happy,
}

/// A newtype stored as `text`.
#[derive(Debug, Clone, PartialEq, Eq, ToSql, FromSql)]
#[postgres(transparent)]
pub struct Email(pub String);

/// A typed JSON document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// A nickname.
    pub nick: String,
    /// An age.
    pub age: u32,
    /// Interests.
    pub likes: Vec<String>,
}

/// `orm_test.users`.
#[derive(Debug, Clone, LifeModel, LifeRecord)]
#[lifeguard(table_name = "users", schema_name = "orm_test")]
pub struct User {
    /// bigserial
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    /// unique, not null
    pub email: String,
    /// nullable
    pub name: Option<String>,
    /// default 0
    pub visits: i32,
    /// default now()
    #[lifeguard(default_expr = "now()")]
    pub created_at: DateTime<Utc>,
    /// default '{}'
    pub tags: Vec<String>,
    /// jsonb, default '{}'
    pub profile: serde_json::Value,
    /// numeric, default 0, CHECK >= 0
    pub balance: Decimal,
    /// nullable uuid
    pub external_id: Option<Uuid>,
    /// nullable enum
    #[lifeguard(column_type = "orm_test.orm_test_mood")]
    pub mood: Option<Mood>,
}

/// `orm_test.posts`.
#[derive(Debug, Clone, LifeModel, LifeRecord)]
#[lifeguard(table_name = "posts", schema_name = "orm_test")]
pub struct Post {
    /// bigserial
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    /// references users, on delete cascade
    pub author_id: i64,
    /// stored as `post_title`
    #[lifeguard(column_name = "post_title")]
    pub title: String,
    /// nullable date
    pub published_on: Option<NaiveDate>,
    /// float8
    pub score: f64,
    /// Not a column: filled by the application.
    #[lifeguard(ignore)]
    pub comments: Vec<String>,
}

/// `orm_test.memberships`: a composite primary key.
#[derive(Debug, Clone, LifeModel, LifeRecord)]
#[lifeguard(table_name = "memberships", schema_name = "orm_test")]
pub struct Membership {
    /// first key column
    #[lifeguard(primary_key)]
    pub org: String,
    /// second key column
    #[lifeguard(primary_key)]
    pub user_id: i64,
    /// default 'member'
    pub role: String,
}

/// `orm_test.typed`: one column of every supported kind.
#[derive(Debug, Clone, LifeModel, LifeRecord)]
#[lifeguard(table_name = "typed", schema_name = "orm_test")]
pub struct Typed {
    /// bigserial
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    /// uuid
    pub uid: Uuid,
    /// timestamptz
    pub at: DateTime<Utc>,
    /// timestamp
    pub local_at: NaiveDateTime,
    /// date
    pub day: NaiveDate,
    /// time
    pub clock: NaiveTime,
    /// jsonb, typed
    pub doc: Json<Profile>,
    /// json, untyped
    pub raw: serde_json::Value,
    /// numeric(20, 6)
    pub amount: Decimal,
    /// int4[]
    pub ints: Vec<i32>,
    /// text[]
    pub names: Vec<String>,
    /// enum
    pub mood: Mood,
    /// enum[]
    pub moods: Vec<Mood>,
    /// newtype over text
    pub contact: Email,
    /// bool
    pub flag: bool,
    /// int2
    pub small: i16,
    /// float4
    pub ratio: f32,
    /// bytea
    pub bytes: Vec<u8>,
    /// nullable text
    pub maybe_text: Option<String>,
    /// nullable int8
    pub maybe_int: Option<i64>,
    /// nullable uuid
    pub maybe_uuid: Option<Uuid>,
    /// nullable jsonb, typed
    pub maybe_doc: Option<Json<Profile>>,
    /// nullable date
    pub maybe_day: Option<NaiveDate>,
    /// nullable numeric
    pub maybe_amount: Option<Decimal>,
    /// nullable enum
    pub maybe_mood: Option<Mood>,
    /// nullable newtype
    pub maybe_contact: Option<Email>,
}

/// `orm_test."Odd Events"`: identifiers that need quoting (keywords, case, a dot, a quote).
#[derive(Debug, Clone, LifeModel, LifeRecord)]
#[lifeguard(table_name = "Odd Events", schema_name = "orm_test")]
pub struct OddEvent {
    /// bigserial
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    /// a keyword as a raw identifier
    pub r#type: String,
    /// a keyword as the column name
    #[lifeguard(column_name = "user")]
    pub user_name: String,
    /// upper case and a dot
    #[lifeguard(column_name = "Count.Total")]
    pub count: i32,
    /// an embedded double quote
    #[lifeguard(column_name = "say \"hi\"")]
    pub quoted: Option<String>,
}

/// `orm_test.mismatch` where the model says `i32` but the column is `text`.
#[derive(Debug, Clone, LifeModel, LifeRecord)]
#[lifeguard(table_name = "mismatch", schema_name = "orm_test")]
pub struct Mismatch {
    /// bigserial
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    /// really `text`
    pub n: i32,
}

/// A projection decoded by column name.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct UserSummary {
    /// `email AS address`
    pub address: String,
    /// `visits * 2 AS double_visits`
    pub double_visits: i32,
    /// `name`
    pub name: Option<String>,
}

/// A record of a user with this email and `name` (a run tag), to insert.
pub fn user_record(email: &str, name: &str) -> UserRecord {
    UserRecord {
        email: Set(email.to_owned()),
        name: Set(Some(name.to_owned())),
        ..Default::default()
    }
}

/// Inserts a user with this email and `name` (a run tag) and returns it.
///
/// # Panics
///
/// Panics when the insert fails.
pub fn new_user(db: &(impl Executor + ?Sized), email: &str, name: &str) -> User {
    user_record(email, name)
        .insert(db)
        .unwrap_or_else(|e| panic!("insert user {email}: {e}"))
}

/// Whether `db` sees a user with this email.
///
/// # Panics
///
/// Panics when the query fails.
pub fn user_exists(db: &(impl Executor + ?Sized), email: &str) -> bool {
    User::find()
        .filter(UserColumn::Email.eq(email.to_owned()))
        .exists(db)
        .unwrap_or_else(|e| panic!("look up user {email}: {e}"))
}

/// Inserts `n` users tagged with `name = run` and returns them in insert order.
pub fn new_users(db: &(impl Executor + ?Sized), run: &str, n: usize) -> Vec<User> {
    (0..n).map(|i| new_user(db, &email(run, i), run)).collect()
}

/// An executor that forwards to a connection and counts (and keeps) every statement, so a
/// test can assert how many round trips an ORM call made.
pub struct Counting<'a> {
    inner: &'a Connection,
    log: std::cell::RefCell<Vec<String>>,
}

impl<'a> Counting<'a> {
    /// Counts what runs on `inner`.
    pub fn new(inner: &'a Connection) -> Self {
        Counting {
            inner,
            log: std::cell::RefCell::new(Vec::new()),
        }
    }

    fn note(&self, sql: &str) {
        self.log.borrow_mut().push(sql.to_owned());
    }

    /// Statements sent since the last call.
    pub fn take(&self) -> usize {
        std::mem::take(&mut *self.log.borrow_mut()).len()
    }

    /// The SQL of the statements sent since the last [`Counting::take`].
    pub fn sent(&self) -> Vec<String> {
        self.log.borrow().clone()
    }
}

impl Executor for Counting<'_> {
    fn query(
        &self,
        sql: &str,
        params: lifeguard_core::pg::Params<'_>,
    ) -> lifeguard_core::Result<Vec<lifeguard_core::pg::Row>> {
        self.note(sql);
        self.inner.query(sql, params)
    }

    fn execute(
        &self,
        sql: &str,
        params: lifeguard_core::pg::Params<'_>,
    ) -> lifeguard_core::Result<u64> {
        self.note(sql);
        self.inner.execute(sql, params)
    }

    fn simple_query(
        &self,
        sql: &str,
    ) -> lifeguard_core::Result<Vec<lifeguard_core::pg::SimpleQueryMessage>> {
        self.note(sql);
        self.inner.simple_query(sql)
    }

    fn query_pipelined(
        &self,
        sql: &str,
        batch: &[lifeguard_core::pg::Params<'_>],
    ) -> lifeguard_core::Result<Vec<Vec<lifeguard_core::pg::Row>>> {
        self.note(sql);
        self.inner.query_pipelined(sql, batch)
    }
}
