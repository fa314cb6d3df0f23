//! The OpenAPI document as it is served (`/openapi.json`, Swagger UI at `/docs`) and printed
//! (`app openapi`, committed as `openapi.yaml`).
//!
//! poem-openapi writes it from the Rust types. This is the one place that then adjusts it,
//! for two things poem-openapi's model cannot hold:
//!
//! - **Integer bounds as integers.** Its schemas keep `minimum` and `maximum` as `f64`, so
//!   `604800` is written `604800.0` and `i64::MAX` as `9.223372036854776e18` (2^63, which
//!   admits a value the server refuses, and which YAML 1.1 parsers read as a string). An
//!   integer schema's bounds are written back as integers; a bound at or past 2^63 can only
//!   be `i64::MAX` rounded up, and the saturating cast restores it exactly. The tests check
//!   every bound against the validator's own constants.
//! - **Closed request objects.** The validator refuses unknown fields (a typo is an error,
//!   not lost data), so the batch and each event type say `additionalProperties: false`;
//!   poem-openapi's schema model has no boolean schema to say it with.
//! - **Public operations say so.** An operation without a key (the probes) gets
//!   `security: []`, which states that it needs none; poem-openapi leaves `security` out,
//!   which says nothing (and linters flag).
//! - **An example per error status.** Its media types have no `example`, so Swagger UI
//!   showed every problem response with the `Problem` schema's one example (a 422). Each
//!   operation's problem responses get the examples of its [`problem_set!`], built from real
//!   [`ApiError`](super::problem::ApiError)s.
//!
//! The document goes through `serde_yaml::Value`, whose maps keep their order, so the
//! output reads in poem-openapi's order.

use serde_yaml::{Mapping, Number, Value};

use super::problem::{
    BatchLookupProblem, EventLookupProblem, IngestProblem, Problem, PROBLEM_JSON,
};

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("poem-openapi's document does not parse: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("the adjusted document cannot be written as YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("an example problem cannot be written as JSON: {0}")]
    Example(String),
    #[error("the operation {0:?} has problem responses but no problem set in api::document")]
    NoProblemSet(String),
}

/// The problems each operation documents, by operation id, for their examples.
fn problem_examples(operation_id: &str) -> Option<Vec<(u16, Problem)>> {
    match operation_id {
        "ingest_events" => Some(IngestProblem::examples()),
        "get_event" => Some(EventLookupProblem::examples()),
        "get_batch" => Some(BatchLookupProblem::examples()),
        _ => None,
    }
}

/// The adjusted document, as JSON and as YAML.
#[derive(Debug, Clone)]
pub struct ApiDocument {
    pub json: String,
    pub yaml: String,
}

impl ApiDocument {
    /// poem-openapi's document (`poem_json`, as `OpenApiService::spec` writes it), adjusted.
    pub fn adjust(poem_json: &str) -> Result<Self, DocumentError> {
        let mut document: Value = serde_json::from_str(poem_json)?;
        integer_bounds_as_integers(&mut document);
        add_problem_examples(&mut document)?;
        declare_public_operations(&mut document);
        close_request_schemas(&mut document);
        Ok(Self {
            json: serde_json::to_string_pretty(&document)?,
            yaml: serde_yaml::to_string(&document)?,
        })
    }
}

fn key(name: &str) -> Value {
    Value::String(name.to_owned())
}

/// Every schema of `type: integer`, anywhere in the document, gets its float bounds back
/// as integers.
fn integer_bounds_as_integers(value: &mut Value) {
    match value {
        Value::Mapping(map) => {
            if map.get("type").and_then(Value::as_str) == Some("integer") {
                for bound in ["minimum", "maximum"] {
                    if let Some(Value::Number(n)) = map.get_mut(bound) {
                        if let Some(exact) = as_integer(n) {
                            *n = exact;
                        }
                    }
                }
            }
            map.values_mut().for_each(integer_bounds_as_integers);
        }
        Value::Sequence(items) => items.iter_mut().for_each(integer_bounds_as_integers),
        _ => {}
    }
}

/// A whole float as an integer. `as` saturates: 2^63 (`i64::MAX as f64`) becomes `i64::MAX`.
fn as_integer(n: &Number) -> Option<Number> {
    if n.is_i64() || n.is_u64() {
        return None;
    }
    let float = n.as_f64()?;
    (float.is_finite() && float.fract() == 0.0).then(|| Number::from(float as i64))
}

/// The batch and every event type (what `Event` is one of) refuse unknown fields.
fn close_request_schemas(document: &mut Value) {
    let Some(schemas) = document
        .get_mut("components")
        .and_then(|components| components.get_mut("schemas"))
        .and_then(Value::as_mapping_mut)
    else {
        return;
    };
    let event_types = schemas
        .get("Event")
        .and_then(|event| event.get("oneOf"))
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|reference| reference.get("$ref")?.as_str())
        .filter_map(|reference| reference.strip_prefix("#/components/schemas/"))
        .map(str::to_owned);
    let closed: Vec<String> = std::iter::once("EventBatch".to_owned())
        .chain(event_types)
        .collect();
    for name in closed {
        if let Some(Value::Mapping(schema)) = schemas.get_mut(name.as_str()) {
            schema.insert(key("additionalProperties"), Value::Bool(false));
        }
    }
}

/// The operations of the document.
fn operations(document: &mut Value) -> impl Iterator<Item = &mut Mapping> {
    document
        .get_mut("paths")
        .and_then(Value::as_mapping_mut)
        .into_iter()
        .flat_map(Mapping::values_mut)
        .filter_map(Value::as_mapping_mut)
        .flat_map(Mapping::values_mut)
        .filter_map(Value::as_mapping_mut)
}

/// An operation that declares no security scheme needs no key: `security: []` says so.
fn declare_public_operations(document: &mut Value) {
    for operation in operations(document) {
        if !operation.contains_key("security") {
            operation.insert(key("security"), Value::Sequence(vec![]));
        }
    }
}

/// Each `application/problem+json` response of each operation gets the example of its
/// status from the operation's problem set.
fn add_problem_examples(document: &mut Value) -> Result<(), DocumentError> {
    for operation in operations(document) {
        let operation_id = operation
            .get("operationId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let Some(Value::Mapping(responses)) = operation.get_mut("responses") else {
            continue;
        };
        let mut examples = None;
        for (status, response) in responses.iter_mut() {
            let Some(media) = response
                .get_mut("content")
                .and_then(|content| content.get_mut(PROBLEM_JSON))
                .and_then(Value::as_mapping_mut)
            else {
                continue;
            };
            if examples.is_none() {
                examples = Some(
                    problem_examples(&operation_id)
                        .ok_or_else(|| DocumentError::NoProblemSet(operation_id.clone()))?,
                );
            }
            let status: Option<u16> = status.as_str().and_then(|s| s.parse().ok());
            let example = examples
                .iter()
                .flatten()
                .find(|(example_status, _)| Some(*example_status) == status);
            if let Some((_, problem)) = example {
                let json = poem_openapi::types::ToJSON::to_json(problem)
                    .ok_or_else(|| DocumentError::Example(format!("{problem:?}")))?;
                let example: Value = serde_json::from_value(json)?;
                media.insert(key("example"), example);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_bounds_become_exact_integers() {
        let poem = serde_json::json!({
            "a": {"type": "integer", "format": "int64", "minimum": 0.0, "maximum": i64::MAX as f64},
            "b": {"type": "integer", "format": "int32", "minimum": 1.0, "maximum": 2147483647.0},
            "c": {"type": "number", "minimum": 0.0},
            "d": [{"type": "integer", "maximum": 604800.0}],
        });
        let adjusted = ApiDocument::adjust(&poem.to_string()).unwrap();
        let value: serde_json::Value = serde_json::from_str(&adjusted.json).unwrap();
        assert_eq!(value["a"]["minimum"], serde_json::json!(0));
        assert_eq!(value["a"]["maximum"], serde_json::json!(i64::MAX));
        assert_eq!(value["b"]["maximum"], serde_json::json!(2147483647));
        assert_eq!(
            value["c"]["minimum"],
            serde_json::json!(0.0),
            "numbers keep floats"
        );
        assert_eq!(value["d"][0]["maximum"], serde_json::json!(604800));
        assert!(adjusted.yaml.contains("maximum: 9223372036854775807\n"));
    }

    #[test]
    fn an_operation_with_problems_but_no_problem_set_is_an_error() {
        let poem = serde_json::json!({"paths": {"/x": {"get": {
            "operationId": "new_operation",
            "responses": {"400": {"content": {PROBLEM_JSON: {"schema": {}}}}},
        }}}});
        assert!(matches!(
            ApiDocument::adjust(&poem.to_string()),
            Err(DocumentError::NoProblemSet(id)) if id == "new_operation"
        ));
    }
}
