//! Expressions: CEL (the Common Expression Language) through the `cel` crate.
//!
//! CEL has no side effects, no assignment and no unbounded loops: its only
//! iterations are the macros over a list or map it already holds (`all`,
//! `exists`, `map`, `filter`), so an expression's work is at most its size times
//! the size of the values it reads to the power of its macros' nesting. The
//! expression's size is bounded ([`MAX_EXPRESSION_BYTES`]); before an evaluation
//! that bound on the work is computed from the values at hand and refused past
//! [`MAX_WORK`]; what it produces is bounded ([`MAX_VALUE_BYTES`]); and it runs on
//! a thread of its own under a time bound ([`EVALUATION_TIME`]), so that even a
//! slow evaluation fails its step instead of holding the engine.

use std::collections::{BTreeSet, HashMap};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use serde_json::{Map, Number, Value};

/// Longest expression accepted.
pub const MAX_EXPRESSION_BYTES: usize = 4096;
/// Largest value an expression or template may produce, as JSON text.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// The most work an evaluation may need: expression nodes times value nodes to
/// the power of the macros' nesting (see the module's documentation).
pub const MAX_WORK: f64 = 2e7;
/// How long one evaluation may take.
pub const EVALUATION_TIME: Duration = Duration::from_secs(1);

/// The names an expression may start from.
pub const INPUT: &str = "input";
pub const STEPS: &str = "steps";
pub const FAILURE: &str = "failure";

/// Why an expression was refused: where, when the parser knows, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpressionError {
    /// 1-based line and column in the expression's text.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

/// What an expression reads: the steps and inputs it names, and whether it
/// reads `failure`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    pub steps: BTreeSet<String>,
    pub inputs: BTreeSet<String>,
    pub failure: bool,
}

impl References {
    pub fn extend(&mut self, other: &References) {
        self.steps.extend(other.steps.iter().cloned());
        self.inputs.extend(other.inputs.iter().cloned());
        self.failure |= other.failure;
    }
}

/// A compiled expression with what it reads.
#[derive(Debug, Clone)]
pub struct Expression {
    source: String,
    program: Arc<cel::Program>,
    references: References,
    /// Nodes of the tree, and the deepest nesting of macros in it.
    nodes: usize,
    nesting: u32,
}

/// What expressions see: the run's `input`, the `steps` that ran before (id ->
/// `{status, return_value, execution_id}`), and in the `on_failure` step,
/// `failure` (`{step, status, reason}`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scope {
    pub input: Value,
    pub steps: Map<String, Value>,
    pub failure: Option<Value>,
}

impl Expression {
    pub fn compile(source: &str) -> Result<Expression, ExpressionError> {
        if source.len() > MAX_EXPRESSION_BYTES {
            return Err(ExpressionError {
                position: None,
                message: format!(
                    "the expression has {} bytes; at most {MAX_EXPRESSION_BYTES} are allowed",
                    source.len()
                ),
            });
        }
        if source.trim().is_empty() {
            return Err(ExpressionError {
                position: None,
                message: "the expression is empty".into(),
            });
        }
        let program = cel::Program::compile(source).map_err(|errors| {
            let first = errors.errors.first();
            ExpressionError {
                position: first.map(|e| (e.pos.0.max(1) as usize, e.pos.1.max(1) as usize)),
                message: first.map_or_else(|| errors.to_string(), |e| e.msg.clone()),
            }
        })?;
        let mut walk = Walk::default();
        walk.visit(program.expression(), 0)
            .map_err(|message| ExpressionError {
                position: None,
                message,
            })?;
        Ok(Expression {
            source: source.to_owned(),
            program: Arc::new(program),
            references: walk.references,
            nodes: walk.nodes,
            nesting: walk.nesting,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn references(&self) -> &References {
        &self.references
    }

    /// The expression's value as JSON, within [`EVALUATION_TIME`] and
    /// [`MAX_VALUE_BYTES`]; the error says why not, in words.
    pub fn evaluate(&self, scope: &Scope) -> Result<Value, String> {
        let variables = self.variables(scope);
        let value_nodes: usize = variables.iter().map(|(_, value)| json_nodes(value)).sum();
        let work = self.nodes as f64 * (value_nodes.max(1) as f64).powi(self.nesting as i32);
        if work > MAX_WORK {
            return Err(format!(
                "the expression would take too long: {} nested macros over {value_nodes} values",
                self.nesting
            ));
        }
        let program = self.program.clone();
        let (answer, answered) = mpsc::sync_channel(1);
        // A thread of its own, so that an evaluation past its time can be left
        // behind: it ends by itself, as every CEL evaluation does.
        std::thread::Builder::new()
            .name("flow-expression".into())
            .spawn(move || {
                let _ = answer.send(run(&program, variables));
            })
            .map_err(|e| format!("cannot evaluate the expression: {e}"))?;
        match answered.recv_timeout(EVALUATION_TIME) {
            Ok(result) => result,
            Err(_) => Err(format!(
                "the expression took longer than {} s",
                EVALUATION_TIME.as_secs_f64()
            )),
        }
    }

    /// Only what the expression reads, so that large return values of other
    /// steps are not converted for nothing.
    fn variables(&self, scope: &Scope) -> Vec<(&'static str, Value)> {
        let mut variables = Vec::new();
        if !self.references.inputs.is_empty() {
            variables.push((INPUT, scope.input.clone()));
        }
        if !self.references.steps.is_empty() {
            let steps = self
                .references
                .steps
                .iter()
                .filter_map(|id| Some((id.clone(), scope.steps.get(id)?.clone())))
                .collect();
            variables.push((STEPS, Value::Object(steps)));
        }
        if self.references.failure {
            variables.push((FAILURE, scope.failure.clone().unwrap_or(Value::Null)));
        }
        variables
    }
}

fn run(program: &cel::Program, variables: Vec<(&'static str, Value)>) -> Result<Value, String> {
    let mut context = cel::Context::default();
    for (name, value) in variables {
        context.add_variable_from_value(name, to_cel(&value));
    }
    let value = program.execute(&context).map_err(|e| e.to_string())?;
    let json = value
        .json()
        .map_err(|e| format!("the value cannot be written as JSON: {e}"))?;
    check_size(&json)?;
    Ok(json)
}

/// How many values a JSON value holds, itself included.
fn json_nodes(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(json_nodes).sum::<usize>(),
        Value::Object(object) => 1 + object.values().map(json_nodes).sum::<usize>(),
        _ => 1,
    }
}

/// Refuses a value larger than [`MAX_VALUE_BYTES`] of JSON.
pub fn check_size(value: &Value) -> Result<(), String> {
    let size = serde_json::to_vec(value).map_or(usize::MAX, |text| text.len());
    if size > MAX_VALUE_BYTES {
        return Err(format!(
            "the value has {size} bytes of JSON; at most {MAX_VALUE_BYTES} are allowed"
        ));
    }
    Ok(())
}

/// JSON as CEL sees it: integers as `int` (or `uint` past `int`'s range).
fn to_cel(value: &Value) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(flag) => cel::Value::Bool(*flag),
        Value::Number(number) => number_to_cel(number),
        Value::String(text) => cel::Value::String(Arc::new(text.clone())),
        Value::Array(items) => cel::Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(object) => {
            let map: HashMap<String, cel::Value> = object
                .iter()
                .map(|(key, value)| (key.clone(), to_cel(value)))
                .collect();
            cel::Value::from(map)
        }
    }
}

fn number_to_cel(number: &Number) -> cel::Value {
    if let Some(int) = number.as_i64() {
        cel::Value::Int(int)
    } else if let Some(uint) = number.as_u64() {
        cel::Value::UInt(uint)
    } else {
        cel::Value::Float(number.as_f64().unwrap_or(f64::NAN))
    }
}

/// A walk of the tree that notes each `steps.ID` and `input.NAME`, refuses names
/// the scope does not have, and measures the tree. `bound` holds the macros'
/// variables in scope.
#[derive(Default)]
struct Walk {
    bound: Vec<String>,
    references: References,
    nodes: usize,
    nesting: u32,
}

impl Walk {
    fn is_bound(&self, name: &str) -> bool {
        self.bound.iter().any(|b| b == name)
    }

    fn visit(&mut self, node: &IdedExpr, nesting: u32) -> Result<(), String> {
        self.nodes += 1;
        self.nesting = self.nesting.max(nesting);
        match &node.expr {
            Expr::Ident(name) => {
                if self.is_bound(name) {
                    return Ok(());
                }
                match name.as_str() {
                    FAILURE => self.references.failure = true,
                    STEPS => {
                        return Err("name a step as steps.ID (e.g. steps.fetch.status)".into())
                    }
                    INPUT => return Err("name an input as input.NAME".into()),
                    other => {
                        return Err(format!(
                            "unknown name {other:?}: expressions read input.NAME, steps.ID and, in on_failure, failure"
                        ))
                    }
                }
            }
            Expr::Select(select) => {
                if let Expr::Ident(root) = &select.operand.expr {
                    if !self.is_bound(root) {
                        let field = select.field.clone();
                        match root.as_str() {
                            STEPS => {
                                self.references.steps.insert(field);
                                return Ok(());
                            }
                            INPUT => {
                                self.references.inputs.insert(field);
                                return Ok(());
                            }
                            _ => {}
                        }
                    }
                }
                self.visit(&select.operand, nesting)?;
            }
            Expr::Call(call) => {
                if let Some(target) = &call.target {
                    self.visit(target, nesting)?;
                }
                for arg in &call.args {
                    self.visit(arg, nesting)?;
                }
            }
            Expr::List(list) => {
                for element in &list.elements {
                    self.visit(element, nesting)?;
                }
            }
            Expr::Map(map) => {
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(entry) = &entry.expr {
                        self.visit(&entry.key, nesting)?;
                        self.visit(&entry.value, nesting)?;
                    }
                }
            }
            Expr::Struct(object) => {
                for entry in &object.entries {
                    if let EntryExpr::StructField(field) = &entry.expr {
                        self.visit(&field.value, nesting)?;
                    }
                }
            }
            Expr::Comprehension(comprehension) => {
                self.visit(&comprehension.iter_range, nesting)?;
                self.visit(&comprehension.accu_init, nesting)?;
                let depth = self.bound.len();
                self.bound.push(comprehension.iter_var.clone());
                self.bound.extend(comprehension.iter_var2.clone());
                self.bound.push(comprehension.accu_var.clone());
                for part in [
                    &comprehension.loop_cond,
                    &comprehension.loop_step,
                    &comprehension.result,
                ] {
                    self.visit(part, nesting + 1)?;
                }
                self.bound.truncate(depth);
            }
            Expr::Literal(_) | Expr::Unspecified => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn scope() -> Scope {
        Scope {
            input: json!({"MIN": 2, "NAME": "ana"}),
            steps: json!({
                "fetch": {"status": "FINISHED", "return_value": {"count": 3, "items": [1, 2, 3]}, "execution_id": "e1"},
                "other": {"status": "FINISHED", "return_value": "x".repeat(10), "execution_id": "e2"},
            })
            .as_object()
            .unwrap()
            .clone(),
            failure: None,
        }
    }

    #[test]
    fn references_are_the_steps_and_inputs_named() {
        let expression = Expression::compile(
            "steps.fetch.return_value.count > input.MIN && steps.fetch.return_value.items.all(i, i > 0)",
        )
        .unwrap();
        let references = expression.references();
        assert_eq!(references.steps, BTreeSet::from(["fetch".to_owned()]));
        assert_eq!(references.inputs, BTreeSet::from(["MIN".to_owned()]));
        assert!(!references.failure);
        assert!(
            Expression::compile("failure.step == 'x'")
                .unwrap()
                .references()
                .failure
        );
    }

    #[test]
    fn values_keep_their_types() {
        let evaluate = |source: &str| Expression::compile(source).unwrap().evaluate(&scope());
        assert_eq!(
            evaluate("steps.fetch.return_value.count > input.MIN"),
            Ok(json!(true))
        );
        assert_eq!(evaluate("steps.fetch.return_value.count * 2"), Ok(json!(6)));
        assert_eq!(
            evaluate("steps.fetch.return_value.items.map(i, i * 10)"),
            Ok(json!([10, 20, 30]))
        );
        assert_eq!(evaluate("input.NAME + '!'"), Ok(json!("ana!")));
        assert_eq!(
            evaluate("{'n': steps.fetch.status}"),
            Ok(json!({"n": "FINISHED"}))
        );
    }

    #[test]
    fn parse_errors_give_line_and_column() {
        let error = Expression::compile("steps.fetch.return_value.count > ").unwrap_err();
        assert_eq!(error.position, Some((1, 34)));
        assert!(error.message.contains("mismatched input"), "{error:?}");
        let error = Expression::compile("1 +\n (").unwrap_err();
        assert_eq!(error.position, Some((2, 3)));
    }

    #[test]
    fn unknown_names_and_bare_roots_are_refused() {
        for source in ["count > 0", "steps['fetch'].status", "size(input) > 0", ""] {
            assert!(Expression::compile(source).is_err(), "{source}");
        }
        // A macro's own variable is no unknown name.
        assert!(Expression::compile("[1, 2].exists(steps2, steps2 > 1)").is_ok());
        let long = format!("1 + {}", "1 + ".repeat(MAX_EXPRESSION_BYTES / 4));
        assert!(Expression::compile(&long)
            .unwrap_err()
            .message
            .contains("at most 4096"));
    }

    #[test]
    fn run_time_errors_are_words() {
        let error = Expression::compile("steps.fetch.return_value.missing > 1")
            .unwrap()
            .evaluate(&scope())
            .unwrap_err();
        assert!(error.contains("missing"), "{error}");
        let error = Expression::compile("input.NAME + 1")
            .unwrap()
            .evaluate(&scope())
            .unwrap_err();
        assert!(!error.is_empty());
    }

    #[test]
    fn values_past_the_size_bound_are_refused() {
        let mut big = scope();
        big.steps.insert(
            "other".into(),
            json!({"status": "FINISHED", "return_value": "x".repeat(MAX_VALUE_BYTES / 2 + 10), "execution_id": "e2"}),
        );
        let error = Expression::compile("steps.other.return_value + steps.other.return_value")
            .unwrap()
            .evaluate(&big)
            .unwrap_err();
        assert!(error.contains("at most 1048576"), "{error}");
    }

    #[test]
    fn nested_macros_over_large_values_are_refused_before_they_run() {
        let mut big = scope();
        big.input = json!({ "LIST": (0..3000).collect::<Vec<_>>() });
        let nested = "input.LIST.all(a, input.LIST.all(b, input.LIST.all(c, a + b + c >= 0)))";
        let error = Expression::compile(nested)
            .unwrap()
            .evaluate(&big)
            .unwrap_err();
        assert!(error.contains("would take too long"), "{error}");
        // One macro over the same list is fine.
        assert_eq!(
            Expression::compile("input.LIST.all(a, a >= 0)")
                .unwrap()
                .evaluate(&big),
            Ok(json!(true))
        );
    }
}
