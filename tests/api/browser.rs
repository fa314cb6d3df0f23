//! What browser games need: CORS on `/v1/events` (preflight and actual responses), a
//! game's own list of origins, `sendBeacon`'s `text/plain` bodies, and `Allow` on a 405.
//! (A real browser sends through all of it in e2e/browser.)

use std::time::Duration;

use app::auth::Scope;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

const ORIGIN: &str = "https://game.example";

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

fn body(event_id: Uuid) -> Value {
    json!({ "events": [custom_event(event_id, "p", Uuid::now_v7())] })
}

#[tokio::test]
async fn a_preflight_gets_204_with_what_a_browser_game_needs() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/v1/events"))
        .header("origin", ORIGIN)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(header(&preflight, "access-control-allow-origin"), Some("*"));
    assert_eq!(
        header(&preflight, "access-control-allow-methods"),
        Some("POST")
    );
    let allowed = header(&preflight, "access-control-allow-headers").unwrap();
    for needed in [
        "content-type",
        "content-encoding",
        "authorization",
        "x-request-id",
    ] {
        assert!(
            allowed.split(", ").any(|h| h == needed),
            "{needed} not in {allowed}"
        );
    }
    let max_age: u32 = header(&preflight, "access-control-max-age")
        .unwrap()
        .parse()
        .unwrap();
    assert!(max_age >= 600, "{max_age}");
    assert_eq!(header(&preflight, "access-control-allow-credentials"), None);

    // A plain OPTIONS says what the path allows.
    let options = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/v1/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(options.status(), 204);
    assert_eq!(header(&options, "allow"), Some("OPTIONS, POST"));
    assert_eq!(header(&options, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn responses_to_browsers_let_the_page_read_them_errors_included() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let accepted = app
        .post("/v1/events")
        .header("origin", ORIGIN)
        .json(&body(Uuid::now_v7()))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    assert_eq!(header(&accepted, "access-control-allow-origin"), Some("*"));
    let exposed = header(&accepted, "access-control-expose-headers").unwrap();
    for name in [
        "location",
        "x-request-id",
        "retry-after",
        "www-authenticate",
    ] {
        assert!(
            exposed.split(", ").any(|h| h == name),
            "{name} not in {exposed}"
        );
    }
    assert_eq!(header(&accepted, "access-control-allow-credentials"), None);

    for refused in [
        // 401: no key.
        app.client
            .post(app.url("/v1/events"))
            .header("origin", ORIGIN)
            .json(&body(Uuid::now_v7())),
        // 422: an invalid event.
        app.post("/v1/events")
            .header("origin", ORIGIN)
            .json(&json!({"events": [{"type": "custom"}]})),
    ] {
        let response = refused.send().await.unwrap();
        assert!(response.status().is_client_error());
        assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
    }
    // Without Origin (not a browser), no CORS headers; nor on the reads, which take secret keys.
    let plain = app.post_events(&body(Uuid::now_v7())).await;
    assert_eq!(header(&plain, "access-control-allow-origin"), None);
    let read = app
        .get(&format!("/v1/batches/{}", Uuid::now_v7()))
        .header("origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&read, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn send_beacon_bodies_are_text_plain_json_with_the_same_rules() {
    let app = TestApp::spawn().await;
    let beacon = |body: Vec<u8>| {
        app.client
            .post(app.url(&format!("/v1/events?key={}", app.ingest_key)))
            .header("content-type", "text/plain;charset=UTF-8")
            .header("origin", ORIGIN)
            .body(body)
            .send()
    };
    let event_id = Uuid::now_v7();
    let accepted = beacon(body(event_id).to_string().into_bytes())
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let batch_id: Uuid = accepted.json::<Value>().await.unwrap()["batch_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    app.wait_for_status(batch_id, "completed", Duration::from_secs(30))
        .await;
    let (status, _) = app.get_json(&format!("/v1/events/{event_id}")).await;
    assert_eq!(status, 200);

    // The same validation and limits as JSON.
    let invalid = beacon(
        json!({"events": [{"type": "custom"}]})
            .to_string()
            .into_bytes(),
    );
    assert_eq!(invalid.await.unwrap().status(), 422);
    let not_json = beacon(b"hello".to_vec());
    assert_eq!(not_json.await.unwrap().status(), 400);
    let mut big = custom_event(Uuid::now_v7(), "p", Uuid::now_v7());
    big["padding"] = json!("x".repeat(1024 * 1024));
    let too_large = beacon(json!({ "events": [big] }).to_string().into_bytes());
    assert_eq!(too_large.await.unwrap().status(), 413);
    // Compressed, as a page may send it with fetch.
    let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
    std::io::Write::write_all(&mut gzip, body(Uuid::now_v7()).to_string().as_bytes()).unwrap();
    let compressed = app
        .client
        .post(app.url(&format!("/v1/events?key={}", app.ingest_key)))
        .header("content-type", "text/plain")
        .header("content-encoding", "gzip")
        .body(gzip.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(compressed.status(), 202);
}

#[tokio::test]
async fn a_game_that_lists_its_origins_refuses_events_from_other_pages() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let game = TEST_GAME.parse().unwrap();
    let allowed = [ORIGIN.parse().unwrap()];
    app::store::games::set_allowed_origins(&app.pool, &game, Some(&allowed))
        .await
        .unwrap();
    let from = |origin: Option<&str>| {
        let mut request = app.post("/v1/events").json(&body(Uuid::now_v7()));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    // The API processes pick the list up at their next reload of the keys.
    let refused = wait_for(Duration::from_secs(5), "the origins to apply", || async {
        let response = from(Some("https://evil.example")).await.ok()?;
        (response.status() == 403).then_some(response)
    })
    .await;
    let problem: Value = refused.json().await.unwrap();
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("https://evil.example"));
    // (Polls made before the list applied were accepted.)
    let before = app.count("batches").await;
    assert_eq!(from(Some(ORIGIN)).await.unwrap().status(), 202);
    // Not a browser: no Origin, nothing to restrict.
    assert_eq!(from(None).await.unwrap().status(), 202);
    // Other games are not restricted by this one's list.
    let other = create_key(&app.pool, "other-game", Scope::Ingest).await;
    let response = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(&other)
        .header("origin", "https://evil.example")
        .json(&body(Uuid::now_v7()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(app.count("batches").await, before + 3);
}

#[tokio::test]
async fn every_405_says_what_is_allowed() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    for (method, path, allow) in [
        (
            reqwest::Method::DELETE,
            "/v1/events".to_owned(),
            "OPTIONS, POST",
        ),
        (
            reqwest::Method::GET,
            "/v1/events".to_owned(),
            "OPTIONS, POST",
        ),
        (
            reqwest::Method::PUT,
            format!("/v1/batches/{}", Uuid::now_v7()),
            "GET",
        ),
        (
            reqwest::Method::POST,
            format!("/v1/events/{}", Uuid::now_v7()),
            "GET",
        ),
        (reqwest::Method::POST, "/healthz".to_owned(), "GET"),
    ] {
        let response = app
            .client
            .request(method.clone(), app.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(header(&response, "allow"), Some(allow), "{method} {path}");
        assert_eq!(
            header(&response, "content-type"),
            Some("application/problem+json")
        );
    }
}
