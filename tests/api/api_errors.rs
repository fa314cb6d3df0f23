//! Bad requests get a clear problem+json, and queue nothing.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

async fn problem(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json", "status {status}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(
        body["type"].is_string() && body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    (status, body)
}

async fn post_raw(
    app: &TestApp,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut request = app.post("/v1/events").body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.send().await.unwrap()
}

async fn nothing_queued(app: &TestApp) {
    assert_eq!(app.count("batches").await, 0);
    assert_eq!(app.queued_jobs().await, 0);
}

#[tokio::test]
async fn malformed_json_is_a_400() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    for body in ["{\"events\": [", "not json", ""] {
        let (status, problem) = problem(post_raw(&app, Some("application/json"), body).await).await;
        assert_eq!(status, 400, "{body:?}: {problem}");
        assert!(problem["detail"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"));
    }
    let (status, _) =
        problem(post_raw(&app, Some("application/json"), vec![b'{', 0xff, b'}']).await).await;
    assert_eq!(status, 400, "invalid UTF-8");
    nothing_queued(&app).await;
}

#[tokio::test]
async fn a_missing_or_wrong_content_type_is_a_415() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let body = json!({ "events": [custom_event(Uuid::now_v7(), "p", Uuid::now_v7())] }).to_string();
    for content_type in [
        None,
        Some("application/x-www-form-urlencoded"),
        Some("text/html"),
        Some("text/plain; charset=iso-8859-1"),
        Some("application/json; charset=utf-16"),
    ] {
        let (status, _) = problem(post_raw(&app, content_type, body.clone()).await).await;
        assert_eq!(status, 415, "{content_type:?}");
    }
    nothing_queued(&app).await;
    let response = post_raw(&app, Some("application/json; charset=utf-8"), body).await;
    assert_eq!(response.status(), 202);
}

#[tokio::test]
async fn more_than_1000_events_or_a_body_over_1_mib_is_a_413_naming_the_limit() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let session = Uuid::now_v7();
    let events: Vec<Value> = (0..1001)
        .map(|_| custom_event(Uuid::now_v7(), "p", session))
        .collect();
    let (status, body) = problem(app.post_events(&json!({ "events": events })).await).await;
    assert_eq!(status, 413);
    assert_eq!(body["limit"], 1000);
    assert!(body["detail"].as_str().unwrap().contains("1000"));

    let mut big = custom_event(Uuid::now_v7(), "p", session);
    big["padding"] = json!("x".repeat(1024 * 1024));
    let (status, body) = problem(app.post_events(&json!({ "events": [big] })).await).await;
    assert_eq!(status, 413);
    assert_eq!(body["limit"], 1024 * 1024);
    nothing_queued(&app).await;
}

#[tokio::test]
async fn invalid_events_are_a_422_listing_every_one_and_nothing_is_queued() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let session = Uuid::now_v7();
    let mut bad_currency = full_event(
        "purchase",
        Uuid::now_v7(),
        "p",
        &session.to_string(),
        "2026-06-01T10:00:00Z",
    );
    bad_currency["currency"] = json!("euro");
    let good = custom_event(Uuid::now_v7(), "p", session);
    let mut bad_platform = full_event(
        "session_start",
        Uuid::now_v7(),
        "p",
        &session.to_string(),
        "2026-06-01T10:00:00Z",
    );
    bad_platform["platform"] = json!("amiga");
    bad_platform["colour"] = json!("red");

    let (status, body) = problem(
        app.post_events(&json!({ "events": [bad_currency, good, bad_platform] }))
            .await,
    )
    .await;
    assert_eq!(status, 422);
    let errors: Vec<(u64, String)> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["field"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            (0, "/events/0/currency".to_owned()),
            (2, "/events/2/platform".to_owned()),
            (2, "/events/2/colour".to_owned())
        ]
    );
    assert!(body["errors"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("A to Z"));
    nothing_queued(&app).await;
}

#[tokio::test]
async fn unknown_ids_are_404_and_malformed_ids_are_400() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    for path in [
        format!("/v1/batches/{}", Uuid::now_v7()),
        format!("/v1/events/{}", Uuid::now_v7()),
        "/nowhere".to_owned(),
    ] {
        let response = app.get(&path).send().await.unwrap();
        assert_eq!(problem(response).await.0, 404, "{path}");
    }
    let response = app.get("/v1/batches/not-a-uuid").send().await.unwrap();
    assert_eq!(problem(response).await.0, 400);
    let response = app
        .client
        .delete(app.url("/v1/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(response).await.0, 405);
}

#[tokio::test]
async fn health_readiness_and_docs() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    for (path, expected) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.text().await.unwrap(), expected);
    }
    // Readiness follows the schema: a missing migration makes it 503.
    sqlx::query(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 503);

    let (status, spec) = app.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(spec["paths"]["/v1/events"]["post"].is_object());
    let docs = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
}
