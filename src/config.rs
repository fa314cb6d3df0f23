//! Settings, each one a command-line flag with an environment-variable fallback.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use crate::auth::RateLimit;
use crate::deadlines::ConnectionLimits;

/// Matches the `db` service of docker-compose.yml.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres:postgres@localhost:5432/game_events";

#[derive(Debug, Clone, Args)]
pub struct DatabaseSettings {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,

    /// Most connections this process opens.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub max_connections: u32,

    /// How long a request waits for a free connection (or for the database to answer a
    /// connect) before it fails with 503, in milliseconds. At start-up, how long a
    /// connection attempt waits for the database to answer.
    #[arg(long, env = "DATABASE_ACQUIRE_TIMEOUT_MS", default_value_t = 5_000)]
    pub acquire_timeout_ms: u64,
}

impl DatabaseSettings {
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }
}

/// How long a service waits at start-up for a database that is not up yet: long enough for
/// a container started beside its database (docker compose, Kubernetes) to outwait the
/// database's own start, short enough that a wrong address fails within a minute.
pub const DEFAULT_DATABASE_WAIT_SECS: u64 = 60;

/// How a service (`serve`, `work`, `run`) waits for its database at start-up. The
/// administrative commands do not wait: a person is waiting.
#[derive(Debug, Clone, Copy, Args)]
pub struct DatabaseWaitSettings {
    /// At start-up, how long to wait for a database that cannot be reached yet (nothing
    /// listens, no answer, starting up), in seconds, trying again with growing pauses
    /// (0: try once). A failure that waiting cannot mend, such as a wrong password, an
    /// unknown user or a missing privilege, stops the process at once.
    #[arg(long, env = "DATABASE_WAIT_SECS", default_value_t = DEFAULT_DATABASE_WAIT_SECS,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub database_wait_secs: u64,
}

impl DatabaseWaitSettings {
    pub fn database_wait(&self) -> Duration {
        Duration::from_secs(self.database_wait_secs)
    }
}

/// How queued batches are retried; set where batches are queued (`serve`, `run`) and
/// where failed ones are requeued (`failed retry`).
#[derive(Debug, Clone, Copy, Args)]
pub struct RetrySettings {
    /// Processing attempts per batch before it is marked failed.
    #[arg(long, env = "MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,

    /// Delay before the first retry, in milliseconds; it doubles with each further attempt.
    /// It is also a worker's lease on a batch, which the worker renews while it works.
    #[arg(long, env = "RETRY_BASE_DELAY_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub retry_base_delay_ms: u64,
}

impl RetrySettings {
    pub fn base_delay(&self) -> Duration {
        Duration::from_millis(self.retry_base_delay_ms)
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeSettings {
    /// Address the HTTP API listens on.
    #[arg(long, env = "BIND", default_value = "0.0.0.0:8080")]
    pub bind: SocketAddr,

    #[command(flatten)]
    pub client_timeouts: ClientTimeoutSettings,

    /// On SIGTERM or Ctrl-C, how long in-flight requests may take to finish, in seconds.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,

    #[command(flatten)]
    pub retry: RetrySettings,

    #[command(flatten)]
    pub rate_limit: RateLimitSettings,
}

/// Every game's rate limit, unless it has one of its own (`app games limit`). Each API
/// process enforces it on its own: see the README for several processes.
#[derive(Debug, Clone, Copy, Args)]
pub struct RateLimitSettings {
    /// Events per second a game may send, sustained (0: no limit).
    #[arg(
        long = "rate-limit",
        env = "RATE_LIMIT_EVENTS_PER_SEC",
        value_name = "EVENTS_PER_SEC",
        default_value_t = 0
    )]
    pub events_per_sec: u32,

    /// Events a game may send at once above its sustained rate. Default: one second's
    /// worth, and at least 1000 (one full batch).
    #[arg(
        long = "rate-limit-burst",
        env = "RATE_LIMIT_BURST",
        value_name = "EVENTS",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub burst: Option<u32>,
}

impl RateLimitSettings {
    /// `None` when there is no default limit.
    pub fn default_limit(&self) -> Option<RateLimit> {
        RateLimit::new(self.events_per_sec, self.burst)
    }
}

/// How long games keep their events (unless a game has its own retention, `app games
/// retention`). The API refuses events older than the retention, and workers drop whole
/// days of events past it. Give every process the same value.
#[derive(Debug, Clone, Copy, Args)]
pub struct RetentionSettings {
    /// Days a game keeps its events, counted from their occurred_at (default: forever).
    #[arg(
        long = "retention-days",
        env = "RETENTION_DAYS",
        value_name = "DAYS",
        value_parser = clap::value_parser!(u32).range(1..=36_500)
    )]
    pub days: Option<u32>,

    /// work, run: how often a worker runs a retention pass, in seconds (one worker at a
    /// time does).
    #[arg(
        long = "retention-every-secs",
        env = "RETENTION_EVERY_SECS",
        default_value_t = 3600,
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    pub every_secs: u64,
}

impl RetentionSettings {
    pub fn every(&self) -> Duration {
        Duration::from_secs(self.every_secs)
    }
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            days: None,
            every_secs: 3600,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct WorkSettings {
    /// Processors: at most this many transactions the worker runs at once, each storing a
    /// group of up to 64 claimed batches. Beyond the first, a transaction starts only for
    /// a full group, when batches wait faster than one transaction at a time stores them.
    #[arg(long, env = "WORKER_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,

    /// On SIGTERM or Ctrl-C, how long running batches may take to finish, in seconds;
    /// a batch still running then is released and retried by another worker.
    #[arg(long, env = "WORKER_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub worker_shutdown_grace_secs: u64,

    /// Serve this worker's Prometheus metrics at http://ADDR/metrics (under `run`, the
    /// API's /metrics already includes them).
    #[arg(long, env = "METRICS_BIND", value_name = "ADDR")]
    pub metrics_bind: Option<SocketAddr>,

    /// Have PostgreSQL check the foreign keys of every stored row, row by row. Without this
    /// flag, a worker whose database role may set `session_replication_role` (a superuser,
    /// or a role granted `SET ON PARAMETER session_replication_role`) skips those checks:
    /// its writes satisfy them by construction, and the checks took 40 % of its database
    /// time. CHECK and NOT NULL constraints apply either way; a trigger added to the event
    /// tables fires without this flag only if it is ENABLE ALWAYS.
    #[arg(long, env = "WORKER_CHECK_FOREIGN_KEYS")]
    pub check_foreign_keys: bool,

    /// How often the worker vacuums the queue's tables, in milliseconds (0: never, leave
    /// it to autovacuum). Every job is inserted, updated and deleted within seconds, and
    /// claims slow down with every dead row left in the queue's indexes; autovacuum
    /// visits a database at most once a minute by default, and may be off.
    #[arg(long, env = "QUEUE_VACUUM_INTERVAL_MS", default_value_t = 1_000)]
    pub queue_vacuum_interval_ms: u64,
}

/// A request head is a few hundred bytes: 10 s is ample even on a poor mobile link.
const DEFAULT_REQUEST_HEADER_TIMEOUT_MS: u64 = 10_000;
/// A body is at most 1 MiB (inflated; clients may gzip it): 60 s allows ~17 KiB/s.
const DEFAULT_REQUEST_BODY_TIMEOUT_MS: u64 = 60_000;
/// Longer than the 60 s idle timeout of common load balancers (AWS's, and nginx's
/// upstream keep-alive), so that the balancer closes an idle connection first and never
/// sends a request on one the service is closing. Raise it above a balancer that keeps
/// connections longer (Google Cloud's wants over 600 s).
const DEFAULT_KEEP_ALIVE_TIMEOUT_MS: u64 = 75_000;

/// From 1 ms to an hour: every limit is bounded, none can be turned off.
fn timeout_ms() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(1..=3_600_000)
}

/// How long the API waits on its clients, so that a slow or idle client cannot hold a
/// connection for ever (see `deadlines.rs`). Each is bounded: there is no "off".
#[derive(Debug, Clone, Copy, Args)]
pub struct ClientTimeoutSettings {
    /// How long a client may take to send a request's head (request line and headers),
    /// from its first byte, in milliseconds; then the connection is closed.
    #[arg(long, env = "REQUEST_HEADER_TIMEOUT_MS", default_value_t = DEFAULT_REQUEST_HEADER_TIMEOUT_MS, value_parser = timeout_ms())]
    pub request_header_timeout_ms: u64,

    /// How long a client may take to send a request's whole body, from the end of its
    /// head, in milliseconds; then it gets 408 and the connection is closed.
    #[arg(long, env = "REQUEST_BODY_TIMEOUT_MS", default_value_t = DEFAULT_REQUEST_BODY_TIMEOUT_MS, value_parser = timeout_ms())]
    pub request_body_timeout_ms: u64,

    /// How long a connection may wait for its next request, from accept and from the start
    /// of each response, in milliseconds; then it is closed. It also bounds the writing of
    /// a response to a client that does not read it.
    #[arg(long, env = "KEEP_ALIVE_TIMEOUT_MS", default_value_t = DEFAULT_KEEP_ALIVE_TIMEOUT_MS, value_parser = timeout_ms())]
    pub keep_alive_timeout_ms: u64,
}

impl Default for ClientTimeoutSettings {
    /// The command line's defaults.
    fn default() -> Self {
        Self {
            request_header_timeout_ms: DEFAULT_REQUEST_HEADER_TIMEOUT_MS,
            request_body_timeout_ms: DEFAULT_REQUEST_BODY_TIMEOUT_MS,
            keep_alive_timeout_ms: DEFAULT_KEEP_ALIVE_TIMEOUT_MS,
        }
    }
}

impl ClientTimeoutSettings {
    pub fn request_body_timeout(&self) -> Duration {
        Duration::from_millis(self.request_body_timeout_ms)
    }

    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            header: Duration::from_millis(self.request_header_timeout_ms),
            idle: Duration::from_millis(self.keep_alive_timeout_ms),
        }
    }
}
