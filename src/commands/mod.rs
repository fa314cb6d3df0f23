//! What each command does. `main` parses the command line and hands it to [`run`].

mod failed;
mod games;
mod keys;

use std::process::ExitCode;

use anyhow::Context;
use sqlx::PgPool;

use crate::cli::Command;
use crate::config::{DatabaseSettings, ServeSettings, WorkSettings};
use crate::worker::Worker;
use crate::{api, db, metrics, startup, store};

pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { db, serve } => serve_api(db, serve).await?,
        Command::Work { db, work } => run_worker(db, work).await?,
        Command::Run { db, serve, work } => run_all(db, serve, work).await?,
        Command::Migrate { db } => {
            db::create_database_if_missing(&db.database_url).await?;
            db::migrate(&db::pool(&db)?).await?;
            println!(
                "the database is up to date ({} migrations)",
                db::MIGRATIONS.len()
            );
        }
        Command::Openapi => print!("{}", api::api_document()?.yaml),
        Command::Bench(args) => crate::bench::run(args).await?,
        Command::Failed { action } => return failed::run(action).await,
        Command::Games { action } => return games::run(action).await,
        Command::Keys { action } => return keys::run(action).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// The database of an administrative command, created and migrated if need be, so that
/// `app keys create` works on a fresh database. It does not wait for a database that is
/// still starting, as the services do: a person is waiting.
async fn admin_database(settings: &DatabaseSettings) -> anyhow::Result<PgPool> {
    Ok(db::prepare(settings).await?)
}

async fn serve_api(db: DatabaseSettings, serve: ServeSettings) -> anyhow::Result<()> {
    let pool = startup::prepare_database(&db).await?;
    let server = startup::ApiServer::bind(pool, &serve)
        .await
        .with_context(|| format!("cannot listen on {}", serve.bind))?;
    server.run_until(startup::shutdown_signal()).await?;
    Ok(())
}

async fn run_worker(db: DatabaseSettings, work: WorkSettings) -> anyhow::Result<()> {
    let pool = startup::prepare_database(&db).await?;
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
    serve: ServeSettings,
    work: WorkSettings,
) -> anyhow::Result<()> {
    let pool = startup::prepare_database(&db).await?;
    let server = startup::ApiServer::bind(pool.clone(), &serve)
        .await
        .with_context(|| format!("cannot listen on {}", serve.bind))?;
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
