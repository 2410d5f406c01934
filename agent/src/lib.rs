//! Telemetry for every tier.
//!
//! [`setup::Telemetry::init`] installs everything a process emits with: a tracing subscriber
//! that writes logs to stderr (text or JSON, with trace and span ids), turns spans of the
//! Outpost crates into OTLP traces and events into OTLP logs, and the node's metrics
//! [`metrics::Registry`] (a meter provider read by Prometheus for the admin `/metrics`, and by
//! the OTLP exporter when a collector is configured). Exports run on a one-thread runtime of
//! their own behind bounded queues ([`batch`]); a full queue or a dead collector drops items and
//! counts them, it never slows a request. The `[telemetry]` config section is
//! [`config::TelemetryConfig`].
//!
//! Other crates only emit: spans through `tracing` (created only when
//! [`setup::traces_enabled`]), W3C trace context through [`propagation`], metrics through
//! instruments registered on the registry's meter at start-up.
//!
//! Stderr logs are configured from the environment ([`logopts::LogOptions`]); a warning that
//! repeats in a retry loop is said once per interval with a count, and its recovery once
//! ([`throttle::RepeatedWarning`]), failed OTLP exports included.
//!
//! Also the config vocabulary every role shares: [`config::ConfigProblem`] and the one grammar
//! of sizes and durations ([`units`]).
//!
//! The `[agent]` role ([`role`]) adds host metrics and ships log files over OTLP through a
//! bounded on-disk buffer that survives collector outages and restarts; the binary starts it
//! on the process's telemetry ([`role::Agent::start`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// A dependency no code of the crate uses is an error (checked where dev-dependencies are absent).
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

// First, so that the modules below can call `log_report!` by name.
#[macro_use]
pub mod throttle;

pub mod batch;
pub mod config;
pub mod errors;
mod export_report;
pub mod files;
pub mod logfmt;
pub mod logopts;
pub mod metrics;
pub mod prometheus;
pub mod propagation;
pub mod role;
pub mod setup;
pub mod units;

pub use config::TelemetryConfig;
pub use logopts::LogOptions;
pub use setup::{logs_exported, traces_enabled, Telemetry, ACCESS_TARGET};
