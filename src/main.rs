use std::process::ExitCode;

use clap::Parser;

use app::cli::Cli;
use app::startup::StartupError;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    // None for `openapi`: it does not log, and its output is the document alone.
    if let Some(format) = cli.command.log_format() {
        app::telemetry::init(format);
    }
    match app::commands::run(cli.command).await {
        // A start-up error is written for a person: what was tried, whether it can pass,
        // what to do. Printed as it is, without the error chain it already includes, or
        // a backtrace of our own code, which would bury it.
        Err(error) if error.is::<StartupError>() => {
            eprintln!("error: {error}");
            Ok(ExitCode::FAILURE)
        }
        other => other,
    }
}
