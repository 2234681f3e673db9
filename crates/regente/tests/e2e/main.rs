//! End-to-end tests: each test starts the real `regente` binary (server and
//! runtime agents as processes) on a random port with a temporary data
//! directory and talks to it over HTTP; tests of the API's shapes alone use a
//! server built in the test process instead. `regente-testkit` holds the
//! harness; `REGENTE_E2E_DATABASE=postgres` runs every server on a PostgreSQL
//! database of its own (see README.md, "Test it").

mod admin_api;
mod admin_changes;
mod admin_cli;
mod agent_faults;
mod agent_runs;
mod api_keys;
mod audit;
mod auth;
mod chaos;
mod cli;
mod console;
mod console_api_keys;
mod console_browser;
mod console_schedules_flows;
mod console_up;
mod console_webhooks;
mod flows;
mod fuzz;
mod guards;
mod integration_api;
mod isolation;
mod metrics;
mod openapi_contract;
mod partition;
mod replicas;
mod restart;
mod robot_environment;
mod robot_fencing;
mod runtime_keys;
mod schedules;
mod slow_clients;
mod support;
mod tls;
mod up;
mod vault;
mod waiting;
mod walkthrough;
mod webhook_receiver;
mod webhooks;

/// The kit finds the binary this suite was built with, the one Cargo names.
#[test]
fn the_kit_starts_the_binary_cargo_built_for_these_tests() {
    let expected = std::path::Path::new(env!("CARGO_BIN_EXE_regente"));
    assert_eq!(
        regente_testkit::regente_binary().canonicalize().unwrap(),
        expected.canonicalize().unwrap()
    );
}
