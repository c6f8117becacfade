//! The GraphQL request path up to the database: parsing, the absent-variable rewrite, the
//! limits, validation, planning and SQL generation of the test suite's schema (five models,
//! every relation kind, mutations). The input is a JSON request body
//! (`{"query": .., "variables": ..}`) or, when it is not one, the document itself.
//!
//! No database can run here, so the executor answers every statement with no rows; it checks
//! what the generated SQL must always hold: every `$n` placeholder has its parameter and
//! every parameter is used, so no input value ever reaches the SQL text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeguard_core::pg::{Params, Row, SimpleQueryMessage};
use lifeguard_core::{Executor, Result};
use lifeguard_graphql::{Request, Schema, Variables};

/// Answers every statement with nothing, after checking its placeholders.
struct NoRows;

fn check(sql: &str, params: usize) {
    let mut highest = 0usize;
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if let Ok(n) = rest[..digits].parse::<usize>() {
            assert!(n >= 1 && n <= params, "${n} with {params} parameters: {sql}");
            highest = highest.max(n);
        }
    }
    assert_eq!(highest, params, "unused parameters: {sql}");
}

impl Executor for NoRows {
    fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
        check(sql, params.len());
        Ok(Vec::new())
    }

    fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64> {
        check(sql, params.len());
        Ok(0)
    }

    fn simple_query(&self, _sql: &str) -> Result<Vec<SimpleQueryMessage>> {
        Ok(Vec::new())
    }

    fn query_pipelined(&self, sql: &str, batch: &[Params<'_>]) -> Result<Vec<Vec<Row>>> {
        for params in batch {
            check(sql, params.len());
        }
        Ok(batch.iter().map(|_| Vec::new()).collect())
    }
}

fn schema() -> &'static Schema {
    static SCHEMA: std::sync::OnceLock<Schema> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(lifeguard_tests::graphql::schema)
}

fn request(text: &str) -> Request {
    #[derive(serde::Deserialize)]
    struct Body {
        query: String,
        #[serde(default)]
        variables: Option<serde_json::Value>,
    }
    match serde_json::from_str::<Body>(text) {
        Ok(body) => {
            let request = Request::new(body.query);
            match body.variables {
                Some(v) => request.variables(Variables::from_json(v)),
                None => request,
            }
        }
        Err(_) => Request::new(text),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let response = schema().execute(&NoRows, request(text));
    // The response always serialises: the HTTP binding sends exactly this.
    serde_json::to_vec(&response).expect("a GraphQL response serialises");
});
