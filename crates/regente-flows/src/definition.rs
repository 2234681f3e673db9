//! A flow's definition, read from the API's JSON and validated, each error
//! naming its field (`steps[1].variables.COUNT: ...`, `steps[2].when: column 14:
//! ...`).

use std::collections::BTreeMap;
use std::fmt;

use regente_core::{is_valid_id, VariableDeclaration, VariableName};
use serde_json::{Map, Value};

use crate::expr::{Expression, References, FAILURE};
use crate::template::Template;

/// Most steps a flow may have.
pub const MAX_STEPS: usize = 200;
/// Longest flow name.
pub const MAX_NAME_LEN: usize = 128;
/// Most tries a step's `retry` may ask for.
pub const MAX_ATTEMPTS: u32 = 20;
/// Longest backoff and timeout: one week.
pub const MAX_SECONDS: u64 = 7 * 24 * 3600;

#[derive(Debug, Clone)]
pub struct Definition {
    pub name: String,
    /// The inputs a run takes, declared as a robot's variables are.
    pub variables: Vec<VariableDeclaration>,
    /// Run in this order.
    pub steps: Vec<Step>,
    /// Runs when a step failed (after its retries, without `continue_on_error`).
    pub on_failure: Option<Step>,
    /// The run's return value; the last step's that ran when absent.
    pub return_value: Option<Template>,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub robot_id: String,
    /// A pinned version; the robot's newest when the step starts otherwise.
    pub robot_version: Option<u32>,
    pub runtime_id: String,
    pub variables: BTreeMap<String, Template>,
    /// Runs only when this is true; SKIPPED otherwise.
    pub when: Option<Expression>,
    pub retry: Retry,
    pub timeout_seconds: Option<u64>,
    /// A failure does not stop the flow.
    pub continue_on_error: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Tries in all, the first included (1: no retry).
    pub attempts: u32,
    pub backoff_seconds: u64,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            attempts: 1,
            backoff_seconds: 0,
        }
    }
}

/// A definition refused: the field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for DefinitionError {}

fn refuse<T>(field: impl Into<String>, message: impl Into<String>) -> Result<T, DefinitionError> {
    Err(DefinitionError {
        field: field.into(),
        message: message.into(),
    })
}

fn position_text(position: Option<(usize, usize)>) -> String {
    match position {
        Some((1, column)) => format!("column {column}: "),
        Some((line, column)) => format!("line {line}, column {column}: "),
        None => String::new(),
    }
}

impl Definition {
    /// Reads and validates a definition.
    pub fn parse(json: &Value) -> Result<Definition, DefinitionError> {
        let Some(object) = json.as_object() else {
            return refuse("(body)", "a flow is a JSON object");
        };
        let fields = Fields::new("", object)?;
        fields.only(&["name", "variables", "steps", "on_failure", "return"])?;
        let name = fields.string("name")?;
        if name.trim().is_empty() || name.chars().count() > MAX_NAME_LEN {
            return refuse(
                "name",
                format!("a flow's name has 1 to {MAX_NAME_LEN} characters"),
            );
        }
        let variables = parse_variables(object.get("variables"))?;
        let steps = match object.get("steps") {
            Some(Value::Array(items)) if !items.is_empty() && items.len() <= MAX_STEPS => items
                .iter()
                .enumerate()
                .map(|(index, item)| Step::parse(&format!("steps[{index}]"), item))
                .collect::<Result<Vec<_>, _>>()?,
            Some(Value::Array(_)) => {
                return refuse("steps", format!("a flow has 1 to {MAX_STEPS} steps"))
            }
            _ => return refuse("steps", "a list of steps is required"),
        };
        let on_failure = match object.get("on_failure") {
            None | Some(Value::Null) => None,
            Some(item) => Some(Step::parse("on_failure", item)?),
        };
        let return_value = match object.get("return") {
            None | Some(Value::Null) => None,
            Some(value) => Some(template("return", value)?),
        };
        let definition = Definition {
            name: name.to_owned(),
            variables,
            steps,
            on_failure,
            return_value,
        };
        definition.check_references()?;
        Ok(definition)
    }

    /// The steps, then `on_failure`, each with its field prefix.
    pub fn every_step(&self) -> impl Iterator<Item = (String, &Step)> {
        self.steps
            .iter()
            .enumerate()
            .map(|(index, step)| (format!("steps[{index}]"), step))
            .chain(
                self.on_failure
                    .iter()
                    .map(|step| ("on_failure".into(), step)),
            )
    }

    /// Step ids are unique; each expression names declared inputs and steps that
    /// run before it (a step naming itself or a later one would wait on itself);
    /// `failure` only in `on_failure`.
    fn check_references(&self) -> Result<(), DefinitionError> {
        let mut seen: BTreeMap<&str, String> = BTreeMap::new();
        for (field, step) in self.every_step() {
            if let Some(first) = seen.insert(&step.id, field.clone()) {
                return refuse(
                    format!("{field}.id"),
                    format!("step id {:?} is used twice (first at {first})", step.id),
                );
            }
        }
        let position = |id: &str| self.steps.iter().position(|step| step.id == id);
        let check = |field: &str,
                     references: &References,
                     runs_before: &dyn Fn(usize) -> bool,
                     own: Option<&str>,
                     failure_allowed: bool|
         -> Result<(), DefinitionError> {
            for input in &references.inputs {
                if !self.variables.iter().any(|d| d.name.as_str() == input) {
                    let declared: Vec<&str> =
                        self.variables.iter().map(|d| d.name.as_str()).collect();
                    return refuse(
                        field,
                        format!(
                            "input.{input} is not a declared input (declared: {})",
                            if declared.is_empty() {
                                "none".into()
                            } else {
                                declared.join(", ")
                            }
                        ),
                    );
                }
            }
            for id in &references.steps {
                match position(id) {
                    None => return refuse(field, format!("steps.{id} names no step of this flow")),
                    Some(at) if !runs_before(at) => {
                        let own = own.unwrap_or("this step");
                        return refuse(
                            field,
                            format!(
                                "a cycle: step {own:?} reads steps.{id}, which does not run before it"
                            ),
                        );
                    }
                    Some(_) => {}
                }
            }
            if references.failure && !failure_allowed {
                return refuse(field, format!("{FAILURE} is only known in on_failure"));
            }
            Ok(())
        };
        for (index, step) in self.steps.iter().enumerate() {
            let before = |at: usize| at < index;
            for (field, references) in step.references(&format!("steps[{index}]")) {
                check(&field, &references, &before, Some(&step.id), false)?;
            }
        }
        let every = |_: usize| true;
        if let Some(step) = &self.on_failure {
            for (field, references) in step.references("on_failure") {
                check(&field, &references, &every, Some(&step.id), true)?;
            }
        }
        if let Some(template) = &self.return_value {
            check("return", &template.references(), &every, None, false)?;
        }
        Ok(())
    }
}

impl Step {
    fn parse(prefix: &str, value: &Value) -> Result<Step, DefinitionError> {
        let Some(object) = value.as_object() else {
            return refuse(prefix, "a step is a JSON object");
        };
        let fields = Fields::new(prefix, object)?;
        fields.only(&[
            "id",
            "robot_id",
            "robot_version",
            "runtime_id",
            "variables",
            "when",
            "retry",
            "timeout_seconds",
            "continue_on_error",
        ])?;
        let id = fields.string("id")?;
        if VariableName::parse(id).is_err() {
            return refuse(
                fields.path("id"),
                format!("step id {id:?} must match [A-Za-z_][A-Za-z0-9_]* (at most 128 characters), so that expressions can name it as steps.ID"),
            );
        }
        let robot_id = fields.id("robot_id")?;
        let runtime_id = fields.id("runtime_id")?;
        let robot_version = fields
            .integer("robot_version", 1, u32::MAX as u64)?
            .map(|v| v as u32);
        let variables = match object.get("variables") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(name, value)| {
                    let field = format!("{prefix}.variables.{name}");
                    if let Err(e) = VariableName::parse(name) {
                        return refuse(field, e.to_string());
                    }
                    Ok((name.clone(), template(&field, value)?))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return refuse(
                    fields.path("variables"),
                    "an object of NAME -> value (a value may be a template)",
                )
            }
        };
        let when = match object.get("when") {
            None | Some(Value::Null) => None,
            Some(Value::String(source)) => {
                Some(Expression::compile(source).map_err(|e| DefinitionError {
                    field: fields.path("when"),
                    message: format!("{}{}", position_text(e.position), e.message),
                })?)
            }
            Some(_) => {
                return refuse(
                    fields.path("when"),
                    "a condition is an expression in a string",
                )
            }
        };
        let retry = match object.get("retry") {
            None | Some(Value::Null) => Retry::default(),
            Some(Value::Object(retry)) => {
                let retry_fields = Fields::new(&fields.path("retry"), retry)?;
                retry_fields.only(&["attempts", "backoff_seconds"])?;
                Retry {
                    attempts: retry_fields
                        .integer("attempts", 1, MAX_ATTEMPTS as u64)?
                        .unwrap_or(1) as u32,
                    backoff_seconds: retry_fields
                        .integer("backoff_seconds", 0, MAX_SECONDS)?
                        .unwrap_or(0),
                }
            }
            Some(_) => {
                return refuse(
                    fields.path("retry"),
                    "{\"attempts\": N, \"backoff_seconds\": S}",
                )
            }
        };
        let timeout_seconds = fields.integer("timeout_seconds", 1, MAX_SECONDS)?;
        let continue_on_error = match object.get("continue_on_error") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(flag)) => *flag,
            Some(_) => return refuse(fields.path("continue_on_error"), "true or false"),
        };
        Ok(Step {
            id: id.to_owned(),
            robot_id,
            robot_version,
            runtime_id,
            variables,
            when,
            retry,
            timeout_seconds,
            continue_on_error,
        })
    }

    /// Each of the step's expressions' references, with its field.
    fn references(&self, prefix: &str) -> Vec<(String, References)> {
        let mut all: Vec<(String, References)> = self
            .variables
            .iter()
            .map(|(name, template)| (format!("{prefix}.variables.{name}"), template.references()))
            .collect();
        if let Some(when) = &self.when {
            all.push((format!("{prefix}.when"), when.references().clone()));
        }
        all
    }
}

fn template(field: &str, value: &Value) -> Result<Template, DefinitionError> {
    Template::parse(value).map_err(|e| DefinitionError {
        field: format!("{field}{}", e.path),
        message: format!("{}{}", position_text(e.position), e.message),
    })
}

fn parse_variables(value: Option<&Value>) -> Result<Vec<VariableDeclaration>, DefinitionError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return refuse(
                "variables",
                "a list of {\"name\": ..., \"type\": ..., \"default\": ...}",
            )
        }
    };
    let mut declarations: Vec<VariableDeclaration> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let prefix = format!("variables[{index}]");
        let Some(object) = item.as_object() else {
            return refuse(
                prefix,
                "a variable is {\"name\": ..., \"type\": ..., \"default\": ...}",
            );
        };
        let fields = Fields::new(&prefix, object)?;
        fields.only(&["name", "type", "default"])?;
        let name = fields.string("name")?;
        let kind = match object.get("type") {
            None | Some(Value::Null) => "text",
            Some(Value::String(kind)) => kind,
            Some(_) => return refuse(fields.path("type"), "text, number, boolean or json"),
        };
        let declaration =
            VariableDeclaration::parse(name, kind, object.get("default")).map_err(|e| {
                DefinitionError {
                    field: prefix.clone(),
                    message: e.to_string(),
                }
            })?;
        if declarations.iter().any(|d| d.name == declaration.name) {
            return refuse(
                fields.path("name"),
                format!("input {name:?} is declared twice"),
            );
        }
        declarations.push(declaration);
    }
    Ok(declarations)
}

/// An object's fields, read with their path for errors.
struct Fields<'a> {
    prefix: String,
    object: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn new(prefix: &str, object: &'a Map<String, Value>) -> Result<Fields<'a>, DefinitionError> {
        Ok(Fields {
            prefix: prefix.to_owned(),
            object,
        })
    }

    fn path(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    fn only(&self, known: &[&str]) -> Result<(), DefinitionError> {
        match self
            .object
            .keys()
            .find(|key| !known.contains(&key.as_str()))
        {
            Some(unknown) => refuse(
                self.path(unknown),
                format!("unknown field (known: {})", known.join(", ")),
            ),
            None => Ok(()),
        }
    }

    fn string(&self, name: &str) -> Result<&'a str, DefinitionError> {
        match self.object.get(name) {
            Some(Value::String(text)) => Ok(text),
            None | Some(Value::Null) => refuse(self.path(name), "required"),
            Some(_) => refuse(self.path(name), "must be a string"),
        }
    }

    fn id(&self, name: &str) -> Result<String, DefinitionError> {
        let text = self.string(name)?;
        if !is_valid_id(text) {
            return refuse(self.path(name), format!("{text:?} is not an id"));
        }
        Ok(text.to_owned())
    }

    fn integer(&self, name: &str, min: u64, max: u64) -> Result<Option<u64>, DefinitionError> {
        match self.object.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => match value.as_u64() {
                Some(number) if (min..=max).contains(&number) => Ok(Some(number)),
                _ => refuse(self.path(name), format!("an integer from {min} to {max}")),
            },
        }
    }
}

#[cfg(test)]
#[path = "definition_tests.rs"]
mod tests;
