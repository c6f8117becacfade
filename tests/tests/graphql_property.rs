//! Generated documents through `Schema::execute` against the real primary: random nesting
//! of relations, filters, orders, limits (sometimes of the wrong type, sometimes past the
//! caps), aliases and variables, and random garbage. Whatever the document: no panic, a
//! spec-shaped response (`data` and/or `errors`, each error with a `message`), and when
//! nothing failed, no more statements than one per root field plus one per relation field.
//!
//! It runs on the stack the example service gives a request coroutine in a debug build
//! (1 MiB); the tests' default 256 KiB overflows in debug from about depth 8. Nesting stays
//! at three relation levels.

use lifeguard_graphql::{Request, Variables};
use lifeguard_tests::graphql::{connect, schema, seed};
use lifeguard_tests::orm::Counting;
use lifeguard_tests::{pg, unique_name};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};

#[derive(Clone, Copy)]
enum Kind {
    Int,
    BigInt,
    Text,
}

struct Model {
    root: &'static str,
    scalars: &'static [&'static str],
    /// (field, target model, is a list)
    relations: &'static [(&'static str, usize, bool)],
    filters: &'static [(&'static str, Kind)],
}

const AUTHOR: usize = 0;
const BOOK: usize = 1;
const REVIEW: usize = 2;
const PROFILE: usize = 3;
const TAG: usize = 4;

const MODELS: [Model; 5] = [
    Model {
        root: "authors",
        scalars: &["id", "name", "run", "country", "born"],
        relations: &[("books", BOOK, true), ("profile", PROFILE, false)],
        filters: &[
            ("id", Kind::BigInt),
            ("name", Kind::Text),
            ("country", Kind::Text),
        ],
    },
    Model {
        root: "books",
        scalars: &["id", "authorId", "title", "year", "price", "labels", "meta"],
        relations: &[
            ("author", AUTHOR, false),
            ("reviews", REVIEW, true),
            ("tags", TAG, true),
        ],
        filters: &[
            ("id", Kind::BigInt),
            ("title", Kind::Text),
            ("year", Kind::Int),
        ],
    },
    Model {
        root: "reviews",
        scalars: &["id", "bookId", "stars", "body"],
        relations: &[("book", BOOK, false)],
        filters: &[("stars", Kind::Int), ("body", Kind::Text)],
    },
    Model {
        root: "profiles",
        scalars: &["id", "bio"],
        relations: &[("author", AUTHOR, false)],
        filters: &[("bio", Kind::Text)],
    },
    Model {
        root: "tags",
        scalars: &["id", "name"],
        relations: &[("books", BOOK, true)],
        filters: &[("name", Kind::Text)],
    },
];

const OPS: [&str; 12] = [
    "eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "like", "ilike", "isNull", "nope",
];
const DIRECTIONS: [&str; 4] = ["ASC", "DESC_NULLS_LAST", "ASC_NULLS_FIRST", "SIDEWAYS"];

/// A deterministic source of choices, so one `u64` from proptest is one document; a
/// hostile document (a third) has wrong types, unknown names and past-the-cap values.
struct Dice(u64, bool);

impl Dice {
    fn roll(&mut self, n: usize) -> usize {
        // xorshift64*: plenty for picking among a handful of options.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.roll(100) < percent
    }

    /// `percent` of the time, in a hostile document only.
    fn wrong(&mut self, percent: usize) -> bool {
        self.1 && self.chance(percent)
    }
}

/// One generated operation: its text, its variables, and the most statements it may send.
struct Case {
    query: String,
    variables: Value,
    most_statements: usize,
}

fn value(d: &mut Dice, kind: Kind, list: bool) -> String {
    if d.wrong(25) {
        // The wrong type.
        return ["\"x\"", "true", "1.5", "{a: 1}", "null", "[[1]]"][d.roll(6)].into();
    }
    let one = |d: &mut Dice| match kind {
        Kind::Int => format!("{}", d.roll(2100) as i64 - 50),
        Kind::BigInt => format!("{}", d.roll(1_000_000)),
        Kind::Text => ["\"a%\"", "\"%book 1%\"", "\"\"", "\"NZ\"", "\"\\u00e9\""][d.roll(5)].into(),
    };
    if list {
        let n = d.roll(4);
        let items: Vec<String> = (0..n).map(|_| one(d)).collect();
        format!("[{}]", items.join(", "))
    } else {
        one(d)
    }
}

fn filter(d: &mut Dice, m: &Model, depth: usize) -> String {
    if depth < 2 && d.chance(20) {
        let join = ["and", "or"][d.roll(2)];
        return format!(
            "{{{join}: [{}, {}]}}",
            filter(d, m, depth + 1),
            filter(d, m, depth + 1)
        );
    }
    if depth < 2 && d.chance(10) {
        return format!("{{not: {}}}", filter(d, m, depth + 1));
    }
    let (field, kind) = m.filters[d.roll(m.filters.len())];
    let op = if d.wrong(20) {
        OPS[d.roll(OPS.len())]
    } else {
        match kind {
            Kind::Text => OPS[d.roll(OPS.len() - 1)],
            _ => OPS[[0, 1, 2, 3, 4, 5, 6, 7, 10][d.roll(9)]],
        }
    };
    let v = match op {
        "isNull" => ["true", "false", "1"][d.roll(3)].to_string(),
        "in" | "nin" => value(d, kind, true),
        _ => value(d, kind, false),
    };
    format!("{{{field}: {{{op}: {v}}}}}")
}

/// `(arguments, uses $lim)` of a list field.
fn arguments(d: &mut Dice, m: &Model, root: bool) -> (String, bool) {
    let mut args = Vec::new();
    let mut uses_lim = false;
    if root && m.root == "authors" && d.chance(85) {
        args.push("filter: {run: {eq: $run}}".to_string());
    } else if d.chance(40) {
        args.push(format!("filter: {}", filter(d, m, 0)));
    }
    if d.chance(30) {
        let field = if d.wrong(20) {
            m.scalars[d.roll(m.scalars.len())]
        } else {
            m.filters[d.roll(m.filters.len())].0
        };
        let dir = if d.wrong(30) {
            DIRECTIONS[d.roll(DIRECTIONS.len())]
        } else {
            DIRECTIONS[d.roll(DIRECTIONS.len() - 1)]
        };
        args.push(format!("orderBy: [{{{field}: {dir}}}]"));
    }
    match d.roll(10) {
        0 => {
            args.push("limit: $lim".into());
            uses_lim = true;
        }
        1 if d.wrong(100) => {
            args.push(["limit: 5000", "limit: -1", "limit: \"3\""][d.roll(3)].into())
        }
        2..=5 => args.push(format!("limit: {}", d.roll(6))),
        _ => {}
    }
    if d.chance(15) {
        args.push(format!("offset: {}", d.roll(4)));
    }
    if args.is_empty() {
        (String::new(), uses_lim)
    } else {
        (format!("({})", args.join(", ")), uses_lim)
    }
}

/// A selection of model `m`; returns it, the relation fields it holds, and whether `$lim`
/// is used.
fn selection(d: &mut Dice, m: usize, levels: usize) -> (String, usize, bool) {
    let model = &MODELS[m];
    let mut parts = Vec::new();
    let mut relations = 0;
    let mut uses_lim = false;
    for _ in 0..=d.roll(3) {
        let f = model.scalars[d.roll(model.scalars.len())];
        if d.chance(20) {
            parts.push(format!("x{}: {f}", d.roll(5)));
        } else {
            parts.push(f.to_string());
        }
    }
    if d.wrong(10) {
        parts.push("unknownField".into());
    }
    if levels > 0 {
        for _ in 0..d.roll(3) {
            let (field, target, many) = model.relations[d.roll(model.relations.len())];
            let (args, lim) = if many {
                arguments(d, &MODELS[target], false)
            } else {
                (String::new(), false)
            };
            let (sub, rels, sub_lim) = selection(d, target, levels - 1);
            let alias = format!("r{}: ", d.roll(1000));
            parts.push(format!("{alias}{field}{args} {{ {sub} }}"));
            relations += 1 + rels;
            uses_lim |= lim || sub_lim;
        }
    }
    (parts.join(" "), relations, uses_lim)
}

fn case(seed: u64, run: &str) -> Case {
    let mut d = Dice(seed | 1, seed.is_multiple_of(3));
    let mut fields = Vec::new();
    let mut most = 0;
    let mut uses_lim = false;
    for i in 0..=d.roll(2) {
        let m = d.roll(MODELS.len());
        let (args, lim) = arguments(&mut d, &MODELS[m], true);
        let levels = d.roll(4);
        let (sub, rels, sub_lim) = selection(&mut d, m, levels);
        fields.push(format!("f{i}: {}{args} {{ {sub} }}", MODELS[m].root));
        most += 1 + rels;
        uses_lim |= lim || sub_lim;
    }
    let lim = match d.roll(4) {
        0 if d.wrong(100) => json!("four"),
        1 if d.wrong(100) => json!(2.5),
        _ => json!(d.roll(5)),
    };
    let run_value = if d.wrong(20) { json!(7) } else { json!(run) };
    let body = fields.join(" ");
    let mut declared = Vec::new();
    if body.contains("$run") || d.wrong(20) {
        declared.push("$run: String!");
    }
    if uses_lim || d.wrong(20) {
        declared.push("$lim: Int");
    }
    let head = if declared.is_empty() {
        String::new()
    } else {
        format!("({})", declared.join(", "))
    };
    Case {
        query: format!("query{head} {{ {body} }}"),
        variables: json!({ "run": run_value, "lim": lim }),
        most_statements: most,
    }
}

/// The response is shaped as the GraphQL specification says.
fn spec_shaped(out: &Value) -> Result<bool, String> {
    let o = out.as_object().ok_or("not an object")?;
    if let Some(k) = o
        .keys()
        .find(|k| !["data", "errors", "extensions"].contains(&k.as_str()))
    {
        return Err(format!("unexpected key {k}"));
    }
    let errors = match o.get("errors") {
        None => false,
        Some(Value::Array(e)) if !e.is_empty() => {
            for e in e {
                if e["message"].as_str().is_none_or(str::is_empty) {
                    return Err(format!("an error without a message: {e}"));
                }
            }
            true
        }
        Some(e) => return Err(format!("errors is not a non-empty list: {e}")),
    };
    match o.get("data") {
        Some(Value::Object(_)) => {}
        Some(Value::Null) | None if errors => {}
        d => return Err(format!("data {d:?} without errors")),
    }
    Ok(errors)
}

#[test]
fn generated_documents_answer_in_shape_and_within_the_statement_bound() {
    let run = unique_name("gql_prop");
    // The example service's request stack in a debug build (example-service/src/main.rs).
    pg::in_coroutine_sized(
        Some(0x20000),
        std::time::Duration::from_secs(60),
        move || {
            let conn = connect();
            seed(&conn, &run, 3, 2, 2);
            let schema = schema();
            let db = Counting::new(&conn);
            let mut runner = TestRunner::new(Config {
                cases: 64,
                failure_persistence: None,
                ..Config::default()
            });
            // Without these counts the property could hold on documents that all fail.
            let (answered, nested) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
            let garbage = "[{}()\\[\\]a-z$:!@ ,.\"#0-9]{0,120}";
            let strategy = (any::<u64>(), proptest::option::weighted(0.2, garbage));
            let result = runner.run(&strategy, |(seed, junk)| {
                let (query, variables, most) = match junk {
                    Some(text) => (text, json!({}), usize::MAX),
                    None => {
                        let c = case(seed, &run);
                        (c.query, c.variables, c.most_statements)
                    }
                };
                db.take();
                let request =
                    Request::new(query.clone()).variables(Variables::from_json(variables));
                let response = schema.execute(&db, request);
                let out = serde_json::to_value(&response)
                    .map_err(|e| TestCaseError::fail(format!("{e}: {query}")))?;
                let failed = spec_shaped(&out)
                    .map_err(|e| TestCaseError::fail(format!("{e}: {query}\n{out}")))?;
                let sent = db.take();
                if !failed {
                    answered.set(answered.get() + 1);
                    if sent > 1 {
                        nested.set(nested.get() + 1);
                    }
                }
                if !failed && sent > most {
                    return Err(TestCaseError::fail(format!(
                        "{sent} statements, at most {most} expected: {query}\n{:#?}",
                        db.sent()
                    )));
                }
                Ok(())
            });
            if let Err(e) = result {
                panic!("{e}");
            }
            let (answered, nested) = (answered.get(), nested.get());
            assert!(
                answered >= 8 && nested >= 4,
                "only {answered} of 64 documents answered without errors, {nested} with relations"
            );
        },
    );
}
