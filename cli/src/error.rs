//! Errors: every failure reaches the user as one `poolmalloc: error: ...`
//! line and a non-zero exit status, never as a panic.

use std::fmt;

/// An error that asks for a particular exit status (for example 127 when a
/// program to run was not found, as shells do).
#[derive(Debug)]
pub struct CodedError {
    /// The process exit status.
    pub code: u8,
    /// The message, one line.
    pub message: String,
}

impl CodedError {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        CodedError { code, message: message.into() }
    }
}

impl fmt::Display for CodedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CodedError {}

/// The exit status for an error: its own where it carries one, else 1.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    err.chain().find_map(|e| e.downcast_ref::<CodedError>()).map_or(1, |e| e.code)
}

/// The error and its causes on one line, separated by `: `.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
        // Some errors repeat their cause in their own message.
        if !parts.last().is_some_and(|last| last.ends_with(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn chain_is_one_line() {
        let err = Err::<(), _>(std::io::Error::other("disk\nfull")).context("cannot write `x.json`").unwrap_err();
        assert_eq!(one_line(&err), "cannot write `x.json`: disk full");
        assert_eq!(exit_code(&err), 1);
    }

    #[test]
    fn coded_error_keeps_its_status() {
        let err = anyhow::Error::new(CodedError::new(127, "cannot run `nope`: command not found"));
        assert_eq!(exit_code(&err), 127);
    }
}
