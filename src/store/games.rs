//! The SQL of games and their API keys: what the command line manages, and what the API
//! loads to check keys.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::{ApiKey, GameAccess, Grant, KeyHash, RateLimit, RateLimitSetting, Scope};
use crate::domain::{GameId, GameName, Origin};

#[derive(Debug, thiserror::Error)]
pub enum GamesError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("there is no game named {0:?} (`app games list` lists them)")]
    NoSuchGame(GameName),
    #[error("a game named {0:?} exists already")]
    GameExists(GameName),
    #[error("cannot draw a random key: {0}")]
    Random(getrandom::Error),
    /// A row breaks a rule the command line enforces: edited by hand, or a bug.
    #[error("stored {what} is invalid: {reason}")]
    Corrupt { what: String, reason: String },
}

/// A game as `app games list` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct GameRecord {
    pub id: GameId,
    pub name: GameName,
    pub created_at: OffsetDateTime,
    pub rate_limit: RateLimitSetting,
    pub allowed_origins: Option<Vec<Origin>>,
    /// Its own retention in days; `None`: the default.
    pub retention_days: Option<u32>,
    /// Keys not revoked.
    pub active_keys: i64,
}

/// A key as `app keys list` shows it: never the key itself.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub key_id: Uuid,
    pub game: GameName,
    pub scope: Scope,
    pub prefix: String,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

/// A key just made: its record and, this once, the key itself.
#[derive(Debug)]
pub struct NewKey {
    pub record: KeyRecord,
    pub key: ApiKey,
    /// Whether its game was made for it.
    pub created_game: bool,
}

fn game_name(name: String) -> Result<GameName, GamesError> {
    GameName::try_from(name.clone()).map_err(|reason| GamesError::Corrupt {
        what: format!("game name {name:?}"),
        reason,
    })
}

fn scope(scope: &str) -> Result<Scope, GamesError> {
    Scope::from_db(scope).ok_or_else(|| GamesError::Corrupt {
        what: format!("key scope {scope:?}"),
        reason: "not ingest or read".to_owned(),
    })
}

fn rate_limit(rate: Option<i32>, burst: Option<i32>) -> RateLimitSetting {
    match rate {
        None => RateLimitSetting::Default,
        Some(rate) => RateLimitSetting::Own(RateLimit::new(
            u32::try_from(rate).unwrap_or(0),
            burst.and_then(|b| u32::try_from(b).ok()),
        )),
    }
}

fn origins(stored: Option<Vec<String>>) -> Result<Option<Vec<Origin>>, GamesError> {
    stored
        .map(|origins| {
            origins
                .iter()
                .map(|o| {
                    o.parse().map_err(|reason| GamesError::Corrupt {
                        what: format!("origin {o:?}"),
                        reason,
                    })
                })
                .collect()
        })
        .transpose()
}

pub async fn create_game(pool: &PgPool, name: &GameName) -> Result<GameId, GamesError> {
    let mut tx = pool.begin().await?;
    let (game, created) = ensure_game(&mut tx, name).await?;
    if !created {
        return Err(GamesError::GameExists(name.clone()));
    }
    tx.commit().await?;
    Ok(game)
}

/// The game named `name`, made if it is missing; and whether it was made. A new game gets
/// the partitions of the days around today at once, so that its first events need none
/// made on demand (the service makes the next days ahead as time goes on).
async fn ensure_game(
    conn: &mut PgConnection,
    name: &GameName,
) -> Result<(GameId, bool), GamesError> {
    let created = sqlx::query_scalar!(
        "INSERT INTO games (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING game_id",
        name.as_str()
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(id) = created {
        sqlx::query_scalar!(
            "SELECT event_partition_ensure($1, d::date)
             FROM generate_series(current_date - 1, current_date + 2, interval '1 day') AS d",
            id
        )
        .fetch_all(&mut *conn)
        .await?;
        return Ok((GameId(id), true));
    }
    let id = sqlx::query_scalar!("SELECT game_id FROM games WHERE name = $1", name.as_str())
        .fetch_one(&mut *conn)
        .await?;
    Ok((GameId(id), false))
}

pub async fn list_games(pool: &PgPool) -> Result<Vec<GameRecord>, GamesError> {
    let rows = sqlx::query!(
        r#"SELECT g.game_id, g.name, g.created_at, g.rate_limit, g.rate_limit_burst,
                  g.allowed_origins, g.retention_days,
                  count(k.key_id) FILTER (WHERE k.revoked_at IS NULL) AS "active_keys!"
           FROM games AS g LEFT JOIN api_keys AS k USING (game_id)
           GROUP BY g.game_id ORDER BY g.name"#
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(GameRecord {
                id: GameId(r.game_id),
                name: game_name(r.name)?,
                created_at: r.created_at,
                rate_limit: rate_limit(r.rate_limit, r.rate_limit_burst),
                allowed_origins: origins(r.allowed_origins)?,
                retention_days: r.retention_days.and_then(|d| u32::try_from(d).ok()),
                active_keys: r.active_keys,
            })
        })
        .collect()
}

/// Sets a game's own rate limit (`Own(None)`: no limit), or gives it back the default.
pub async fn set_rate_limit(
    pool: &PgPool,
    name: &GameName,
    setting: RateLimitSetting,
) -> Result<(), GamesError> {
    let (rate, burst) = match setting {
        RateLimitSetting::Default => (None, None),
        RateLimitSetting::Own(None) => (Some(0), None),
        RateLimitSetting::Own(Some(limit)) => (
            Some(i32::try_from(limit.events_per_sec).unwrap_or(i32::MAX)),
            Some(i32::try_from(limit.burst).unwrap_or(i32::MAX)),
        ),
    };
    let updated = sqlx::query!(
        "UPDATE games SET rate_limit = $2, rate_limit_burst = $3 WHERE name = $1",
        name.as_str(),
        rate,
        burst
    )
    .execute(pool)
    .await?;
    match updated.rows_affected() {
        0 => Err(GamesError::NoSuchGame(name.clone())),
        _ => Ok(()),
    }
}

/// Sets how many days a game keeps its events (`None`: the service's default).
pub async fn set_retention(
    pool: &PgPool,
    name: &GameName,
    days: Option<u32>,
) -> Result<(), GamesError> {
    let days = days.map(|d| i32::try_from(d).unwrap_or(i32::MAX));
    let updated = sqlx::query!(
        "UPDATE games SET retention_days = $2 WHERE name = $1",
        name.as_str(),
        days
    )
    .execute(pool)
    .await?;
    match updated.rows_affected() {
        0 => Err(GamesError::NoSuchGame(name.clone())),
        _ => Ok(()),
    }
}

/// Restricts the browser origins that may send a game's events (`None`: any origin).
pub async fn set_allowed_origins(
    pool: &PgPool,
    name: &GameName,
    allowed: Option<&[Origin]>,
) -> Result<(), GamesError> {
    let allowed: Option<Vec<&str>> = allowed.map(|o| o.iter().map(Origin::as_str).collect());
    let updated = sqlx::query!(
        "UPDATE games SET allowed_origins = $2 WHERE name = $1",
        name.as_str(),
        allowed as Option<Vec<&str>>
    )
    .execute(pool)
    .await?;
    match updated.rows_affected() {
        0 => Err(GamesError::NoSuchGame(name.clone())),
        _ => Ok(()),
    }
}

/// Makes a key of `scope` for the game `game` (made too if it is missing).
pub async fn create_key(
    pool: &PgPool,
    game: &GameName,
    scope: Scope,
) -> Result<NewKey, GamesError> {
    let mut tx = pool.begin().await?;
    let (game_id, created_game) = ensure_game(&mut tx, game).await?;
    let (key_id, key, created_at) = insert_key(&mut tx, game_id, scope).await?;
    tx.commit().await?;
    Ok(NewKey {
        record: KeyRecord {
            key_id,
            game: game.clone(),
            scope,
            prefix: key.prefix().to_owned(),
            created_at,
            revoked_at: None,
        },
        key,
        created_game,
    })
}

async fn insert_key(
    conn: &mut PgConnection,
    game: GameId,
    scope: Scope,
) -> Result<(Uuid, ApiKey, OffsetDateTime), GamesError> {
    let key = ApiKey::generate().map_err(GamesError::Random)?;
    let key_id = Uuid::now_v7();
    let created_at = sqlx::query_scalar!(
        "INSERT INTO api_keys (key_id, game_id, scope, prefix, key_hash)
         VALUES ($1, $2, $3, $4, $5) RETURNING created_at",
        key_id,
        game.0,
        scope.as_str(),
        key.prefix(),
        &key.hash().0[..],
    )
    .fetch_one(conn)
    .await?;
    Ok((key_id, key, created_at))
}

/// Every key, or one game's, oldest first.
pub async fn list_keys(
    pool: &PgPool,
    game: Option<&GameName>,
) -> Result<Vec<KeyRecord>, GamesError> {
    if let Some(game) = game {
        let exists = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM games WHERE name = $1) AS "exists!""#,
            game.as_str()
        )
        .fetch_one(pool)
        .await?;
        if !exists {
            return Err(GamesError::NoSuchGame(game.clone()));
        }
    }
    let rows = sqlx::query!(
        "SELECT k.key_id, g.name, k.scope, k.prefix, k.created_at, k.revoked_at
         FROM api_keys AS k JOIN games AS g USING (game_id)
         WHERE $1::text IS NULL OR g.name = $1
         ORDER BY k.created_at, k.key_id",
        game.map(GameName::as_str)
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(KeyRecord {
                key_id: r.key_id,
                game: game_name(r.name)?,
                scope: scope(&r.scope)?,
                prefix: r.prefix,
                created_at: r.created_at,
                revoked_at: r.revoked_at,
            })
        })
        .collect()
}

/// What revoking a key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    Now(OffsetDateTime),
    Already(OffsetDateTime),
    NoSuchKey,
}

pub async fn revoke_key(pool: &PgPool, key_id: Uuid) -> Result<Revoked, GamesError> {
    let revoked_at = sqlx::query_scalar!(
        "UPDATE api_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL
         RETURNING revoked_at AS \"revoked_at!\"",
        key_id
    )
    .fetch_optional(pool)
    .await?;
    if let Some(at) = revoked_at {
        return Ok(Revoked::Now(at));
    }
    let earlier = sqlx::query_scalar!("SELECT revoked_at FROM api_keys WHERE key_id = $1", key_id)
        .fetch_optional(pool)
        .await?;
    Ok(match earlier {
        Some(Some(at)) => Revoked::Already(at),
        // Found unrevoked: revoked and un-revoked meanwhile cannot happen (nothing
        // un-revokes), so this is only a key that did not exist.
        Some(None) | None => Revoked::NoSuchKey,
    })
}

/// Every unrevoked key with what it grants, by hash: the API's copy (`auth::KeyCache`).
pub async fn load_grants(pool: &PgPool) -> Result<HashMap<KeyHash, Grant>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT k.key_hash, k.key_id, k.scope, g.game_id, g.name, g.rate_limit,
                g.rate_limit_burst, g.allowed_origins, g.retention_days
         FROM api_keys AS k JOIN games AS g USING (game_id)
         WHERE k.revoked_at IS NULL
         ORDER BY g.game_id"
    )
    .fetch_all(pool)
    .await?;
    let mut games: HashMap<i32, Arc<GameAccess>> = HashMap::new();
    let mut grants = HashMap::with_capacity(rows.len());
    for r in rows {
        // A row the command line could not have written is skipped, not trusted.
        let (Ok(hash), Some(scope)) = (KeyHash::try_from(r.key_hash), Scope::from_db(&r.scope))
        else {
            tracing::error!(key_id = %r.key_id, "an API key row is invalid; the key is refused");
            continue;
        };
        let game = match games.get(&r.game_id) {
            Some(game) => game.clone(),
            None => {
                let (Ok(name), Ok(allowed_origins)) =
                    (game_name(r.name), origins(r.allowed_origins))
                else {
                    tracing::error!(
                        game_id = r.game_id,
                        "a game row is invalid; its keys are refused"
                    );
                    continue;
                };
                let game = Arc::new(GameAccess {
                    id: GameId(r.game_id),
                    name,
                    rate_limit: rate_limit(r.rate_limit, r.rate_limit_burst),
                    allowed_origins,
                    retention_days: r.retention_days.and_then(|d| u32::try_from(d).ok()),
                });
                games.insert(r.game_id, game.clone());
                game
            }
        };
        grants.insert(
            hash,
            Grant {
                key_id: r.key_id,
                scope,
                game,
            },
        );
    }
    Ok(grants)
}

/// The game of an unrevoked key.
pub async fn game_of_key(pool: &PgPool, hash: &KeyHash) -> Result<Option<GameId>, sqlx::Error> {
    let game = sqlx::query_scalar!(
        "SELECT game_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        &hash.0[..]
    )
    .fetch_optional(pool)
    .await?;
    Ok(game.map(GameId))
}

/// The quick start's keys: when no key exists at all, makes the game `demo` with an
/// ingest key and a read key, and returns them (once: the next call finds keys).
pub async fn create_demo_keys_if_none(
    pool: &PgPool,
) -> Result<Option<(ApiKey, ApiKey)>, GamesError> {
    let mut tx = pool.begin().await?;
    // Two `app run` starting at once on an empty database: one makes the keys.
    sqlx::query!("LOCK TABLE api_keys IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let any = sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM api_keys) AS "any!""#)
        .fetch_one(&mut *tx)
        .await?;
    if any {
        return Ok(None);
    }
    let demo: GameName = "demo".parse().map_err(|reason| GamesError::Corrupt {
        what: "the demo game's name".to_owned(),
        reason,
    })?;
    let (game, _) = ensure_game(&mut tx, &demo).await?;
    let (_, ingest, _) = insert_key(&mut tx, game, Scope::Ingest).await?;
    let (_, read, _) = insert_key(&mut tx, game, Scope::Read).await?;
    tx.commit().await?;
    Ok(Some((ingest, read)))
}
