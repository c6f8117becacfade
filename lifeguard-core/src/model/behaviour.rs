//! Behaviour around writes: lifecycle hooks, validation, soft delete and automatic
//! timestamps.
//!
//! - **Hooks and validation** are opt-in: mark the model `#[lifeguard(hooks)]` and implement
//!   [`RecordHooks`] for its record (every method has a no-op default). Without the
//!   attribute the record's writes call nothing.
//! - **Soft delete**: `#[lifeguard(soft_delete)]` (column `deleted_at`, or
//!   `soft_delete = "removed_at"`) turns deletes into `UPDATE ... SET deleted_at = now()`,
//!   hides deleted rows from `find`, `find_by_id` and the relation loaders, and adds
//!   [`Select::with_deleted`](crate::query::Select::with_deleted),
//!   [`Select::only_deleted`](crate::query::Select::only_deleted),
//!   [`LifeModel::restore`](super::LifeModel::restore) and
//!   [`LifeModel::force_delete`](super::LifeModel::force_delete).
//! - **Timestamps**: a field marked `#[lifeguard(created_at)]` or `#[lifeguard(updated_at)]`
//!   is written as `now()` (the database clock) on insert when the record leaves it unset,
//!   and the `updated_at` field is written as `now()` by every update that changes
//!   something, unless the record sets it explicitly.
//!
//! ```
//! use lifeguard_core::model::{
//!     ActiveValue::Set, LifeModel, LifeRecord, RecordHooks, ValidationErrors,
//! };
//! use lifeguard_core::{LifeModel, LifeRecord};
//!
//! #[derive(Debug, Clone, LifeModel, LifeRecord)]
//! #[lifeguard(table_name = "accounts", hooks, soft_delete)]
//! pub struct Account {
//!     #[lifeguard(primary_key, auto_increment)]
//!     pub id: i64,
//!     pub email: String,
//!     #[lifeguard(created_at)]
//!     pub created_at: chrono::DateTime<chrono::Utc>,
//!     #[lifeguard(updated_at)]
//!     pub updated_at: chrono::DateTime<chrono::Utc>,
//!     pub deleted_at: Option<chrono::DateTime<chrono::Utc>>,
//! }
//!
//! impl RecordHooks for AccountRecord {
//!     fn before_insert(&mut self) -> lifeguard_core::Result<()> {
//!         if let Set(email) = &mut self.email {
//!             *email = email.trim().to_lowercase();
//!         }
//!         Ok(())
//!     }
//!
//!     fn validate(&self) -> Result<(), ValidationErrors> {
//!         let mut errors = ValidationErrors::new();
//!         if let Some(email) = self.email.as_ref() {
//!             if !email.contains('@') {
//!                 errors.add("email", "must contain `@`");
//!             }
//!         }
//!         errors.into_result()
//!     }
//! }
//!
//! assert_eq!(Account::SOFT_DELETE, Some("deleted_at"));
//! assert_eq!(
//!     Account::DELETE_BY_PK_SQL,
//!     r#"UPDATE "accounts" SET "deleted_at" = now(), "updated_at" = now() WHERE "id" = $1 AND "deleted_at" IS NULL"#
//! );
//! let bad = AccountRecord { email: Set("nobody".into()), ..Default::default() };
//! let errors = bad.validate().unwrap_err();
//! assert_eq!(errors.to_string(), "email: must contain `@`");
//! ```

use super::{crud, forget, LifeModel, LifeRecord};
use crate::error::{Error, Result, ValidationErrors};
use crate::executor::Executor;

/// Lifecycle hooks and validation of a record, written by the user.
///
/// The derive never implements it: mark the model `#[lifeguard(hooks)]` and write
/// `impl RecordHooks for UserRecord {}` (with the methods you need). Every method defaults
/// to doing nothing.
///
/// A write runs, in order (nothing is sent when a step before the SQL fails):
///
/// | insert | update | delete |
/// | --- | --- | --- |
/// | `before_save` | `before_save` | `before_delete` |
/// | `before_insert` | `before_update` | SQL |
/// | `validate` | `validate` | `after_delete` |
/// | SQL | SQL | |
/// | `after_insert` | `after_update` | |
/// | `after_save` | `after_save` | |
///
/// `save` is an insert or an update, so it runs that column. Validation comes after the
/// `before_*` hooks, so they may normalize or fill fields that are then validated. An
/// `after_*` hook that fails makes the call fail after the SQL ran: wrap the call in a
/// transaction when that must roll the write back. Hooks run for the record's writes
/// (`insert`, `update`, `save`, `delete`); `LifeModel::delete`/`delete_by_id`, bulk
/// statements and raw SQL do not run them.
///
/// ```
/// use lifeguard_core::model::{ActiveValue::Set, LifeModel, RecordHooks, ValidationErrors};
/// use lifeguard_core::LifeModel;
///
/// #[derive(Debug, Clone, LifeModel)]
/// #[lifeguard(table_name = "posts", hooks)]
/// pub struct Post {
///     #[lifeguard(primary_key, auto_increment)]
///     pub id: i64,
///     pub title: String,
///     pub slug: String,
/// }
///
/// impl RecordHooks for PostRecord {
///     fn before_insert(&mut self) -> lifeguard_core::Result<()> {
///         if let (Some(title), true) = (self.title.as_ref(), self.slug.is_not_set()) {
///             self.slug = Set(title.to_lowercase().replace(' ', "-"));
///         }
///         Ok(())
///     }
///
///     fn validate(&self) -> Result<(), ValidationErrors> {
///         let mut errors = ValidationErrors::new();
///         if self.title.as_ref().is_some_and(|t| t.is_empty()) {
///             errors.add("title", "must not be empty");
///         }
///         errors.into_result()
///     }
/// }
/// ```
pub trait RecordHooks: LifeRecord {
    /// Before an insert or an update (after nothing; before `before_insert`/`before_update`).
    fn before_save(&mut self) -> Result<()> {
        Ok(())
    }

    /// Before an insert; may change the record (fill a field, normalize a value).
    fn before_insert(&mut self) -> Result<()> {
        Ok(())
    }

    /// Before an update; may change the record.
    fn before_update(&mut self) -> Result<()> {
        Ok(())
    }

    /// Field-level checks, run after the `before_*` hooks of an insert or an update and
    /// before any SQL: an error becomes [`Error::Validation`] and nothing is sent.
    fn validate(&self) -> std::result::Result<(), ValidationErrors> {
        Ok(())
    }

    /// After the row was inserted, with the stored row.
    fn after_insert(&self, _model: &Self::Model) -> Result<()> {
        Ok(())
    }

    /// After the row was updated, with the stored row.
    fn after_update(&self, _model: &Self::Model) -> Result<()> {
        Ok(())
    }

    /// After an insert or an update (after `after_insert`/`after_update`).
    fn after_save(&self, _model: &Self::Model) -> Result<()> {
        Ok(())
    }

    /// Before a delete (soft or real) through the record.
    fn before_delete(&mut self) -> Result<()> {
        Ok(())
    }

    /// After a delete through the record, with the number of rows it affected.
    fn after_delete(&self, _rows: u64) -> Result<()> {
        Ok(())
    }
}

/// Which write is about to run (for the derive's hook dispatch, through
/// [`crate::__private`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOp {
    /// `insert`.
    Insert,
    /// `update`.
    Update,
    /// `delete`.
    Delete,
}

/// A write that ran, with its outcome (for the derive's hook dispatch, through
/// [`crate::__private`]).
#[derive(Debug)]
pub enum WriteDone<'a, M> {
    /// `insert` stored this row.
    Insert(&'a M),
    /// `update` stored this row.
    Update(&'a M),
    /// `delete` affected this many rows.
    Delete(u64),
}

/// Runs the `before_*` hooks and the validator of `op`; called by derived records marked
/// `#[lifeguard(hooks)]`.
pub fn run_before<R: RecordHooks>(record: &mut R, op: WriteOp) -> Result<()> {
    match op {
        WriteOp::Insert => {
            record.before_save()?;
            record.before_insert()?;
            record.validate().map_err(Error::Validation)
        }
        WriteOp::Update => {
            record.before_save()?;
            record.before_update()?;
            record.validate().map_err(Error::Validation)
        }
        WriteOp::Delete => record.before_delete(),
    }
}

/// Runs the `after_*` hooks of a write; called by derived records marked
/// `#[lifeguard(hooks)]`.
pub fn run_after<R: RecordHooks>(record: &R, done: WriteDone<'_, R::Model>) -> Result<()> {
    match done {
        WriteDone::Insert(m) => {
            record.after_insert(m)?;
            record.after_save(m)
        }
        WriteDone::Update(m) => {
            record.after_update(m)?;
            record.after_save(m)
        }
        WriteDone::Delete(n) => record.after_delete(n),
    }
}

pub(crate) fn insert<R: LifeRecord>(
    mut record: R,
    db: &(impl Executor + ?Sized),
) -> Result<R::Model> {
    record.__lifeguard_before(WriteOp::Insert)?;
    let model = crud::insert(&record, db)?;
    record.__lifeguard_after(WriteDone::Insert(&model))?;
    Ok(model)
}

pub(crate) fn update<R: LifeRecord>(
    mut record: R,
    db: &(impl Executor + ?Sized),
) -> Result<R::Model> {
    record.__lifeguard_before(WriteOp::Update)?;
    let model = crud::update(&record, db)?;
    record.__lifeguard_after(WriteDone::Update(&model))?;
    Ok(model)
}

pub(crate) fn update_without_returning<R: LifeRecord>(
    mut record: R,
    db: &(impl Executor + ?Sized),
) -> Result<u64> {
    record.__lifeguard_before(WriteOp::Update)?;
    if !R::__LIFEGUARD_HOOKS {
        return crud::update_rows(&record, db);
    }
    // The after hooks take the stored row, so a hooked record's statement returns it.
    match crud::update_returning(&record, db)? {
        Some(model) => {
            record.__lifeguard_after(WriteDone::Update(&model))?;
            Ok(1)
        }
        None => Ok(0),
    }
}

pub(crate) fn delete<R: LifeRecord>(mut record: R, db: &(impl Executor + ?Sized)) -> Result<u64> {
    record.__lifeguard_before(WriteOp::Delete)?;
    let rows = crud::delete(&record, db)?;
    record.__lifeguard_after(WriteDone::Delete(rows))?;
    Ok(rows)
}

fn not_soft<M: LifeModel>(what: &str) -> Error {
    Error::invalid_use(format!(
        "{what} needs a soft-delete model; {} is not marked #[lifeguard(soft_delete)]",
        M::TABLE
    ))
}

pub(crate) fn restore_by_id<M: LifeModel>(
    db: &(impl Executor + ?Sized),
    key: &M::PrimaryKey,
) -> Result<u64> {
    let restored = match M::RESTORE_BY_PK_SQL {
        Some(sql) => db.execute(sql, &M::key_params(key))?,
        None => return Err(not_soft::<M>("restore")),
    };
    forget::key::<M>(db, key);
    Ok(restored)
}

pub(crate) fn force_delete_by_id<M: LifeModel>(
    db: &(impl Executor + ?Sized),
    key: &M::PrimaryKey,
) -> Result<u64> {
    let deleted = db.execute(M::FORCE_DELETE_BY_PK_SQL, &M::key_params(key))?;
    forget::key::<M>(db, key);
    Ok(deleted)
}
