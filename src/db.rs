//! The connection pool and the schema: sqlxmq's migrations and ours, embedded at build
//! time (see build.rs) and applied in version order by one migrator.

use std::borrow::Cow;

use futures_util::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{MigrateDatabase, Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use crate::config::DatabaseSettings;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid DATABASE_URL: {0}")]
    InvalidUrl(#[source] sqlx::Error),
    #[error("cannot create the database: {0}")]
    CreateDatabase(#[source] sqlx::Error),
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// One migration compiled into the binary.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedMigration {
    pub version: i64,
    pub description: &'static str,
    /// `sqlxmq` or `app`.
    pub origin: &'static str,
    pub sql: &'static str,
}

/// Every migration, in the order it applies.
pub const MIGRATIONS: &[EmbeddedMigration] = include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

#[derive(Debug)]
struct Embedded;

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|m| {
                    Migration::new(
                        m.version,
                        Cow::Borrowed(m.description),
                        MigrationType::Simple,
                        Cow::Borrowed(m.sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// A pool that connects on first use, so a process starts (and answers /healthz) while
/// the database is still coming up.
pub fn pool(settings: &DatabaseSettings) -> Result<PgPool, DbError> {
    let options: PgConnectOptions = settings.database_url.parse().map_err(DbError::InvalidUrl)?;
    Ok(PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout())
        .connect_lazy_with(options.application_name("game-events")))
}

/// Creates the database if it does not exist yet.
pub async fn create_database_if_missing(url: &str) -> Result<(), DbError> {
    if !Postgres::database_exists(url)
        .await
        .map_err(DbError::CreateDatabase)?
    {
        match Postgres::create_database(url).await {
            Ok(()) => tracing::info!("created the database"),
            // Another process created it between our check and our create.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(DbError::CreateDatabase(e)),
        }
    }
    Ok(())
}

/// Applies every pending migration. Safe to run from several processes at once: the
/// migrator holds an advisory lock while it works.
pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    let migrator = Migrator::new(Embedded).await?;
    migrator.run(pool).await?;
    Ok(())
}

/// Creates the database if needed, then migrates it.
pub async fn prepare(settings: &DatabaseSettings) -> Result<PgPool, DbError> {
    create_database_if_missing(&settings.database_url).await?;
    let pool = pool(settings)?;
    migrate(&pool).await?;
    Ok(pool)
}

/// Whether every embedded migration has been applied.
pub async fn schema_is_current(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(pool)
            .await?;
    Ok(MIGRATIONS
        .iter()
        .all(|m| applied.binary_search(&m.version).is_ok()))
}
