//! Per-game rate limits: a game over its limit gets 429 with Retry-After and nothing of the
//! request is queued; it recovers once its bucket refills; each game has its own.

use std::time::Duration;

use app::auth::{RateLimit, RateLimitSetting, Scope};
use app::config::RateLimitSettings;
use serde_json::{json, Value};
use tokio::time::Instant;
use uuid::Uuid;

use crate::helpers::*;

fn batch(events: usize) -> Value {
    let session = Uuid::now_v7();
    let events: Vec<Value> = (0..events)
        .map(|_| custom_event(Uuid::now_v7(), "p", session))
        .collect();
    json!({ "events": events })
}

#[tokio::test]
async fn a_game_over_its_limit_gets_429_and_recovers_once_its_bucket_refills() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        rate_limit: RateLimitSettings {
            events_per_sec: 100,
            burst: Some(200),
        },
        ..Default::default()
    })
    .await;
    // The burst passes at once...
    app.ingest(&batch(150)).await;
    app.ingest(&batch(50)).await;
    // ...then the bucket is empty.
    let refused = app.post_events(&batch(100)).await;
    let refused_at = Instant::now();
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in whole seconds");
    // 100 events at 100 per second.
    assert_eq!(retry_after, 1);
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/rate-limited");
    assert_eq!(problem["limit"], 100);
    assert_eq!(
        app.count("batches").await,
        2,
        "a refused request was queued"
    );

    // Another game has a bucket of its own.
    let other = create_key(&app.pool, "other-game", Scope::Ingest).await;
    let response = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(&other)
        .json(&batch(200))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        202,
        "another game paid for this one's limit"
    );

    // The first game recovers once enough has refilled: not before the second the 429
    // named (less a margin for the clock), and within a few.
    let accepted_at = wait_for(
        Duration::from_secs(5),
        "the limit to let 100 events through",
        || async {
            let response = app.post_events(&batch(100)).await;
            (response.status() == 202).then(Instant::now)
        },
    )
    .await;
    assert!(
        accepted_at - refused_at >= Duration::from_millis(900),
        "accepted again after {:?}",
        accepted_at - refused_at
    );
    // 2 + the other game's + the one that got through; the polls that were refused queued nothing.
    assert_eq!(app.count("batches").await, 4);
}

#[tokio::test]
async fn a_games_own_limit_overrides_the_default_within_seconds() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        rate_limit: RateLimitSettings {
            events_per_sec: 10,
            burst: Some(10),
        },
        ..Default::default()
    })
    .await;
    app.ingest(&batch(10)).await;
    assert_eq!(app.post_events(&batch(10)).await.status(), 429);

    // No limit for this game: the API processes pick it up at their next reload of the keys.
    let game = TEST_GAME.parse().unwrap();
    app::store::games::set_rate_limit(&app.pool, &game, RateLimitSetting::Own(None))
        .await
        .unwrap();
    wait_for(
        Duration::from_secs(5),
        "the game's own limit to apply",
        || async { (app.post_events(&batch(1000)).await.status() == 202).then_some(()) },
    )
    .await;
    for _ in 0..5 {
        assert_eq!(app.post_events(&batch(1000)).await.status(), 202);
    }

    // A tight limit of its own: the next large batch passes a full bucket, the one after
    // is refused with the wait its size needs.
    let own = RateLimit::new(5, Some(5));
    app::store::games::set_rate_limit(&app.pool, &game, RateLimitSetting::Own(own))
        .await
        .unwrap();
    let refused = wait_for(
        Duration::from_secs(5),
        "the tight limit to apply",
        || async {
            let response = app.post_events(&batch(5)).await;
            (response.status() == 429).then_some(response)
        },
    )
    .await;
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
}
