//! Variables: what an integration passes to a robot run.
//!
//! A request names each variable with a declared `type` and a `value`. The robot's
//! `robot.toml` may declare its variables with a type and a default; when it declares
//! any, it is the robot's declaration that decides the type, and names it does not
//! declare are refused. Values are coerced to typed JSON (`text` -> string, `number`
//! -> number, `boolean` -> bool, `json` -> any value) so that a robot reads them with
//! their types, and [`TypedValue::text_form`] gives the form for environment variables.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// Longest variable name accepted.
pub const MAX_NAME_LEN: usize = 128;

/// A name matching `[A-Za-z_][A-Za-z0-9_]*`, at most [`MAX_NAME_LEN`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VariableName(String);

impl VariableName {
    pub fn parse(text: &str) -> Result<VariableName, VariableError> {
        let mut bytes = text.bytes();
        let first_ok = matches!(bytes.next(), Some(b'A'..=b'Z' | b'a'..=b'z' | b'_'));
        let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if first_ok && rest_ok && text.len() <= MAX_NAME_LEN {
            Ok(VariableName(text.to_owned()))
        } else {
            Err(VariableError::InvalidName(shorten(text)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VariableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariableType {
    Text,
    Number,
    Boolean,
    Json,
}

impl VariableType {
    pub fn parse(text: &str) -> Option<VariableType> {
        match text.to_ascii_lowercase().as_str() {
            "text" | "string" => Some(VariableType::Text),
            "number" => Some(VariableType::Number),
            "boolean" | "bool" => Some(VariableType::Boolean),
            "json" => Some(VariableType::Json),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            VariableType::Text => "text",
            VariableType::Number => "number",
            VariableType::Boolean => "boolean",
            VariableType::Json => "json",
        }
    }

    /// Coerces a JSON value to this type, or says why it does not fit.
    ///
    /// Integrations often send every value as a string, so strings that spell a
    /// number, a boolean or a JSON document are accepted for those types.
    fn coerce(self, value: &Value) -> Result<TypedValue, String> {
        let typed = match (self, value) {
            (VariableType::Text, Value::String(_)) => value.clone(),
            (VariableType::Text, Value::Number(n)) => Value::String(n.to_string()),
            (VariableType::Text, Value::Bool(b)) => Value::String(b.to_string()),
            (VariableType::Text, _) => {
                return Err(format!("expected text, got {}", json_kind(value)))
            }
            (VariableType::Number, Value::Number(_)) => value.clone(),
            (VariableType::Number, Value::String(text)) => parse_number(text.trim())
                .ok_or_else(|| format!("{:?} is not a number", shorten(text)))?,
            (VariableType::Number, _) => {
                return Err(format!("expected a number, got {}", json_kind(value)))
            }
            (VariableType::Boolean, Value::Bool(_)) => value.clone(),
            (VariableType::Boolean, Value::String(text)) => {
                match text.trim().to_ascii_lowercase().as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => return Err(format!("{:?} is not true or false", shorten(text))),
                }
            }
            (VariableType::Boolean, _) => {
                return Err(format!("expected true or false, got {}", json_kind(value)))
            }
            (VariableType::Json, Value::String(text)) => serde_json::from_str(text)
                .map_err(|e| format!("the text is not a JSON document: {e}"))?,
            (VariableType::Json, _) => value.clone(),
        };
        // Environment variables cannot hold NUL, and robots read values from there.
        if matches!(&typed, Value::String(text) if text.contains('\0')) {
            return Err("text must not contain NUL characters".into());
        }
        Ok(TypedValue(typed))
    }
}

impl fmt::Display for VariableType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn parse_number(text: &str) -> Option<Value> {
    if let Ok(int) = text.parse::<i64>() {
        return Some(Value::from(int));
    }
    let float = text.parse::<f64>().ok().filter(|f| f.is_finite())?;
    serde_json::Number::from_f64(float).map(Value::Number)
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Echoes user text in messages without letting it grow them without bound.
fn shorten(text: &str) -> String {
    const LIMIT: usize = 64;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

/// A value coerced to its variable's type.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedValue(Value);

impl TypedValue {
    pub fn as_json(&self) -> &Value {
        &self.0
    }

    /// The text a robot sees in `REGENTE_VAR_<NAME>`: strings as they are,
    /// everything else as compact JSON.
    pub fn text_form(&self) -> String {
        match &self.0 {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        }
    }
}

/// A variable as declared in `robot.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct VariableDeclaration {
    pub name: VariableName,
    pub kind: VariableType,
    pub default: Option<TypedValue>,
}

impl VariableDeclaration {
    pub fn parse(name: &str, kind: &str, default: Option<&Value>) -> Result<Self, VariableError> {
        let name = VariableName::parse(name)?;
        let kind = VariableType::parse(kind).ok_or_else(|| VariableError::UnknownType {
            name: name.to_string(),
            kind: shorten(kind),
        })?;
        let default = default
            .map(|value| {
                kind.coerce(value)
                    .map_err(|reason| VariableError::BadValue {
                        name: name.to_string(),
                        kind,
                        reason,
                    })
            })
            .transpose()?;
        Ok(VariableDeclaration {
            name,
            kind,
            default,
        })
    }
}

/// A variable as an integration sent it, not validated yet.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestVariable {
    pub name: String,
    /// The `type` field; absent means "the robot's declared type, or text".
    pub kind: Option<String>,
    pub value: Value,
}

/// Reads a run request's body: `{"variables": [{"name", "type", "value"}, ...]}`,
/// `variables` also a single object; absent, `null`, or a body of blanks: no
/// variables. Any content type is read as JSON. The error says what is wrong
/// with the shape, in words.
pub fn parse_run_body(body: &[u8]) -> Result<Vec<RequestVariable>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON ({e})"))?;
    let Value::Object(mut object) = value else {
        return Err("the body must be a JSON object".to_owned());
    };
    variables_from_json(object.remove("variables").unwrap_or(Value::Null))
}

/// The `variables` of a run body: an array of variables, a single one, or
/// `null` for none. The error says what does not fit.
pub fn variables_from_json(value: Value) -> Result<Vec<RequestVariable>, String> {
    let one = |value: Value| -> Result<RequestVariable, String> {
        let Value::Object(mut variable) = value else {
            return Err("each variable must be an object".into());
        };
        let name = match variable.remove("name") {
            Some(Value::String(name)) => name,
            _ => return Err("each variable needs a \"name\" string".into()),
        };
        let kind = match variable.remove("type") {
            None | Some(Value::Null) => None,
            Some(Value::String(kind)) => Some(kind),
            Some(_) => {
                return Err(format!(
                    "the \"type\" of variable {name:?} must be a string"
                ))
            }
        };
        Ok(RequestVariable {
            name,
            kind,
            value: variable.remove("value").unwrap_or(Value::Null),
        })
    };
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items.into_iter().map(one).collect(),
        single @ Value::Object(_) => Ok(vec![one(single)?]),
        _ => {
            Err("\"variables\" must be an array of variable objects or one variable object".into())
        }
    }
}

/// The variables of one run, by name, with typed values.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResolvedVariables(BTreeMap<String, TypedValue>);

impl ResolvedVariables {
    pub fn iter(&self) -> impl Iterator<Item = (&str, &TypedValue)> {
        self.0.iter().map(|(name, value)| (name.as_str(), value))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `{"NAME": value}` object robots read from `REGENTE_VARIABLES`, also the
    /// stored form.
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(name, value)| (name.clone(), value.0.clone()))
                .collect(),
        )
    }

    /// Reads back the stored form. Values were typed when stored, so they are
    /// taken as they are; an object is the only shape ever written.
    pub fn from_json(value: &Value) -> ResolvedVariables {
        let map = value
            .as_object()
            .map(|object| {
                object
                    .iter()
                    .map(|(name, value)| (name.clone(), TypedValue(value.clone())))
                    .collect()
            })
            .unwrap_or_default();
        ResolvedVariables(map)
    }
}

/// Resolves a run's variables: requested values checked and typed, then the
/// robot's defaults for every declared variable the request left out.
pub fn resolve_variables(
    declared: &[VariableDeclaration],
    requested: &[RequestVariable],
) -> Result<ResolvedVariables, VariableError> {
    let mut resolved = BTreeMap::new();
    for request in requested {
        let name = VariableName::parse(&request.name)?;
        let requested_kind = match &request.kind {
            Some(kind) => {
                Some(
                    VariableType::parse(kind).ok_or_else(|| VariableError::UnknownType {
                        name: name.to_string(),
                        kind: shorten(kind),
                    })?,
                )
            }
            None => None,
        };
        let declaration = declared.iter().find(|d| d.name == name);
        if declaration.is_none() && !declared.is_empty() {
            return Err(VariableError::Undeclared {
                name: name.to_string(),
                declared: declared.iter().map(|d| d.name.to_string()).collect(),
            });
        }
        let kind = declaration
            .map(|d| d.kind)
            .or(requested_kind)
            .unwrap_or(VariableType::Text);
        let value = kind
            .coerce(&request.value)
            .map_err(|reason| VariableError::BadValue {
                name: name.to_string(),
                kind,
                reason,
            })?;
        if resolved.insert(name.0.clone(), value).is_some() {
            return Err(VariableError::Duplicate(name.to_string()));
        }
    }
    for declaration in declared {
        if resolved.contains_key(declaration.name.as_str()) {
            continue;
        }
        let default = declaration
            .default
            .clone()
            .ok_or_else(|| VariableError::Missing(declaration.name.to_string()))?;
        resolved.insert(declaration.name.0.clone(), default);
    }
    let resolved = ResolvedVariables(resolved);
    resolved.check_environment_size()?;
    Ok(resolved)
}

/// The most bytes one `NAME=value` entry of a process's environment may take
/// on Linux, its final NUL included (`MAX_ARG_STRLEN`): a longer one makes the
/// robot's start fail with "Argument list too long".
pub const MAX_ENVIRONMENT_ENTRY: usize = 128 * 1024;

/// The most bytes a run's variables may take in the environment together,
/// well under what a process's arguments and environment may take at once
/// (a quarter of the stack limit, 2 MiB by default).
pub const MAX_ENVIRONMENT_TOTAL: usize = 1024 * 1024;

impl ResolvedVariables {
    /// Every variable reaches the robot as `REGENTE_VAR_<NAME>` too: refuses
    /// values that would not fit in a process's environment, rather than
    /// accepting a run whose start would fail.
    fn check_environment_size(&self) -> Result<(), VariableError> {
        let mut total = 0;
        for (name, value) in self.iter() {
            let bytes = environment_entry_len(name, value);
            if bytes > MAX_ENVIRONMENT_ENTRY {
                return Err(VariableError::TooLargeForEnvironment {
                    name: name.to_owned(),
                    bytes,
                });
            }
            total += bytes;
        }
        if total > MAX_ENVIRONMENT_TOTAL {
            return Err(VariableError::EnvironmentTooLarge(total));
        }
        Ok(())
    }
}

/// Bytes `REGENTE_VAR_<NAME>=<text form>` takes with its NUL.
fn environment_entry_len(name: &str, value: &TypedValue) -> usize {
    let text = match &value.0 {
        Value::String(text) => text.len(),
        other => other.to_string().len(),
    };
    "REGENTE_VAR_".len() + name.len() + 1 + text + 1
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VariableError {
    #[error("variable name {0:?} is invalid: names match [A-Za-z_][A-Za-z0-9_]* and have at most 128 characters")]
    InvalidName(String),
    #[error(
        "variable {name:?} has unknown type {kind:?}: the types are text, number, boolean and json"
    )]
    UnknownType { name: String, kind: String },
    #[error("variable {name:?} does not fit its type {kind}: {reason}")]
    BadValue {
        name: String,
        kind: VariableType,
        reason: String,
    },
    #[error("variable {name:?} is not declared by this robot, which declares: {}", declared.join(", "))]
    Undeclared { name: String, declared: Vec<String> },
    #[error("variable {0:?} is required: the robot declares it without a default")]
    Missing(String),
    #[error("variable {0:?} is given more than once")]
    Duplicate(String),
    #[error(
        "variable {name:?} takes {bytes} bytes in the robot's environment (REGENTE_VAR_{name}), \
         more than the {MAX_ENVIRONMENT_ENTRY} bytes one environment entry may take: send large data \
         another way (a file, a URL the robot fetches)"
    )]
    TooLargeForEnvironment { name: String, bytes: usize },
    #[error(
        "the variables take {0} bytes in the robot's environment together, more than the limit of \
         {MAX_ENVIRONMENT_TOTAL} bytes"
    )]
    EnvironmentTooLarge(usize),
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(name: &str, kind: Option<&str>, value: Value) -> RequestVariable {
        RequestVariable {
            name: name.into(),
            kind: kind.map(Into::into),
            value,
        }
    }

    fn declare(name: &str, kind: &str, default: Option<Value>) -> VariableDeclaration {
        VariableDeclaration::parse(name, kind, default.as_ref()).unwrap()
    }

    #[test]
    fn names_follow_the_identifier_rule() {
        for good in ["CNPJ", "_x", "a1_b2", &"A".repeat(128)] {
            assert!(VariableName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "1abc", "a-b", "a b", "PATH=x", "é", &"A".repeat(129)] {
            assert!(VariableName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_are_coerced_to_their_declared_types() {
        let check = |kind: VariableType, value: Value, expected: Value| {
            assert_eq!(kind.coerce(&value).unwrap().0, expected, "{kind} {value}");
        };
        check(VariableType::Text, json!("a b"), json!("a b"));
        check(VariableType::Text, json!(12), json!("12"));
        check(VariableType::Number, json!(" 42 "), json!(42));
        check(VariableType::Number, json!("1.5"), json!(1.5));
        check(VariableType::Number, json!(-3), json!(-3));
        check(VariableType::Boolean, json!("TRUE"), json!(true));
        check(VariableType::Boolean, json!(false), json!(false));
        check(VariableType::Json, json!("{\"a\":[1]}"), json!({"a": [1]}));
        check(VariableType::Json, json!({"a": 1}), json!({"a": 1}));
    }

    #[test]
    fn values_that_do_not_fit_are_refused() {
        for (kind, value) in [
            (VariableType::Text, json!(null)),
            (VariableType::Text, json!({"a": 1})),
            (VariableType::Number, json!("12abc")),
            (VariableType::Number, json!("NaN")),
            (VariableType::Number, json!(true)),
            (VariableType::Boolean, json!("yes")),
            (VariableType::Boolean, json!(1)),
            (VariableType::Json, json!("{not json")),
            (VariableType::Text, json!("a\u{0}b")),
        ] {
            assert!(kind.coerce(&value).is_err(), "{kind} {value}");
        }
    }

    #[test]
    fn missing_variables_take_the_defaults() {
        let declared = [
            declare("CNPJ", "text", Some(json!("00"))),
            declare("COUNT", "number", Some(json!(3))),
        ];
        let resolved =
            resolve_variables(&declared, &[request("CNPJ", Some("text"), json!("11"))]).unwrap();
        assert_eq!(resolved.to_json(), json!({"CNPJ": "11", "COUNT": 3}));
    }

    #[test]
    fn the_declared_type_decides_over_the_requested_one() {
        let declared = [declare("COUNT", "number", None)];
        let resolved =
            resolve_variables(&declared, &[request("COUNT", Some("text"), json!("7"))]).unwrap();
        assert_eq!(resolved.to_json(), json!({"COUNT": 7}));
    }

    #[test]
    fn errors_name_the_variable() {
        let declared = [
            declare("CNPJ", "text", None),
            declare("N", "number", Some(json!(1))),
        ];
        let cases = [
            (
                vec![
                    request("OTHER", None, json!("x")),
                    request("CNPJ", None, json!("1")),
                ],
                "OTHER",
            ),
            (vec![request("CNPJ", Some("date"), json!("x"))], "CNPJ"),
            (
                vec![
                    request("CNPJ", None, json!("1")),
                    request("N", None, json!("many")),
                ],
                "\"N\"",
            ),
            (vec![], "CNPJ"),
            (
                vec![
                    request("CNPJ", None, json!("1")),
                    request("CNPJ", None, json!("2")),
                ],
                "CNPJ",
            ),
        ];
        for (requested, named) in cases {
            let message = resolve_variables(&declared, &requested)
                .unwrap_err()
                .to_string();
            assert!(message.contains(named), "{message}");
        }
    }

    #[test]
    fn robots_that_declare_nothing_take_any_valid_variable() {
        let resolved = resolve_variables(
            &[],
            &[
                request("A", None, json!("x")),
                request("B", Some("boolean"), json!("false")),
            ],
        )
        .unwrap();
        assert_eq!(resolved.to_json(), json!({"A": "x", "B": false}));
        assert!(resolve_variables(&[], &[request("LD_PRELOAD=", None, json!("x"))]).is_err());
    }

    #[test]
    fn values_too_large_for_the_environment_are_refused_with_the_limit() {
        let fits = "x".repeat(MAX_ENVIRONMENT_ENTRY - "REGENTE_VAR_BIG=".len() - 1);
        assert!(resolve_variables(&[], &[request("BIG", None, json!(fits))]).is_ok());
        let over = format!("{fits}x");
        let message = resolve_variables(&[], &[request("BIG", None, json!(over))])
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("\"BIG\"") && message.contains("131072"),
            "{message}"
        );
        // A default counts as well as a value sent.
        let declared = [declare("DOC", "json", Some(json!([over])))];
        assert!(resolve_variables(&declared, &[]).is_err());
        // Together, under the entry limit each.
        let many: Vec<_> = (0..9)
            .map(|n| request(&format!("V{n}"), None, json!("y".repeat(120_000))))
            .collect();
        let message = resolve_variables(&[], &many).unwrap_err().to_string();
        assert!(message.contains("together"), "{message}");
    }

    #[test]
    fn text_form_keeps_strings_byte_for_byte() {
        let value = VariableType::Text
            .coerce(&json!("a \"b\" $(c)\nd ção"))
            .unwrap();
        assert_eq!(value.text_form(), "a \"b\" $(c)\nd ção");
        assert_eq!(
            VariableType::Json
                .coerce(&json!([1, "x"]))
                .unwrap()
                .text_form(),
            "[1,\"x\"]"
        );
    }
}
