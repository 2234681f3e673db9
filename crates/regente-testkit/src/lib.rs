//! What Regente's tests and its benchmark share, written once.
//!
//! - Processes: [`TestServer`] (`regente serve` with a temporary data directory,
//!   a random port and, when the suite runs on PostgreSQL, a database of its own;
//!   stopped, restarted, killed or frozen at will) and [`TestAgent`] (`regente
//!   runtime`), both started from [`regente_binary`] unless told another path;
//!   [`Relay`] keeps one address for agents across server restarts and cuts them off.
//! - [`InProcessServer`]: the server built in this process, for tests of the API's
//!   shapes that need no kill or restart.
//! - [`Api`]: the one HTTP client ([`Req`], [`Reply`], [`raw_send`]); every server
//!   above dereferences to it.
//! - Robot packages ([`robot_zip`], [`shell_robot`]), result and log helpers,
//!   the error shape ([`assert_error`]).
//! - The web console over plain HTTP: [`console_sign_in`], [`set_cookie`], [`form_field`].
//! - [`wait_for`] and its kin: nothing here sleeps to synchronise; every wait
//!   polls with a deadline and panics saying what it waited for and what it saw.
//! - [`TestDatabase`]: a fresh PostgreSQL database on `REGENTE_TEST_PG_URL`.
//!
//! # Tests that cannot run say SKIPPED
//!
//! A test that needs what the machine may lack is ignored with a reason that
//! says so, rather than passing without running. A build script of the test's
//! crate sets a `cfg` when the thing is there (`regente_pg` when
//! `REGENTE_TEST_PG_URL` is set, see `crates/regente/build.rs`), and the test
//! carries
//!
//! ```text
//! #[cfg_attr(not(regente_pg), ignore = "SKIPPED: needs PostgreSQL (set REGENTE_TEST_PG_URL)")]
//! ```
//!
//! so that libtest prints `ignored, SKIPPED: needs PostgreSQL ...` for it.

mod agent;
mod binary;
mod client;
mod console;
mod in_process;
mod lifecycle;
mod poll;
mod postgres;
mod process;
mod raw;
mod relay;
mod results;
mod robots;
mod server;
mod shape;

pub use agent::{AgentOptions, TestAgent};
pub use binary::{regente_binary, regente_command};
pub use client::{Api, Reply, Req};
pub use console::{console_sign_in, form_field, set_cookie};
pub use in_process::InProcessServer;
pub use poll::{poll, wait_for, wait_for_every, wait_until, POLL};
pub use postgres::{on_postgres, TestDatabase};
pub use process::{
    children_with, parent_pid, pid_alive, signal, stat_fields, wait_for_pid_file, wait_gone,
};
pub use raw::raw_send;
pub use regente_server::startup::parse_listening_line;
pub use relay::{dead_url, Relay};
pub use results::{
    assert_one_to_n, ledger, ledger_count, logs, messages, mode, numbered_lines, path_text,
    result_of, scratch, summary, tail, wait_for_status, ENDED,
};
pub use robots::{
    deflated, fixture, manifest, robot, robot_zip, shell_robot, text_vars, upload_shell_robot,
    user_id, zip_of, Fixture,
};
pub use server::{ServerOptions, TestServer, ADMIN_PASSWORD, ADMIN_USER, JWT_SECRET};
pub use shape::{
    assert_error, b64, check_error_shape, is_execution_id, keys, message, now_millis, reason,
};
