//! A `#[derive(LifeEnum)]` column as a GraphQL enum type, whether the column stores the
//! label (text, native enums) or an integer: the schema shows the variants' GraphQL forms
//! either way, and the stored form appears only in SQL.

use async_graphql::Value;
use lifeguard_core::model::EnumVariant;

use crate::column::Kind;

/// The enum type of one column.
#[derive(Debug, Clone)]
pub(crate) struct Enumeration {
    /// The GraphQL type name (`BookStatus`).
    pub name: String,
    /// Each variant with its GraphQL value name, in declaration order.
    values: Vec<(&'static str, &'static EnumVariant)>,
}

impl Enumeration {
    /// The enum type `name` for a column of `kind` holding `variants`, or `None` when the
    /// column cannot be shown as one (it then stays a scalar): a stored form that does not
    /// match the column's kind, a label whose form is not a GraphQL name, two variants
    /// sharing one, or no variant at all.
    pub(crate) fn of(
        name: String,
        kind: Kind,
        variants: &'static [EnumVariant],
    ) -> Option<Enumeration> {
        let stores_fit = match kind {
            Kind::Text => variants.iter().all(|v| v.stored.is_none()),
            Kind::Int2 | Kind::Int4 | Kind::Int8 => variants.iter().all(|v| v.stored.is_some()),
            _ => false,
        };
        let values: Vec<_> = variants
            .iter()
            .map(|v| v.name.map(|n| (n, v)))
            .collect::<Option<_>>()?;
        let distinct = values
            .iter()
            .enumerate()
            .all(|(i, (n, _))| values[..i].iter().all(|(m, _)| m != n));
        (stores_fit && distinct && !values.is_empty()).then_some(Enumeration { name, values })
    }

    /// The value names, in declaration order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.values.iter().map(|(n, _)| *n)
    }

    /// The variant a GraphQL enum value names (or a label given as a string).
    fn named(&self, v: &Value) -> Option<&'static EnumVariant> {
        let name = match v {
            Value::Enum(n) => n.as_str(),
            Value::String(s) => s.as_str(),
            _ => return None,
        };
        self.values
            .iter()
            .find(|(n, v)| *n == name || v.label == name)
            .map(|(_, v)| *v)
    }

    /// The value name of what the column holds (its label, or its integer: an int8 column
    /// reads as a string of digits).
    pub(crate) fn read(&self, v: &Value) -> Option<&'static str> {
        let integer = self.values.iter().any(|(_, v)| v.stored.is_some());
        let found = match v {
            Value::Number(n) => n.as_i64().and_then(|i| self.stored_as(i)),
            Value::String(s) if integer => s.parse().ok().and_then(|i| self.stored_as(i)),
            Value::String(s) => self.values.iter().find(|(_, v)| v.label == s.as_str()),
            _ => None,
        };
        found.map(|(n, _)| *n)
    }

    fn stored_as(&self, i: i64) -> Option<&(&'static str, &'static EnumVariant)> {
        self.values.iter().find(|(_, v)| v.stored == Some(i))
    }

    /// What the column stores for the variant `v` names, as a parameter value.
    pub(crate) fn stored(&self, v: &Value) -> Option<Value> {
        let variant = self.named(v)?;
        Some(match variant.stored {
            Some(n) => Value::from(n),
            None => Value::String(variant.label.to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &[EnumVariant] = &[
        EnumVariant {
            label: "in-stock",
            name: Some("IN_STOCK"),
            stored: None,
        },
        EnumVariant {
            label: "gone",
            name: Some("GONE"),
            stored: None,
        },
    ];
    const INT: &[EnumVariant] = &[
        EnumVariant {
            label: "low",
            name: Some("LOW"),
            stored: Some(1),
        },
        EnumVariant {
            label: "high",
            name: Some("HIGH"),
            stored: Some(9),
        },
    ];

    #[test]
    fn stored_form_must_fit_the_column() {
        assert!(Enumeration::of("T".into(), Kind::Text, TEXT).is_some());
        assert!(Enumeration::of("T".into(), Kind::Int2, INT).is_some());
        assert!(Enumeration::of("T".into(), Kind::Int2, TEXT).is_none());
        assert!(Enumeration::of("T".into(), Kind::Text, INT).is_none());
        assert!(Enumeration::of("T".into(), Kind::Float8, INT).is_none());
        assert!(Enumeration::of("T".into(), Kind::Text, &[]).is_none());
    }

    #[test]
    fn names_must_be_graphql_names_and_distinct() {
        // The derive leaves out a form that is not a GraphQL name.
        const DIGIT: &[EnumVariant] = &[EnumVariant {
            label: "1st",
            name: None,
            stored: None,
        }];
        const CLASH: &[EnumVariant] = &[
            EnumVariant {
                label: "a-b",
                name: Some("A_B"),
                stored: None,
            },
            EnumVariant {
                label: "a_b",
                name: Some("A_B"),
                stored: None,
            },
        ];
        assert!(Enumeration::of("T".into(), Kind::Text, DIGIT).is_none());
        assert!(Enumeration::of("T".into(), Kind::Text, CLASH).is_none());
    }

    #[test]
    fn values_map_between_graphql_and_storage() {
        let text = Enumeration::of("T".into(), Kind::Text, TEXT).expect("an enum");
        let int = Enumeration::of("T".into(), Kind::Int8, INT).expect("an enum");
        let high = Value::Enum(async_graphql::Name::new("HIGH"));
        assert_eq!(int.stored(&high), Some(Value::from(9)));
        assert_eq!(
            text.stored(&Value::String("in-stock".into())),
            Some(Value::String("in-stock".into()))
        );
        assert_eq!(int.read(&Value::String("9".into())), Some("HIGH"));
        assert_eq!(int.read(&Value::from(1)), Some("LOW"));
        assert_eq!(text.read(&Value::String("gone".into())), Some("GONE"));
        assert!(int.read(&Value::from(2)).is_none());
        assert!(text
            .stored(&Value::Enum(async_graphql::Name::new("HIGH")))
            .is_none());
    }
}
