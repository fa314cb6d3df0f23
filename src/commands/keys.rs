//! `app keys`: create, list and revoke API keys. The database is the admin boundary:
//! whoever can reach it can manage keys, so these commands need no key of their own.

use std::process::ExitCode;

use super::{admin_database, when};
use crate::cli::KeysCommand;
use crate::store::games::{self, KeyRecord, Revoked};

pub async fn run(action: KeysCommand) -> anyhow::Result<ExitCode> {
    match action {
        KeysCommand::Create { game, scope, db } => {
            let new = games::create_key(&admin_database(&db).await?, &game, scope).await?;
            if new.created_game {
                println!("created the game {game}");
            }
            println!(
                "created {} key {} for the game {game}; it is shown only now, so store it:",
                scope.as_str(),
                new.record.key_id
            );
            // Alone on the last line, so that scripts can take it with `tail -n 1`.
            println!("{}", new.key.reveal());
        }
        KeysCommand::List { game, db } => {
            let keys = games::list_keys(&admin_database(&db).await?, game.as_ref()).await?;
            for key in &keys {
                println!("{}", line(key));
            }
        }
        KeysCommand::Revoke { key_id, db } => {
            match games::revoke_key(&admin_database(&db).await?, key_id).await? {
                Revoked::Now(_) => println!(
                    "revoked the key {key_id}: every API process refuses it within seconds"
                ),
                Revoked::Already(at) => {
                    println!("the key {key_id} was revoked already, at {}", when(at))
                }
                Revoked::NoSuchKey => {
                    eprintln!("there is no key {key_id} (`app keys list` lists the keys' ids)");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One key a line: id, game, scope, its first characters, created, revoked (or `-`).
fn line(key: &KeyRecord) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}",
        key.key_id,
        key.game,
        key.scope.as_str(),
        key.prefix,
        when(key.created_at),
        key.revoked_at.map_or_else(|| "-".to_owned(), when)
    )
}
