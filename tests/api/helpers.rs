//! Spawns the service against a fresh database of its own for each test.

use std::net::SocketAddr;
use std::time::Duration;

pub use crate::common::*;
use app::auth::Scope;
use app::config::{
    ClientTimeoutSettings, DatabaseSettings, RateLimitSettings, RetentionSettings, RetrySettings,
    ServeSettings, WorkSettings,
};
use app::startup::{self, ApiServer};
use app::worker::Worker;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::oneshot;
use uuid::Uuid;

pub struct TestOptions {
    pub workers: usize,
    pub retry: RetrySettings,
    /// The production defaults unless a test shortens them.
    pub client_timeouts: ClientTimeoutSettings,
    pub rate_limit: RateLimitSettings,
    pub retention: RetentionSettings,
}

impl Default for TestOptions {
    fn default() -> Self {
        Self {
            workers: 1,
            retry: RetrySettings {
                max_attempts: 5,
                retry_base_delay_ms: 1_000,
            },
            client_timeouts: ClientTimeoutSettings::default(),
            rate_limit: RateLimitSettings {
                events_per_sec: 0,
                burst: None,
            },
            retention: RetentionSettings::default(),
        }
    }
}

/// The game every test app starts with, and its keys.
pub const TEST_GAME: &str = "test-game";

pub struct TestApp {
    pub address: SocketAddr,
    pub pool: PgPool,
    /// A client that sends no key: `post` and `get` send the test game's keys.
    pub client: reqwest::Client,
    /// The test game's keys.
    pub ingest_key: String,
    pub read_key: String,
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
        let pool = startup::prepare_database(&db_settings, DATABASE_WAIT)
            .await
            .expect("prepare the test database");

        let ingest_key = create_key(&pool, TEST_GAME, Scope::Ingest).await;
        let read_key = create_key(&pool, TEST_GAME, Scope::Read).await;

        let serve = ServeSettings {
            bind: "127.0.0.1:0".parse().unwrap(),
            shutdown_grace_secs: 1,
            retry: options.retry,
            client_timeouts: options.client_timeouts,
            rate_limit: options.rate_limit,
        };
        let server = ApiServer::bind(pool.clone(), &serve, &options.retention)
            .await
            .expect("bind");
        let address = server.local_addr();
        let (stop_server, stopped) = oneshot::channel::<()>();
        tokio::spawn(server.run_until(async {
            let _ = stopped.await;
        }));

        let mut app = Self {
            address,
            pool,
            client: reqwest::Client::new(),
            ingest_key,
            read_key,
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
        self.start_worker_on(pool).await;
    }

    /// Starts one more worker on `pool` (another database role's, say).
    pub async fn start_worker_on(&mut self, pool: PgPool) {
        let settings = WorkSettings {
            concurrency: 4,
            worker_shutdown_grace_secs: 5,
            metrics_bind: None,
            queue_vacuum_interval_ms: 1_000,
            check_foreign_keys: false,
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

    /// A POST to `path` with the test game's ingest key.
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(self.url(path))
            .bearer_auth(&self.ingest_key)
    }

    /// A GET of `path` with the test game's read key.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(&self.read_key)
    }

    pub async fn post_events(&self, body: &Value) -> reqwest::Response {
        self.post("/v1/events")
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
        let response = self.get(path).send().await.expect("GET");
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

/// Makes a key of `scope` for `game` (made too if missing), as `app keys create` does.
pub async fn create_key(pool: &PgPool, game: &str, scope: Scope) -> String {
    let new = app::store::games::create_key(pool, &game.parse().unwrap(), scope)
        .await
        .expect("create a key");
    new.key.reveal().to_owned()
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        // Workers are dropped with the runtime.
        drop_database_blocking(&server_url(), &self.db_name);
    }
}
