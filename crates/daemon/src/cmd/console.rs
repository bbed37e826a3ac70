//! What the short-lived commands (`validate`, `plan`, `status`, `schema`, `ca`) print.
//!
//! Rust ignores SIGPIPE, so writing to a pipe whose reader has gone (`steward status |
//! head -1`) fails with EPIPE, and `println!` turns that into a panic with a backtrace hint.
//! Every write here returns the failure instead; `main` ends the command quietly with
//! [`BROKEN_PIPE`], the status a shell reports for a program killed by SIGPIPE (`yes |
//! head -1` under `set -o pipefail`), so scripts see the same thing as with coreutils.

use std::fmt::Display;
use std::io::{ErrorKind, Write};

/// 128 + SIGPIPE (13).
pub const BROKEN_PIPE: u8 = 141;

/// Output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The reader of stdout or stderr closed its end; nobody is left to tell.
    #[error("the output pipe was closed")]
    BrokenPipe,
    /// Anything else (a full disk behind a redirect, ...).
    #[error("cannot write output: {0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for OutputError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == ErrorKind::BrokenPipe {
            Self::BrokenPipe
        } else {
            Self::Io(e)
        }
    }
}

/// Write `text` to `out` and flush it, so a closed pipe is noticed here and not later.
pub fn write_to(mut out: impl Write, text: impl Display) -> Result<(), OutputError> {
    write!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// Print `text` as it is (add the newline yourself).
pub fn out(text: impl Display) -> Result<(), OutputError> {
    write_to(std::io::stdout().lock(), text)
}

/// Print one line on stdout.
pub fn out_line(text: impl Display) -> Result<(), OutputError> {
    out(format_args!("{text}\n"))
}

/// Print one line on stderr (messages about the output, not the output itself).
pub fn err_line(text: impl Display) -> Result<(), OutputError> {
    write_to(std::io::stderr().lock(), format_args!("{text}\n"))
}

/// The exit code of a command that printed `result`: its own code, [`BROKEN_PIPE`] when
/// the reader went away (silently: there is no one to tell), or `write_error` after
/// saying why output failed otherwise.
pub fn exit_code(command: &str, result: Result<u8, OutputError>, write_error: u8) -> u8 {
    match result {
        Ok(code) => code,
        Err(OutputError::BrokenPipe) => BROKEN_PIPE,
        Err(e @ OutputError::Io(_)) => {
            // Best effort: stderr may be the very thing that failed.
            let _ = err_line(format_args!("steward {command}: {e}"));
            write_error
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that went away.
    struct ClosedPipe;

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A disk that is full.
    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(ErrorKind::StorageFull.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_is_its_own_error_and_exit_code() {
        let e = write_to(ClosedPipe, "x").unwrap_err();
        assert!(matches!(e, OutputError::BrokenPipe), "{e:?}");
        assert_eq!(exit_code("status", Err(e), 1), BROKEN_PIPE);
    }

    #[test]
    fn other_write_failures_keep_the_commands_error_code() {
        let e = write_to(Full, "x").unwrap_err();
        assert!(matches!(e, OutputError::Io(_)), "{e:?}");
        assert_eq!(exit_code("validate", Err(e), 2), 2);
        assert_eq!(exit_code("plan", Ok(0), 1), 0);
    }

    #[test]
    fn writes_reach_the_writer() {
        let mut buf = Vec::new();
        write_to(&mut buf, format_args!("a {}\n", 1)).unwrap();
        assert_eq!(buf, b"a 1\n");
    }
}
