//! Regente's server: the Integration API, the admin API and the hub that
//! runtime agents connect to.
//!
//! Layout (requests flow api -> service -> store):
//! - [`config`]: [`ServerConfig`], filled by the binary from flags and environment.
//! - [`startup`]: [`Server::build`] (bind, open the store, bootstrap) and [`Server::run`].
//! - [`api`]: axum routers, one per route group; the JSON error shape; auth extractors.
//! - [`console`]: the web console's HTML pages, over the same services.
//! - [`hub`]: connected runtimes, push dispatch, lost-runtime detection.
//! - [`retention`]: old events pruned from the store's event stream.
//! - [`scheduler`]: fires schedules when due, on the leader; pauses those whose
//!   runs keep failing.
//! - [`serve`]: the serving loop: deadlines, the connection cap, TLS.
//! - [`service`]: the use cases (runs, robots, users, runtimes, organisations,
//!   schedules, auth),
//!   free of HTTP types.
//! - [`supervisor`]: background tasks, their stop signal, leader-only work.
//! - [`clock`]: the one source of time, which tests can move.
//! - [`vault`]: the credentials vault's master keys, sealing and opening, key rotation.

pub mod api;
pub mod clock;
pub mod config;
pub mod console;
pub mod cursor_saves;
pub mod flow_engine;
pub mod hub;
pub mod retention;
pub mod scheduler;
pub mod serve;
pub mod service;
pub mod startup;
pub mod supervisor;
pub mod vault;
pub mod webhooks;

pub use config::{ConnectionLimits, LoginLimits, ServerConfig, TlsFiles};
pub use startup::Server;
