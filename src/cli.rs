//! The command line. Every option is a flag with an environment-variable fallback.

use clap::{Args, Parser, Subcommand};
use uuid::Uuid;

use crate::auth::Scope;
use crate::config::{
    DatabaseSettings, DatabaseWaitSettings, RetentionSettings, RetrySettings, ServeSettings,
    WorkSettings,
};
use crate::domain::{GameName, Origin};
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
    #[command(subcommand)]
    pub command: Command,
}

/// How a command logs. Each command that logs takes it (`openapi` prints a document and
/// does not), so that `app openapi --help` lists only what `openapi` heeds; `global`
/// passes it on to subcommands, as in `app keys list --log-format json`.
#[derive(Debug, Clone, Copy, Args)]
pub struct LogSettings {
    /// Log as readable text or as JSON lines.
    #[arg(
        long,
        global = true,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (migrates the database first).
    Serve {
        #[command(flatten)]
        db: DatabaseSettings,
        #[command(flatten)]
        wait: DatabaseWaitSettings,
        #[command(flatten)]
        serve: ServeSettings,
        #[command(flatten)]
        retention: RetentionSettings,
        #[command(flatten)]
        log: LogSettings,
    },
    /// Run a worker (migrates the database first). Run as many as you like, anywhere.
    Work {
        #[command(flatten)]
        db: DatabaseSettings,
        #[command(flatten)]
        wait: DatabaseWaitSettings,
        #[command(flatten)]
        work: WorkSettings,
        #[command(flatten)]
        retention: RetentionSettings,
        #[command(flatten)]
        log: LogSettings,
    },
    /// Migrate, then serve the API and run a worker in this one process: the quick start.
    /// On a database without any API key, it first creates the game `demo` with an ingest
    /// key and a read key, and prints them (once). It runs until Ctrl-C or SIGTERM.
    Run {
        #[command(flatten)]
        db: DatabaseSettings,
        #[command(flatten)]
        wait: DatabaseWaitSettings,
        #[command(flatten)]
        serve: ServeSettings,
        #[command(flatten)]
        work: WorkSettings,
        #[command(flatten)]
        retention: RetentionSettings,
        #[command(flatten)]
        log: LogSettings,
    },
    /// Create the database if it is missing and apply every migration.
    Migrate {
        #[command(flatten)]
        db: DatabaseSettings,
        #[command(flatten)]
        log: LogSettings,
    },
    /// Print the OpenAPI document as YAML.
    Openapi,
    /// Benchmark a running API: send events, wait until they are stored, compare with COPY.
    Bench {
        #[command(flatten)]
        args: crate::bench::BenchArgs,
        #[command(flatten)]
        log: LogSettings,
    },
    /// Batches that used up their attempts.
    Failed {
        #[command(subcommand)]
        action: FailedCommand,
        #[command(flatten)]
        log: LogSettings,
    },
    /// Games: each has its own players, sessions, events and keys.
    Games {
        #[command(subcommand)]
        action: GamesCommand,
        #[command(flatten)]
        log: LogSettings,
    },
    /// API keys: each belongs to one game and has one scope (ingest or read).
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
        #[command(flatten)]
        log: LogSettings,
    },
}

impl Command {
    /// How the command logs; `None` for `openapi`, which does not.
    pub fn log_format(&self) -> Option<LogFormat> {
        match self {
            Command::Serve { log, .. }
            | Command::Work { log, .. }
            | Command::Run { log, .. }
            | Command::Migrate { log, .. }
            | Command::Bench { log, .. }
            | Command::Failed { log, .. }
            | Command::Games { log, .. }
            | Command::Keys { log, .. } => Some(log.log_format),
            Command::Openapi => None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum GamesCommand {
    /// Create a game.
    Create {
        /// 1 to 64 lower-case letters, digits, '.', '_' and '-'.
        name: GameName,
        #[command(flatten)]
        db: DatabaseSettings,
    },
    /// List the games, with their rate limits, origins and keys.
    List {
        #[command(flatten)]
        db: DatabaseSettings,
    },
    /// Set a game's own rate limit, or give it back the default (--default).
    Limit {
        name: GameName,
        /// Events per second the game may send, sustained (0: no limit for this game).
        #[arg(
            long,
            value_name = "EVENTS_PER_SEC",
            required_unless_present = "default"
        )]
        events_per_sec: Option<u32>,
        /// Events it may send at once above that rate (default: one second's worth, at
        /// least 1000).
        #[arg(long, value_name = "EVENTS", requires = "events_per_sec",
              value_parser = clap::value_parser!(u32).range(1..=i32::MAX as i64))]
        burst: Option<u32>,
        /// Use the API's default limit (--rate-limit) again.
        #[arg(long, conflicts_with_all = ["events_per_sec", "burst"])]
        default: bool,
        #[command(flatten)]
        db: DatabaseSettings,
    },
    /// Set how many days the game keeps its events, or give it back the default (--default).
    Retention {
        name: GameName,
        /// Days the game keeps its events, counted from their occurred_at.
        #[arg(long, value_name = "DAYS", required_unless_present = "default",
              value_parser = clap::value_parser!(u32).range(1..=36_500))]
        days: Option<u32>,
        /// Use the service's default (--retention-days) again.
        #[arg(long, conflicts_with = "days")]
        default: bool,
        #[command(flatten)]
        db: DatabaseSettings,
    },
    /// Accept the game's events from these browser origins only, or from any (--any).
    Origins {
        name: GameName,
        /// Origins as browsers send them: https://game.example, http://localhost:8000.
        #[arg(required_unless_present = "any", num_args = 1..=100)]
        origins: Vec<Origin>,
        /// Accept any origin again (the default: ingest keys are publishable).
        #[arg(long, conflicts_with = "origins")]
        any: bool,
        #[command(flatten)]
        db: DatabaseSettings,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key, and the game too if it is missing. The key is printed once, alone on
    /// the last line of the output; only its hash is stored.
    Create {
        /// The game the key is for.
        #[arg(long)]
        game: GameName,
        /// ingest: publishable, sends events; read: secret, reads batches and events.
        #[arg(long, value_enum)]
        scope: Scope,
        #[command(flatten)]
        db: DatabaseSettings,
    },
    /// List keys, one a line: id, game, scope, first 8 characters, created, revoked.
    List {
        /// Only this game's keys.
        #[arg(long)]
        game: Option<GameName>,
        #[command(flatten)]
        db: DatabaseSettings,
    },
    /// Revoke a key: every API process refuses it within seconds.
    Revoke {
        /// The key's id (from `app keys list`), not the key itself.
        key_id: Uuid,
        #[command(flatten)]
        db: DatabaseSettings,
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

    /// `app <args> --help` as clap renders it.
    fn help(args: &[&str]) -> String {
        let error = Cli::try_parse_from([&["app"], args, &["--help"]].concat())
            .expect_err("--help ends parsing");
        assert_eq!(error.kind(), clap::error::ErrorKind::DisplayHelp);
        error.to_string()
    }

    #[test]
    fn openapi_lists_only_the_options_it_heeds() {
        let openapi = help(&["openapi"]);
        assert!(!openapi.contains("--log-format"), "{openapi}");
        assert!(!openapi.contains("--database-url"), "{openapi}");
        assert!(Cli::try_parse_from(["app", "openapi", "--log-format", "json"]).is_err());
        assert_eq!(
            Cli::try_parse_from(["app", "openapi"])
                .unwrap()
                .command
                .log_format(),
            None
        );
        // Every command that logs still takes it, subcommands included.
        for args in [
            &["run"][..],
            &["keys", "list"],
            &["failed", "retry"],
            &["bench"],
        ] {
            assert!(help(args).contains("--log-format"), "{args:?}");
        }
    }

    #[test]
    fn the_log_format_is_taken_after_the_command_and_its_subcommand() {
        let format = |args: &[&str]| {
            Cli::try_parse_from([&["app"], args].concat())
                .unwrap()
                .command
                .log_format()
        };
        assert_eq!(format(&["run"]), Some(LogFormat::Text));
        assert_eq!(
            format(&["run", "--log-format", "json"]),
            Some(LogFormat::Json)
        );
        assert_eq!(
            format(&["keys", "list", "--log-format", "json"]),
            Some(LogFormat::Json)
        );
        assert_eq!(
            format(&["keys", "--log-format", "json", "list"]),
            Some(LogFormat::Json)
        );
    }

    #[test]
    fn only_the_services_wait_for_the_database() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["app"], args].concat());
        for service in ["serve", "work", "run"] {
            match parse(&[service, "--database-wait-secs", "5"])
                .unwrap()
                .command
            {
                Command::Serve { wait, .. }
                | Command::Work { wait, .. }
                | Command::Run { wait, .. } => {
                    assert_eq!(wait.database_wait_secs, 5)
                }
                other => panic!("parsed as {other:?}"),
            }
            assert!(help(&[service]).contains("DATABASE_WAIT_SECS"), "{service}");
        }
        assert!(parse(&["run", "--database-wait-secs", "-1"]).is_err());
        assert!(parse(&["migrate", "--database-wait-secs", "5"]).is_err());
        assert!(parse(&["keys", "list", "--database-wait-secs", "5"]).is_err());
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

    #[test]
    fn keys_and_games_take_checked_names_scopes_and_origins() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["app"], args].concat());
        assert!(parse(&["keys", "create", "--game", "demo", "--scope", "ingest"]).is_ok());
        assert!(parse(&["keys", "create", "--game", "demo", "--scope", "admin"]).is_err());
        assert!(parse(&["keys", "create", "--game", "Demo!", "--scope", "read"]).is_err());
        assert!(parse(&["keys", "list"]).is_ok());
        assert!(parse(&["keys", "revoke", "not-a-uuid"]).is_err());
        assert!(parse(&["games", "limit", "demo", "--events-per-sec", "100"]).is_ok());
        assert!(parse(&["games", "limit", "demo", "--default"]).is_ok());
        assert!(parse(&["games", "limit", "demo"]).is_err());
        assert!(parse(&["games", "limit", "demo", "--burst", "5"]).is_err());
        assert!(parse(&[
            "games",
            "limit",
            "demo",
            "--default",
            "--events-per-sec",
            "1"
        ])
        .is_err());
        assert!(parse(&["games", "origins", "demo", "https://game.example"]).is_ok());
        assert!(parse(&["games", "origins", "demo", "--any"]).is_ok());
        assert!(parse(&["games", "origins", "demo"]).is_err());
        assert!(parse(&["games", "origins", "demo", "game.example"]).is_err());
    }
}
