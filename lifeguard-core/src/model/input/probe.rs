//! The derive's autoref specialization: `(&&Probe::<T>::NEW).input_parse(v)` resolves to
//! [`ViaFromInput`] when `T: FromInput` (its impl is on `&Probe<T>`, found first) and to
//! [`Fallback`] otherwise, so a record compiles whatever its field types are. The derive
//! knows each field's concrete type, which is what makes the choice at compile time. The
//! same holds for [`ViaEnum`] / [`NoEnum`] with `InputEnum`. Also the messages of
//! `LifeEnum`'s `FromInput`. Reached through `crate::__private` only.
use std::marker::PhantomData;

use serde_json::Value;

use super::{EnumVariant, FromInput, InputEnum, InputError};

/// Stands for the field type `T` in a method call.
pub struct Probe<T>(PhantomData<T>);

impl<T> Probe<T> {
    /// The probe (a constant, so the generated code builds nothing).
    pub const NEW: Self = Probe(PhantomData);
}

/// The arm chosen when the field type implements `FromInput`.
pub trait ViaFromInput<T> {
    /// `true`.
    fn input_accepts(&self) -> bool;
    /// The converted value.
    fn input_parse(&self, value: &Value) -> Result<T, InputError>;
}

impl<T: FromInput> ViaFromInput<T> for &Probe<T> {
    fn input_accepts(&self) -> bool {
        true
    }

    fn input_parse(&self, value: &Value) -> Result<T, InputError> {
        T::from_input(value).map_err(InputError::Invalid)
    }
}

/// The arm chosen for any other field type.
pub trait Fallback<T> {
    /// `false`.
    fn input_accepts(&self) -> bool;
    /// [`InputError::NotWritable`].
    fn input_parse(&self, value: &Value) -> Result<T, InputError>;
}

impl<T> Fallback<T> for Probe<T> {
    fn input_accepts(&self) -> bool {
        false
    }

    fn input_parse(&self, _value: &Value) -> Result<T, InputError> {
        Err(InputError::NotWritable)
    }
}

/// `LifeEnum`'s message for a string that is none of its labels.
pub fn not_a_label(label: &str, enum_name: &str) -> String {
    format!("{} is not a {enum_name} value", super::echo(label))
}

/// `LifeEnum`'s message for a JSON value that is not a string (nor, for an
/// integer-stored enum, an integer).
pub fn not_a_label_kind(value: &Value, enum_name: &str) -> String {
    super::expected(&format!("a {enum_name} value"), value)
}

/// `LifeEnum`'s message for an integer no variant stores.
pub fn not_a_value(number: i64, enum_name: &str) -> String {
    format!("{number} is not a {enum_name} value")
}

/// The arm chosen when the field type (or what it wraps) is a `LifeEnum`.
pub trait ViaEnum {
    /// Its variants.
    fn input_enum(&self) -> Option<&'static [EnumVariant]>;
}

impl<E: InputEnum> ViaEnum for &Probe<E> {
    fn input_enum(&self) -> Option<&'static [EnumVariant]> {
        Some(E::VARIANTS)
    }
}

impl<E: InputEnum> ViaEnum for &Probe<Option<E>> {
    fn input_enum(&self) -> Option<&'static [EnumVariant]> {
        Some(E::VARIANTS)
    }
}

impl<E: InputEnum> ViaEnum for &Probe<Vec<E>> {
    fn input_enum(&self) -> Option<&'static [EnumVariant]> {
        Some(E::VARIANTS)
    }
}

/// The arm chosen for any other field type.
pub trait NoEnum {
    /// `None`.
    fn input_enum(&self) -> Option<&'static [EnumVariant]>;
}

impl<T> NoEnum for Probe<T> {
    fn input_enum(&self) -> Option<&'static [EnumVariant]> {
        None
    }
}
