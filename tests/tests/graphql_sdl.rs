//! The SDL of the fixture schema against the committed golden file
//! (`tests/golden/graphql.sdl`; `UPDATE_GOLDEN=1` rewrites it), and the shape every
//! generated schema must have: names GraphQL accepts, no empty object, input or enum.

use std::path::PathBuf;

use async_graphql::parser::parse_schema;
use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};
use lifeguard_tests::graphql::schema;

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden/graphql.sdl")
}

#[test]
fn the_sdl_matches_the_golden_file() {
    let sdl = schema().sdl();
    let path = golden_path();
    if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("golden dir");
        std::fs::write(&path, &sdl).expect("write the golden SDL");
        return;
    }
    let golden = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    if sdl != golden {
        let line = sdl
            .lines()
            .zip(golden.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| sdl.lines().count().min(golden.lines().count()));
        panic!(
            "the SDL differs from {} from line {} on:\n  now:    {:?}\n  golden: {:?}\n\
             (UPDATE_GOLDEN=1 rewrites the file when the change is intended)",
            path.display(),
            line + 1,
            sdl.lines().nth(line),
            golden.lines().nth(line)
        );
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[test]
fn every_generated_name_is_valid_and_no_type_is_empty() {
    let sdl = schema().sdl();
    let doc = parse_schema(&sdl).expect("the SDL parses");
    let mut names = Vec::new();
    let mut types = 0;
    for def in &doc.definitions {
        let TypeSystemDefinition::Type(t) = def else {
            continue;
        };
        types += 1;
        let t = &t.node;
        let name = t.name.node.as_str();
        names.push(name.to_owned());
        let members: Vec<String> = match &t.kind {
            TypeKind::Object(o) => {
                for f in &o.fields {
                    for a in &f.node.arguments {
                        names.push(a.node.name.node.to_string());
                    }
                }
                o.fields
                    .iter()
                    .map(|f| f.node.name.node.to_string())
                    .collect()
            }
            TypeKind::InputObject(i) => i
                .fields
                .iter()
                .map(|f| f.node.name.node.to_string())
                .collect(),
            TypeKind::Enum(e) => e
                .values
                .iter()
                .map(|v| v.node.value.node.to_string())
                .collect(),
            TypeKind::Interface(i) => i
                .fields
                .iter()
                .map(|f| f.node.name.node.to_string())
                .collect(),
            TypeKind::Union(u) => u.members.iter().map(|m| m.node.to_string()).collect(),
            TypeKind::Scalar => vec![name.to_owned()],
        };
        assert!(!members.is_empty(), "{name} has no fields or values");
        names.extend(members);
    }
    assert!(types > 20, "only {types} types in:\n{sdl}");
    for n in &names {
        assert!(valid_name(n), "{n:?} is not a GraphQL name");
        assert!(
            !n.starts_with("__"),
            "{n:?}: names starting with __ are reserved"
        );
    }
}

#[test]
fn the_name_check_rejects_what_graphql_rejects() {
    for bad in ["", "1a", "a-b", "a b", "é", "a.b"] {
        assert!(!valid_name(bad), "{bad:?}");
    }
    for good in ["_", "a", "A_1", "_x9"] {
        assert!(valid_name(good), "{good:?}");
    }
}
