//! GraphQL generated from Lifeguard models: schema, parsing with `async-graphql-parser`,
//! validation, execution with batched loads and introspection. Built in the GraphQL issue.
