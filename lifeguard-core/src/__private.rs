//! What the derives' generated code calls and nothing else should: not part of the API, and
//! free to change in any release. Generated code reaches every helper of its own through
//! `::lifeguard_core::__private`, and the public API (traits, `query`, `model::has_column`)
//! through its documented paths.
//!
//! The hook dispatch is re-exported from `model::behaviour`, where it stays beside
//! `RecordHooks` and the order table it runs; this is its only public path. The hidden
//! `LifeRecord` items (`__LIFEGUARD_HOOKS`, `__lifeguard_before`, `__lifeguard_after`) stay
//! on the trait, because the derive overrides them (see the comment there).

pub use bytes::BytesMut;

pub use crate::model::behaviour::{run_after, run_before, WriteDone, WriteOp};
pub use crate::model::input::probe::{
    not_a_label, not_a_label_kind, not_a_value, Fallback, NoEnum, Probe, ViaEnum, ViaFromInput,
};
pub use serde_json::Value as JsonValue;

use crate::pg::types::{IsNull, Kind, ToSql, Type, WrongType};

/// `LifeEnum`'s `accepts` for a label: a native enum, or any column `&str` encodes into.
pub fn accepts_label(ty: &Type) -> bool {
    matches!(ty.kind(), Kind::Enum(_)) || <&str as ToSql>::accepts(ty)
}

/// `LifeEnum`'s `ToSql::to_sql_checked`: refuses a type the value does not accept.
pub fn checked_to_sql<T: ToSql>(
    value: &T,
    ty: &Type,
    out: &mut BytesMut,
) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
    if !T::accepts(ty) {
        return Err(Box::new(WrongType::new::<T>(ty.clone())));
    }
    value.to_sql(ty, out)
}
