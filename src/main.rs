use anyhow::Context;
use clap::Parser;

use app::cli::{Cli, Command, FailedCommand};
use app::queue::failed::{self, Selection};
use app::worker::Worker;
use app::{api, db, metrics, startup, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match cli.command {
        Command::Serve { db, serve } => {
            let pool = startup::prepare_database(&db).await?;
            let server = startup::ApiServer::bind(pool, &serve)
                .await
                .with_context(|| format!("cannot listen on {}", serve.bind))?;
            server.run_until(startup::shutdown_signal()).await?;
        }
        Command::Work { db, work } => {
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
        }
        Command::Run { db, serve, work } => {
            let pool = startup::prepare_database(&db).await?;
            let server = startup::ApiServer::bind(pool.clone(), &serve)
                .await
                .with_context(|| format!("cannot listen on {}", serve.bind))?;
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
        }
        Command::Migrate { db } => {
            db::create_database_if_missing(&db.database_url).await?;
            db::migrate(&db::pool(&db)?).await?;
            println!(
                "the database is up to date ({} migrations)",
                db::MIGRATIONS.len()
            );
        }
        Command::Openapi => print!("{}", api::openapi().spec_yaml()),
        Command::Bench(args) => app::bench::run(args).await?,
        Command::Failed { action } => match action {
            FailedCommand::List { db } => {
                let batches = failed::list(&db::pool(&db)?).await?;
                if batches.is_empty() {
                    println!("no failed batches");
                }
                for b in batches {
                    println!(
                        "{}\t{} events\t{} attempts\treceived {}\t{}",
                        b.batch_id,
                        b.accepted,
                        b.attempts,
                        b.received_at,
                        b.last_error.as_deref().unwrap_or("-")
                    );
                }
            }
            FailedCommand::Retry { db, retry, which } => {
                let selection = if which.all {
                    Selection::All
                } else {
                    Selection::Only(which.batch_ids.clone())
                };
                let requeued = failed::retry(&db::pool(&db)?, &selection, retry).await?;
                for id in &requeued {
                    println!("requeued {id}");
                }
                let missed: Vec<_> = which
                    .batch_ids
                    .iter()
                    .filter(|id| !requeued.contains(id))
                    .collect();
                for id in &missed {
                    eprintln!("not a failed batch: {id}");
                }
                println!("{} batch(es) requeued", requeued.len());
                if !missed.is_empty() {
                    std::process::exit(1);
                }
            }
        },
    }
    Ok(())
}

/// Resolves once `true` is sent on the channel (or its sender is gone).
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
