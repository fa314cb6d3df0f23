//! Games and API keys: every status a key can get, isolation between games, revocation,
//! keys at rest, and the command line that manages them.

use std::process::Command;
use std::time::Duration;

use app::auth::Scope;
use app::config::ServeSettings;
use app::startup::ApiServer;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use uuid::Uuid;

use crate::helpers::*;

fn one_event(event_id: Uuid, player_id: &str, name: &str) -> Value {
    json!({ "events": [{
        "type": "custom", "event_id": event_id, "player_id": player_id,
        "session_id": SESSION, "occurred_at": "2026-01-01T00:00:00Z", "name": name,
    }]})
}

/// Asserts a 401 problem with its challenge, and that the body does not echo `key`.
async fn assert_401(response: reqwest::Response, invalid_token: bool, key: &str) -> Value {
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer realm=\"game-events\""),
        "{challenge}"
    );
    assert_eq!(
        challenge.contains("error=\"invalid_token\""),
        invalid_token,
        "{challenge}"
    );
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let text = response.text().await.unwrap();
    assert!(
        key.is_empty() || !text.contains(key),
        "the key is echoed: {text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["type"], "/problems/unauthorized");
    assert_eq!(body["status"], 401);
    body
}

#[tokio::test]
async fn no_key_an_unknown_key_or_a_malformed_header_is_a_401_with_a_challenge() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let body = one_event(Uuid::now_v7(), "p", "a");
    let events = app.url("/v1/events");

    let none = app.client.post(&events).json(&body).send().await.unwrap();
    assert_401(none, false, "").await;

    let unknown = "A".repeat(32);
    let response = app
        .client
        .post(&events)
        .bearer_auth(&unknown)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_401(response, true, &unknown).await;
    let response = app
        .client
        .post(format!("{events}?key={unknown}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_401(response, true, &unknown).await;

    for header in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer not-a-key"] {
        let response = app
            .client
            .post(&events)
            .header("authorization", header)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_401(response, true, "").await;
    }

    // Reads: no key, and a read key in the URL, which is refused without a lookup.
    let batch = app.url(&format!("/v1/batches/{}", Uuid::now_v7()));
    assert_401(app.client.get(&batch).send().await.unwrap(), false, "").await;
    let in_url = app
        .client
        .get(format!("{batch}?key={}", app.read_key))
        .send()
        .await
        .unwrap();
    let problem = assert_401(in_url, true, &app.read_key).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("never in a URL"));

    assert_eq!(app.count("batches").await, 0);
}

#[tokio::test]
async fn a_valid_key_of_the_wrong_scope_is_a_403() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let body = one_event(Uuid::now_v7(), "p", "a");
    let forbidden = |response: reqwest::Response| async move {
        assert_eq!(response.status(), 403);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["type"], "/problems/forbidden");
        body["detail"].as_str().unwrap().to_owned()
    };

    let read_posts = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(&app.read_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(forbidden(read_posts).await.contains("read key"));
    let read_in_url = app
        .client
        .post(app.url(&format!("/v1/events?key={}", app.read_key)))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(forbidden(read_in_url)
        .await
        .contains("never accepted in a URL"));

    let batch_id = app.ingest(&body).await;
    for path in [
        format!("/v1/batches/{batch_id}"),
        format!("/v1/events/{}", Uuid::now_v7()),
    ] {
        let ingest_reads = app
            .client
            .get(app.url(&path))
            .bearer_auth(&app.ingest_key)
            .send()
            .await
            .unwrap();
        assert!(forbidden(ingest_reads).await.contains("ingest key"));
    }
    assert_eq!(app.count("batches").await, 1);
}

#[tokio::test]
async fn an_ingest_key_may_come_in_the_url_for_send_beacon() {
    let app = TestApp::spawn().await;
    let event_id = Uuid::now_v7();
    let response = app
        .client
        .post(app.url(&format!("/v1/events?key={}", app.ingest_key)))
        .json(&one_event(event_id, "p", "beacon"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let batch_id: Uuid = response.json::<Value>().await.unwrap()["batch_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    app.wait_for_status(batch_id, "completed", Duration::from_secs(30))
        .await;
}

#[tokio::test]
async fn games_never_see_count_or_suppress_each_others_data() {
    let app = TestApp::spawn().await;
    let other_ingest = create_key(&app.pool, "other-game", Scope::Ingest).await;
    let other_read = create_key(&app.pool, "other-game", Scope::Read).await;
    let post = |key: &str, body: &Value| {
        app.client
            .post(app.url("/v1/events"))
            .bearer_auth(key)
            .json(body)
            .send()
    };
    let get = |key: &str, path: String| app.client.get(app.url(&path)).bearer_auth(key).send();

    // The same event id and player id in both games: two events, two players.
    let event_id = Uuid::now_v7();
    let ours = app
        .ingest(&one_event(event_id, "same-player", "ours"))
        .await;
    let response = post(&other_ingest, &one_event(event_id, "same-player", "theirs"))
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let theirs: Uuid = response.json::<Value>().await.unwrap()["batch_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let our_batch = app
        .wait_for_status(ours, "completed", Duration::from_secs(30))
        .await;
    assert_eq!(
        (
            our_batch["inserted"].clone(),
            our_batch["duplicates"].clone()
        ),
        (json!(1), json!(0))
    );
    let their_batch = wait_for(
        Duration::from_secs(30),
        "their batch to complete",
        || async {
            let batch: Value = get(&other_read, format!("/v1/batches/{theirs}"))
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (batch["status"] == "completed").then_some(batch)
        },
    )
    .await;
    assert_eq!(
        (
            their_batch["inserted"].clone(),
            their_batch["duplicates"].clone()
        ),
        (json!(1), json!(0)),
        "an event of another game counted as a duplicate"
    );
    assert_eq!(app.count("events").await, 2);
    assert_eq!(app.count("players").await, 2);

    // Each read key reads its own game's event under the shared id, and not the other
    // game's batch: 404, as if it did not exist.
    let (status, event) = app.get_json(&format!("/v1/events/{event_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(event["event"]["name"], "ours");
    let their_event: Value = get(&other_read, format!("/v1/events/{event_id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(their_event["event"]["name"], "theirs");
    let (status, problem) = app.get_json(&format!("/v1/batches/{theirs}")).await;
    assert_eq!(status, 404, "{problem}");
    let (status, never_seen) = app
        .get_json(&format!("/v1/batches/{}", Uuid::now_v7()))
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        problem["title"], never_seen["title"],
        "another game's batch must look like no batch"
    );
    let response = get(&other_read, format!("/v1/batches/{ours}"))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    // A resend in one game is a duplicate there, and changes nothing in the other.
    let again = app
        .ingest(&one_event(event_id, "same-player", "ours"))
        .await;
    let again = app
        .wait_for_status(again, "completed", Duration::from_secs(30))
        .await;
    assert_eq!(again["duplicates"], 1);
    assert_eq!(app.count("events").await, 2);
    let per_game: Vec<(String, i64)> = sqlx::query_as(
        "SELECT g.name, count(*) FROM events JOIN games AS g USING (game_id)
         GROUP BY g.name ORDER BY g.name",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        per_game,
        [("other-game".to_owned(), 1), (TEST_GAME.to_owned(), 1)]
    );
    let mut conn = app.pool.acquire().await.unwrap();
    assert_references_hold(&mut conn).await;
}

#[tokio::test]
async fn a_revoked_key_stops_working_on_every_api_process_within_5_seconds() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    // A second API process on the same database.
    let second = ApiServer::bind(
        app.pool.clone(),
        &ServeSettings {
            bind: "127.0.0.1:0".parse().unwrap(),
            shutdown_grace_secs: 1,
            retry: TestOptions::default().retry,
            rate_limit: TestOptions::default().rate_limit,
            client_timeouts: TestOptions::default().client_timeouts,
        },
        &TestOptions::default().retention,
    )
    .await
    .unwrap();
    let second_url = format!("http://{}/v1/events", second.local_addr());
    tokio::spawn(second.run_until(std::future::pending()));

    let urls = [app.url("/v1/events"), second_url];
    let post = |url: &String| {
        app.client
            .post(url)
            .bearer_auth(&app.ingest_key)
            .json(&one_event(Uuid::now_v7(), "p", "a"))
            .send()
    };
    for url in &urls {
        assert_eq!(post(url).await.unwrap().status(), 202, "{url}");
    }

    let key_id: Uuid =
        sqlx::query_scalar("SELECT key_id FROM api_keys WHERE scope = 'ingest' AND prefix = $1")
            .bind(&app.ingest_key[..8])
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let revoked = app::store::games::revoke_key(&app.pool, key_id)
        .await
        .unwrap();
    assert!(matches!(revoked, app::store::games::Revoked::Now(_)));
    let since = Instant::now();
    for url in &urls {
        wait_for(
            Duration::from_secs(5),
            "the revoked key to be refused",
            || async { (post(url).await.ok()?.status() == 401).then_some(()) },
        )
        .await;
    }
    assert!(since.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn keys_are_stored_only_as_hashes() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let rows: Vec<String> = sqlx::query_scalar("SELECT row_to_json(k)::text FROM api_keys AS k")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let hashes: Vec<Vec<u8>> = sqlx::query_scalar("SELECT key_hash FROM api_keys")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    for key in [&app.ingest_key, &app.read_key] {
        // Neither the key nor its secret part (all but the 8-character prefix), in any
        // column, in any encoding PostgreSQL prints.
        let secret = &key[8..];
        for row in &rows {
            assert!(
                !row.contains(secret),
                "a key is stored in plain text: {row}"
            );
        }
        let hex: String = Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(
            hashes.contains(&Sha256::digest(key.as_bytes()).to_vec()),
            "{hex}"
        );
    }
}

/// Runs `app ARGS` against the test database; returns (success, stdout, stderr).
fn app_command(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_app"))
        .args(args)
        .env("DATABASE_URL", &app.db_settings.database_url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run app");
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[tokio::test]
async fn the_command_line_creates_lists_and_revokes_keys_and_games() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    // A key for a game that does not exist yet: the game is made, the key printed alone
    // on the last line, and it works at once.
    let (ok, out, err) = app_command(
        &app,
        &["keys", "create", "--game", "cli-game", "--scope", "ingest"],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("created the game cli-game"), "{out}");
    let key = out.lines().last().unwrap().to_owned();
    assert!(
        key.len() == 32 && key.chars().all(|c| c.is_ascii_alphanumeric()),
        "{out}"
    );
    let response = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(&key)
        .json(&one_event(Uuid::now_v7(), "p", "cli"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);

    // The list: one key a line, id first, then game, scope, prefix, created, revoked.
    let (ok, out, _) = app_command(&app, &["keys", "list", "--game", "cli-game"]);
    assert!(ok);
    let fields: Vec<&str> = out.trim_end().split('\t').collect();
    assert_eq!(fields.len(), 6, "{out}");
    let key_id: Uuid = fields[0].parse().unwrap();
    assert_eq!(&fields[1..4], ["cli-game", "ingest", &key[..8]]);
    assert!(fields[4].ends_with('Z'), "created: {}", fields[4]);
    assert_eq!(fields[5], "-");
    assert!(!out.contains(&key[8..]), "the list shows the key: {out}");
    let (_, all, _) = app_command(&app, &["keys", "list"]);
    assert_eq!(all.lines().count(), 3, "{all}");

    let (ok, out, _) = app_command(&app, &["keys", "revoke", &key_id.to_string()]);
    assert!(ok && out.contains("revoked"), "{out}");
    let (_, out, _) = app_command(&app, &["keys", "list", "--game", "cli-game"]);
    assert!(
        out.trim_end().split('\t').nth(5).unwrap().ends_with('Z'),
        "{out}"
    );
    let (ok, out, _) = app_command(&app, &["keys", "revoke", &key_id.to_string()]);
    assert!(ok && out.contains("revoked already"), "{out}");
    let (ok, _, err) = app_command(&app, &["keys", "revoke", &Uuid::now_v7().to_string()]);
    assert!(!ok && err.contains("no key"), "{err}");
    let (ok, _, err) = app_command(&app, &["keys", "list", "--game", "nope"]);
    assert!(!ok && err.contains("no game named"), "{err}");

    // Games.
    let (ok, out, _) = app_command(&app, &["games", "create", "second"]);
    assert!(ok, "{out}");
    let (ok, _, err) = app_command(&app, &["games", "create", "second"]);
    assert!(!ok && err.contains("exists already"), "{err}");
    let (ok, _, err) = app_command(&app, &["games", "create", "Not Valid"]);
    assert!(!ok && err.contains("lower-case"), "{err}");
    let (ok, out, _) = app_command(&app, &["games", "list"]);
    assert!(ok);
    let names: Vec<&str> = out.lines().map(|l| l.split('\t').next().unwrap()).collect();
    assert_eq!(names, ["cli-game", "second", TEST_GAME], "{out}");
    let (ok, out, _) = app_command(
        &app,
        &[
            "games",
            "limit",
            "second",
            "--events-per-sec",
            "50",
            "--burst",
            "200",
        ],
    );
    assert!(ok, "{out}");
    let (ok, out, _) = app_command(
        &app,
        &[
            "games",
            "origins",
            "second",
            "https://Game.Example",
            "http://localhost:8000",
        ],
    );
    assert!(ok, "{out}");
    let (_, out, _) = app_command(&app, &["games", "list"]);
    let second = out.lines().find(|l| l.starts_with("second\t")).unwrap();
    assert!(second.contains("50 events/s, burst 200"), "{second}");
    assert!(
        second.contains("https://game.example,http://localhost:8000"),
        "{second}"
    );
    let (ok, _, err) = app_command(&app, &["games", "limit", "nope", "--default"]);
    assert!(!ok && err.contains("no game named"), "{err}");
}
