//! Parsed documents by text: a service sends the same few documents over and over, and a
//! parse on a coroutine costs a fresh stack ([`parse`]), so each text is parsed once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::ExecutableDocument;
use lifeguard_core::rt::lock;

/// Documents kept at most; past it the cache starts over (a bound, not a policy: a
/// service's set of documents is small, a hostile client's is not).
const KEPT: usize = 512;
/// Longer documents are parsed every time (they are rare and each would pin its text).
const LONGEST: usize = 16 * 1024;

/// The parsed documents of one schema.
#[derive(Default)]
pub(crate) struct Documents {
    parsed: Mutex<HashMap<Arc<str>, ExecutableDocument>>,
}

impl Documents {
    /// `query` parsed, from the cache when it was parsed before.
    pub(crate) fn parse(
        &self,
        query: &str,
    ) -> Result<ExecutableDocument, async_graphql::parser::Error> {
        if let Some(doc) = lock(&self.parsed).get(query) {
            return Ok(doc.clone());
        }
        let doc = parse(query)?;
        if query.len() <= LONGEST {
            let mut parsed = lock(&self.parsed);
            if parsed.len() >= KEPT {
                parsed.clear();
            }
            parsed.insert(Arc::from(query), doc.clone());
        }
        Ok(doc)
    }
}

/// Parses `query` on a stack whose bounds the parser knows.
///
/// The parser (pest) recurses per nesting level and guards itself by the free stack it
/// reads off the worker *thread's* bounds; on a coroutine's stack, elsewhere in memory,
/// that reading is meaningless (no room at all, refusing every document, or unbounded
/// room, guarding nothing; and a debug build's frames overflow a 512 KiB coroutine stack
/// at about 40 levels). So on a coroutine the parse runs on a fresh 1 MiB stack (mapped
/// lazily), where the guard works; the nesting pre-scan bounds it too.
fn parse(query: &str) -> Result<ExecutableDocument, async_graphql::parser::Error> {
    const PARSE_STACK: usize = 1024 * 1024;
    if may::coroutine::is_coroutine() {
        stacker::grow(PARSE_STACK, || async_graphql::parser::parse_query(query))
    } else {
        stacker::maybe_grow(128 * 1024, PARSE_STACK, || {
            async_graphql::parser::parse_query(query)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_is_parsed_once_and_errors_are_not_kept() {
        let docs = Documents::default();
        assert!(docs.parse("{ a }").is_ok());
        assert!(docs.parse("{ a }").is_ok());
        assert!(docs.parse("{ a").is_err());
        assert_eq!(lock(&docs.parsed).len(), 1);
        for i in 0..KEPT + 1 {
            assert!(docs.parse(&format!("{{ a{i} }}")).is_ok());
        }
        assert!(lock(&docs.parsed).len() <= KEPT, "the cache is bounded");
    }
}
