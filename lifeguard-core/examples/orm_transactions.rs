//! Transactions with models: commit on `Ok`, rollback on `Err` and on panic, savepoints for
//! nested work, and retry of serialization conflicts.
//!
//! ```sh
//! scripts/services up && eval "$(scripts/services env)"
//! cargo run -p lifeguard-core --example orm_transactions
//! ```

use lifeguard_core::model::{ActiveValue, LifeModel, LifeRecord};
use lifeguard_core::pg::{Connection, IsolationLevel};
use lifeguard_core::query::ColumnExpr;
use lifeguard_core::{Error, Executor, LifeModel, LifeRecord, Result};

#[derive(Debug, Clone, LifeModel, LifeRecord)]
#[lifeguard(table_name = "example_accounts")]
pub struct Account {
    #[lifeguard(primary_key)]
    pub id: i32,
    pub balance: i64,
}

/// Moves money between two accounts; the CHECK constraint refuses overdrafts.
fn transfer(db: &impl Executor, from: i32, to: i32, amount: i64) -> Result<()> {
    let mut debit = AccountRecord {
        id: ActiveValue::Unchanged(from),
        ..Default::default()
    };
    debit.balance = ActiveValue::Expr(AccountColumn::Balance.sub(amount));
    debit.update(db)?;
    let mut credit = AccountRecord {
        id: ActiveValue::Unchanged(to),
        ..Default::default()
    };
    credit.balance = ActiveValue::Expr(AccountColumn::Balance.add(amount));
    credit.update(db)?;
    Ok(())
}

fn balances(db: &impl Executor) -> Result<Vec<(i32, i64)>> {
    Ok(Account::find()
        .order_by_asc(AccountColumn::Id)
        .all(db)?
        .into_iter()
        .map(|a| (a.id, a.balance))
        .collect())
}

fn main() -> Result<()> {
    may::config().set_workers(2).set_stack_size(0x8000);
    let url = std::env::var("LIFEGUARD_PRIMARY_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:55432/lifeguard".into());
    let mut conn = Connection::open(&url)?;
    conn.batch_execute(
        "CREATE TEMP TABLE example_accounts (id int PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0)); \
         INSERT INTO example_accounts VALUES (1, 100), (2, 0)",
    )?;

    // Ok commits.
    conn.transaction(|tx| transfer(tx, 1, 2, 30))?;
    println!("after a committed transfer: {:?}", balances(&conn)?);

    // Err rolls back: the overdraft fails the CHECK, and the first update is undone too.
    let overdraft = conn.transaction(|tx| transfer(tx, 1, 2, 500));
    if let Err(Error::CheckViolation { constraint, .. }) = &overdraft {
        println!(
            "overdraft refused by {constraint:?}: {:?}",
            balances(&conn)?
        );
    }

    // A panic rolls back and continues as a panic (its message silenced here).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        conn.transaction(|tx| -> Result<()> {
            transfer(tx, 1, 2, 10)?;
            panic!("bug in the middle of a transfer")
        })
    }));
    std::panic::set_hook(default_hook);
    println!(
        "after a panic ({}): {:?}",
        panicked.is_err(),
        balances(&conn)?
    );

    // Savepoints: the inner failure is undone, the outer work commits.
    conn.transaction(|tx| {
        transfer(tx, 2, 1, 5)?;
        let inner = tx.transaction(|sp| transfer(sp, 2, 1, 1_000));
        println!("inner transfer failed alone: {}", inner.is_err());
        Ok(())
    })?;
    println!("after the savepoint: {:?}", balances(&conn)?);

    // Serializable with retries: conflicts (40001) and deadlocks rerun the closure.
    conn.build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .retry_conflicts(3)
        .run(|tx| transfer(tx, 1, 2, 1))?;
    println!("final: {:?}", balances(&conn)?);
    Ok(())
}
