//! How generated APIs expose a model: the hints of `#[lifeguard(graphql(...))]`.

/// How generated APIs (GraphQL) expose a model; from `#[lifeguard(graphql(...))]`.
///
/// ```
/// use lifeguard_core::model::{Exposure, LifeModel};
/// use lifeguard_core::LifeModel;
///
/// #[derive(Debug, Clone, LifeModel)]
/// #[lifeguard(table_name = "authors", graphql(name = "Writer", read_only))]
/// pub struct Author {
///     #[lifeguard(primary_key)]
///     pub id: i64,
///     #[lifeguard(column_name = "full_name", graphql(name = "fullName"))]
///     pub name: String,
///     #[lifeguard(graphql(skip))]
///     pub password_hash: String,
/// }
///
/// assert_eq!(Author::EXPOSURE.name, Some("Writer"));
/// assert!(Author::EXPOSURE.read_only);
/// assert_eq!(Author::EXPOSURE.field("full_name").and_then(|f| f.name), Some("fullName"));
/// assert!(Author::EXPOSURE.field("password_hash").is_some_and(|f| f.skip));
/// assert_eq!(Author::EXPOSURE.field("id"), None); // no hint: exposed as derived
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exposure {
    /// The type name to use instead of the model's (`graphql(name = "Writer")`).
    pub name: Option<&'static str>,
    /// No mutations for the model (`graphql(read_only)`).
    pub read_only: bool,
    /// The fields with a hint, in declaration order; a field not listed has none.
    pub fields: &'static [FieldExposure],
}

/// The hints of one field (`#[lifeguard(graphql(...))]` on it), keyed by its SQL column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldExposure {
    /// The SQL column name.
    pub column: &'static str,
    /// The field name to use instead of the derived one (`graphql(name = "fullName")`).
    pub name: Option<&'static str>,
    /// Not exposed at all (`graphql(skip)`).
    pub skip: bool,
    /// Exposed for reading, never taken as input (`graphql(read_only)`).
    pub read_only: bool,
}

impl Exposure {
    /// No hints: the model exposed under its own name, writable, every field as derived.
    pub const DEFAULT: Exposure = Exposure {
        name: None,
        read_only: false,
        fields: &[],
    };

    /// The hints of the field stored in `column` (SQL name), if it has any.
    pub fn field(&self, column: &str) -> Option<&FieldExposure> {
        self.fields.iter().find(|f| f.column == column)
    }
}

impl Default for Exposure {
    fn default() -> Self {
        Exposure::DEFAULT
    }
}
