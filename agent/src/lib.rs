//! Telemetry for every tier, and the agent role.
//!
//! Not built yet. This crate will own telemetry set-up for every role (traces, metrics and logs
//! over OTLP, Prometheus text), and the `[agent]` role: host metrics, log shipping and a bounded
//! on-disk buffer for collector outages. See shared/DESIGN.md, "Telemetry and the agent".
#![warn(missing_docs)]
