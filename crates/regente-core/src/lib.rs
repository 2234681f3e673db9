//! Regente's domain: the words the rest of the code speaks, with their rules.
//!
//! Layout:
//! - [`ids`]: the 16-hex-digit identifiers of every object.
//! - [`status`]: execution statuses and which of them are final.
//! - [`variables`]: variable names, types and typed values, and how a run's
//!   variables are resolved against a robot's declarations.
//! - [`manifest`]: `robot.toml`, parsed and validated.
//! - [`role`]: what a user may do.
//! - [`schedule`]: when a schedule fires (cron or `every`, in a time zone).
//!
//! Nothing here does IO or depends on a runtime; every fallible constructor is a
//! `parse` returning an error that names what is wrong.

pub mod ids;
pub mod manifest;
pub mod role;
pub mod schedule;
pub mod status;
pub mod variables;

pub use ids::is_valid_id;
pub use manifest::{
    is_credential_name, CredentialNeed, ManifestError, RobotManifest, CREDENTIAL_NAME_RULE,
};
pub use role::Role;
pub use status::ExecutionStatus;
pub use variables::{
    parse_run_body, resolve_variables, variables_from_json, RequestVariable, ResolvedVariables,
    TypedValue, VariableDeclaration, VariableError, VariableName, VariableType,
};
