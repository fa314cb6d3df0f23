//! `app failed`: batches that used up their attempts.

use std::process::ExitCode;

use super::{admin_database, when};
use crate::cli::FailedCommand;
use crate::queue::failed::{self, Selection};

pub async fn run(action: FailedCommand) -> anyhow::Result<ExitCode> {
    match action {
        FailedCommand::List { db } => {
            let batches = failed::list(&admin_database(&db).await?).await?;
            if batches.is_empty() {
                println!("no failed batches");
            }
            for b in batches {
                println!(
                    "{}\t{}\t{} events\t{} attempts\treceived {}\t{}",
                    b.batch_id,
                    b.game,
                    b.accepted,
                    b.attempts,
                    when(b.received_at),
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
            let requeued = failed::retry(&admin_database(&db).await?, &selection, retry).await?;
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
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
