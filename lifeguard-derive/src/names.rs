//! Identifier quoting, variant naming and the Rust-to-PostgreSQL type map.

use syn::{GenericArgument, PathArguments, Type};

/// Quotes an identifier for PostgreSQL, doubling embedded quotes (as `query::quote` does).
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// `created_at` -> `CreatedAt`; the rest of each part keeps its case (`user_ID` -> `UserID`).
pub fn camel_case(field: &str) -> String {
    field
        .split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
                None => String::new(),
            }
        })
        .collect()
}

/// Strips invisible groups and parentheses macros may wrap a type in.
fn peel(ty: &Type) -> &Type {
    match ty {
        Type::Group(g) => peel(&g.elem),
        Type::Paren(p) => peel(&p.elem),
        other => other,
    }
}

/// The last path segment's name and its type arguments, for `a::b::Name<T, U>`.
fn last_segment(ty: &Type) -> Option<(String, Vec<&Type>)> {
    let Type::Path(p) = peel(ty) else {
        return None;
    };
    if p.qself.is_some() {
        return None;
    }
    let seg = p.path.segments.last()?;
    let args = match &seg.arguments {
        PathArguments::AngleBracketed(a) => a
            .args
            .iter()
            .filter_map(|arg| match arg {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Some((seg.ident.to_string(), args))
}

/// `Option<T>`'s `T`, judged by the syntax (`Option`, `std::option::Option`, ...).
pub fn option_inner(ty: &Type) -> Option<&Type> {
    match last_segment(ty)? {
        (name, args) if name == "Option" && args.len() == 1 => Some(args[0]),
        _ => None,
    }
}

/// Whether the type is a chrono timestamp (`DateTime<_>`, `NaiveDateTime`), possibly in
/// an `Option`, judged by the last path segment.
pub fn is_timestamp(ty: &Type) -> bool {
    let ty = option_inner(ty).unwrap_or(ty);
    matches!(last_segment(ty), Some((name, _)) if name == "DateTime" || name == "NaiveDateTime")
}

/// The PostgreSQL type for DDL, from the last path segment of the Rust type; `text` when
/// the type is not one the map knows.
pub fn sql_type(ty: &Type) -> String {
    let Some((name, args)) = last_segment(ty) else {
        return "text".into();
    };
    let simple = match name.as_str() {
        "i8" => "\"char\"",
        "i16" => "smallint",
        "i32" => "integer",
        "i64" => "bigint",
        "u32" => "oid",
        "f32" => "real",
        "f64" => "double precision",
        "bool" => "boolean",
        "String" | "str" => "text",
        "Uuid" => "uuid",
        "NaiveDate" => "date",
        "NaiveTime" => "time",
        "NaiveDateTime" => "timestamp",
        "DateTime" | "SystemTime" => "timestamptz",
        "Decimal" => "numeric",
        "Value" | "Json" => "jsonb",
        "IpAddr" => "inet",
        "Option" | "Box" if args.len() == 1 => return sql_type(args[0]),
        "Vec" if args.len() == 1 => {
            if last_segment(args[0]).is_some_and(|(n, _)| n == "u8") {
                return "bytea".into();
            }
            let elem = option_inner(args[0]).unwrap_or(args[0]);
            let inner = sql_type(elem);
            // PostgreSQL arrays are one type whatever their dimensions.
            return if inner.ends_with("[]") {
                inner
            } else {
                format!("{inner}[]")
            };
        }
        _ => "text",
    };
    simple.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(s: &str) -> Type {
        syn::parse_str(s).unwrap()
    }

    #[test]
    fn maps_types() {
        let cases = [
            ("i64", "bigint"),
            ("Option<i32>", "integer"),
            ("std::option::Option<String>", "text"),
            ("Vec<u8>", "bytea"),
            ("Option<Vec<u8>>", "bytea"),
            ("Vec<String>", "text[]"),
            ("Vec<Option<i16>>", "smallint[]"),
            ("Vec<Vec<f64>>", "double precision[]"),
            ("chrono::DateTime<chrono::Utc>", "timestamptz"),
            ("NaiveDateTime", "timestamp"),
            ("rust_decimal::Decimal", "numeric"),
            ("serde_json::Value", "jsonb"),
            ("Json<Settings>", "jsonb"),
            ("uuid::Uuid", "uuid"),
            ("MyEnum", "text"),
            ("[u8; 4]", "text"),
        ];
        for (rust, pg) in cases {
            assert_eq!(sql_type(&ty(rust)), pg, "{rust}");
        }
    }

    #[test]
    fn timestamps() {
        assert!(is_timestamp(&ty("chrono::DateTime<chrono::Utc>")));
        assert!(is_timestamp(&ty("Option<NaiveDateTime>")));
        assert!(!is_timestamp(&ty("String")));
        assert!(!is_timestamp(&ty("NaiveDate")));
    }

    #[test]
    fn options() {
        assert!(option_inner(&ty("Option<i32>")).is_some());
        assert!(option_inner(&ty("core::option::Option<i32>")).is_some());
        assert!(option_inner(&ty("Vec<i32>")).is_none());
        assert!(option_inner(&ty("Option")).is_none());
    }

    #[test]
    fn names() {
        assert_eq!(camel_case("created_at"), "CreatedAt");
        assert_eq!(camel_case("id"), "Id");
        assert_eq!(camel_case("_private__x"), "PrivateX");
        assert_eq!(camel_case("user_ID"), "UserID");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
