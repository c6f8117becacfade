//! Models: the traits `#[derive(LifeModel, LifeRecord, FromRow)]` implement, and the CRUD
//! built on them.
//!
//! A model is the immutable row type; its record is the change set (every field
//! [`ActiveValue`]: not set, set, unchanged, or a SQL expression) used to insert, update and
//! save. The derive writes the hot statements (find, delete and update by primary key, full
//! insert) as constant SQL, so they always hit the prepared-statement cache.
//!
//! ```no_run
//! use lifeguard_core::model::{ActiveValue::Set, LifeModel, LifeRecord};
//! use lifeguard_core::{Executor, LifeModel, LifeRecord};
//!
//! #[derive(Debug, Clone, LifeModel, LifeRecord)]
//! #[lifeguard(table_name = "users")]
//! pub struct User {
//!     #[lifeguard(primary_key, auto_increment)]
//!     pub id: i64,
//!     pub email: String,
//!     pub name: Option<String>,
//! }
//!
//! # fn demo(db: &impl Executor) -> lifeguard_core::Result<()> {
//! let alice = UserRecord { email: Set("a@example.com".into()), ..Default::default() }.insert(db)?;
//! let found = User::find_by_id(alice.id).one(db)?;
//! let mut change = alice.into_record();
//! change.name = Set(Some("Alice".into()));
//! let alice = change.update(db)?;
//! # Ok(()) }
//! ```

mod active;
mod crud;

pub use active::{ActiveValue, Field, NotSet, Set, Unchanged};
pub use crud::InsertMany;

use crate::error::Result;
use crate::executor::Executor;
use crate::pg::{Row, ToSql};
use crate::query::{Expr, Select};

/// Decodes a row into a struct: models, and any projection (`#[derive(FromRow)]`).
pub trait FromRow: Sized {
    /// Decodes `row`, naming the column on a type mismatch.
    fn from_row(row: &Row) -> Result<Self>;
}

/// A value that decodes from a single-row tuple projection.
macro_rules! tuple_from_row {
    ($($t:ident $i:tt),+) => {
        impl<$($t),+> FromRow for ($($t,)+)
        where
            $($t: for<'a> crate::pg::FromSql<'a>),+
        {
            fn from_row(row: &Row) -> Result<Self> {
                Ok(($(row.try_get::<_, $t>($i)?,)+))
            }
        }
    };
}
tuple_from_row!(A 0);
tuple_from_row!(A 0, B 1);
tuple_from_row!(A 0, B 1, C 2);
tuple_from_row!(A 0, B 1, C 2, D 3);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4, F 5);

/// What the derive knows about one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnDef {
    /// The SQL name (`column_name` attribute, else the field name).
    pub name: &'static str,
    /// The Rust field name.
    pub field: &'static str,
    /// Part of the primary key.
    pub primary_key: bool,
    /// The database assigns it when an insert leaves it out (serial, identity, default).
    pub auto_increment: bool,
    /// The Rust type is an `Option`.
    pub nullable: bool,
    /// The SQL default expression (`default_expr` attribute), used for DDL.
    pub default_expr: Option<&'static str>,
    /// The PostgreSQL type for DDL (`column_type` attribute, else derived from the Rust type).
    pub sql_type: &'static str,
}

/// The `Column` enum a model derives: one variant per stored field.
pub trait ModelColumn: Copy + Eq + std::fmt::Debug + Send + Sync + 'static {
    /// Every column, in declaration order.
    const ALL: &'static [Self];
    /// The owning table, quoted and schema-qualified (the model's `QUALIFIED`).
    const TABLE: &'static str;

    /// This column's metadata.
    fn def(self) -> &'static ColumnDef;

    /// The SQL name, unquoted.
    fn name(self) -> &'static str {
        self.def().name
    }
}

/// A table-backed row type; implemented by `#[derive(LifeModel)]`.
pub trait LifeModel: FromRow + Clone + Send + Sync + 'static {
    /// The generated column enum.
    type Column: ModelColumn;
    /// The primary key's value: one type, or a tuple for a composite key.
    type PrimaryKey: Clone + std::fmt::Debug + Send + Sync + 'static;
    /// The generated change-set type.
    type Record: LifeRecord<Model = Self>;

    /// The table name, unquoted.
    const TABLE: &'static str;
    /// The schema, when the table is schema-qualified.
    const SCHEMA: Option<&'static str>;
    /// Every stored column, in declaration order.
    const COLUMNS: &'static [ColumnDef];
    /// `"schema"."table"` or `"table"`, quoted.
    const QUALIFIED: &'static str;
    /// The quoted column list, `"id", "email", ...`.
    const COLUMN_LIST: &'static str;
    /// `SELECT <columns> FROM <table> WHERE <pk> = $1 [AND ...]`.
    const FIND_BY_PK_SQL: &'static str;
    /// `DELETE FROM <table> WHERE <pk> = $1 [AND ...]`.
    const DELETE_BY_PK_SQL: &'static str;

    /// This row's primary key.
    fn primary_key(&self) -> Self::PrimaryKey;

    /// The primary key's values as statement parameters, in key-column order.
    fn key_params(key: &Self::PrimaryKey) -> Vec<&(dyn ToSql + Sync)>;

    /// A record with every field `Unchanged`, to edit and `update`/`save`.
    fn into_record(self) -> Self::Record;

    /// A query over the whole table.
    fn find() -> Select<Self> {
        Select::new()
    }

    /// A query for the row with this primary key (a tuple for a composite key); run it with
    /// `one`. Unmodified, it runs the constant `FIND_BY_PK_SQL`.
    fn find_by_id(key: Self::PrimaryKey) -> Select<Self> {
        Select::by_primary_key(key)
    }

    /// Deletes the row with this primary key; returns how many rows went (0 or 1).
    fn delete_by_id(db: &(impl Executor + ?Sized), key: Self::PrimaryKey) -> Result<u64> {
        db.execute(Self::DELETE_BY_PK_SQL, &Self::key_params(&key))
    }

    /// Deletes this row by its primary key.
    fn delete(&self, db: &(impl Executor + ?Sized)) -> Result<u64> {
        Self::delete_by_id(db, self.primary_key())
    }

    /// A condition matching this model's primary key (for builders).
    fn key_condition(key: &Self::PrimaryKey) -> Expr;
}

/// A change set for a model; implemented by `#[derive(LifeRecord)]`.
pub trait LifeRecord: Default + Send + Sync + Sized + 'static {
    /// The model this record changes.
    type Model: LifeModel<Record = Self>;

    /// For each column, what the record says about it, in column order.
    fn fields(&self) -> Vec<(<Self::Model as LifeModel>::Column, Field<'_>)>;

    /// The primary key, when every key field is set or unchanged.
    fn primary_key(&self) -> Option<<Self::Model as LifeModel>::PrimaryKey>;

    /// Whether every key field is `Unchanged` (the record came from a stored model).
    fn key_unchanged(&self) -> bool;

    /// Inserts the set fields (the database fills the rest) and returns the stored row,
    /// defaults and generated columns included.
    fn insert(self, db: &(impl Executor + ?Sized)) -> Result<Self::Model> {
        crud::insert(&self, db)
    }

    /// Updates the set fields of the row with this record's key and returns the stored row.
    /// A record with nothing set is not an error: it returns the row as stored.
    fn update(self, db: &(impl Executor + ?Sized)) -> Result<Self::Model> {
        crud::update(&self, db)
    }

    /// `update` when the key came from a stored model (unchanged), else `insert`.
    fn save(self, db: &(impl Executor + ?Sized)) -> Result<Self::Model> {
        if self.key_unchanged() {
            self.update(db)
        } else {
            self.insert(db)
        }
    }

    /// Deletes the row with this record's key.
    fn delete(self, db: &(impl Executor + ?Sized)) -> Result<u64> {
        crud::delete(&self, db)
    }

    /// Many records in as few multi-row `INSERT`s as the parameter limit allows:
    /// `UserRecord::insert_many(records).exec(&db)?` or `.exec_with_returning(&db)?`.
    fn insert_many(records: impl IntoIterator<Item = Self>) -> InsertMany<Self> {
        InsertMany::new(records.into_iter().collect())
    }
}
