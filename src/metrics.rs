//! Prometheus metrics of this process, served at `/metrics` (by the API, and by a worker
//! given `--metrics-bind`). One registry per process: the API's and the worker's metrics
//! are separate series when they run as separate processes, and shared under `app run`.

use std::sync::atomic::AtomicU64;
use std::sync::LazyLock;

use poem::listener::Listener;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::deadlines::{ConnectionLimits, DeadlineAcceptor};

/// The content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: &'static str,
    pub method: String,
    pub status: u16,
}

/// Which deadline cut a connection off (`deadlines.rs`): `header` or `idle`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TimedOutLabels {
    pub deadline: &'static str,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are lowercase
pub enum JobOutcome {
    completed,
    retried,
    failed,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub outcome: JobOutcome,
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub connections_timed_out: Family<TimedOutLabels, Counter>,
    pub events_accepted: Counter,
    pub batches_queued: Counter,
    pub queue_depth: Gauge,
    pub queue_dead: Gauge,
    pub queue_oldest_age_seconds: Gauge<f64, AtomicU64>,
    pub jobs: Family<JobLabels, Counter>,
    pub processing_seconds: Histogram,
    pub end_to_end_lag_seconds: Histogram,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("game_events");
        let metrics = Self {
            http_requests: Family::default(),
            connections_timed_out: Family::default(),
            events_accepted: Counter::default(),
            batches_queued: Counter::default(),
            queue_depth: Gauge::default(),
            queue_dead: Gauge::default(),
            queue_oldest_age_seconds: Gauge::default(),
            jobs: Family::default(),
            // 1 ms to ~65 s.
            processing_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            end_to_end_lag_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            metrics.http_requests.clone(),
        );
        registry.register(
            "http_connections_timed_out",
            "Connections closed because a client was too slow: header (a request head not received in time) or idle (no request in time, or a response not read)",
            metrics.connections_timed_out.clone(),
        );
        registry.register(
            "events_accepted",
            "Events accepted (202)",
            metrics.events_accepted.clone(),
        );
        registry.register(
            "batches_queued",
            "Batches queued",
            metrics.batches_queued.clone(),
        );
        registry.register(
            "queue_depth",
            "Queued batches not yet stored (waiting, running or awaiting retry), at the last scrape",
            metrics.queue_depth.clone(),
        );
        registry.register(
            "queue_dead",
            "Batches that used up their attempts (app failed list), at the last scrape",
            metrics.queue_dead.clone(),
        );
        registry.register(
            "queue_oldest_age_seconds",
            "Age of the oldest queued batch not yet stored, at the last scrape",
            metrics.queue_oldest_age_seconds.clone(),
        );
        registry.register(
            "jobs",
            "Batch processing attempts by outcome: completed, retried (failed with attempts left), failed (none left)",
            metrics.jobs.clone(),
        );
        registry.register(
            "processing_seconds",
            "Time a worker takes to store a batch, claim to commit",
            metrics.processing_seconds.clone(),
        );
        registry.register(
            "end_to_end_lag_seconds",
            "Time from accepting a batch (202) to storing it",
            metrics.end_to_end_lag_seconds.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    pub fn job(&self, outcome: JobOutcome) {
        self.jobs.get_or_create(&JobLabels { outcome }).inc();
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// The metrics in the OpenMetrics text format (which Prometheus scrapes).
pub fn encode() -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &METRICS.registry);
    text
}

/// Refreshes the queue gauges from the database, then renders every metric. A scrape
/// while the database is down still answers, with the gauges of the last good scrape.
pub async fn render(pool: &sqlx::PgPool) -> String {
    match crate::queue::stats(pool).await {
        Ok(stats) => {
            METRICS.queue_depth.set(stats.depth);
            METRICS.queue_dead.set(stats.dead);
            METRICS
                .queue_oldest_age_seconds
                .set(stats.oldest_age_seconds.unwrap_or(0.0));
        }
        Err(error) => tracing::warn!(%error, "cannot read the queue's size for /metrics"),
    }
    encode()
}

/// `GET /metrics` as a poem endpoint.
pub fn endpoint(pool: sqlx::PgPool) -> impl poem::Endpoint {
    poem::endpoint::make(move |_| {
        let pool = pool.clone();
        async move {
            poem::Response::builder()
                .content_type(CONTENT_TYPE)
                .body(render(&pool).await)
        }
    })
}

/// Serves `/metrics` (and `/healthz`) on `bind` until `shutdown`: a worker's own endpoint.
pub async fn serve(
    bind: std::net::SocketAddr,
    pool: sqlx::PgPool,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let app = poem::Route::new()
        .at("/metrics", endpoint(pool))
        .at("/healthz", poem::endpoint::make_sync(|_| "ok"));
    tracing::info!(%bind, "serving worker metrics at /metrics");
    let acceptor = poem::listener::TcpListener::bind(bind)
        .into_acceptor()
        .await?;
    // The API's default limits on slow and idle clients apply here too.
    let acceptor = DeadlineAcceptor::new(acceptor, ConnectionLimits::default());
    poem::Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app, shutdown, Some(std::time::Duration::from_secs(1)))
        .await
}
