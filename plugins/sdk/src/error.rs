//! Errors a connector returns. They cross the boundary as text, so the message must say everything.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A failed read or write. `retryable` errors (lost connection, deadlock, server busy) may succeed
/// if the host tries the same call again; others will not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub retryable: bool,
    pub message: String,
}

impl Error {
    pub fn permanent(message: impl Into<String>) -> Self {
        Error {
            retryable: false,
            message: message.into(),
        }
    }

    pub fn retryable(message: impl Into<String>) -> Self {
        Error {
            retryable: true,
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// An invalid option. `key` is the option's path below the connector's `options`
/// (`uri`, `tls.ca_file`), so the host can name the spec file, line and full key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// What `open` can fail with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    Config(ConfigError),
    Other(Error),
}

impl From<ConfigError> for OpenError {
    fn from(e: ConfigError) -> Self {
        OpenError::Config(e)
    }
}

impl From<Error> for OpenError {
    fn from(e: Error) -> Self {
        OpenError::Other(e)
    }
}
