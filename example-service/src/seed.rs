//! Seed data: a few authors with books and reviews. Idempotent and safe when several
//! instances start at once: each author is inserted with `ON CONFLICT (email) DO NOTHING`,
//! and only the instance that inserted an author adds that author's books and reviews, in
//! the same transaction.

use lifeguard_core::model::{ActiveValue::Set, LifeRecord, OnConflict};
use lifeguard_core::pool::Pool;

use crate::models::{AuthorColumn, AuthorRecord, BookRecord, ReviewRecord};

/// `(name, email, bio, [(title, isbn, year, [(reviewer, rating, body)])])`.
type SeedAuthor = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(
        &'static str,
        &'static str,
        i32,
        &'static [(&'static str, i32, &'static str)],
    )],
);

const AUTHORS: &[SeedAuthor] = &[
    (
        "Ursula K. Le Guin",
        "ursula@example.org",
        "Wrote about anarchists, wizards and the edges of maps.",
        &[
            (
                "A Wizard of Earthsea",
                "978-0-553-38304-1",
                1968,
                &[("ged", 5, "A true name is worth knowing.")],
            ),
            (
                "The Dispossessed",
                "978-0-06-051275-7",
                1974,
                &[("shevek", 5, "Walls have two sides."), ("takver", 4, "")],
            ),
        ],
    ),
    (
        "Octavia E. Butler",
        "octavia@example.org",
        "Science fiction about power, survival and change.",
        &[(
            "Kindred",
            "978-0-8070-8369-7",
            1979,
            &[("dana", 5, "Unforgettable.")],
        )],
    ),
    (
        "Stanisław Lem",
        "lem@example.org",
        "",
        &[
            ("Solaris", "978-0-15-602760-1", 1961, &[]),
            (
                "The Cyberiad",
                "978-0-15-602759-5",
                1965,
                &[("trurl", 4, "Machines that write poetry.")],
            ),
        ],
    ),
];

/// Inserts the seed authors that are missing (with their books and reviews); returns how
/// many authors it inserted.
///
/// # Errors
///
/// Any database error; the seed of the author being inserted is rolled back.
pub fn seed(pool: &Pool) -> lifeguard_core::Result<usize> {
    let mut inserted = 0;
    for (name, email, bio, books) in AUTHORS {
        let added = pool.transaction(|tx| {
            let author = AuthorRecord {
                name: Set(name.to_string()),
                email: Set(email.to_string()),
                bio: Set((!bio.is_empty()).then(|| bio.to_string())),
                ..Default::default()
            }
            .insert_on_conflict(
                OnConflict::columns([AuthorColumn::Email]).do_nothing(),
                &*tx,
            )?;
            let Some(author) = author else {
                return Ok(false);
            };
            for (title, isbn, year, reviews) in *books {
                let book = BookRecord {
                    author_id: Set(author.id),
                    title: Set(title.to_string()),
                    isbn: Set(Some(isbn.to_string())),
                    published_year: Set(Some(*year)),
                    ..Default::default()
                }
                .insert(&*tx)?;
                let reviews = reviews.iter().map(|(reviewer, rating, body)| ReviewRecord {
                    book_id: Set(book.id),
                    reviewer: Set(reviewer.to_string()),
                    rating: Set(*rating),
                    body: Set((!body.is_empty()).then(|| body.to_string())),
                    ..Default::default()
                });
                ReviewRecord::insert_many(reviews).exec(&*tx)?;
            }
            Ok(true)
        })?;
        inserted += usize::from(added);
    }
    Ok(inserted)
}
