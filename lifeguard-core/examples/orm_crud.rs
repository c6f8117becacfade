//! Models and CRUD: insert with database defaults, find, update of changed columns only,
//! an expression update, save and delete.
//!
//! ```sh
//! scripts/services up && eval "$(scripts/services env)"
//! cargo run -p lifeguard-core --example orm_crud
//! ```

use chrono::{DateTime, Utc};
use lifeguard_core::model::{ActiveValue, LifeModel, LifeRecord};
use lifeguard_core::pg::Connection;
use lifeguard_core::query::ColumnExpr;
use lifeguard_core::{Executor, LifeModel, LifeRecord, Result};

#[derive(Debug, Clone, LifeModel, LifeRecord)]
#[lifeguard(table_name = "example_users")]
pub struct User {
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    pub email: String,
    pub name: Option<String>,
    #[lifeguard(default_expr = "0")]
    pub visits: i32,
    #[lifeguard(default_expr = "now()")]
    pub created_at: DateTime<Utc>,
}

fn main() -> Result<()> {
    may::config().set_workers(2).set_stack_size(0x8000);
    let url = std::env::var("LIFEGUARD_PRIMARY_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:55432/lifeguard".into());
    let db = Connection::open(&url)?;
    db.batch_execute(
        "CREATE TEMP TABLE example_users (id bigserial PRIMARY KEY, email text UNIQUE NOT NULL, \
         name text, visits int NOT NULL DEFAULT 0, created_at timestamptz NOT NULL DEFAULT now())",
    )?;

    // Insert: unset fields take the database's defaults, and the stored row comes back.
    let alice = UserRecord {
        email: ActiveValue::Set("alice@example.com".into()),
        ..Default::default()
    }
    .insert(&db)?;
    println!("inserted {alice:?}");

    // Find by key runs constant SQL from the derive.
    let found = User::find_by_id(alice.id).one(&db)?;
    println!("found {found:?}");

    // Update writes only what is set; an expression updates in place.
    let mut change = alice.clone().into_record();
    change.name = ActiveValue::Set(Some("Alice".into()));
    change.visits = ActiveValue::Expr(UserColumn::Visits.add(1));
    let alice = change.update(&db)?;
    println!("updated {alice:?}");

    // When the stored row is not needed, the update returns the rows it changed.
    let mut change = alice.clone().into_record();
    change.visits = ActiveValue::Expr(UserColumn::Visits.add(1));
    let changed = change.update_without_returning(&db)?;
    println!("updated {changed} row(s) without reading them back");

    // Save inserts a fresh record and updates one that came from a model.
    let bob = UserRecord {
        email: ActiveValue::Set("bob@example.com".into()),
        ..Default::default()
    }
    .save(&db)?;
    let bob = bob.into_record().save(&db)?;
    println!("saved {bob:?}");

    // A duplicate is a typed error naming the constraint.
    let duplicate = UserRecord {
        email: ActiveValue::Set("bob@example.com".into()),
        ..Default::default()
    }
    .insert(&db);
    if let Err(e) = duplicate {
        println!("duplicate rejected: {:?} ({e})", e.constraint());
    }

    println!(
        "deleted {}",
        bob.delete(&db)? + User::delete_by_id(&db, alice.id)?
    );
    Ok(())
}
