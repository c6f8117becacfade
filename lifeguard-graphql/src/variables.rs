//! Variables a request leaves out.
//!
//! The GraphQL spec coerces an absent variable (nullable, without a default) to an absent
//! argument or input field, and to `null` only as a list item. The engine reads it as
//! `null` everywhere, so `filter: {country: {eq: $c}}` without `$c` would select the rows
//! whose country is NULL and `data: {country: $c}` would clear the column. Before the
//! engine sees the document, [`drop_absent`] removes every use of such a variable (an
//! argument or an input field left out, a list item made `null`) and its definition, which
//! the engine would otherwise refuse as unused.

use std::collections::HashSet;

use async_graphql::parser::types::{
    Directive, DocumentOperations, ExecutableDocument, Field, OperationDefinition, Selection,
    SelectionSet, VariableDefinition,
};
use async_graphql::{Name, Positioned, Variables};
// The document's values, variables not yet substituted (the crate's `Value` is the const kind).
use async_graphql_value::Value;

/// Removes from `doc` the variables that `given` leaves out and that are nullable without a
/// default in every operation defining them; others are left for the engine to judge.
pub(crate) fn drop_absent(doc: &mut ExecutableDocument, given: &Variables) {
    let mut absent = HashSet::new();
    let mut kept = HashSet::new();
    for (_, op) in doc.operations.iter() {
        for def in &op.node.variable_definitions {
            let name = &def.node.name.node;
            if given.contains_key(name) {
                continue;
            }
            if left_out(&def.node) {
                absent.insert(name.clone());
            } else {
                kept.insert(name.clone());
            }
        }
    }
    absent.retain(|n| !kept.contains(n));
    if absent.is_empty() {
        return;
    }
    let operations: Vec<&mut Positioned<OperationDefinition>> = match &mut doc.operations {
        DocumentOperations::Single(op) => vec![op],
        DocumentOperations::Multiple(ops) => ops.values_mut().collect(),
    };
    for op in operations {
        op.node
            .variable_definitions
            .retain(|def| !absent.contains(&def.node.name.node));
        directives(&mut op.node.directives, &absent);
        selections(&mut op.node.selection_set.node, &absent);
    }
    for fragment in doc.fragments.values_mut() {
        directives(&mut fragment.node.directives, &absent);
        selections(&mut fragment.node.selection_set.node, &absent);
    }
}

/// A definition whose absence the spec reads as "no value" rather than `null` or an error.
fn left_out(def: &VariableDefinition) -> bool {
    def.var_type.node.nullable && def.default_value.is_none()
}

fn selections(set: &mut SelectionSet, absent: &HashSet<Name>) {
    for item in &mut set.items {
        match &mut item.node {
            Selection::Field(f) => field(&mut f.node, absent),
            Selection::FragmentSpread(s) => directives(&mut s.node.directives, absent),
            Selection::InlineFragment(i) => {
                directives(&mut i.node.directives, absent);
                selections(&mut i.node.selection_set.node, absent);
            }
        }
    }
}

fn field(f: &mut Field, absent: &HashSet<Name>) {
    arguments(&mut f.arguments, absent);
    directives(&mut f.directives, absent);
    selections(&mut f.selection_set.node, absent);
}

fn directives(list: &mut [Positioned<Directive>], absent: &HashSet<Name>) {
    for d in list {
        arguments(&mut d.node.arguments, absent);
    }
}

fn arguments(args: &mut Vec<(Positioned<Name>, Positioned<Value>)>, absent: &HashSet<Name>) {
    args.retain(|(_, v)| !is_absent(&v.node, absent));
    for (_, v) in args {
        value(&mut v.node, absent);
    }
}

fn value(v: &mut Value, absent: &HashSet<Name>) {
    match v {
        Value::Object(fields) => {
            fields.retain(|_, v| !is_absent(v, absent));
            fields.values_mut().for_each(|v| value(v, absent));
        }
        Value::List(items) => {
            for item in items {
                if is_absent(item, absent) {
                    *item = Value::Null;
                } else {
                    value(item, absent);
                }
            }
        }
        _ => {}
    }
}

fn is_absent(v: &Value, absent: &HashSet<Name>) -> bool {
    matches!(v, Value::Variable(name) if absent.contains(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(query: &str, given: serde_json::Value) -> String {
        let mut doc = async_graphql::parser::parse_query(query).expect("parses");
        drop_absent(&mut doc, &Variables::from_json(given));
        format!("{:?}", doc)
    }

    #[test]
    fn absent_uses_go_and_given_or_defaulted_ones_stay() {
        let q = "query($a: String, $b: String, $c: String = \"x\", $d: String!) {
            f(x: $a, y: {eq: $a, ne: $b}, z: [$a, $c], w: $d) }";
        let out = rewritten(q, serde_json::json!({ "b": "B" }));
        assert!(!out.contains("Variable(Name(\"a\"))"), "{out}");
        assert!(
            !out.contains("name: Name(\"a\")"),
            "the definition goes: {out}"
        );
        assert!(out.contains("Variable(Name(\"b\"))"), "{out}");
        assert!(out.contains("Variable(Name(\"c\"))"), "{out}");
        assert!(out.contains("Variable(Name(\"d\"))"), "{out}");
        assert!(out.contains("List([Null, Variable(Name(\"c\"))])"), "{out}");
    }
}
