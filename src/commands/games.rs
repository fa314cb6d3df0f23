//! `app games`: create and list games, set their rate limits and browser origins.

use std::process::ExitCode;

use super::{admin_database, when};
use crate::auth::{RateLimit, RateLimitSetting};
use crate::cli::GamesCommand;
use crate::store::games::{self, GameRecord};

pub async fn run(action: GamesCommand) -> anyhow::Result<ExitCode> {
    match action {
        GamesCommand::Create { name, db } => {
            games::create_game(&admin_database(&db).await?, &name).await?;
            println!("created the game {name}; `app keys create --game {name}` makes its keys");
        }
        GamesCommand::List { db } => {
            let games = games::list_games(&admin_database(&db).await?).await?;
            if games.is_empty() {
                println!("no games yet: `app games create NAME` or `app keys create --game NAME` makes one");
            }
            for game in &games {
                println!("{}", line(game));
            }
        }
        GamesCommand::Limit {
            name,
            events_per_sec,
            burst,
            default,
            db,
        } => {
            let setting = match (default, events_per_sec) {
                (true, _) | (false, None) => RateLimitSetting::Default,
                (false, Some(rate)) => RateLimitSetting::Own(RateLimit::new(rate, burst)),
            };
            games::set_rate_limit(&admin_database(&db).await?, &name, setting).await?;
            println!(
                "the game {name} now has {}; API processes apply it within seconds",
                describe_limit(setting)
            );
        }
        GamesCommand::Retention {
            name,
            days,
            default,
            db,
        } => {
            let days = if default { None } else { days };
            games::set_retention(&admin_database(&db).await?, &name, days).await?;
            match days {
                Some(days) => println!(
                    "the game {name} now keeps its events {days} days; the API refuses older                      events within seconds, and workers drop older days at their next                      retention pass"
                ),
                None => println!("the game {name} now keeps its events as the service's default says (--retention-days)"),
            }
        }
        GamesCommand::Origins {
            name,
            origins,
            any,
            db,
        } => {
            let allowed = (!any).then_some(origins.as_slice());
            games::set_allowed_origins(&admin_database(&db).await?, &name, allowed).await?;
            match allowed {
                None => println!("the game {name} accepts events from any origin"),
                Some(origins) => println!(
                    "the game {name} accepts events from browsers at {} only",
                    origins
                        .iter()
                        .map(|o| o.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn describe_limit(setting: RateLimitSetting) -> String {
    match setting {
        RateLimitSetting::Default => "the default rate limit".to_owned(),
        RateLimitSetting::Own(None) => "no rate limit".to_owned(),
        RateLimitSetting::Own(Some(limit)) => format!(
            "a rate limit of {} events/s, burst {}",
            limit.events_per_sec, limit.burst
        ),
    }
}

/// One game a line: name, created, active keys, rate limit, retention, origins.
fn line(game: &GameRecord) -> String {
    let origins = match &game.allowed_origins {
        None => "any origin".to_owned(),
        Some(origins) => origins
            .iter()
            .map(|o| o.as_str())
            .collect::<Vec<_>>()
            .join(","),
    };
    let retention = match game.retention_days {
        Some(days) => format!("keeps events {days} days"),
        None => "default retention".to_owned(),
    };
    format!(
        "{}\tcreated {}\t{} active key(s)\t{}\t{}\t{}",
        game.name,
        when(game.created_at),
        game.active_keys,
        describe_limit(game.rate_limit),
        retention,
        origins
    )
}
