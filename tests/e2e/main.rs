//! The end-to-end tests: one binary, a module per area, real servers and processes on
//! 127.0.0.1 ephemeral ports. Shared harness in `support/`.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

mod acme;
mod admin;
mod agent;
mod bad_input;
mod chaos;
mod cli;
mod client_addr;
mod collapse;
mod compression;
mod conformance;
mod console;
mod disk;
mod dns;
mod fleet_ca;
mod fleet_tls;
mod freshness;
mod h2_abuse;
mod https_origin;
mod inspect;
mod interim;
mod invalidation;
mod large;
mod limits;
mod logs;
mod memory_bound;
mod operations;
mod origins;
mod partial;
mod protocols;
mod purge;
mod purge_access;
mod purge_nats;
mod range_head;
mod resolve;
mod revalidation;
mod rules;
mod secrets;
mod sendfile;
mod shield;
mod smuggling;
mod stale;
mod telemetry;
mod vary;
