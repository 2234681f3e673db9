//! Regente's runtime agent: connects to the server, runs robot packages as
//! processes, streams what they say, and survives crashes and network drops
//! without losing or repeating anything.
//!
//! Layout:
//! - [`agent`]: the agent's state and main loop: assignments, starts, events, acks.
//! - [`config`]: the agent's settings and its work directory's layout.
//! - [`connection`]: the WebSocket to the server, heartbeats, reconnects.
//! - [`executor`]: one robot process: spawn, output, timeout, kill.
//! - [`robot_output`]: what a robot's output lines mean (the robot protocol).
//! - [`masking`]: credential values and secret variables replaced by `***` in robots' output.
//! - [`journal`]: unacknowledged events on disk, read back after a restart.
//! - [`packages`]: download, check and cache robot packages.
//! - [`guard`]: the small process that ties a robot's process tree to the agent's life.
//! - [`guards`]: the agent's side of its guards: the pool, the commands, the reports.
//! - [`hardening`]: keeps the runtime key out of robots' reach.
//! - [`tls`]: the client TLS configuration (system roots plus `--ca-file`).
//! - [`robot_user`]: the OS users robots run as (`--robot-user`).
//! - [`fence`]: when an agent cut off from every server stops its robots.

pub mod agent;
pub mod config;
pub mod connection;
pub mod executor;
pub mod fence;
pub mod guard;
pub mod guards;
pub mod hardening;
mod held;
pub mod journal;
pub mod masking;
pub mod packages;
pub mod robot_output;
pub mod robot_user;
pub mod run_setup;
pub mod tls;

pub use agent::{run, AgentConfig};
