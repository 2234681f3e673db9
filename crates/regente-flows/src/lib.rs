//! Flows: several robot runs chained, each step an ordinary execution whose
//! variables may be templates over the run's inputs and the earlier steps'
//! results, with conditions, retries, timeouts and an `on_failure` step.
//!
//! Pure: no IO, no async. The server stores flows and runs and applies what
//! [`engine::next`] decides.
//!
//! - [`definition`]: the API's JSON read and validated, errors naming the field.
//! - [`expr`]: CEL expressions (the `cel` crate): compiled, their references
//!   found, evaluated under a size and time bound.
//! - [`template`]: `{{ EXPR }}` in strings, typed or as text.
//! - [`engine`]: a run's state and the decision of what happens next.

pub mod definition;
pub mod engine;
pub mod expr;
pub mod template;

pub use definition::{Definition, DefinitionError, Retry, Step};
pub use engine::{next, Decision, Millis, RunState, StepState, StepStatus};
pub use expr::{Expression, ExpressionError, References, Scope};
pub use template::Template;
