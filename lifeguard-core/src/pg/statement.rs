//! Prepared statements and the per-connection cache that keeps one per SQL text.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Weak};

use postgres_types::Type;

use super::pipeline::Shared;

/// A result column: its name and PostgreSQL type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    name: String,
    type_: Type,
}

impl Column {
    pub(crate) fn new(name: String, type_: Type) -> Column {
        Column { name, type_ }
    }

    /// The column's name (its alias, when the query gave one).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The column's PostgreSQL type.
    pub fn type_(&self) -> &Type {
        &self.type_
    }
}

/// A statement parsed by the server once and run many times.
///
/// Cheap to clone. The server-side statement is closed when the last clone drops (batched
/// with the connection's next request, so dropping never blocks).
///
/// On a connection in unnamed mode ([`Prepare::Unnamed`](super::Prepare::Unnamed)) it
/// holds the statement's description only: nothing stays on the server, and each run sends
/// the SQL again with the parameter types in the same request, so it works behind a
/// transaction-mode pooler.
#[derive(Clone)]
pub struct Statement(Arc<StatementInner>);

struct StatementInner {
    name: String,
    sql: String,
    params: Vec<Type>,
    columns: Arc<[Column]>,
    connection: Weak<Shared>,
}

impl Drop for StatementInner {
    fn drop(&mut self) {
        // The unnamed statement has nothing on the server to close.
        if self.name.is_empty() {
            return;
        }
        if let Some(shared) = self.connection.upgrade() {
            shared.defer_close(std::mem::take(&mut self.name));
        }
    }
}

impl fmt::Debug for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Statement")
            .field("name", &self.0.name)
            .field("params", &self.0.params)
            .field("columns", &self.0.columns)
            .finish()
    }
}

impl Statement {
    pub(crate) fn new(
        name: String,
        sql: &str,
        params: Vec<Type>,
        columns: Vec<Column>,
        connection: &Arc<Shared>,
    ) -> Statement {
        Statement(Arc::new(StatementInner {
            name,
            sql: sql.to_owned(),
            params,
            columns: columns.into(),
            connection: Arc::downgrade(connection),
        }))
    }

    pub(crate) fn name(&self) -> &str {
        &self.0.name
    }

    /// Whether this is a description for the unnamed statement
    /// ([`Prepare::Unnamed`](super::Prepare::Unnamed)): nothing is kept on the server, and
    /// every run parses the SQL again in its own request.
    pub(crate) fn is_unnamed(&self) -> bool {
        self.0.name.is_empty()
    }

    /// Whether this statement was prepared on the connection behind `shared`.
    pub(crate) fn belongs_to(&self, shared: &Arc<Shared>) -> bool {
        std::ptr::eq(self.0.connection.as_ptr(), Arc::as_ptr(shared))
    }

    /// The SQL text this statement was prepared from.
    pub fn sql(&self) -> &str {
        &self.0.sql
    }

    /// The parameter types the server inferred, in order.
    pub fn params(&self) -> &[Type] {
        &self.0.params
    }

    /// The result columns (empty for a statement that returns no rows).
    pub fn columns(&self) -> &[Column] {
        &self.0.columns
    }

    pub(crate) fn columns_arc(&self) -> &Arc<[Column]> {
        &self.0.columns
    }
}

/// A bounded map from SQL text to prepared statement, evicting the least recently used.
pub(crate) struct StatementCache {
    capacity: usize,
    tick: u64,
    entries: HashMap<String, (Statement, u64), BuildHasherDefault<SqlHasher>>,
}

/// The statement cache's hash, eight bytes per multiply. Every call hashes its SQL text,
/// and SipHash over the 2 KB text of a 100-row insert cost about a microsecond. The texts
/// come from the application's code rather than its users, and the map holds a few hundred
/// at most, so a keyed hash would defend against nothing here.
#[derive(Default)]
struct SqlHasher(u64);

impl SqlHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for SqlHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            self.add(u64::from_le_bytes(w));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl StatementCache {
    pub(crate) fn new(capacity: usize) -> StatementCache {
        StatementCache {
            capacity,
            tick: 0,
            entries: HashMap::default(),
        }
    }

    pub(crate) fn get(&mut self, sql: &str) -> Option<Statement> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(sql).map(|(stmt, used)| {
            *used = tick;
            stmt.clone()
        })
    }

    /// Adds `stmt` unless another caller cached the same SQL first; returns the cached one.
    pub(crate) fn insert(&mut self, sql: &str, stmt: Statement) -> Statement {
        if let Some(existing) = self.get(sql) {
            return existing;
        }
        if self.capacity == 0 {
            return stmt;
        }
        if self.entries.len() >= self.capacity {
            // Linear scan: eviction is rare next to lookups, and capacity is a few hundred.
            if let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        self.tick += 1;
        self.entries
            .insert(sql.to_owned(), (stmt.clone(), self.tick));
        stmt
    }

    pub(crate) fn remove(&mut self, sql: &str) {
        self.entries.remove(sql);
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}
