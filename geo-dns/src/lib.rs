//! Authoritative DNS with geo routing and health-checked failover.
//!
//! Not built yet. This crate will hold the `[dns]` role: an authoritative server (UDP and TCP)
//! for configured zones, geo records answered with the nearest healthy region's addresses by
//! EDNS Client Subnet or resolver address, MaxMind database lookups and SIGHUP reload.
//! See shared/DESIGN.md, "Geo-DNS".
#![warn(missing_docs)]
