//! Encoding a statement's runs in the extended protocol, in either preparation mode.
//!
//! A named statement (the default) was parsed once on this connection: a run is `Bind` +
//! `Execute`. The unnamed statement ([`Prepare::Unnamed`](super::Prepare::Unnamed), for
//! PgBouncer in transaction mode) lives only as long as the request that parsed it, since
//! the next request may reach another server connection: every request is `Parse` (with
//! the parameter types) + `Bind` + `Describe` of the portal + `Execute`, ending in the
//! caller's `Sync`, so the whole request runs on whichever server connection it reaches.
//!
//! The parameter types come from a description of the SQL text (`Parse` + `Describe` of the
//! statement in one request of its own, cached per connection like named statements). They
//! are sent in every `Parse`, so the server never infers types other than those the values
//! were encoded for: a description gone stale (the schema changed) cannot make a value be
//! read as another type; the server coerces it or reports a type error, and the caller then
//! describes the SQL again. The row description is not taken from the cache: each request
//! describes its portal, so rows always decode with the columns that produced them.

use std::sync::Arc;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::RowDescriptionBody;
use postgres_protocol::message::frontend::{self, BindError};
use postgres_types::Type;

use super::call::{malformed, unsendable_sql, Call, Params};
use super::statement::{Column, Statement};
use crate::error::{Error, Result};

/// Encodes one run of `stmt` per parameter set, without the closing `Sync`.
pub(crate) fn encode_runs(
    stmt: &Statement,
    batch: &[Params<'_>],
    buf: &mut BytesMut,
) -> Result<()> {
    let unnamed = stmt.is_unnamed();
    if unnamed {
        let types = stmt.params().iter().map(Type::oid);
        frontend::parse("", stmt.sql(), types, buf).map_err(unsendable_sql)?;
    }
    for (i, params) in batch.iter().enumerate() {
        encode_bind(stmt, params, buf)?;
        // Every portal of the batch has the same columns: the first one's description
        // decodes them all.
        if unnamed && i == 0 {
            frontend::describe(b'P', "", buf).map_err(unsendable_sql)?;
        }
        frontend::execute("", 0, buf).map_err(unsendable_sql)?;
    }
    Ok(())
}

/// Encodes a `Bind` of `params` to `stmt`, every value and result column in binary.
pub(crate) fn encode_bind(stmt: &Statement, params: Params<'_>, buf: &mut BytesMut) -> Result<()> {
    if params.len() != stmt.params().len() {
        return Err(Error::ParameterCount {
            expected: stmt.params().len(),
            given: params.len(),
        });
    }
    let mut failed_at = 0;
    let result = frontend::bind(
        "",
        stmt.name(),
        Some(1),
        params.iter().zip(stmt.params()).enumerate(),
        |(i, (param, ty)), buf| {
            failed_at = i;
            // A domain travels in its base type's format, and the Rust types know the base.
            let ty = base_type(ty);
            Ok(match param.to_sql_checked(ty, buf)? {
                postgres_types::IsNull::Yes => postgres_protocol::IsNull::Yes,
                postgres_types::IsNull::No => postgres_protocol::IsNull::No,
            })
        },
        Some(1),
        buf,
    );
    match result {
        Ok(()) => Ok(()),
        Err(BindError::Conversion(e)) => Err(Error::Encode {
            index: failed_at,
            pg_type: stmt.params()[failed_at].to_string(),
            source: e.into(),
        }),
        // Writing into a growable buffer fails only for a value past the protocol's
        // 2 GiB length field.
        Err(BindError::Serialization(e)) => Err(Error::Encode {
            index: failed_at,
            pg_type: stmt.params()[failed_at].to_string(),
            source: Arc::new(e),
        }),
    }
}

/// The type a value is encoded as: a domain's base type, else the type itself.
fn base_type(ty: &Type) -> &Type {
    match ty.kind() {
        postgres_types::Kind::Domain(base) => base_type(base),
        _ => ty,
    }
}

/// Whether a run of a described unnamed statement failed in a way a changed schema could
/// explain: the parameter types it was sent with no longer fit the SQL (SQLSTATE class 42:
/// a type mismatch, no operator or function for those types), or one of them no longer
/// exists (a dropped and recreated type: the server reports an internal `cache lookup
/// failed for type`). Only a hint: the caller describes the SQL again and retries only if
/// the types changed.
pub(crate) fn may_be_stale_description(e: &Error) -> bool {
    e.db_error().is_some_and(|db| {
        db.code.starts_with("42")
            // XX000, internal_error.
            || (db.code == "XX000"
                && db.message.starts_with("cache lookup failed for type"))
    })
}

impl Call<'_> {
    /// The columns of a portal's row description when they differ from those `stmt` was
    /// described with (the schema changed since), else `None`: the statement's own are
    /// reused, with nothing allocated.
    pub(crate) fn portal_columns(
        &self,
        stmt: &Statement,
        body: &RowDescriptionBody,
    ) -> Result<Option<Arc<[Column]>>> {
        let known = stmt.columns();
        let mut fields = body.fields();
        let mut n = 0;
        let mut same = true;
        while let Some(field) = fields.next().map_err(malformed)? {
            same &= known
                .get(n)
                .is_some_and(|c| c.name() == field.name() && c.type_().oid() == field.type_oid());
            n += 1;
        }
        if same && n == known.len() {
            return Ok(None);
        }
        let fields: Vec<(String, u32)> = body
            .fields()
            .map(|f| Ok((f.name().to_owned(), f.type_oid())))
            .collect()
            .map_err(malformed)?;
        // A type this connection has not met is looked up with a request of its own, which
        // must not carry this call's follow-up along.
        let lookup = Call {
            follow: None,
            ..*self
        };
        let columns = fields
            .into_iter()
            .map(|(name, oid)| Ok(Column::new(name, lookup.resolve_type(oid)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(columns.into()))
    }
}
