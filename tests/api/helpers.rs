//! Spawns the service against a fresh database of its own for each test.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use app::config::{DatabaseSettings, RetrySettings, ServeSettings, WorkSettings};
use app::startup::{self, ApiServer};
use app::worker::Worker;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::oneshot;
use tokio::time::Instant;
use uuid::Uuid;

/// The server that tests create their databases on; trust or password `postgres`.
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_SERVER")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432".to_owned())
}

pub struct TestOptions {
    pub workers: usize,
    pub retry: RetrySettings,
}

impl Default for TestOptions {
    fn default() -> Self {
        Self {
            workers: 1,
            retry: RetrySettings {
                max_attempts: 5,
                retry_base_delay_ms: 1_000,
            },
        }
    }
}

pub struct TestApp {
    pub address: SocketAddr,
    pub pool: PgPool,
    pub client: reqwest::Client,
    pub db_settings: DatabaseSettings,
    db_name: String,
    stop_server: Option<oneshot::Sender<()>>,
    workers: Vec<Worker>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(TestOptions::default()).await
    }

    pub async fn spawn_with(options: TestOptions) -> Self {
        // Captured per test (shown only when a test fails), at the service's own filter.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                app::telemetry::DEFAULT_FILTER,
            ))
            .with_test_writer()
            .try_init();
        let db_name = format!("test_{}", Uuid::new_v4().simple());
        let db_settings = DatabaseSettings {
            database_url: format!("{}/{db_name}", server_url()),
            max_connections: 10,
            acquire_timeout_ms: 5_000,
        };
        let pool = startup::prepare_database(&db_settings)
            .await
            .expect("prepare the test database");

        let serve = ServeSettings {
            bind: "127.0.0.1:0".parse().unwrap(),
            shutdown_grace_secs: 1,
            retry: options.retry,
        };
        let server = ApiServer::bind(pool.clone(), &serve).await.expect("bind");
        let address = server.local_addr();
        let (stop_server, stopped) = oneshot::channel::<()>();
        tokio::spawn(server.run_until(async {
            let _ = stopped.await;
        }));

        let mut app = Self {
            address,
            pool,
            client: reqwest::Client::new(),
            db_settings,
            db_name,
            stop_server: Some(stop_server),
            workers: Vec::new(),
        };
        for _ in 0..options.workers {
            app.start_worker().await;
        }
        app
    }

    /// Starts one more worker, with a pool of its own (as another process would have).
    pub async fn start_worker(&mut self) {
        let pool = app::db::pool(&self.db_settings).unwrap();
        let settings = WorkSettings {
            concurrency: 4,
            worker_shutdown_grace_secs: 5,
        };
        self.workers.push(
            Worker::start(pool, &settings)
                .await
                .expect("start a worker"),
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub async fn post_events(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/events"))
            .json(body)
            .send()
            .await
            .expect("POST /v1/events")
    }

    /// Posts a batch that must be accepted; returns its id.
    pub async fn ingest(&self, body: &Value) -> Uuid {
        let response = self.post_events(body).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 202, "not accepted: {text}");
        let accepted: Value = serde_json::from_str(&text).unwrap();
        accepted["batch_id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.expect("GET");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn batch(&self, batch_id: Uuid) -> Value {
        let (status, body) = self.get_json(&format!("/v1/batches/{batch_id}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Waits until the batch has the given status.
    pub async fn wait_for_status(&self, batch_id: Uuid, status: &str, within: Duration) -> Value {
        wait_for(
            within,
            &format!("batch {batch_id} to be {status}"),
            || async {
                let batch = self.batch(batch_id).await;
                (batch["status"] == status).then_some(batch)
            },
        )
        .await
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Queue jobs, not counting sqlxmq's sentinel row.
    pub async fn queued_jobs(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM mq_msgs WHERE id <> uuid_nil()")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        // Workers are dropped with the runtime; drop the database from a thread of its own,
        // since Drop cannot await.
        let url = server_url();
        let db_name = self.db_name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&format!("{url}/postgres")).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

/// Polls `check` until it returns `Some`, or panics after `within`.
pub async fn wait_for<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub const SESSION: &str = "0192f0c1-7d5e-7a3b-9c1d-2e3f4a5b6c00";

/// One valid event of `event_type`, with every optional field set.
pub fn full_event(
    event_type: &str,
    event_id: Uuid,
    player_id: &str,
    session_id: &str,
    occurred_at: &str,
) -> Value {
    let mut event = json!({
        "type": event_type,
        "event_id": event_id,
        "player_id": player_id,
        "session_id": session_id,
        "occurred_at": occurred_at,
    });
    let own = match event_type {
        "session_start" => {
            json!({"platform": "android", "app_version": "2.3.1", "device": "Pixel 8", "country": "SE"})
        }
        "session_end" => json!({"duration_seconds": 1860}),
        "progression" => {
            json!({"status": "complete", "level": "world-1:stage-3", "score": 12500, "attempt": 2})
        }
        "purchase" => {
            json!({"item_id": "gem_pack", "item_type": "bundle", "amount_minor": 499, "currency": "EUR", "transaction_id": "GPA.1234"})
        }
        "resource" => {
            json!({"flow": "source", "currency": "gold", "amount": 250.5, "item_type": "reward", "item_id": "daily"})
        }
        "custom" => {
            json!({"name": "tutorial:step:done", "value": 3.5, "properties": {"step": 3, "hints": ["a", "b"]}})
        }
        "error" => {
            json!({"severity": "critical", "message": "NullReferenceException\n  at Shop.Open()"})
        }
        other => panic!("no event type {other}"),
    };
    event
        .as_object_mut()
        .unwrap()
        .extend(own.as_object().unwrap().clone());
    event
}

pub const EVENT_TYPES: [&str; 7] = [
    "session_start",
    "session_end",
    "progression",
    "purchase",
    "resource",
    "custom",
    "error",
];

/// A small valid event for load.
pub fn custom_event(event_id: Uuid, player_id: &str, session_id: Uuid) -> Value {
    json!({
        "type": "custom",
        "event_id": event_id,
        "player_id": player_id,
        "session_id": session_id,
        "occurred_at": "2026-01-01T00:00:00Z",
        "name": "load",
    })
}
