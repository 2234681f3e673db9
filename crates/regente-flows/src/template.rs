//! Templates: JSON values whose strings may hold `{{ EXPR }}`. A string that is
//! exactly one `{{ EXPR }}` takes the expression's typed value; `{{ EXPR }}`
//! inside a longer string is replaced by its text (strings as they are, other
//! values as JSON). Strings inside arrays and objects are templates too.

use serde_json::{Map, Value};

use crate::expr::{check_size, Expression, References, Scope};

const OPEN: &str = "{{";
const CLOSE: &str = "}}";

#[derive(Debug, Clone)]
pub enum Template {
    Literal(Value),
    /// The whole string is one expression: its value, typed.
    Exact(Expression),
    /// Text with expressions in it: a string.
    Text(Vec<Part>),
    Array(Vec<Template>),
    Object(Vec<(String, Template)>),
}

#[derive(Debug, Clone)]
pub enum Part {
    Text(String),
    Expression(Expression),
}

/// Why a template was refused: where inside the value (`[0].name`, or empty for
/// the value itself), the 1-based line and column in that string when known,
/// and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub path: String,
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl Template {
    pub fn parse(value: &Value) -> Result<Template, TemplateError> {
        match value {
            Value::String(text) => parse_text(text),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(index, item)| {
                    Template::parse(item).map_err(|e| TemplateError {
                        path: format!("[{index}]{}", e.path),
                        ..e
                    })
                })
                .collect::<Result<_, _>>()
                .map(Template::Array),
            Value::Object(object) => object
                .iter()
                .map(|(key, item)| {
                    Template::parse(item)
                        .map(|template| (key.clone(), template))
                        .map_err(|e| TemplateError {
                            path: format!(".{key}{}", e.path),
                            ..e
                        })
                })
                .collect::<Result<_, _>>()
                .map(Template::Object),
            other => Ok(Template::Literal(other.clone())),
        }
    }

    /// Every expression's references, together.
    pub fn references(&self) -> References {
        let mut references = References::default();
        self.each_expression(&mut |expression| references.extend(expression.references()));
        references
    }

    fn each_expression(&self, visit: &mut impl FnMut(&Expression)) {
        match self {
            Template::Literal(_) => {}
            Template::Exact(expression) => visit(expression),
            Template::Text(parts) => {
                for part in parts {
                    if let Part::Expression(expression) = part {
                        visit(expression);
                    }
                }
            }
            Template::Array(items) => items.iter().for_each(|item| item.each_expression(visit)),
            Template::Object(entries) => entries
                .iter()
                .for_each(|(_, item)| item.each_expression(visit)),
        }
    }

    /// The value, with every expression evaluated in `scope`.
    pub fn render(&self, scope: &Scope) -> Result<Value, String> {
        let value = self.render_unchecked(scope)?;
        check_size(&value)?;
        Ok(value)
    }

    fn render_unchecked(&self, scope: &Scope) -> Result<Value, String> {
        Ok(match self {
            Template::Literal(value) => value.clone(),
            Template::Exact(expression) => expression.evaluate(scope)?,
            Template::Text(parts) => {
                let mut text = String::new();
                for part in parts {
                    match part {
                        Part::Text(literal) => text.push_str(literal),
                        Part::Expression(expression) => match expression.evaluate(scope)? {
                            Value::String(value) => text.push_str(&value),
                            other => text.push_str(&other.to_string()),
                        },
                    }
                }
                Value::String(text)
            }
            Template::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| item.render_unchecked(scope))
                    .collect::<Result<_, _>>()?,
            ),
            Template::Object(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(key, item)| Ok((key.clone(), item.render_unchecked(scope)?)))
                    .collect::<Result<Map<_, _>, String>>()?,
            ),
        })
    }
}

fn parse_text(text: &str) -> Result<Template, TemplateError> {
    let mut parts = Vec::new();
    let mut rest = 0;
    while let Some(open) = text[rest..].find(OPEN).map(|at| rest + at) {
        let start = open + OPEN.len();
        let Some(close) = text[start..].find(CLOSE).map(|at| start + at) else {
            return Err(error_at(text, open, "\"{{\" without its \"}}\""));
        };
        if open > rest {
            parts.push(Part::Text(text[rest..open].to_owned()));
        }
        let source = &text[start..close];
        let expression = Expression::compile(source).map_err(|e| {
            let (line, column) = e.position.unwrap_or((1, 1));
            // Where the expression starts in the string, plus where in it.
            let before = &text[..start];
            let base_line = before.matches('\n').count() + 1;
            let base_column = before.len() - before.rfind('\n').map_or(0, |at| at + 1);
            let position = if line == 1 {
                (base_line, base_column + column)
            } else {
                (base_line + line - 1, column)
            };
            TemplateError {
                path: String::new(),
                position: Some(position),
                message: e.message,
            }
        })?;
        parts.push(Part::Expression(expression));
        rest = close + CLOSE.len();
    }
    if rest < text.len() {
        parts.push(Part::Text(text[rest..].to_owned()));
    }
    Ok(match parts.as_slice() {
        [] => Template::Literal(Value::String(String::new())),
        [Part::Text(_)] => Template::Literal(Value::String(text.to_owned())),
        [Part::Expression(expression)] => Template::Exact(expression.clone()),
        _ => Template::Text(parts),
    })
}

fn error_at(text: &str, at: usize, message: &str) -> TemplateError {
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |at| at + 1) + 1;
    TemplateError {
        path: String::new(),
        position: Some((line, column)),
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn scope() -> Scope {
        Scope {
            input: json!({"N": 2}),
            steps: json!({"fetch": {"status": "FINISHED", "return_value": {"count": 3}, "execution_id": "e1"}})
                .as_object()
                .unwrap()
                .clone(),
            failure: None,
        }
    }

    fn render(value: Value) -> Result<Value, String> {
        Template::parse(&value).unwrap().render(&scope())
    }

    #[test]
    fn an_exact_template_keeps_the_type_and_an_embedded_one_becomes_text() {
        assert_eq!(
            render(json!("{{ steps.fetch.return_value.count }}")),
            Ok(json!(3))
        );
        assert_eq!(
            render(json!("{{steps.fetch.return_value}}")),
            Ok(json!({"count": 3}))
        );
        assert_eq!(
            render(json!(
                "found {{ steps.fetch.return_value.count }} ({{ steps.fetch.status }})"
            )),
            Ok(json!("found 3 (FINISHED)"))
        );
        assert_eq!(render(json!("{{ input.N }}{{ input.N }}")), Ok(json!("22")));
        assert_eq!(render(json!("plain")), Ok(json!("plain")));
        assert_eq!(render(json!(7)), Ok(json!(7)));
    }

    #[test]
    fn strings_inside_arrays_and_objects_are_templates() {
        assert_eq!(
            render(json!({"n": "{{ input.N }}", "list": ["a{{ input.N }}", true]})),
            Ok(json!({"n": 2, "list": ["a2", true]}))
        );
        let template =
            Template::parse(&json!(["{{ input.N }}", {"x": "{{ steps.fetch.status }}"}])).unwrap();
        let references = template.references();
        assert!(references.inputs.contains("N"));
        assert!(references.steps.contains("fetch"));
    }

    #[test]
    fn errors_point_into_the_string_and_the_value() {
        let error = Template::parse(&json!("count: {{ steps.fetch.x > }}")).unwrap_err();
        assert_eq!(error.path, "");
        // "count: {{" is 9 characters; the expression " steps.fetch.x > " fails at
        // its end, its column 18.
        assert_eq!(error.position, Some((1, 27)));
        let error = Template::parse(&json!({"a": ["ok", "{{ 1 + }}"]})).unwrap_err();
        assert_eq!(error.path, ".a[1]");
        let error = Template::parse(&json!("a {{ b")).unwrap_err();
        assert_eq!(error.position, Some((1, 3)));
        assert!(error.message.contains("without"));
    }
}
