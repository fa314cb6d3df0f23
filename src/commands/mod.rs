//! What each command does. `main` parses the command line and hands it to [`run`].

mod failed;
mod games;
mod keys;

use std::process::ExitCode;

use sqlx::PgPool;

use crate::cli::Command;
use crate::config::{
    DatabaseSettings, DatabaseWaitSettings, RetentionSettings, ServeSettings, WorkSettings,
};
use crate::startup::{ApiListener, ApiServer, StartupError};
use crate::worker::Worker;
use crate::{api, db, maintenance, metrics, startup, store};

pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve {
            db,
            wait,
            serve,
            retention,
            ..
        } => serve_api(db, wait, serve, retention).await?,
        Command::Work {
            db,
            wait,
            work,
            retention,
            ..
        } => run_worker(db, wait, work, retention).await?,
        Command::Run {
            db,
            wait,
            serve,
            work,
            retention,
            ..
        } => run_all(db, wait, serve, work, retention).await?,
        Command::Migrate { db, .. } => {
            admin_database(&db).await?.close().await;
            println!(
                "the database is up to date ({} migrations)",
                db::MIGRATIONS.len()
            );
        }
        Command::Openapi => print!("{}", api::api_document()?.yaml),
        Command::Bench { args, .. } => crate::bench::run(args).await?,
        Command::Failed { action, .. } => return failed::run(action).await,
        Command::Games { action, .. } => return games::run(action).await,
        Command::Keys { action, .. } => return keys::run(action).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// The database of an administrative command, created and migrated if need be, so that
/// `app keys create` works on a fresh database. It does not wait for a database that is
/// still starting, as the services do: a person is waiting. A connection attempt that
/// gets no answer gives up after the acquire timeout (--acquire-timeout-ms, 5 s).
async fn admin_database(settings: &DatabaseSettings) -> Result<PgPool, StartupError> {
    db::prepare(settings)
        .await
        .map_err(|source| StartupError::Database {
            source,
            waited: None,
        })
}

async fn serve_api(
    db: DatabaseSettings,
    wait: DatabaseWaitSettings,
    serve: ServeSettings,
    retention: RetentionSettings,
) -> anyhow::Result<()> {
    let listener = ApiListener::bind(serve.bind)?;
    let pool = startup::prepare_database(&db, wait.database_wait()).await?;
    maintenance::spawn_partition_keeper(pool.clone());
    let server = ApiServer::on(listener, pool, &serve, &retention)?;
    server.run_until(startup::shutdown_signal()).await?;
    Ok(())
}

async fn run_worker(
    db: DatabaseSettings,
    wait: DatabaseWaitSettings,
    work: WorkSettings,
    retention: RetentionSettings,
) -> anyhow::Result<()> {
    let pool = startup::prepare_database(&db, wait.database_wait()).await?;
    start_maintenance(&pool, &retention);
    let worker = Worker::start(pool.clone(), &work).await?;
    match work.metrics_bind {
        Some(bind) => {
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let metrics = tokio::spawn(metrics::serve(bind, pool, stopped(stop_rx)));
            worker.run_until(startup::shutdown_signal()).await;
            let _ = stop_tx.send(true);
            metrics.await??;
        }
        None => worker.run_until(startup::shutdown_signal()).await,
    }
    Ok(())
}

async fn run_all(
    db: DatabaseSettings,
    wait: DatabaseWaitSettings,
    serve: ServeSettings,
    work: WorkSettings,
    retention: RetentionSettings,
) -> anyhow::Result<()> {
    let listener = ApiListener::bind(serve.bind)?;
    let pool = startup::prepare_database(&db, wait.database_wait()).await?;
    start_maintenance(&pool, &retention);
    let server = ApiServer::on(listener, pool.clone(), &serve, &retention)?;
    // The quick start: a fresh database gets a game and keys to try the API with.
    if let Some((ingest, read)) = store::games::create_demo_keys_if_none(&pool).await? {
        println!(
            "\nNo API keys yet: created the game \"demo\" with two keys, shown only now \
             (`app keys --help` manages keys):\n  \
             ingest key (POST /v1/events):              {}\n  \
             read key   (GET /v1/batches, /v1/events): {}\n",
            ingest.reveal(),
            read.reveal()
        );
    }
    let worker = Worker::start(pool.clone(), &work).await?;
    // One signal stops both: the server stops taking requests, the worker claims.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // The API's /metrics covers the worker too; --metrics-bind adds a second endpoint.
    let metrics = work
        .metrics_bind
        .map(|bind| tokio::spawn(metrics::serve(bind, pool, stopped(stop_rx.clone()))));
    let signal = async move {
        startup::shutdown_signal().await;
        let _ = stop_tx.send(true);
    };
    let (_, served, ()) = tokio::join!(
        signal,
        server.run_until(stopped(stop_rx.clone())),
        worker.run_until(stopped(stop_rx)),
    );
    served?;
    if let Some(metrics) = metrics {
        metrics.await??;
    }
    Ok(())
}

/// A worker's upkeep of the event tables: partitions ahead of need, and retention.
fn start_maintenance(pool: &PgPool, retention: &RetentionSettings) {
    maintenance::spawn_partition_keeper(pool.clone());
    maintenance::spawn_retention(pool.clone(), retention.days, retention.every());
}

/// Resolves once `true` is sent on the channel (or its sender is gone).
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// A time for a person to read: UTC, to the second.
fn when(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let at = at.replace_nanosecond(0).unwrap_or(at);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}
