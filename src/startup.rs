//! Starting and stopping the pieces: the database and the HTTP server (a worker starts with
//! [`crate::worker::Worker::start`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use poem::{EndpointExt, Server};
use sqlx::PgPool;
use tokio::time::Instant;

use crate::api::{self, ApiState};
use crate::auth::KeyCache;
use crate::config::{DatabaseSettings, ServeSettings};
use crate::db::{self, DbError};
use crate::deadlines::{DeadlineAcceptor, RequestBodyTimeout};
use crate::queue::Queue;
use crate::rate_limit::RateLimiter;

/// How long start-up waits for the database to accept connections.
const DATABASE_WAIT: Duration = Duration::from_secs(60);

/// Creates and migrates the database, waiting for it while it is starting (as it may
/// be, under docker compose).
pub async fn prepare_database(settings: &DatabaseSettings) -> Result<PgPool, DbError> {
    let deadline = Instant::now() + DATABASE_WAIT;
    let mut delay = Duration::from_millis(250);
    loop {
        match db::prepare(settings).await {
            Ok(pool) => return Ok(pool),
            Err(e @ (DbError::Connect(_) | DbError::CreateDatabase(_)))
                if Instant::now() < deadline =>
            {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "database not ready");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The HTTP API, bound to its address but not serving yet.
pub struct ApiServer {
    acceptor: DeadlineAcceptor<TcpAcceptor>,
    local_addr: SocketAddr,
    state: ApiState,
    body_timeout: RequestBodyTimeout,
    grace: Duration,
}

impl ApiServer {
    pub async fn bind(pool: PgPool, settings: &ServeSettings) -> io::Result<Self> {
        let acceptor = TcpListener::bind(settings.bind).into_acceptor().await?;
        let local_addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .unwrap_or(settings.bind);
        let timeouts = &settings.client_timeouts;
        Ok(Self {
            acceptor: DeadlineAcceptor::new(acceptor, timeouts.connection_limits()),
            local_addr,
            state: ApiState {
                queue: Queue::start(pool.clone(), settings.retry),
                keys: KeyCache::start(pool.clone()),
                limits: std::sync::Arc::new(RateLimiter::new(settings.rate_limit.default_limit())),
                pool,
            },
            body_timeout: RequestBodyTimeout(timeouts.request_body_timeout()),
            grace: Duration::from_secs(settings.shutdown_grace_secs),
        })
    }

    /// The bound address (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` resolves, then stops accepting connections and gives
    /// in-flight requests the grace period to finish.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> io::Result<()> {
        tracing::info!(addr = %self.local_addr, "serving the API; docs at /docs");
        let app = api::app(self.state)
            .data(self.body_timeout)
            .map_to_response()
            .boxed();
        Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(app, shutdown, Some(self.grace))
            .await
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
