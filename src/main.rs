use std::process::ExitCode;

use clap::Parser;

use app::cli::Cli;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    app::telemetry::init(cli.log_format);
    app::commands::run(cli.command).await
}
