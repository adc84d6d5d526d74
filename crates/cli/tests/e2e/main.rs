//! End-to-end tests: real `bosun node` processes on a real `nats-server`, one module per
//! capability, in one test binary (one link instead of one per file).
//!
//! Each test starts its own fleet (broker and nodes) in a temporary folder through
//! `bosun_testkit::Fleet`; everything is killed on drop. Tests wait for observable
//! events (a state, a file, a log line) with a deadline, never for a fixed time.

mod broker;
mod cancel;
mod capture;
mod central;
mod chaos;
mod cluster;
mod config;
mod dashboard;
mod delivery;
mod deploy;
mod disk;
mod dockermod;
mod http_apis;
mod install;
mod links;
mod lsdsuite;
mod nats;
mod openapi;
mod output;
mod placement;
mod processes;
mod restarts;
mod stalls;
mod steward;
mod support;
mod trust;
mod workloads;
