//! Translation errors: every one names the resource and the field it is about.

use std::fmt;

/// A policy or resource feature that cannot be translated, or input that is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Error {
    /// `Kind namespace/name` of the resource (or the file for unreadable input).
    pub resource: String,
    /// Dotted path of the field inside the resource (`spec.limits.free.rates[0].window`).
    pub field: String,
    /// What is wrong, and what to do instead when there is something.
    pub message: String,
}

impl Error {
    /// An error about `field` of `resource`.
    pub fn new(
        resource: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            resource: resource.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: field `{}`: {}",
            self.resource, self.field, self.message
        )
    }
}

/// Result of a translation step.
pub type Result<T, E = Error> = std::result::Result<T, E>;
