//! The query builder: filters (typed columns and the untyped column enum), optional
//! filters, conditions, order and limits, counting, projections into structs and tuples,
//! and raw SQL mapped into a struct.
//!
//! ```sh
//! scripts/services up && eval "$(scripts/services env)"
//! cargo run -p lifeguard-core --example orm_queries
//! ```

use lifeguard_core::model::{ActiveValue::Set, LifeModel, LifeRecord};
use lifeguard_core::pg::Connection;
use lifeguard_core::query::{ColumnExpr, Condition, Expr};
use lifeguard_core::{Executor, ExecutorExt, FromRow, LifeModel, LifeRecord, Result};

#[derive(Debug, Clone, LifeModel, LifeRecord)]
#[lifeguard(table_name = "example_books")]
pub struct Book {
    #[lifeguard(primary_key, auto_increment)]
    pub id: i32,
    pub title: String,
    pub author: String,
    pub year: i32,
}

#[derive(Debug, FromRow)]
pub struct AuthorTotal {
    pub author: String,
    pub books: i64,
}

fn main() -> Result<()> {
    may::config().set_workers(2).set_stack_size(0x8000);
    let url = std::env::var("LIFEGUARD_PRIMARY_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:55432/lifeguard".into());
    let db = Connection::open(&url)?;
    db.batch_execute(
        "CREATE TEMP TABLE example_books (id serial PRIMARY KEY, title text NOT NULL, \
         author text NOT NULL, year int NOT NULL)",
    )?;
    let books = [
        ("Dune", "Herbert", 1965),
        ("Children of Dune", "Herbert", 1976),
        ("The Dispossessed", "Le Guin", 1974),
        ("The Left Hand of Darkness", "Le Guin", 1969),
        ("Neuromancer", "Gibson", 1984),
    ];
    let records = books.iter().map(|(title, author, year)| BookRecord {
        title: Set(title.to_string()),
        author: Set(author.to_string()),
        year: Set(*year),
        ..Default::default()
    });
    BookRecord::insert_many(records).exec(&db)?;

    // Filters join with AND; Condition nests OR; optional filters apply only when present.
    // `Book::COL_*` are the typed columns: `Book::COL_YEAR.eq("1965")` would not compile.
    let search: Option<&str> = Some("%dune%");
    let sixties_or_herbert = Book::find()
        .filter(
            Condition::any()
                .add(Book::COL_YEAR.between(1960, 1969))
                .add(Book::COL_AUTHOR.eq("Herbert")),
        )
        .filter_opt(search.map(|s| Book::COL_TITLE.ilike(s)))
        .order_by_asc(Book::COL_YEAR)
        .all(&db)?;
    println!("{sixties_or_herbert:#?}");

    // Lists bind as one array parameter: every length shares one prepared statement.
    let by_id = Book::find()
        .filter(BookColumn::Id.is_in([1, 3, 5]))
        .count(&db)?;
    println!(
        "{by_id} books by id; any from 1984: {}",
        Book::find().filter(BookColumn::Year.eq(1984)).exists(&db)?
    );

    // Projections: grouped counts into a tuple, then into a struct by column name.
    let per_author: Vec<(String, i64)> = Book::find()
        .columns([BookColumn::Author.expr(), Expr::cust("count(*)")])
        .group_by(BookColumn::Author)
        .order_by_asc(BookColumn::Author)
        .into_model::<(String, i64)>()
        .all(&db)?;
    println!("{per_author:?}");

    // Raw SQL, parameters bound, rows into a struct.
    let prolific: Vec<AuthorTotal> = db.query_as(
        "SELECT author, count(*) AS books FROM example_books GROUP BY author HAVING count(*) > $1",
        &[&1i64],
    )?;
    println!("{prolific:?}");
    Ok(())
}
