//! End-to-end tests: each test starts the real `regente` binary on a random
//! port with a temporary data directory and talks to it over HTTP.

mod admin_api;
mod agent_faults;
mod agent_runs;
mod agent_support;
mod auth;
mod console;
mod console_browser;
mod fuzz;
mod integration_api;
mod isolation;
mod replicas;
mod restart;
mod support;
mod up;
mod walkthrough;
