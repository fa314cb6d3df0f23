//! Starting and stopping the pieces: the database and the HTTP server (a worker starts with
//! [`crate::worker::Worker::start`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use poem::listener::{Acceptor, TcpAcceptor};
use poem::{EndpointExt, Server};
use sqlx::PgPool;
use tokio::net::TcpSocket;
use tokio::time::Instant;

use crate::api::{self, ApiState};
use crate::auth::KeyCache;
use crate::config::{DatabaseSettings, RetentionSettings, ServeSettings};
use crate::db::{self, DbError};
use crate::deadlines::{DeadlineAcceptor, RequestBodyTimeout};
use crate::queue::Queue;
use crate::rate_limit::RateLimiter;

/// Why a command could not start, said so that a person knows what to do. `main` prints
/// these as they are, without an error chain or backtrace.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The database cannot be used. `waited` is how long a service waited for it to come
    /// up; `None` for the administrative commands, which try once.
    #[error("{source}\n  {}\n  What to do: {}", verdict(source, *waited), source.advice())]
    Database {
        #[source]
        source: DbError,
        waited: Option<Duration>,
    },
    #[error("cannot listen on {addr}: {source}\n  What to do: {}", listen_advice(*addr, source))]
    Listen {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// Whether waiting could help, and whether it was tried.
fn verdict(error: &DbError, waited: Option<Duration>) -> String {
    let cause = error.cause();
    let what = format!("This is {}: {}.", cause.persistence(), cause.meaning());
    match (cause.is_transient(), waited) {
        (false, _) => format!("{what} Waiting cannot help, so the app stops at once."),
        (true, None) => format!(
            "{what} It may pass once the database is up, but this command does not wait: \
             run it again then."
        ),
        (true, Some(waited)) => format!(
            "{what} Gave up after {} s of trying again (--database-wait-secs, \
             DATABASE_WAIT_SECS).",
            waited.as_secs_f64().round()
        ),
    }
}

fn listen_advice(addr: SocketAddr, error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::AddrInUse => format!(
            "Another process listens there (another `app run` or `app serve`?). Stop it, \
             or listen elsewhere with --bind (BIND), such as --bind {}:{}.",
            addr.ip(),
            addr.port().wrapping_add(1).max(1024)
        ),
        io::ErrorKind::PermissionDenied => "Ports below 1024 need privileges: choose a port \
             from 1024 up with --bind (BIND)."
            .to_owned(),
        io::ErrorKind::AddrNotAvailable => format!(
            "{} is not an address of this machine: use 0.0.0.0 (every interface) or \
             127.0.0.1 with --bind (BIND).",
            addr.ip()
        ),
        _ => "Choose another address with --bind (BIND).".to_owned(),
    }
}

/// The first pause between tries at start-up; it doubles up to `MAX_RETRY_PAUSE`.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(250);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);

/// Connects to, creates and migrates the database, as a service starts. A transient
/// failure (nothing listens yet, no answer, the server is starting) is tried again, with
/// growing pauses and a log line each time, until `wait` has passed: a container started
/// beside its database (docker compose, Kubernetes) may be up before the database is. A
/// permanent failure (a wrong password, an unknown user, a missing privilege) is returned
/// at once. An attempt under way when `wait` ends may take up to the acquire timeout more.
pub async fn prepare_database(
    settings: &DatabaseSettings,
    wait: Duration,
) -> Result<PgPool, StartupError> {
    let started = Instant::now();
    let deadline = started + wait;
    let mut pause = FIRST_RETRY_PAUSE;
    let mut first_failure = true;
    loop {
        let error = match db::prepare(settings).await {
            Ok(pool) => return Ok(pool),
            Err(error) => error,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if !error.cause().is_transient() || left.is_zero() {
            return Err(StartupError::Database {
                source: error,
                waited: Some(started.elapsed()),
            });
        }
        let retry_in = pause.min(left);
        if first_failure {
            // The advice once, not on every line: while a container waits for its
            // database, these lines are expected.
            tracing::warn!(error = %error, what_to_do = %error.advice(),
                retry_in_ms = retry_in.as_millis() as u64, gives_up_in_s = left.as_secs(),
                "waiting for the database");
            first_failure = false;
        } else {
            tracing::warn!(error = %error, retry_in_ms = retry_in.as_millis() as u64,
                gives_up_in_s = left.as_secs(), "waiting for the database");
        }
        tokio::time::sleep(retry_in).await;
        pause = (pause * 2).min(MAX_RETRY_PAUSE);
    }
}

/// The API's address, bound before the wait for the database, so that an address another
/// process listens on is reported at once rather than after that wait. It listens only
/// once the server is made: until then a client is refused (as by a process not started
/// yet) instead of left unanswered in the listen queue. The price: a process that binds
/// the address during the wait takes it (binding without listening does not hold it
/// against SO_REUSEADDR), and then `listen` fails, with the same message.
pub struct ApiListener {
    socket: TcpSocket,
    addr: SocketAddr,
}

impl ApiListener {
    pub fn bind(addr: SocketAddr) -> Result<Self, StartupError> {
        let bound = || -> io::Result<TcpSocket> {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            // As tokio's TcpListener::bind does: a restart may bind while connections of
            // the previous process linger in TIME_WAIT. A listening socket still holds
            // the address against us.
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            Ok(socket)
        };
        let socket = bound().map_err(|source| StartupError::Listen { addr, source })?;
        Ok(Self { socket, addr })
    }

    fn listen(self) -> Result<TcpAcceptor, StartupError> {
        let addr = self.addr;
        self.socket
            // The backlog of tokio's TcpListener::bind.
            .listen(1024)
            .and_then(TcpAcceptor::from_tokio)
            .map_err(|source| StartupError::Listen { addr, source })
    }
}

/// The HTTP API, listening on its address but not serving yet.
pub struct ApiServer {
    acceptor: DeadlineAcceptor<TcpAcceptor>,
    local_addr: SocketAddr,
    state: ApiState,
    body_timeout: RequestBodyTimeout,
    grace: Duration,
}

impl ApiServer {
    pub async fn bind(
        pool: PgPool,
        settings: &ServeSettings,
        retention: &RetentionSettings,
    ) -> Result<Self, StartupError> {
        Self::on(ApiListener::bind(settings.bind)?, pool, settings, retention)
    }

    /// The API on an address already bound.
    pub fn on(
        listener: ApiListener,
        pool: PgPool,
        settings: &ServeSettings,
        retention: &RetentionSettings,
    ) -> Result<Self, StartupError> {
        let bound = listener.addr;
        let acceptor = listener.listen()?;
        let local_addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .unwrap_or(bound);
        let timeouts = &settings.client_timeouts;
        Ok(Self {
            acceptor: DeadlineAcceptor::new(acceptor, timeouts.connection_limits()),
            local_addr,
            state: ApiState {
                queue: Queue::start(pool.clone(), settings.retry),
                keys: KeyCache::start(pool.clone()),
                limits: std::sync::Arc::new(RateLimiter::new(settings.rate_limit.default_limit())),
                retention_days: retention.days,
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
