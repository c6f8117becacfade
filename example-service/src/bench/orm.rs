//! `--mode orm`: the workloads through Lifeguard's models and query builder, on the same
//! shared connections as `--mode raw`, so the two columns measure the ORM's own cost.

use std::hint::black_box;

use example_service::techempower::{Fortune, World, WorldRecord};
use lifeguard_core::model::{
    load_many, ActiveValue::Set, ActiveValue::Unchanged, LifeModel, LifeRecord,
};
use lifeguard_core::query::ColumnExpr;
use lifeguard_core::{Executor, LifeModel, LifeRecord};
use rand::rngs::StdRng;

use super::{
    author_ids, expect, insert_rows, random_number, world_id, BoxError, Workload, EAGER_AUTHORS,
    FORTUNE_ROWS, INSERT_BATCH_ROWS, POSTS_PER_AUTHOR,
};

#[derive(Debug, Clone, LifeModel, LifeRecord)]
#[lifeguard(table_name = "bench_insert")]
pub struct BenchInsert {
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    pub a: Option<i32>,
    pub b: Option<String>,
}

#[derive(Debug, Clone, LifeModel, LifeRecord)]
#[lifeguard(table_name = "author", has_many(Post, from = "id", to = "author_id"))]
pub struct Author {
    #[lifeguard(primary_key)]
    pub id: i32,
    pub name: String,
}

#[derive(Debug, Clone, LifeModel, LifeRecord)]
#[lifeguard(table_name = "post")]
pub struct Post {
    #[lifeguard(primary_key)]
    pub id: i32,
    pub author_id: i32,
    pub title: String,
    pub body: String,
}

/// One operation of `workload` through the ORM.
pub fn op(workload: Workload, db: &dyn Executor, rng: &mut StdRng) -> Result<(), BoxError> {
    match workload {
        Workload::Point => {
            let id = world_id(rng);
            let world = World::find_by_id(id)
                .one(db)?
                .ok_or_else(|| format!("world {id} not found"))?;
            expect("id", world.id as usize, id as usize)?;
            black_box(world.randomnumber);
        }
        Workload::Fortunes => {
            let fortunes = Fortune::find().all(db)?;
            expect("fortunes", fortunes.len(), FORTUNE_ROWS)?;
            black_box((fortunes[0].id, &fortunes[0].message));
        }
        Workload::Update => {
            let (number, id) = (random_number(rng), world_id(rng));
            // Rows changed, not the row: what every peer's update returns.
            let updated = WorldRecord {
                id: Unchanged(id),
                randomnumber: Set(number),
            }
            .update_without_returning(db)?;
            expect("updated rows", updated as usize, 1)?;
        }
        Workload::InsertBatch => {
            let records = insert_rows(rng)
                .into_iter()
                .map(|(a, b)| BenchInsertRecord {
                    a: Set(Some(a)),
                    b: Set(Some(b)),
                    ..Default::default()
                });
            let inserted = BenchInsertRecord::insert_many(records).exec(db)?;
            expect("inserted rows", inserted as usize, INSERT_BATCH_ROWS)?;
        }
        Workload::Eager => {
            // The loader: one query for the authors, one `author_id = ANY($1)` for all of
            // their posts, grouped under each author.
            let ids = author_ids(rng);
            let authors = Author::find().filter(AuthorColumn::Id.is_in(ids)).all(db)?;
            let loaded = load_many::<Author, Post, _>(db, authors)?;
            expect("authors", loaded.len(), EAGER_AUTHORS)?;
            for (author, posts) in &loaded {
                expect("posts of an author", posts.len(), POSTS_PER_AUTHOR)?;
                black_box((&author.name, &posts[0].title));
            }
        }
    }
    Ok(())
}
