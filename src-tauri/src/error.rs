//! Errors the shell's commands return to the console: a stable `code` the UI matches on and a message for people.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct CommandError {
    pub code: &'static str,
    pub message: String,
}

impl CommandError {
    /// The embedded service is not running (it failed to start; the message says why).
    pub const SERVICE_UNAVAILABLE: &'static str = "service.unavailable";
    /// A file could not be read or written (the message names it and says why).
    pub const FILE: &'static str = "file";

    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self { code: Self::SERVICE_UNAVAILABLE, message: message.into() }
    }

    pub fn file(message: impl Into<String>) -> Self {
        Self { code: Self::FILE, message: message.into() }
    }
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for CommandError {}
