//! How stderr logs look, from the environment (not the config file, so that a config error
//! is already logged the way the operator asked): the filter, text or JSON, colours, and the
//! interval of repeated-warning summaries ([`crate::throttle`]).

use std::ffi::OsStr;
use std::time::Duration;

/// How stderr logs look; from `OUTPOST_LOG`, `OUTPOST_LOG_FORMAT`, `NO_COLOR` and
/// `OUTPOST_LOG_REPEAT_INTERVAL`.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// An env filter (`info`, `edge_node=debug`).
    pub filter: String,
    /// JSON lines instead of text.
    pub json: bool,
    /// No colours even on a terminal (`NO_COLOR`, <https://no-color.org>).
    pub no_color: bool,
    /// How often a warning that keeps repeating is summarised (default 30 s).
    pub repeat_interval: Duration,
    /// What was wrong with the environment, logged once logging is up.
    pub(crate) problems: Vec<String>,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            filter: "info".into(),
            json: false,
            no_color: false,
            repeat_interval: crate::throttle::DEFAULT_INTERVAL,
            problems: Vec::new(),
        }
    }
}

impl LogOptions {
    /// From `OUTPOST_LOG` (default `info`), `OUTPOST_LOG_FORMAT=json`, `NO_COLOR` (set and not
    /// empty: no colours) and `OUTPOST_LOG_REPEAT_INTERVAL` (a duration such as `30s`).
    pub fn from_env() -> Self {
        let mut o = Self {
            filter: std::env::var("OUTPOST_LOG").unwrap_or_else(|_| "info".into()),
            json: std::env::var("OUTPOST_LOG_FORMAT").is_ok_and(|v| v == "json"),
            no_color: no_color(std::env::var_os("NO_COLOR").as_deref()),
            ..Self::default()
        };
        if let Ok(v) = std::env::var("OUTPOST_LOG_REPEAT_INTERVAL") {
            match crate::units::parse_duration(&v) {
                Ok(d) if !d.is_zero() => o.repeat_interval = d,
                Ok(_) => o
                    .problems
                    .push("OUTPOST_LOG_REPEAT_INTERVAL must be longer than zero; using 30s".into()),
                Err(e) => o
                    .problems
                    .push(format!("OUTPOST_LOG_REPEAT_INTERVAL: {e}; using 30s")),
            }
        }
        o
    }

    /// Logs what was wrong with the environment (once the subscriber is installed).
    pub(crate) fn report_problems(&self) {
        for p in &self.problems {
            tracing::warn!("{p}");
        }
    }

    /// Whether lines get ANSI colours: only on a terminal, and not with `NO_COLOR`. A log
    /// file, a pipe or journald gets plain text.
    pub fn colours(&self, stderr_is_terminal: bool) -> bool {
        stderr_is_terminal && !self.no_color
    }
}

/// `NO_COLOR` disables colours when it is set to anything but the empty string.
fn no_color(v: Option<&OsStr>) -> bool {
    v.is_some_and(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        let on = LogOptions::default();
        assert!(on.colours(true));
        assert!(!on.colours(false), "a pipe or a file gets no escapes");
        let off = LogOptions {
            no_color: true,
            ..LogOptions::default()
        };
        assert!(!off.colours(true));
        assert!(no_color(Some(OsStr::new("1"))));
        assert!(
            !no_color(Some(OsStr::new(""))),
            "empty is unset (no-color.org)"
        );
        assert!(!no_color(None));
    }
}
