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
pub(crate) mod behaviour;
mod bulk;
mod crud;
mod exposure;
mod forget;
pub(crate) mod input;
mod relation;
pub(crate) mod shapes;

pub use crate::error::{FieldError, ValidationErrors};
pub use active::{ActiveValue, Field, NotSet, Set, Unchanged};
pub use behaviour::RecordHooks;
pub use bulk::{DeleteMany, OnConflict, UpdateMany};
pub use crud::InsertMany;
pub use exposure::{Exposure, FieldExposure};
pub use input::{EnumVariant, FromInput, InputEnum, InputError, InputRecord};
pub use relation::{
    has_column, load, load_many, load_many_to_many, load_one, many, one, Leaf, LoadSpec, Many,
    Nest, One, Related, RelationDef, RelationKind, SelectTwo, SelectWithRelated, ViaDef, With,
};
pub use shapes::Returning;

use crate::error::Result;
use crate::executor::Executor;
use crate::pg::{Row, ToSql};
use crate::query::{ExclusiveSession, Expr, Select};
use behaviour::{WriteDone, WriteOp};

/// Decodes a row into a struct: models, and any projection (`#[derive(FromRow)]`).
pub trait FromRow: Sized {
    /// Decodes `row`, naming the column on a type mismatch.
    fn from_row(row: &Row) -> Result<Self>;

    /// Decodes the columns of `row` from index `start` on, by position: how a join decodes
    /// a second model from the same row (`SELECT a.*, b.*`). Models implement it; the
    /// default (for types that decode by name) supports only `start == 0`.
    fn from_row_at(row: &Row, start: usize) -> Result<Self> {
        if start == 0 {
            Self::from_row(row)
        } else {
            Err(crate::error::Error::invalid_use(format!(
                "{} decodes by column name and cannot be decoded at offset {start}",
                std::any::type_name::<Self>()
            )))
        }
    }
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
    /// `DELETE FROM <table> WHERE <pk> = $1 [AND ...]`; for a soft-delete model
    /// `UPDATE <table> SET <deleted_at> = now() WHERE <pk> = $1 AND <deleted_at> IS NULL`.
    const DELETE_BY_PK_SQL: &'static str;
    /// The soft-delete column (`#[lifeguard(soft_delete)]`), unquoted; `None` for models
    /// whose deletes are real.
    const SOFT_DELETE: Option<&'static str> = None;
    /// The real `DELETE` by primary key, whatever `SOFT_DELETE` says.
    const FORCE_DELETE_BY_PK_SQL: &'static str = Self::DELETE_BY_PK_SQL;
    /// `UPDATE <table> SET <deleted_at> = NULL WHERE <pk> = $1 [AND ...]` for a soft-delete
    /// model.
    const RESTORE_BY_PK_SQL: Option<&'static str> = None;
    /// The cache settings and key functions (`#[lifeguard(cache)]`); `None` for models
    /// that are not cached.
    #[cfg(feature = "cache")]
    #[doc(hidden)]
    const CACHE: Option<crate::cache::CacheHooks<Self>> = None;
    /// The column written as `now()` on insert when the record leaves it unset
    /// (`#[lifeguard(created_at)]`), unquoted.
    const CREATED_AT: Option<&'static str> = None;
    /// The column written as `now()` on insert when unset and on every update that changes
    /// something unless set explicitly (`#[lifeguard(updated_at)]`), unquoted.
    const UPDATED_AT: Option<&'static str> = None;
    /// Every relation the model declares, in declaration order: one [`RelationDef`] per
    /// `has_one`, `has_many`, `belongs_to` and `has_many_through` attribute, the one its
    /// [`Related::def`] returns. It is for code that walks a model's relations without
    /// naming the related types (a generated GraphQL schema, documentation):
    /// [`RelationDef::to_model`] names each target. The derive always writes it (`&[]` for
    /// a model without relations); it has no default, so a hand-written impl states its
    /// relations too.
    ///
    /// ```
    /// use lifeguard_core::model::{LifeModel, RelationKind};
    /// use lifeguard_core::LifeModel;
    ///
    /// #[derive(Debug, Clone, LifeModel)]
    /// #[lifeguard(table_name = "authors", has_many(Post, from = "id", to = "author_id"))]
    /// pub struct Author {
    ///     #[lifeguard(primary_key)]
    ///     pub id: i64,
    /// }
    ///
    /// #[derive(Debug, Clone, LifeModel)]
    /// #[lifeguard(table_name = "posts", belongs_to(Author, from = "author_id", to = "id"))]
    /// pub struct Post {
    ///     #[lifeguard(primary_key)]
    ///     pub id: i64,
    ///     pub author_id: i64,
    /// }
    ///
    /// let posts = &Author::RELATIONS[0];
    /// assert_eq!(posts.kind, RelationKind::HasMany);
    /// assert_eq!((posts.to_model, posts.to_table, posts.to_column), ("Post", r#""posts""#, "author_id"));
    /// assert_eq!(Post::RELATIONS[0].to_model, "Author");
    /// assert_eq!(Author::RELATIONS.len(), 1);
    /// ```
    const RELATIONS: &'static [RelationDef];
    /// How generated APIs (GraphQL) expose the model: `#[lifeguard(graphql(...))]` on the
    /// struct and its fields. The derive writes it only when such an attribute is present.
    const EXPOSURE: Exposure = Exposure::DEFAULT;

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

    /// The rows with these primary keys, in the keys' order (`None` where there is none),
    /// for one round trip: `FIND_BY_PK_SQL` once per key, as one pipelined batch (see
    /// [`Executor::query_pipelined`]).
    ///
    /// ```no_run
    /// # use lifeguard_core::{model::LifeModel, Executor, Result};
    /// # fn demo<W: LifeModel<PrimaryKey = i32>>(db: &impl Executor) -> Result<()> {
    /// let worlds: Vec<Option<W>> = W::find_each_by_id(db, &[3, 1, 4, 1, 5])?;
    /// assert_eq!(worlds.len(), 5);
    /// # Ok(()) }
    /// ```
    fn find_each_by_id(
        db: &(impl Executor + ?Sized),
        keys: &[Self::PrimaryKey],
    ) -> Result<Vec<Option<Self>>> {
        #[cfg(feature = "cache")]
        if let (Some(hooks), Some(scope)) = (Self::CACHE.as_ref(), db.cache_scope()) {
            return crate::cache::find_each_cached(&scope, hooks, keys, |keys| {
                find_each_uncached::<Self>(db, keys)
            });
        }
        find_each_uncached::<Self>(db, keys)
    }

    /// Deletes the row with this primary key; returns how many rows went (0 or 1).
    fn delete_by_id(db: &(impl Executor + ?Sized), key: Self::PrimaryKey) -> Result<u64> {
        let deleted = db.execute(Self::DELETE_BY_PK_SQL, &Self::key_params(&key))?;
        forget::key::<Self>(db, &key);
        Ok(deleted)
    }

    /// Deletes this row by its primary key (a soft delete for a soft-delete model).
    fn delete(&self, db: &(impl Executor + ?Sized)) -> Result<u64> {
        Self::delete_by_id(db, self.primary_key())
    }

    /// Really deletes the row with this primary key, even from a soft-delete model.
    fn force_delete_by_id(db: &(impl Executor + ?Sized), key: Self::PrimaryKey) -> Result<u64> {
        behaviour::force_delete_by_id::<Self>(db, &key)
    }

    /// Really deletes this row, even from a soft-delete model.
    fn force_delete(&self, db: &(impl Executor + ?Sized)) -> Result<u64> {
        behaviour::force_delete_by_id::<Self>(db, &self.primary_key())
    }

    /// Clears the soft-delete mark of the row with this primary key; a `Config` error for
    /// a model without `#[lifeguard(soft_delete)]`.
    fn restore_by_id(db: &(impl Executor + ?Sized), key: Self::PrimaryKey) -> Result<u64> {
        behaviour::restore_by_id::<Self>(db, &key)
    }

    /// Clears this row's soft-delete mark (see [`LifeModel::restore_by_id`]).
    fn restore(&self, db: &(impl Executor + ?Sized)) -> Result<u64> {
        behaviour::restore_by_id::<Self>(db, &self.primary_key())
    }

    /// The rows of `R` related to this one, as a query to refine and run
    /// (`author.find_related::<Post>().all(db)`); see [`Related`].
    fn find_related<R: LifeModel>(&self) -> Select<R>
    where
        Self: Related<R>,
    {
        relation::find_related::<Self, R>(self)
    }

    /// A condition matching this model's primary key (for builders).
    fn key_condition(key: &Self::PrimaryKey) -> Expr;

    /// An `UPDATE` of every row matching its filters:
    /// `User::update_many().set(..).filter(..).exec(db)?` returns the rows changed.
    fn update_many() -> UpdateMany<Self> {
        UpdateMany::new()
    }

    /// A `DELETE` of every row matching its filters:
    /// `User::delete_many().filter(..).exec(db)?` returns the rows deleted.
    fn delete_many() -> DeleteMany<Self> {
        DeleteMany::new()
    }
}

/// [`LifeModel::find_each_by_id`] from PostgreSQL.
fn find_each_uncached<M: LifeModel>(
    db: &(impl Executor + ?Sized),
    keys: &[M::PrimaryKey],
) -> Result<Vec<Option<M>>> {
    let params: Vec<Vec<&(dyn ToSql + Sync)>> = keys.iter().map(M::key_params).collect();
    let batch: Vec<&[&(dyn ToSql + Sync)]> = params.iter().map(Vec::as_slice).collect();
    db.query_pipelined(M::FIND_BY_PK_SQL, &batch)?
        .iter()
        .map(|rows| rows.first().map(M::from_row).transpose())
        .collect()
}

/// A change set for a model; implemented by `#[derive(LifeRecord)]`.
pub trait LifeRecord: Default + Send + Sync + Sized + 'static {
    /// The model this record changes.
    type Model: LifeModel<Record = Self>;

    /// What [`fields`](LifeRecord::fields) returns: an array of one entry per column, so
    /// reading a record allocates nothing (batches read a hundred records per statement).
    type Fields<'a>: AsRef<[(<Self::Model as LifeModel>::Column, Field<'a>)]>
    where
        Self: 'a;

    /// For each column, what the record says about it, in column order.
    fn fields(&self) -> Self::Fields<'_>;

    /// The primary key, when every key field is set or unchanged.
    fn primary_key(&self) -> Option<<Self::Model as LifeModel>::PrimaryKey>;

    /// Whether every key field is `Unchanged` (the record came from a stored model).
    fn key_unchanged(&self) -> bool;

    // The three hidden items below are for the derive only, yet stay on the trait: the
    // derive overrides them in a `#[lifeguard(hooks)]` record's impl, which is how such a
    // record reaches its `RecordHooks` impl while the others need none (a free helper
    // cannot tell the two apart without specialization). Their argument types, and the
    // functions the overrides call, are in `crate::__private`.

    /// Whether the record runs hooks (`#[lifeguard(hooks)]`). Generated by the derive.
    #[doc(hidden)]
    const __LIFEGUARD_HOOKS: bool = false;

    /// Runs the `before_*` hooks and the validator (`#[lifeguard(hooks)]`); no-op by
    /// default. Generated by the derive.
    #[doc(hidden)]
    fn __lifeguard_before(&mut self, _op: WriteOp) -> Result<()> {
        Ok(())
    }

    /// Runs the `after_*` hooks (`#[lifeguard(hooks)]`); no-op by default. Generated by
    /// the derive.
    #[doc(hidden)]
    fn __lifeguard_after(&self, _done: WriteDone<'_, Self::Model>) -> Result<()> {
        Ok(())
    }

    /// Inserts the set fields (the database fills the rest) and returns the stored row,
    /// defaults and generated columns included. Runs the hooks and the validator of a
    /// `#[lifeguard(hooks)]` model ([`RecordHooks`]) first: a validation failure is
    /// `Error::Validation` and sends nothing.
    fn insert(self, db: &(impl Executor + ?Sized)) -> Result<Self::Model> {
        behaviour::insert(self, db)
    }

    /// Updates the set fields of the row with this record's key and returns the stored row.
    /// A record with nothing set is not an error: it returns the row as stored. Runs the
    /// hooks and the validator like `insert`.
    fn update(self, db: &(impl Executor + ?Sized)) -> Result<Self::Model> {
        behaviour::update(self, db)
    }

    /// Updates the set fields of the row with this record's key like `update`, but returns
    /// how many rows changed instead of the stored row: 1, or 0 when no row has the key or
    /// the record sets nothing (nothing is sent then). SeaORM's
    /// `Entity::update(..).exec_without_returning(db)`: the statement carries no
    /// `RETURNING`, so the server sends no row back and none is decoded.
    ///
    /// The `before_*` hooks and the validator run as for `update`. On a
    /// `#[lifeguard(hooks)]` model the statement still returns the row, because
    /// `after_update` and `after_save` take it; they run when a row was written.
    ///
    /// ```no_run
    /// # use lifeguard_core::model::{ActiveValue::{Set, Unchanged}, LifeRecord};
    /// # use lifeguard_core::{Executor, LifeModel, LifeRecord, Result};
    /// #[derive(Debug, Clone, LifeModel, LifeRecord)]
    /// #[lifeguard(table_name = "world")]
    /// pub struct World {
    ///     #[lifeguard(primary_key)]
    ///     pub id: i32,
    ///     pub randomnumber: i32,
    /// }
    ///
    /// # fn demo(db: &impl Executor) -> Result<()> {
    /// let change = WorldRecord { id: Unchanged(7), randomnumber: Set(42) };
    /// assert_eq!(change.update_without_returning(db)?, 1);
    /// # Ok(()) }
    /// ```
    fn update_without_returning(self, db: &(impl Executor + ?Sized)) -> Result<u64> {
        behaviour::update_without_returning(self, db)
    }

    /// `update` when the key came from a stored model (unchanged), else `insert`.
    fn save(self, db: &(impl Executor + ?Sized)) -> Result<Self::Model> {
        if self.key_unchanged() {
            self.update(db)
        } else {
            self.insert(db)
        }
    }

    /// Deletes the row with this record's key (a soft delete for a soft-delete model),
    /// running the `before_delete`/`after_delete` hooks.
    fn delete(self, db: &(impl Executor + ?Sized)) -> Result<u64> {
        behaviour::delete(self, db)
    }

    /// Many records in as few multi-row `INSERT`s as the parameter limit allows:
    /// `UserRecord::insert_many(records).exec(&db)?` or `.exec_with_returning(&db)?`.
    fn insert_many(records: impl IntoIterator<Item = Self>) -> InsertMany<Self> {
        InsertMany::new(records.into_iter().collect())
    }

    /// Inserts the set fields unless the row conflicts, in which case `on_conflict` decides:
    /// `do_update` returns the updated row, `do_nothing` returns `Ok(None)` (a skip is not
    /// an error).
    ///
    /// ```no_run
    /// # use lifeguard_core::{LifeModel, model::LifeModel as _};
    /// # #[derive(Debug, Clone, LifeModel)]
    /// # #[lifeguard(table_name = "users")]
    /// # pub struct User { #[lifeguard(primary_key, auto_increment)] pub id: i64, pub email: String, pub name: String }
    /// use lifeguard_core::model::{ActiveValue::Set, LifeRecord, OnConflict};
    ///
    /// # fn demo(db: &impl lifeguard_core::Executor) -> lifeguard_core::Result<()> {
    /// let user = UserRecord { email: Set("a@x.io".into()), name: Set("A".into()), ..Default::default() }
    ///     .insert_on_conflict(OnConflict::columns([UserColumn::Email]).do_update([UserColumn::Name]), db)?
    ///     .expect("DO UPDATE always returns the row");
    /// # Ok(()) }
    /// ```
    fn insert_on_conflict(
        self,
        on_conflict: OnConflict<<Self::Model as LifeModel>::Column>,
        db: &(impl Executor + ?Sized),
    ) -> Result<Option<Self::Model>> {
        bulk::insert_on_conflict(&self, &on_conflict, db)
    }

    /// Many records upserted with multi-row `INSERT ... ON CONFLICT` statements, chunked like
    /// [`LifeRecord::insert_many`] (which it is, with [`InsertMany::on_conflict`]).
    ///
    /// ```no_run
    /// # use lifeguard_core::{LifeModel, model::LifeModel as _};
    /// # #[derive(Debug, Clone, LifeModel)]
    /// # #[lifeguard(table_name = "users")]
    /// # pub struct User { #[lifeguard(primary_key, auto_increment)] pub id: i64, pub email: String }
    /// use lifeguard_core::model::{ActiveValue::Set, LifeRecord, OnConflict};
    ///
    /// # fn demo(db: &impl lifeguard_core::Executor) -> lifeguard_core::Result<()> {
    /// let records = ["a@x.io", "b@x.io"].map(|e| UserRecord { email: Set(e.into()), ..Default::default() });
    /// let new_rows = UserRecord::insert_many_on_conflict(records, OnConflict::columns([UserColumn::Email]))
    ///     .exec(db)?; // duplicates skipped
    /// # Ok(()) }
    /// ```
    fn insert_many_on_conflict(
        records: impl IntoIterator<Item = Self>,
        on_conflict: OnConflict<<Self::Model as LifeModel>::Column>,
    ) -> InsertMany<Self> {
        InsertMany::new(records.into_iter().collect()).on_conflict(on_conflict)
    }

    /// Loads many records with one binary `COPY ... FROM STDIN`, the fastest way in for
    /// large batches; returns the rows loaded. Every record must set the same columns to
    /// plain values (no expressions, no `DEFAULT` for some rows); column types come from the
    /// server. It needs an exclusive session (`&mut Connection`, a pool `Lease`, or a
    /// `&Transaction`), and records are encoded as the iterator yields them, so memory stays
    /// flat. On any error the copy is aborted and nothing is loaded.
    ///
    /// ```no_run
    /// # use lifeguard_core::{LifeModel, model::LifeModel as _};
    /// # #[derive(Debug, Clone, LifeModel)]
    /// # #[lifeguard(table_name = "points")]
    /// # pub struct Point { #[lifeguard(primary_key, auto_increment)] pub id: i64, pub x: i32 }
    /// use lifeguard_core::model::{ActiveValue::Set, LifeRecord};
    ///
    /// # fn demo(pool: &lifeguard_core::pool::Pool) -> lifeguard_core::Result<()> {
    /// let lease = pool.lease_primary()?;
    /// let loaded = PointRecord::insert_many_copy(
    ///     &lease,
    ///     (0..100_000).map(|x| PointRecord { x: Set(x), ..Default::default() }),
    /// )?;
    /// assert_eq!(loaded, 100_000);
    /// # Ok(()) }
    /// ```
    fn insert_many_copy<'a>(
        session: impl Into<ExclusiveSession<'a>>,
        records: impl IntoIterator<Item = Self>,
    ) -> Result<u64> {
        bulk::insert_many_copy(session.into(), records)
    }
}
