//! The document and the server agree: what `/openapi.json` says, read from the served
//! document itself (its examples, its optional fields, its bounds, its problems), is what
//! the server does.

use serde_json::{json, Map, Number, Value};
use std::time::Duration;
use uuid::Uuid;

use crate::helpers::*;

async fn document(app: &TestApp) -> Value {
    let (status, document) = app.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    document
}

/// The schemas of the event types: every schema the `Event` union refers to.
fn event_schemas(document: &Value) -> Vec<(String, Value)> {
    let schemas = &document["components"]["schemas"];
    schemas["Event"]["oneOf"]
        .as_array()
        .expect("Event is a oneOf")
        .iter()
        .map(|reference| {
            let name = reference["$ref"]
                .as_str()
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
                .expect("a reference to a schema");
            (name.to_owned(), schemas[name].clone())
        })
        .collect()
}

fn properties(schema: &Value) -> &Map<String, Value> {
    schema["properties"].as_object().expect("properties")
}

fn is_required(schema: &Value, name: &str) -> bool {
    schema["required"]
        .as_array()
        .is_some_and(|required| required.iter().any(|r| r == name))
}

/// An event built from the example of its type's schema, with a fresh id so that it is
/// stored rather than counted as a duplicate of another test's.
fn example_event(schema: &Value) -> Value {
    let mut event = schema["example"].clone();
    event["event_id"] = json!(Uuid::now_v7());
    event
}

async fn status_and_body(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn error_fields(problem: &Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .map(|errors| errors.iter().filter_map(|e| e["field"].as_str()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn every_example_in_the_document_is_accepted() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let document = document(&app).await;

    let batch = &document["components"]["schemas"]["EventBatch"]["example"];
    assert!(batch["events"].as_array().is_some_and(|e| !e.is_empty()));
    let (status, body) = status_and_body(app.post_events(batch).await).await;
    assert_eq!(status, 202, "the EventBatch example: {body}");

    let request = &document["paths"]["/v1/events"]["post"]["requestBody"]["content"];
    for (media_type, content) in request.as_object().expect("request media types") {
        if let Some(example) = content.get("example") {
            let (status, body) = status_and_body(app.post_events(example).await).await;
            assert_eq!(status, 202, "the {media_type} example: {body}");
        }
    }

    // Each type's example is a whole event: alone in a batch, with or without the batch
    // example's sent_at.
    for (name, schema) in event_schemas(&document) {
        assert!(
            schema["example"]["type"].is_string(),
            "{name}'s example has no type"
        );
        for sent_at in [None, Some(batch["sent_at"].clone())] {
            let mut body = json!({ "events": [example_event(&schema)] });
            if let Some(sent_at) = &sent_at {
                body["sent_at"] = sent_at.clone();
            }
            let (status, problem) = status_and_body(app.post_events(&body).await).await;
            assert_eq!(
                status, 202,
                "{name}'s example, sent_at {sent_at:?}: {problem}"
            );
        }
    }
}

#[tokio::test]
async fn every_optional_field_is_nullable_and_null_is_stored_as_absent() {
    let app = TestApp::spawn().await;
    let document = document(&app).await;
    let batch_schema = &document["components"]["schemas"]["EventBatch"];

    // The batch's own: sent_at.
    let mut optional_batch_fields = 0;
    for (name, property) in properties(batch_schema) {
        if is_required(batch_schema, name) {
            assert_ne!(property["nullable"], true, "EventBatch.{name} is required");
            continue;
        }
        optional_batch_fields += 1;
        assert_eq!(
            property["nullable"], true,
            "EventBatch.{name} is not nullable"
        );
        let mut body = json!({ "events": [custom_event(Uuid::now_v7(), "p", Uuid::now_v7())] });
        body[name] = Value::Null;
        let (status, problem) = status_and_body(app.post_events(&body).await).await;
        assert_eq!(status, 202, "EventBatch.{name}: null: {problem}");
    }
    assert_eq!(optional_batch_fields, 1, "sent_at");

    // Every event type's: each optional field null in an event of its own.
    let mut sent = Vec::new();
    for (name, schema) in event_schemas(&document) {
        for (field, property) in properties(&schema) {
            if is_required(&schema, field) {
                assert_ne!(property["nullable"], true, "{name}.{field} is required");
                continue;
            }
            assert_eq!(property["nullable"], true, "{name}.{field} is not nullable");
            let mut event = example_event(&schema);
            event[field] = Value::Null;
            sent.push((format!("{name}.{field}"), event));
        }
    }
    assert_eq!(
        sent.len(),
        7,
        "device, country, score, attempt, transaction_id, value, properties"
    );
    let events: Vec<&Value> = sent.iter().map(|(_, event)| event).collect();
    let batch_id = app.ingest(&json!({ "events": events })).await;
    app.wait_for_status(batch_id, "completed", Duration::from_secs(10))
        .await;
    for (what, event) in &sent {
        let (status, stored) = app
            .get_json(&format!(
                "/v1/events/{}",
                event["event_id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(status, 200, "{what}: {stored}");
        let field = what.rsplit('.').next().unwrap();
        assert!(
            stored["event"].get(field).is_none(),
            "{what}: null was stored as {}",
            stored["event"][field]
        );
    }
}

/// A JSON integer one past `bound` (up or down), which may be past i64.
fn one_past(bound: &Value, up: bool) -> Value {
    let n = bound.as_i64().expect("an integer bound") as i128 + if up { 1 } else { -1 };
    match (u64::try_from(n), i64::try_from(n)) {
        (Ok(u), _) => Value::Number(Number::from(u)),
        (_, Ok(i)) => Value::Number(Number::from(i)),
        _ => panic!("{n} is out of JSON's integer range here"),
    }
}

#[tokio::test]
async fn integer_bounds_are_exact_and_are_the_server_s() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let document = document(&app).await;
    let mut checked = 0;
    for (name, schema) in event_schemas(&document) {
        for (field, property) in properties(&schema) {
            if property["type"] != "integer" {
                continue;
            }
            for (bound, up) in [("minimum", false), ("maximum", true)] {
                let Some(value) = property.get(bound) else {
                    continue;
                };
                assert!(
                    value.is_i64(),
                    "{name}.{field}.{bound} is {value}, not an integer"
                );
                let send = |value: Value| {
                    let mut event = example_event(&schema);
                    event[field] = value;
                    json!({ "events": [event] })
                };
                let (status, problem) =
                    status_and_body(app.post_events(&send(value.clone())).await).await;
                assert_eq!(status, 202, "{name}.{field} = {bound} {value}: {problem}");
                let past = one_past(value, up);
                let (status, problem) =
                    status_and_body(app.post_events(&send(past.clone())).await).await;
                assert_eq!(
                    status, 422,
                    "{name}.{field} = {past}, past its {bound}: {problem}"
                );
                assert_eq!(error_fields(&problem), [format!("/events/0/{field}")]);
                checked += 1;
            }
        }
    }
    // duration_seconds, score, attempt, amount_minor: both bounds of each.
    assert_eq!(checked, 8);
}

#[tokio::test]
async fn the_rules_of_time_are_in_the_document() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let document = document(&app).await;
    let sent_at = document["components"]["schemas"]["EventBatch"]["properties"]["sent_at"]
        ["description"]
        .as_str()
        .unwrap();
    for (name, schema) in event_schemas(&document) {
        let occurred_at = properties(&schema)["occurred_at"]["description"]
            .as_str()
            .unwrap();
        for description in [sent_at, occurred_at] {
            assert!(
                description.contains("one hour in the future"),
                "{name}: {description}"
            );
            assert!(description.contains("2000-01-01"), "{name}: {description}");
        }
    }
    // And they hold: a sent_at of 2000 shifts an example event 26 years ahead.
    let schema = &document["components"]["schemas"]["CustomEvent"];
    let body = json!({ "sent_at": "2000-01-01T00:00:00Z", "events": [example_event(schema)] });
    let (status, problem) = status_and_body(app.post_events(&body).await).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(error_fields(&problem), ["/events/0/occurred_at"]);
    assert!(problem["errors"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("future"));
}

#[tokio::test]
async fn each_problem_response_has_an_example_of_its_own_status() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let document = document(&app).await;
    let mut examples = 0;
    for (path, operations) in document["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                let Some(problem) = response["content"].get("application/problem+json") else {
                    continue;
                };
                let example = &problem["example"];
                assert_eq!(
                    example["status"].to_string(),
                    *status,
                    "{method} {path} {status}: {example}"
                );
                assert!(
                    example["type"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("/problems/")),
                    "{method} {path} {status}: {example}"
                );
                examples += 1;
            }
        }
    }
    assert_eq!(examples, 9 + 5 + 5);
}

/// Sends `request` and returns its problem, checking that it is one of ours.
async fn our_problem(request: reqwest::RequestBuilder) -> (u16, Value, reqwest::header::HeaderMap) {
    let response = request.send().await.unwrap();
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/problem+json");
    let (status, problem) = status_and_body(response).await;
    assert_eq!(problem["status"], status, "{problem}");
    let problem_type = problem["type"].as_str().unwrap_or_default();
    assert!(problem_type.starts_with("/problems/"), "{problem}");
    (status, problem, headers)
}

#[tokio::test]
async fn poem_s_errors_speak_our_problem_types_and_words() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    for path in ["/v1/batches/not-a-uuid", "/v1/events/12345"] {
        let (status, problem, _) = our_problem(app.get(path)).await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(problem["type"], "/problems/bad-request");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains("must be a UUID"), "{detail}");
        assert!(
            !detail.contains("param0") && !detail.contains("string_uuid"),
            "{detail}"
        );
    }

    let (status, problem, headers) = our_problem(app.client.delete(app.url("/v1/events"))).await;
    assert_eq!(status, 405);
    assert_eq!(problem["type"], "/problems/method-not-allowed");
    assert_eq!(headers["allow"], "OPTIONS, POST");
    let (status, problem, headers) = our_problem(app.client.post(app.url("/v1/batches/x"))).await;
    assert_eq!((status, headers["allow"].to_str().unwrap()), (405, "GET"));
    assert_eq!(problem["type"], "/problems/method-not-allowed");

    let (status, problem, _) = our_problem(app.get("/v2/events")).await;
    assert_eq!(status, 404);
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("/openapi.json"));

    let body = json!({ "events": [custom_event(Uuid::now_v7(), "p", Uuid::now_v7())] }).to_string();
    for (content_type, says) in [
        (None, "no Content-Type"),
        (Some("text/html"), "\"text/html\""),
    ] {
        let mut request = app.post("/v1/events").body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let (status, problem, _) = our_problem(request).await;
        assert_eq!(status, 415);
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains(says) && detail.contains("application/json"),
            "{detail}"
        );
    }
}

#[tokio::test]
async fn one_event_without_its_batch_gets_one_error_that_says_so() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let event = custom_event(Uuid::now_v7(), "p", Uuid::now_v7());
    let (status, problem, _) = our_problem(app.post("/v1/events").json(&event)).await;
    assert_eq!(status, 422);
    let errors = problem["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{problem}");
    assert_eq!(errors[0]["field"], "");
    let reason = errors[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("single event") && reason.contains(r#"{"events": ["#),
        "{reason}"
    );
    assert_eq!(app.count("batches").await, 0);
}
