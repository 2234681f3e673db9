//! Bodies read field by field, so that a bad one is answered 400 naming its
//! field (the schedules' and the API keys' bodies), and the times they give.

use regente_core::schedule::plan::parse_instant;
use regente_core::schedule::Millis;
use serde_json::{Map, Value};

use super::error::{ApiError, ApiResult};

/// A JSON object read field by field; every error names its field.
pub(crate) struct Fields(Map<String, Value>);

pub(crate) fn bad(field: &str, message: &str) -> ApiError {
    ApiError::invalid(format!("{field}: {message}"))
}

impl Fields {
    pub(crate) fn parse(body: &[u8], allowed: &[&str]) -> ApiResult<Fields> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::invalid(
                "the body is empty; expected a JSON object",
            ));
        }
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::invalid(format!("the body is not valid JSON ({e})")))?;
        let Value::Object(map) = value else {
            return Err(ApiError::invalid("the body must be a JSON object"));
        };
        if let Some(unknown) = map.keys().find(|key| !allowed.contains(&key.as_str())) {
            return Err(ApiError::invalid(format!(
                "{unknown}: not a field of this body (fields: {})",
                allowed.join(", ")
            )));
        }
        Ok(Fields(map))
    }

    /// The field's value; `null` reads as absent.
    pub(crate) fn value(&mut self, name: &str) -> Option<Value> {
        self.0.remove(name).filter(|value| !value.is_null())
    }

    /// `Some(None)` for an explicit `null`.
    pub(crate) fn nullable(&mut self, name: &str) -> Option<Option<Value>> {
        self.0
            .remove(name)
            .map(|value| (!value.is_null()).then_some(value))
    }

    pub(crate) fn text(&mut self, name: &str) -> ApiResult<Option<String>> {
        match self.value(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(bad(name, "must be a string")),
        }
    }

    pub(crate) fn integer(&mut self, name: &str) -> ApiResult<Option<i64>> {
        self.value(name)
            .map(|value| {
                value
                    .as_i64()
                    .ok_or_else(|| bad(name, "must be an integer"))
            })
            .transpose()
    }

    pub(crate) fn flag(&mut self, name: &str) -> ApiResult<Option<bool>> {
        self.value(name)
            .map(|value| {
                value
                    .as_bool()
                    .ok_or_else(|| bad(name, "must be true or false"))
            })
            .transpose()
    }
}

/// The latest time a body may give: the end of year 9999.
const LAST_INSTANT: Millis = 253_402_300_799_999;

/// A time: epoch milliseconds, or ISO-8601 with an offset; from 1970 to 9999.
pub(crate) fn instant(field: &'static str, value: &Value) -> ApiResult<Millis> {
    let at = match value {
        Value::Number(number) => number
            .as_i64()
            .ok_or_else(|| bad(field, "must be whole epoch milliseconds")),
        Value::String(text) => {
            parse_instant(field, text).map_err(|e| ApiError::invalid(e.to_string()))
        }
        _ => Err(bad(
            field,
            "must be epoch milliseconds or an ISO-8601 time with an offset",
        )),
    }?;
    if !(0..=LAST_INSTANT).contains(&at) {
        return Err(bad(field, "must be between 1970 and the end of 9999"));
    }
    Ok(at)
}
