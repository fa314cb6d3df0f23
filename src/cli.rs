//! The command line. Every option is a flag with an environment-variable fallback.

use clap::{Args, Parser, Subcommand};
use uuid::Uuid;

use crate::config::{DatabaseSettings, RetrySettings, ServeSettings, WorkSettings};
use crate::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "app",
    version,
    about = "Game-event ingestion service: a typed REST API that queues batches durably in \
             PostgreSQL, and workers that store them in normalized tables.",
    propagate_version = true
)]
pub struct Cli {
    /// Log as readable text or as JSON lines.
    #[arg(
        long,
        global = true,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (migrates the database first).
    Serve {
        #[command(flatten)]
        db: DatabaseSettings,
        #[command(flatten)]
        serve: ServeSettings,
    },
    /// Run a worker (migrates the database first). Run as many as you like, anywhere.
    Work {
        #[command(flatten)]
        db: DatabaseSettings,
        #[command(flatten)]
        work: WorkSettings,
    },
    /// Migrate, then serve the API and run a worker in this one process: the quick start.
    Run {
        #[command(flatten)]
        db: DatabaseSettings,
        #[command(flatten)]
        serve: ServeSettings,
        #[command(flatten)]
        work: WorkSettings,
    },
    /// Create the database if it is missing and apply every migration.
    Migrate {
        #[command(flatten)]
        db: DatabaseSettings,
    },
    /// Print the OpenAPI document as YAML.
    Openapi,
    /// Benchmark a running API: send events, wait until they are stored, compare with COPY.
    Bench(crate::bench::BenchArgs),
    /// Batches that used up their attempts.
    Failed {
        #[command(subcommand)]
        action: FailedCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum FailedCommand {
    /// List failed batches with their last error.
    List {
        #[command(flatten)]
        db: DatabaseSettings,
    },
    /// Requeue failed batches with a fresh set of attempts.
    Retry {
        #[command(flatten)]
        db: DatabaseSettings,
        #[command(flatten)]
        retry: RetrySettings,
        #[command(flatten)]
        which: RetrySelection,
    },
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct RetrySelection {
    /// Requeue every failed batch.
    #[arg(long)]
    pub all: bool,
    /// The batches to requeue.
    #[arg(value_name = "BATCH_ID")]
    pub batch_ids: Vec<Uuid>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn failed_retry_takes_ids_or_all_but_not_both() {
        let id = "0192f0c1-7d5e-7a3b-9c1d-2e3f4a5b6c7d";
        assert!(Cli::try_parse_from(["app", "failed", "retry", "--all"]).is_ok());
        assert!(Cli::try_parse_from(["app", "failed", "retry", id]).is_ok());
        assert!(Cli::try_parse_from(["app", "failed", "retry"]).is_err());
        assert!(Cli::try_parse_from(["app", "failed", "retry", "--all", id]).is_err());
        assert!(Cli::try_parse_from(["app", "failed", "retry", "not-a-uuid"]).is_err());
    }
}
