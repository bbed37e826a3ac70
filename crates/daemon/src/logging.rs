//! Log output: human-readable by default, JSON lines with `--log-format json`.
//!
//! Colour (ANSI escapes) only when stderr is a terminal and `NO_COLOR` is unset or empty
//! (<https://no-color.org>): in a file, a pipe or journald the escapes are noise that
//! breaks `grep` and log shippers.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The environment variable behind `--log-format`. `steward` sets it for its children, so
/// the lab's agents and the services they start log in the daemon's format.
pub const LOG_FORMAT_ENV: &str = "STEWARD_LOG_FORMAT";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

impl LogFormat {
    fn as_str(self) -> &'static str {
        match self {
            Self::Human => "human",
            Self::Json => "json",
        }
    }
}

/// Install the global subscriber. `RUST_LOG` overrides the default level (info).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Whether log lines get ANSI colours.
fn use_colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Make `format` the default of every `steward` this process starts. Call before any
/// thread is spawned (the environment is process-wide).
pub fn pass_to_children(format: LogFormat) {
    std::env::set_var(LOG_FORMAT_ENV, format.as_str());
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(
            use_colour(true, Some(OsStr::new(""))),
            "empty NO_COLOR is unset"
        );
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None), "file or pipe");
    }

    /// What children are given must parse back as the same `--log-format`.
    #[test]
    fn the_inherited_format_parses_back() {
        for format in [LogFormat::Human, LogFormat::Json] {
            assert_eq!(LogFormat::from_str(format.as_str(), false), Ok(format));
        }
    }
}
