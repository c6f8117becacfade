//! Field-level validation errors: what a record's validator returns and
//! [`Error::Validation`](super::Error::Validation) carries.

use std::borrow::Cow;
use std::fmt;

/// One rejected field: which field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field (Rust name) or another label the message is about.
    pub field: Cow<'static, str>,
    /// Why it was rejected.
    pub message: String,
}

/// Field-level validation errors, returned by a record's validator
/// ([`RecordHooks::validate`](crate::model::RecordHooks::validate)) and carried by
/// [`Error::Validation`](super::Error::Validation).
///
/// ```
/// use lifeguard_core::model::ValidationErrors;
///
/// let mut errors = ValidationErrors::new();
/// assert!(errors.is_empty());
/// errors.add("email", "must contain `@`").add("name", "must not be empty");
/// assert_eq!(errors.messages("email").collect::<Vec<_>>(), ["must contain `@`"]);
/// assert_eq!(errors.to_string(), "email: must contain `@`; name: must not be empty");
/// assert!(errors.into_result().is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationErrors {
    errors: Vec<FieldError>,
}

impl ValidationErrors {
    /// No errors yet.
    pub fn new() -> ValidationErrors {
        ValidationErrors::default()
    }

    /// Records that `field` is invalid because of `message`.
    pub fn add(
        &mut self,
        field: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> &mut Self {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
        self
    }

    /// Whether no error was recorded.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// How many errors were recorded.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Every error, in the order recorded.
    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// The fields that have at least one error, in order, without repeats.
    pub fn fields(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for e in &self.errors {
            if !out.contains(&&*e.field) {
                out.push(&e.field);
            }
        }
        out
    }

    /// The messages recorded for `field`.
    pub fn messages<'a>(&'a self, field: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.errors
            .iter()
            .filter(move |e| e.field == field)
            .map(|e| e.message.as_str())
    }

    /// `Ok(())` when empty, else `Err(self)`: the usual last line of a validator.
    pub fn into_result(self) -> std::result::Result<(), ValidationErrors> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

impl From<ValidationErrors> for super::Error {
    fn from(e: ValidationErrors) -> super::Error {
        super::Error::Validation(e)
    }
}
