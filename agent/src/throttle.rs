//! Repeated warnings, once per interval: a condition that keeps failing in a retry loop (a
//! purge hub down, a collector away, an origin failing its health checks) is logged when it
//! starts, then as one summary line per interval with a count, and once more when it recovers.
//!
//! ```text
//! WARN cannot reach the purge hub http://10.0.0.1:9900: connection refused
//! WARN cannot reach the purge hub http://10.0.0.1:9900: 14 times in 30 s, last error: connection refused
//! INFO purge hub http://10.0.0.1:9900 reachable again after 15 failures in 42 s
//! ```
//!
//! A [`RepeatedWarning`] is one condition. It decides and formats; the caller logs the
//! [`Report`] it returns with [`crate::log_report!`], under the caller's own target (so
//! `OUTPOST_LOG=edge_node=debug` and the like keep working):
//!
//! ```
//! use agent::throttle::RepeatedWarning;
//! let hub = RepeatedWarning::new(
//!     "cannot reach the purge hub http://10.0.0.1:9900",
//!     "purge hub http://10.0.0.1:9900 reachable again",
//! );
//! # let poll = || Err::<(), _>("connection refused");
//! agent::log_report!(hub.record(&poll()));
//! ```
//! A failure between two lines only counts (a lock and a counter); a
//! success while nothing is failing is one atomic load. The interval is 30 s unless the
//! process sets another one ([`set_default_interval`], from `OUTPOST_LOG_REPEAT_INTERVAL`).
//!
//! Hand-written: the crates that rate-limit tracing events (tracing-throttle and the like)
//! drop or sample events by call site; none counts failures of one condition into a summary
//! line or reports its recovery.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The interval when nothing else is set.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

/// The process-wide interval in milliseconds.
static INTERVAL_MS: AtomicU64 = AtomicU64::new(DEFAULT_INTERVAL.as_millis() as u64);

/// Sets the interval of every [`RepeatedWarning`] that has none of its own (at least 1 ms).
pub fn set_default_interval(interval: Duration) {
    let ms = u64::try_from(interval.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    INTERVAL_MS.store(ms, Ordering::Relaxed);
}

/// The process-wide interval.
pub fn default_interval() -> Duration {
    Duration::from_millis(INTERVAL_MS.load(Ordering::Relaxed))
}

/// Where a [`RepeatedWarning`] reads the time: the monotonic clock, or a test's.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Instant;
}

/// The monotonic clock ([`Instant::now`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// One failing condition and what has been said about it.
#[derive(Debug)]
pub struct RepeatedWarning<C: Clock = MonotonicClock> {
    /// What fails, as the start of a warning: "cannot reach the purge hub http://…".
    condition: String,
    /// What the recovery line says: "purge hub http://… reachable again".
    recovered: String,
    /// None: [`default_interval`].
    interval: Option<Duration>,
    /// Whether a failure has been seen since the last recovery (the success path reads only
    /// this).
    failing: AtomicBool,
    state: Mutex<State>,
    clock: C,
}

#[derive(Debug, Default)]
struct State {
    /// The first failure of the current run of failures.
    since: Option<Instant>,
    /// When the last line was returned.
    last_line: Option<Instant>,
    /// Failures since `since`.
    total: u64,
    /// Failures since the last line.
    unreported: u64,
    last_error: String,
}

impl RepeatedWarning<MonotonicClock> {
    /// A condition: `condition` starts its warnings ("cannot reach the purge hub http://…"),
    /// `recovered` its recovery line ("purge hub http://… reachable again").
    pub fn new(condition: impl Into<String>, recovered: impl Into<String>) -> Self {
        Self::with_clock(condition, recovered, MonotonicClock)
    }
}

impl<C: Clock> RepeatedWarning<C> {
    /// [`RepeatedWarning::new`] reading the time from `clock`.
    pub fn with_clock(
        condition: impl Into<String>,
        recovered: impl Into<String>,
        clock: C,
    ) -> Self {
        Self {
            condition: condition.into(),
            recovered: recovered.into(),
            interval: None,
            failing: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            clock,
        }
    }

    /// Summarises every `interval` instead of the process-wide interval.
    pub fn every(mut self, interval: Duration) -> Self {
        self.interval = Some(interval);
        self
    }

    /// What fails ("cannot reach the purge hub http://…").
    pub fn condition(&self) -> &str {
        &self.condition
    }

    /// Whether the condition is failing now.
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }

    /// Records a failure. Returns a warning: the condition and `error` for the first
    /// failure, a summary once the interval has passed since the last line, otherwise
    /// nothing.
    pub fn failed(&self, error: impl fmt::Display) -> Option<Report> {
        let now = self.clock.now();
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.last_error.clear();
        let _ = write!(s.last_error, "{error}");
        s.total += 1;
        let Some(last) = s.last_line else {
            self.failing.store(true, Ordering::Release);
            s.since = Some(now);
            s.last_line = Some(now);
            s.unreported = 0;
            return Some(Report::Warning(format!(
                "{}: {}",
                self.condition, s.last_error
            )));
        };
        s.unreported += 1;
        let over = now.saturating_duration_since(last);
        if over < self.interval.unwrap_or_else(default_interval) {
            return None;
        }
        let n = std::mem::take(&mut s.unreported);
        s.last_line = Some(now);
        Some(Report::Warning(format!(
            "{}: {n} {} in {}, last error: {}",
            self.condition,
            if n == 1 { "time" } else { "times" },
            Span(over),
            s.last_error
        )))
    }

    /// Records a success. Returns the recovery when the condition was failing, otherwise
    /// nothing (one atomic load).
    pub fn succeeded(&self) -> Option<Report> {
        if !self.failing.load(Ordering::Acquire) {
            return None;
        }
        let now = self.clock.now();
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.failing.store(false, Ordering::Release);
        let since = s.since?;
        let total = s.total;
        *s = State::default();
        Some(Report::Recovered(format!(
            "{} after {total} {} in {}",
            self.recovered,
            if total == 1 { "failure" } else { "failures" },
            Span(now.saturating_duration_since(since))
        )))
    }

    /// Forgets the failures without a line (for a recovery the caller reports its own way).
    pub fn reset(&self) {
        if self.failing.load(Ordering::Acquire) {
            let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            self.failing.store(false, Ordering::Release);
            *s = State::default();
        }
    }

    /// Records the outcome of one attempt: [`RepeatedWarning::failed`] or
    /// [`RepeatedWarning::succeeded`].
    pub fn record<T, E: fmt::Display>(&self, outcome: &Result<T, E>) -> Option<Report> {
        match outcome {
            Ok(_) => self.succeeded(),
            Err(e) => self.failed(e),
        }
    }
}

/// A line to log about a condition ([`crate::log_report!`] logs it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The first failure or a summary: a warning.
    Warning(String),
    /// The recovery: information.
    Recovered(String),
}

impl Report {
    /// The line.
    pub fn line(&self) -> &str {
        match self {
            Report::Warning(l) | Report::Recovered(l) => l,
        }
    }
}

/// For [`crate::log_report!`]: the caller's crate need not name tracing's version.
#[doc(hidden)]
pub use tracing as __tracing;

/// Logs an `Option<`[`Report`]`>` where it is called (the caller's module is the target): a
/// warning at WARN, a recovery at INFO, nothing for `None`.
#[macro_export]
macro_rules! log_report {
    ($report:expr) => {
        match $report {
            ::core::option::Option::Some($crate::throttle::Report::Warning(line)) => {
                $crate::throttle::__tracing::warn!("{line}")
            }
            ::core::option::Option::Some($crate::throttle::Report::Recovered(line)) => {
                $crate::throttle::__tracing::info!("{line}")
            }
            ::core::option::Option::None => {}
        }
    };
}

/// A duration as people read it in a log line: "0.4 s", "12 s", "5 min", "3 h".
struct Span(Duration);

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs_f64();
        if secs < 10.0 {
            write!(f, "{secs:.1} s")
        } else if secs < 120.0 {
            write!(f, "{secs:.0} s")
        } else if secs < 7200.0 {
            write!(f, "{:.0} min", secs / 60.0)
        } else {
            write!(f, "{:.0} h", secs / 3600.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A clock the test moves.
    #[derive(Clone)]
    struct TestClock {
        start: Instant,
        offset: Arc<Mutex<Duration>>,
    }

    impl TestClock {
        fn new() -> Self {
            Self {
                start: Instant::now(),
                offset: Arc::default(),
            }
        }
        fn advance(&self, d: Duration) {
            *self.offset.lock().unwrap() += d;
        }
    }

    impl Clock for TestClock {
        fn now(&self) -> Instant {
            self.start + *self.offset.lock().unwrap()
        }
    }

    fn hub(clock: &TestClock) -> RepeatedWarning<TestClock> {
        RepeatedWarning::with_clock(
            "cannot reach the purge hub http://127.0.0.1:9",
            "purge hub http://127.0.0.1:9 reachable again",
            clock.clone(),
        )
        .every(Duration::from_secs(30))
    }

    const S: Duration = Duration::from_secs(1);

    fn said(r: Option<Report>) -> Option<String> {
        r.map(|r| r.line().to_string())
    }

    #[test]
    fn first_failure_is_logged_then_counted_then_summarised_per_interval() {
        let clock = TestClock::new();
        let w = hub(&clock);
        assert_eq!(
            said(w.failed("connection refused")).as_deref(),
            Some("cannot reach the purge hub http://127.0.0.1:9: connection refused")
        );
        // 13 more within the interval: quiet.
        for _ in 0..13 {
            clock.advance(2 * S);
            assert_eq!(w.failed("connection refused"), None);
        }
        // The 14th after 30 s: one line with the count since the last line.
        clock.advance(4 * S);
        assert_eq!(
            said(w.failed("timed out")).as_deref(),
            Some(
                "cannot reach the purge hub http://127.0.0.1:9: 14 times in 30 s, \
                 last error: timed out"
            )
        );
        // The next interval starts at that line.
        clock.advance(29 * S);
        assert_eq!(w.failed("timed out"), None);
        clock.advance(S);
        assert_eq!(
            said(w.failed("refused")).as_deref(),
            Some("cannot reach the purge hub http://127.0.0.1:9: 2 times in 30 s, last error: refused")
        );
        assert!(w.is_failing());
    }

    #[test]
    fn recovery_is_logged_once_with_every_failure_and_the_outage_length() {
        let clock = TestClock::new();
        let w = hub(&clock);
        assert_eq!(w.succeeded(), None, "nothing failed: no line");
        w.failed("refused");
        for _ in 0..14 {
            clock.advance(3 * S);
            w.failed("refused");
        }
        assert_eq!(
            said(w.succeeded()).as_deref(),
            Some("purge hub http://127.0.0.1:9 reachable again after 15 failures in 42 s")
        );
        assert!(!w.is_failing());
        assert_eq!(w.succeeded(), None, "said once");
        w.failed("refused");
        w.reset();
        assert!(!w.is_failing());
        assert_eq!(w.succeeded(), None, "reset says nothing");
        // A new outage starts over: its first failure is logged at once.
        clock.advance(S);
        assert_eq!(
            said(w.failed("reset")).as_deref(),
            Some("cannot reach the purge hub http://127.0.0.1:9: reset")
        );
        clock.advance(S / 2);
        assert_eq!(
            said(w.succeeded()).as_deref(),
            Some("purge hub http://127.0.0.1:9 reachable again after 1 failure in 0.5 s")
        );
    }

    #[test]
    fn a_single_failure_after_a_long_quiet_spell_is_reported_with_its_gap() {
        let clock = TestClock::new();
        let w = hub(&clock);
        w.failed("refused");
        clock.advance(Duration::from_secs(3600));
        assert_eq!(
            said(w.failed("refused")).as_deref(),
            Some("cannot reach the purge hub http://127.0.0.1:9: 1 time in 60 min, last error: refused")
        );
    }

    #[test]
    fn record_maps_outcomes_to_lines_and_levels() {
        let clock = TestClock::new();
        let w = hub(&clock);
        assert_eq!(w.record(&Ok::<(), &str>(())), None);
        let Some(Report::Warning(line)) = w.record(&Err::<(), _>("refused")) else {
            panic!("the first failure is a warning")
        };
        assert!(line.ends_with(": refused"), "{line}");
        assert_eq!(w.record(&Err::<(), _>("refused")), None);
        let Some(Report::Recovered(line)) = w.record(&Ok::<(), &str>(())) else {
            panic!("the success after failures is a recovery")
        };
        assert!(line.contains("after 2 failures"), "{line}");
    }

    #[test]
    fn the_process_wide_interval_applies_to_warnings_without_their_own() {
        let clock = TestClock::new();
        let w = RepeatedWarning::with_clock("x down", "x up", clock.clone());
        assert_eq!(default_interval(), DEFAULT_INTERVAL);
        w.failed("e");
        clock.advance(29 * S);
        assert_eq!(w.failed("e"), None);
        clock.advance(S);
        assert!(w.failed("e").is_some(), "a summary after 30 s");
        assert_eq!(Span(Duration::from_millis(1500)).to_string(), "1.5 s");
        assert_eq!(Span(Duration::from_secs(7200)).to_string(), "2 h");
    }

    #[test]
    fn shared_between_threads_every_failure_is_counted_once() {
        let clock = TestClock::new();
        let w = Arc::new(hub(&clock));
        let lines: Vec<_> = (0..4)
            .map(|_| {
                let w = w.clone();
                std::thread::spawn(move || (0..250).filter_map(|_| w.failed("e")).count())
            })
            .collect();
        let lines: usize = lines.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(lines, 1, "only the first failure, the clock did not move");
        assert_eq!(
            said(w.succeeded()).as_deref(),
            Some("purge hub http://127.0.0.1:9 reachable again after 1000 failures in 0.0 s")
        );
    }
}
