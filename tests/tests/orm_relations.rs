//! Relations against the real primary: `find_related` for every kind, join-based pairs,
//! batched loaders, and nested eager loading that never issues one query per row (counted
//! by a wrapping executor).
//!
//! The tables live in the schema `orm_rel`, created once per binary under an advisory lock
//! (shared with `orm_hooks_soft_delete_timestamps`); tests isolate themselves by unique
//! names.

use chrono::{DateTime, Utc};
use lifeguard_core::model::ActiveValue::Set;
use lifeguard_core::model::{
    load, load_many, load_many_to_many, load_one, many, one, LifeModel, LifeRecord, Related,
    RelationKind,
};
use lifeguard_core::pg::Connection;
use lifeguard_core::query::ColumnExpr;
use lifeguard_core::{Executor, LifeModel, LifeRecord};
use lifeguard_tests::orm::Counting;
use lifeguard_tests::{pg, unique_name};

const DDL: &str = r#"
SELECT pg_advisory_xact_lock(4243);
CREATE SCHEMA IF NOT EXISTS orm_rel;
CREATE TABLE IF NOT EXISTS orm_rel.authors (
  id bigserial PRIMARY KEY,
  name text NOT NULL
);
CREATE TABLE IF NOT EXISTS orm_rel.profiles (
  id bigserial PRIMARY KEY,
  author_id int8 NOT NULL UNIQUE REFERENCES orm_rel.authors (id) ON DELETE CASCADE,
  bio text NOT NULL
);
CREATE TABLE IF NOT EXISTS orm_rel.posts (
  id bigserial PRIMARY KEY,
  author_id int8 NOT NULL REFERENCES orm_rel.authors (id) ON DELETE CASCADE,
  title text NOT NULL,
  deleted_at timestamptz
);
CREATE INDEX IF NOT EXISTS posts_author_idx ON orm_rel.posts (author_id);
CREATE TABLE IF NOT EXISTS orm_rel.comments (
  id bigserial PRIMARY KEY,
  post_id int8 NOT NULL REFERENCES orm_rel.posts (id) ON DELETE CASCADE,
  author_id int8 REFERENCES orm_rel.authors (id) ON DELETE SET NULL,
  body text NOT NULL
);
CREATE INDEX IF NOT EXISTS comments_post_idx ON orm_rel.comments (post_id);
CREATE TABLE IF NOT EXISTS orm_rel.books (
  id bigserial PRIMARY KEY,
  title text NOT NULL
);
CREATE TABLE IF NOT EXISTS orm_rel.tags (
  id bigserial PRIMARY KEY,
  name text NOT NULL
);
CREATE TABLE IF NOT EXISTS orm_rel.book_tags (
  book_id int8 NOT NULL REFERENCES orm_rel.books (id) ON DELETE CASCADE,
  tag_id int8 NOT NULL REFERENCES orm_rel.tags (id) ON DELETE CASCADE,
  PRIMARY KEY (book_id, tag_id)
);
"#;

fn connect() -> Connection {
    static ONCE: pg::SchemaOnce = pg::SchemaOnce::new();
    pg::connect_with_schema(&ONCE, DDL)
}

// ------------------------------------------------------------------- models --

#[derive(Debug, Clone, PartialEq, LifeModel, LifeRecord)]
#[lifeguard(table_name = "authors", schema_name = "orm_rel")]
#[lifeguard(has_many(Post, from = "id", to = "author_id"))]
#[lifeguard(has_one(Profile, from = "id", to = "author_id"))]
pub struct Author {
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, LifeModel, LifeRecord)]
#[lifeguard(table_name = "profiles", schema_name = "orm_rel")]
#[lifeguard(belongs_to(Author, from = "author_id", to = "id"))]
pub struct Profile {
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    pub author_id: i64,
    pub bio: String,
}

#[derive(Debug, Clone, PartialEq, LifeModel, LifeRecord)]
#[lifeguard(table_name = "posts", schema_name = "orm_rel", soft_delete)]
#[lifeguard(belongs_to(Author, from = "author_id", to = "id"))]
#[lifeguard(has_many(Comment, from = "id", to = "post_id"))]
pub struct Post {
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    pub author_id: i64,
    pub title: String,
    pub deleted_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, LifeModel, LifeRecord)]
#[lifeguard(table_name = "comments", schema_name = "orm_rel")]
// Clippy's `duplicated_attributes` reads the two `to = "id"` as a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[lifeguard(belongs_to(Post, from = "post_id", to = "id"))]
#[lifeguard(belongs_to(Author, from = "author_id", to = "id"))]
pub struct Comment {
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    pub post_id: i64,
    /// Nullable foreign key: a comment may be anonymous.
    pub author_id: Option<i64>,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, LifeModel, LifeRecord)]
#[lifeguard(table_name = "books", schema_name = "orm_rel")]
#[lifeguard(has_many_through(
    Tag,
    via = BookTag,
    from = "id",
    via_from = "book_id",
    via_to = "tag_id",
    to = "id"
))]
pub struct Book {
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    pub title: String,
}

#[derive(Debug, Clone, PartialEq, LifeModel, LifeRecord)]
#[lifeguard(table_name = "tags", schema_name = "orm_rel")]
#[lifeguard(has_many_through(
    Book,
    via = BookTag,
    from = "id",
    via_from = "tag_id",
    via_to = "book_id",
    to = "id"
))]
pub struct Tag {
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, LifeModel, LifeRecord)]
#[lifeguard(table_name = "book_tags", schema_name = "orm_rel")]
pub struct BookTag {
    #[lifeguard(primary_key)]
    pub book_id: i64,
    #[lifeguard(primary_key)]
    pub tag_id: i64,
}

// ------------------------------------------------------------------ helpers --

fn author(db: &Connection, name: &str) -> Author {
    AuthorRecord {
        name: Set(name.to_owned()),
        ..Default::default()
    }
    .insert(db)
    .unwrap()
}

fn post(db: &Connection, author: &Author, title: &str) -> Post {
    PostRecord {
        author_id: Set(author.id),
        title: Set(title.to_owned()),
        ..Default::default()
    }
    .insert(db)
    .unwrap()
}

fn comment(db: &Connection, post: &Post, author: Option<&Author>, body: &str) -> Comment {
    CommentRecord {
        post_id: Set(post.id),
        author_id: Set(author.map(|a| a.id)),
        body: Set(body.to_owned()),
        ..Default::default()
    }
    .insert(db)
    .unwrap()
}

fn profile(db: &Connection, author: &Author, bio: &str) -> Profile {
    ProfileRecord {
        author_id: Set(author.id),
        bio: Set(bio.to_owned()),
        ..Default::default()
    }
    .insert(db)
    .unwrap()
}

/// The authors named `run-*`, by id.
fn authors_of(db: &impl Executor, run: &str) -> Vec<Author> {
    Author::find()
        .filter(AuthorColumn::Name.like(format!("{run}-%")))
        .order_by_asc(AuthorColumn::Id)
        .all(db)
        .unwrap()
}

/// `n` authors, each with `posts` posts, each with `comments` comments.
fn forest(db: &Connection, run: &str, n: usize, posts: usize, comments: usize) -> Vec<Author> {
    let mut out = Vec::new();
    for a in 0..n {
        let au = author(db, &format!("{run}-{a}"));
        for p in 0..posts {
            let po = post(db, &au, &format!("{run}-{a}-{p}"));
            for c in 0..comments {
                comment(db, &po, Some(&au), &format!("{run}-{a}-{p}-{c}"));
            }
        }
        out.push(au);
    }
    out
}

/// Authors with their posts, each with its comments.
type Tree = Vec<(Author, Vec<(Post, Vec<Comment>)>)>;

/// The posts' titles, sorted: a loader keeps the order the server sends, which only an
/// explicit order pins.
fn titles(posts: &[Post]) -> Vec<&str> {
    let mut titles: Vec<&str> = posts.iter().map(|p| p.title.as_str()).collect();
    titles.sort_unstable();
    titles
}

// -------------------------------------------------------------- definitions --

#[test]
fn relation_defs_name_tables_and_columns() {
    let d = <Author as Related<Post>>::def();
    assert_eq!(d.kind, RelationKind::HasMany);
    assert_eq!(d.from_table, r#""orm_rel"."authors""#);
    assert_eq!((d.from_column, d.to_column), ("id", "author_id"));
    assert_eq!(d.to_table, r#""orm_rel"."posts""#);
    assert_eq!(
        <Author as Related<Profile>>::def().kind,
        RelationKind::HasOne
    );
    assert_eq!(
        <Post as Related<Author>>::def().kind,
        RelationKind::BelongsTo
    );
    let m2m = <Book as Related<Tag>>::def();
    assert_eq!(m2m.kind, RelationKind::ManyToMany);
    let via = m2m.via.expect("a junction");
    assert_eq!(via.table, r#""orm_rel"."book_tags""#);
    assert_eq!((via.from_column, via.to_column), ("book_id", "tag_id"));
    // A nullable foreign key gives a key only when set.
    let anonymous = Comment {
        id: 1,
        post_id: 2,
        author_id: None,
        body: String::new(),
    };
    assert_eq!(<Comment as Related<Author>>::related_key(&anonymous), None);
    let (sql, _) = anonymous.find_related::<Author>().build();
    assert!(sql.ends_with("WHERE (FALSE)"), "{sql}");
}

// ------------------------------------------------------------- find_related --

#[test]
fn find_related_for_every_kind() {
    let conn = connect();
    let run = unique_name("rel_find");
    let ann = author(&conn, &format!("{run}-ann"));
    let bob = author(&conn, &format!("{run}-bob"));
    let p1 = post(&conn, &ann, "first");
    let p2 = post(&conn, &ann, "second");
    post(&conn, &bob, "bob's");
    let prof = profile(&conn, &ann, "writes things");

    // has_many
    let posts = ann
        .find_related::<Post>()
        .order_by_asc(PostColumn::Id)
        .all(&conn)
        .unwrap();
    assert_eq!(posts, vec![p1.clone(), p2.clone()]);
    // refinable like any query
    let second = ann
        .find_related::<Post>()
        .filter(PostColumn::Title.eq("second"))
        .one(&conn)
        .unwrap();
    assert_eq!(second, Some(p2.clone()));
    // has_one, and none for an author without a profile
    assert_eq!(
        ann.find_related::<Profile>().one(&conn).unwrap(),
        Some(prof.clone())
    );
    assert_eq!(bob.find_related::<Profile>().one(&conn).unwrap(), None);
    // belongs_to
    assert_eq!(
        p1.find_related::<Author>().one(&conn).unwrap(),
        Some(ann.clone())
    );
    assert_eq!(
        prof.find_related::<Author>().one(&conn).unwrap(),
        Some(ann.clone())
    );

    // many-to-many, both ways
    let b1 = BookRecord {
        title: Set(format!("{run}-b1")),
        ..Default::default()
    }
    .insert(&conn)
    .unwrap();
    let b2 = BookRecord {
        title: Set(format!("{run}-b2")),
        ..Default::default()
    }
    .insert(&conn)
    .unwrap();
    let tags: Vec<Tag> = (0..3)
        .map(|i| {
            TagRecord {
                name: Set(format!("{run}-t{i}")),
                ..Default::default()
            }
            .insert(&conn)
            .unwrap()
        })
        .collect();
    for (b, t) in [(&b1, 0), (&b1, 1), (&b2, 1), (&b2, 2)] {
        BookTagRecord {
            book_id: Set(b.id),
            tag_id: Set(tags[t].id),
        }
        .insert(&conn)
        .unwrap();
    }
    let b1_tags = b1
        .find_related::<Tag>()
        .order_by_asc(TagColumn::Id)
        .all(&conn)
        .unwrap();
    assert_eq!(b1_tags, vec![tags[0].clone(), tags[1].clone()]);
    let t1_books = tags[1]
        .find_related::<Book>()
        .order_by_asc(BookColumn::Id)
        .all(&conn)
        .unwrap();
    assert_eq!(t1_books, vec![b1.clone(), b2.clone()]);
    assert_eq!(tags[2].find_related::<Book>().count(&conn).unwrap(), 1);
}

// ------------------------------------------------------------- join pairs --

#[test]
fn find_also_related_and_find_with_related_use_one_join_query() {
    let conn = connect();
    let run = unique_name("rel_join");
    let ann = author(&conn, &format!("{run}-0"));
    let bob = author(&conn, &format!("{run}-1"));
    let cat = author(&conn, &format!("{run}-2"));
    let prof = profile(&conn, &ann, "ann's bio");
    let a1 = post(&conn, &ann, "a1");
    let a2 = post(&conn, &ann, "a2");
    let b1 = post(&conn, &bob, "b1");
    let gone = post(&conn, &bob, "gone");
    assert_eq!(gone.delete(&conn).unwrap(), 1); // soft delete

    let counting = Counting::new(&conn);
    let by_run = || {
        Author::find()
            .filter(AuthorColumn::Name.like(format!("{run}-%")))
            .order_by_asc(AuthorColumn::Id)
    };

    // has_one: (author, Option<profile>)
    let pairs = by_run()
        .find_also_related::<Profile>()
        .all(&counting)
        .unwrap();
    assert_eq!(counting.take(), 1);
    assert_eq!(
        pairs,
        vec![
            (ann.clone(), Some(prof.clone())),
            (bob.clone(), None),
            (cat.clone(), None)
        ]
    );
    let first = by_run()
        .find_also_related::<Profile>()
        .one(&counting)
        .unwrap();
    assert_eq!(first, Some((ann.clone(), Some(prof))));
    assert_eq!(counting.take(), 1);

    // belongs_to from the other side
    let post_pairs = Post::find()
        .filter(PostColumn::AuthorId.is_in([ann.id, bob.id]))
        .order_by_asc(PostColumn::Id)
        .find_also_related::<Author>()
        .all(&counting)
        .unwrap();
    assert_eq!(counting.take(), 1);
    assert_eq!(
        post_pairs,
        vec![
            (a1.clone(), Some(ann.clone())),
            (a2.clone(), Some(ann.clone())),
            (b1.clone(), Some(bob.clone()))
        ],
        "the soft-deleted post is not listed"
    );

    // has_many grouped: every author once, soft-deleted posts left out of the join
    let grouped = by_run().find_with_related::<Post>().all(&counting).unwrap();
    assert_eq!(counting.take(), 1);
    assert_eq!(
        grouped,
        vec![
            (ann.clone(), vec![a1, a2]),
            (bob.clone(), vec![b1]),
            (cat.clone(), vec![])
        ]
    );
    let (sql, _) = by_run().find_with_related::<Post>().build();
    assert!(sql.contains(r#"LEFT JOIN "orm_rel"."posts" ON "orm_rel"."posts"."author_id" = "orm_rel"."authors"."id" AND "orm_rel"."posts"."deleted_at" IS NULL"#), "{sql}");
}

#[test]
fn many_to_many_join_and_loader() {
    let conn = connect();
    let run = unique_name("rel_m2m");
    let books: Vec<Book> = (0..3)
        .map(|i| {
            BookRecord {
                title: Set(format!("{run}-{i}")),
                ..Default::default()
            }
            .insert(&conn)
            .unwrap()
        })
        .collect();
    let tags: Vec<Tag> = (0..3)
        .map(|i| {
            TagRecord {
                name: Set(format!("{run}-t{i}")),
                ..Default::default()
            }
            .insert(&conn)
            .unwrap()
        })
        .collect();
    // book 0: t0 t1 · book 1: t1 · book 2: none
    for (b, t) in [(0, 0), (0, 1), (1, 1)] {
        BookTagRecord {
            book_id: Set(books[b].id),
            tag_id: Set(tags[t].id),
        }
        .insert(&conn)
        .unwrap();
    }
    let counting = Counting::new(&conn);
    let mut loaded = load_many_to_many::<Book, Tag, _>(&counting, books.clone()).unwrap();
    assert_eq!(counting.take(), 1);
    for (_, tags) in &mut loaded {
        tags.sort_by_key(|t| t.id);
    }
    assert_eq!(
        loaded,
        vec![
            (books[0].clone(), vec![tags[0].clone(), tags[1].clone()]),
            (books[1].clone(), vec![tags[1].clone()]),
            (books[2].clone(), vec![]),
        ]
    );
    // The other way: a tag shared by two books is handed to both.
    let mut back = load_many::<Tag, Book, _>(&counting, tags.clone()).unwrap();
    assert_eq!(counting.take(), 1);
    back[1].1.sort_by_key(|b| b.id);
    assert_eq!(back[1].1, vec![books[0].clone(), books[1].clone()]);
    assert_eq!(back[2].1, vec![]);

    let joined = Book::find()
        .filter(BookColumn::Title.like(format!("{run}-%")))
        .order_by_asc(BookColumn::Id)
        .find_with_related::<Tag>()
        .all(&counting)
        .unwrap();
    assert_eq!(counting.take(), 1);
    assert_eq!(joined, loaded);
}

// ------------------------------------------------------------------ loaders --

#[test]
fn loaders_group_interleaved_children_and_repeated_parents() {
    let conn = connect();
    let run = unique_name("rel_mix");
    let (a, b) = (
        author(&conn, &format!("{run}-a")),
        author(&conn, &format!("{run}-b")),
    );
    // In id order, the two authors' posts alternate.
    for i in 0..3 {
        post(&conn, &a, &format!("{run}-a{i}"));
        post(&conn, &b, &format!("{run}-b{i}"));
    }
    let loaded =
        load_many::<Author, Post, _>(&conn, vec![b.clone(), a.clone(), b.clone()]).unwrap();
    let got: Vec<(i64, Vec<&str>)> = loaded.iter().map(|(p, c)| (p.id, titles(c))).collect();
    let of = |x: &str| (0..3).map(|i| format!("{run}-{x}{i}")).collect::<Vec<_>>();
    assert_eq!(
        got,
        [(b.id, of("b")), (a.id, of("a")), (b.id, of("b"))]
            .iter()
            .map(|(id, t)| (*id, t.iter().map(String::as_str).collect()))
            .collect::<Vec<_>>()
    );
}

#[test]
fn loaders_send_one_query_each() {
    let conn = connect();
    let run = unique_name("rel_load");
    let authors = forest(&conn, &run, 4, 2, 0);
    profile(&conn, &authors[1], "only bio");
    let counting = Counting::new(&conn);

    // has_many
    let with_posts: Vec<(Author, Vec<Post>)> =
        load_many::<Author, Post, _>(&counting, authors.clone()).unwrap();
    assert_eq!(counting.take(), 1);
    assert_eq!(with_posts.len(), 4);
    for (i, (a, posts)) in with_posts.iter().enumerate() {
        assert_eq!(a, &authors[i]);
        assert_eq!(
            titles(posts),
            [format!("{run}-{i}-0"), format!("{run}-{i}-1")]
        );
        assert!(posts.iter().all(|p| p.author_id == a.id));
    }

    // has_one
    let with_profiles = load_one::<Author, Profile, _>(&counting, authors.clone()).unwrap();
    assert_eq!(counting.take(), 1);
    let bios: Vec<Option<&str>> = with_profiles
        .iter()
        .map(|(_, p)| p.as_ref().map(|p| p.bio.as_str()))
        .collect();
    assert_eq!(bios, [None, Some("only bio"), None, None]);

    // belongs_to: eight posts, four distinct authors, one query
    let posts: Vec<Post> = with_posts.into_iter().flat_map(|(_, p)| p).collect();
    let with_authors = load_one::<Post, Author, _>(&counting, posts.clone()).unwrap();
    assert_eq!(counting.take(), 1);
    for (p, a) in &with_authors {
        assert_eq!(a.as_ref().map(|a| a.id), Some(p.author_id));
    }

    // belongs_to through a nullable foreign key
    let c1 = comment(&conn, &posts[0], Some(&authors[0]), "signed");
    let c2 = comment(&conn, &posts[0], None, "anonymous");
    let by = load_one::<Comment, Author, _>(&counting, vec![c1, c2]).unwrap();
    assert_eq!(counting.take(), 1);
    assert_eq!(by[0].1.as_ref(), Some(&authors[0]));
    assert_eq!(by[1].1, None);

    // nothing to look up: no query at all
    let none = load_many::<Author, Post, _>(&counting, Vec::new()).unwrap();
    assert!(none.is_empty());
    assert_eq!(counting.take(), 0);

    // the statement is one `= ANY($1)` lookup
    load_many::<Author, Post, _>(&counting, authors).unwrap();
    let sql = counting.sent()[0].clone();
    assert!(
        sql.contains(r#"WHERE ("orm_rel"."posts"."deleted_at" IS NULL) AND ("orm_rel"."posts"."author_id" = ANY($1))"#),
        "{sql}"
    );
    // The key is read from the child's own column, and the rows come as the server sends
    // them: no column twice, no sort.
    assert_eq!(sql.matches(r#""posts"."author_id""#).count(), 2, "{sql}");
    assert!(!sql.contains("ORDER BY"), "{sql}");
}

#[test]
fn nested_loading_is_one_query_per_level_at_depth_three() {
    let conn = connect();
    for (n, posts, comments) in [(1, 1, 1), (3, 2, 2), (8, 3, 2)] {
        let run = unique_name("rel_nest");
        forest(&conn, &run, n, posts, comments);
        let counting = Counting::new(&conn);
        let tree: Tree = Author::find()
            .filter(AuthorColumn::Name.like(format!("{run}-%")))
            .order_by_asc(AuthorColumn::Id)
            .all_with(
                &counting,
                // Each level in id order, asked for: a loader keeps the server's order.
                many::<Post>()
                    .query(|q| q.order_by_asc(PostColumn::Id))
                    .with(many::<Comment>().query(|q| q.order_by_desc(CommentColumn::Id))),
            )
            .unwrap();
        assert_eq!(
            counting.take(),
            3,
            "authors, posts, comments: one query each for {n} authors"
        );
        assert_eq!(tree.len(), n);
        for (a, (author, posts_of)) in tree.iter().enumerate() {
            assert_eq!(author.name, format!("{run}-{a}"));
            assert_eq!(posts_of.len(), posts);
            for (p, (post, comments_of)) in posts_of.iter().enumerate() {
                assert_eq!(post.title, format!("{run}-{a}-{p}"));
                assert_eq!(post.author_id, author.id);
                let bodies: Vec<String> = comments_of.iter().map(|c| c.body.clone()).collect();
                let expected: Vec<String> = (0..comments)
                    .rev()
                    .map(|c| format!("{run}-{a}-{p}-{c}"))
                    .collect();
                assert_eq!(bodies, expected);
            }
        }
    }
}

#[test]
fn nested_loading_with_siblings_and_belongs_to_levels() {
    let conn = connect();
    let run = unique_name("rel_sib");
    let authors = forest(&conn, &run, 3, 2, 1);
    profile(&conn, &authors[2], "third");
    let counting = Counting::new(&conn);
    // Profile and posts side by side; each post's comments with their author (belongs_to).
    type Signed = Vec<(Post, Vec<(Comment, Option<Author>)>)>;
    let tree: Vec<(Author, (Option<Profile>, Signed))> = load(
        &counting,
        authors.clone(),
        (
            one::<Profile>(),
            many::<Post>().with(many::<Comment>().with(one::<Author>())),
        ),
    )
    .unwrap();
    assert_eq!(counting.take(), 4, "profiles, posts, comments, authors");
    assert_eq!(tree[2].1 .0.as_ref().map(|p| p.bio.as_str()), Some("third"));
    assert!(tree[0].1 .0.is_none());
    for (author, (_, posts)) in &tree {
        for (_, comments) in posts {
            assert_eq!(comments.len(), 1);
            assert_eq!(comments[0].1.as_ref(), Some(author));
        }
    }
    // A filtered level.
    let only_first = load(
        &counting,
        authors,
        many::<Post>().filter(PostColumn::Title.like("%-0")),
    )
    .unwrap();
    assert_eq!(counting.take(), 1);
    assert!(only_first.iter().all(|(_, p)| p.len() == 1));
}

#[test]
fn nested_loading_with_no_children_stops_early() {
    let conn = connect();
    let run = unique_name("rel_empty");
    let authors = forest(&conn, &run, 3, 0, 0);
    let counting = Counting::new(&conn);
    let tree = load(
        &counting,
        authors.clone(),
        many::<Post>().with(many::<Comment>()),
    )
    .unwrap();
    // Posts were looked up (none found); there were no posts to find comments for.
    assert_eq!(counting.take(), 1);
    assert_eq!(tree.len(), 3);
    assert!(tree.iter().all(|(_, posts)| posts.is_empty()));

    // No parents at all: nothing is sent.
    let empty: Tree = load(
        &counting,
        Vec::new(),
        many::<Post>().with(many::<Comment>()),
    )
    .unwrap();
    assert!(empty.is_empty());
    assert_eq!(counting.take(), 0);
}

#[test]
fn loaders_skip_soft_deleted_children() {
    let conn = connect();
    let run = unique_name("rel_soft");
    let authors = forest(&conn, &run, 2, 3, 1);
    let posts_of_first = authors[0]
        .find_related::<Post>()
        .order_by_asc(PostColumn::Id)
        .all(&conn)
        .unwrap();
    assert_eq!(posts_of_first.len(), 3);
    posts_of_first[1].delete(&conn).unwrap();

    let loaded = load_many::<Author, Post, _>(&conn, authors.clone()).unwrap();
    assert_eq!(
        titles(&loaded[0].1),
        [format!("{run}-0-0"), format!("{run}-0-2")]
    );
    assert_eq!(loaded[1].1.len(), 3);
    // find_related hides it too, unless asked.
    assert_eq!(authors[0].find_related::<Post>().count(&conn).unwrap(), 2);
    assert_eq!(
        authors[0]
            .find_related::<Post>()
            .with_deleted()
            .count(&conn)
            .unwrap(),
        3
    );
    // A loader can opt in.
    let all = load(&conn, authors.clone(), many::<Post>().with_deleted()).unwrap();
    assert_eq!(all[0].1.len(), 3);
    // The deleted post's comments are unreachable through the tree.
    let tree = load(&conn, authors, many::<Post>().with(many::<Comment>())).unwrap();
    let comments: usize = tree[0].1.iter().map(|(_, c)| c.len()).sum();
    assert_eq!(comments, 2);
    // Restored, it is back.
    posts_of_first[1].restore(&conn).unwrap();
    let again = load_many::<Author, Post, _>(&conn, authors_of(&conn, &run)).unwrap();
    assert_eq!(again[0].1.len(), 3);
}
