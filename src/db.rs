//! The connection pool and the schema: sqlxmq's migrations and ours, embedded at build
//! time (see build.rs) and applied in version order by one migrator.

mod failure;

use std::borrow::Cow;
use std::io;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{
    MigrateDatabase, MigrateError, Migration, MigrationSource, MigrationType, Migrator,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Postgres};

use crate::config::DatabaseSettings;
pub use failure::{Cause, DatabaseAddress};

/// The URL's form, for messages.
const URL_FORM: &str = "postgres://USER:PASSWORD@HOST:PORT/DATABASE";

/// Why the database cannot be used. Every variant but `InvalidUrl` names the address tried
/// (never the password); [`DbError::cause`] says whether waiting can help, and
/// [`DbError::advice`] what to do.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("DATABASE_URL is not a PostgreSQL URL ({URL_FORM}): {0}")]
    InvalidUrl(#[source] sqlx::Error),
    #[error(
        "cannot connect to the database {address}: {}",
        failure::describe(source)
    )]
    Connect {
        address: Box<DatabaseAddress>,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot create the database {address}: {}", failure::describe(source))]
    CreateDatabase {
        address: Box<DatabaseAddress>,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "cannot migrate the database {address}: {}",
        failure::describe_migration(source)
    )]
    Migrate {
        address: Box<DatabaseAddress>,
        #[source]
        source: MigrateError,
    },
}

impl DbError {
    /// What went wrong, and so whether waiting can help ([`Cause::is_transient`]).
    pub fn cause(&self) -> Cause {
        match self {
            DbError::InvalidUrl(_) => Cause::Other,
            DbError::Connect { source, .. } | DbError::CreateDatabase { source, .. } => {
                failure::classify(source)
            }
            DbError::Migrate { source, .. } => failure::classify_migration(source),
        }
    }

    pub fn address(&self) -> Option<&DatabaseAddress> {
        match self {
            DbError::InvalidUrl(_) => None,
            DbError::Connect { address, .. }
            | DbError::CreateDatabase { address, .. }
            | DbError::Migrate { address, .. } => Some(address),
        }
    }

    /// What a person can do about it, in a sentence or two.
    pub fn advice(&self) -> String {
        let Some(DatabaseAddress {
            user,
            host,
            port,
            database,
        }) = self.address()
        else {
            return format!("Set --database-url (DATABASE_URL) to {URL_FORM}.");
        };
        match (self.cause(), self) {
            (Cause::Unreachable, _) => "Start PostgreSQL, or point --database-url \
                 (DATABASE_URL) at a server that runs. With Docker, `docker compose up -d db` \
                 starts the one in docker-compose.yml, which the default DATABASE_URL matches."
                .to_owned(),
            (Cause::ServerNotReady, _) => "Wait for the server; if this lasts, its log says \
                 why (out of connections: raise its max_connections, or lower the \
                 --max-connections of the app's processes)."
                .to_owned(),
            (Cause::Authentication, _) => format!(
                "Check the user ({user}) and the password in --database-url (DATABASE_URL), \
                 {URL_FORM}. If both are right, the server's pg_hba.conf does not admit \
                 {user} from here; the server's log says why."
            ),
            (Cause::UnknownDatabase, _) => format!(
                "Create the database (`createdb -h {host} -p {port} -U postgres -O {user} \
                 {database}`), or point --database-url (DATABASE_URL) at one that exists."
            ),
            (Cause::InsufficientPrivilege, DbError::CreateDatabase { .. }) => format!(
                "The database {database} does not exist, and {user} may not create it. \
                 Create it as a user who may (`createdb -h {host} -p {port} -U postgres \
                 -O {user} {database}`), or let {user} create databases (`ALTER ROLE {user} \
                 CREATEDB`)."
            ),
            (Cause::InsufficientPrivilege, DbError::Connect { .. }) => {
                format!("Let {user} connect: `GRANT CONNECT ON DATABASE {database} TO {user}`.")
            }
            (Cause::InsufficientPrivilege, _) => format!(
                "{user} may not create the app's tables in {database}: make {user} the \
                 database's owner (`ALTER DATABASE {database} OWNER TO {user}`)."
            ),
            (
                Cause::Other,
                DbError::Migrate {
                    source: MigrateError::VersionMissing(_),
                    ..
                },
            ) => "A newer version of app has migrated this database: run that version, or a \
                  newer one."
                .to_owned(),
            (Cause::Other, _) => {
                "Fix what the message says: waiting and trying again will not change it.".to_owned()
            }
        }
    }
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

impl EmbeddedMigration {
    /// As sqlx's migrator runs it.
    pub fn migration(&self) -> Migration {
        Migration::new(
            self.version,
            Cow::Borrowed(self.description),
            MigrationType::Simple,
            Cow::Borrowed(self.sql),
            false,
        )
    }
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
                .map(EmbeddedMigration::migration)
                .collect())
        })
    }
}

/// A pool that connects on first use, so a process starts (and answers /healthz) while
/// the database is still coming up.
pub fn pool(settings: &DatabaseSettings) -> Result<PgPool, DbError> {
    Ok(pool_with(connect_options(settings)?, settings))
}

fn connect_options(settings: &DatabaseSettings) -> Result<PgConnectOptions, DbError> {
    let options: PgConnectOptions = settings.database_url.parse().map_err(DbError::InvalidUrl)?;
    Ok(options.application_name("game-events"))
}

fn pool_with(options: PgConnectOptions, settings: &DatabaseSettings) -> PgPool {
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout())
        .connect_lazy_with(options)
}

/// Applies every pending migration. Safe to run from several processes at once: the
/// migrator holds an advisory lock while it works.
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    Migrator::new(Embedded).await?.run(pool).await
}

/// Connects (creating the database if it is missing and the user may), then migrates.
/// One try: a failure is returned at once, and [`DbError::cause`] says whether trying
/// again later can help. Each connection attempt gives up after the acquire timeout, so
/// a host that drops packets costs seconds, not the operating system's minutes.
pub async fn prepare(settings: &DatabaseSettings) -> Result<PgPool, DbError> {
    let options = connect_options(settings)?;
    // Boxed: every error carries it, and a Result's size is its largest variant's.
    let address = Box::new(DatabaseAddress::of(&options));
    let within = settings.acquire_timeout();
    // The database itself first, rather than asking the maintenance database whether it
    // exists: one connection when it does, and a user who may connect only to this
    // database gets in.
    match connect_once(&options, within).await {
        Ok(()) => {}
        Err(e) if failure::classify(&e) == Cause::UnknownDatabase => {
            create_database(&settings.database_url, &address, within)
                .await
                .map_err(|source| DbError::CreateDatabase {
                    address: address.clone(),
                    source,
                })?;
        }
        Err(source) => return Err(DbError::Connect { address, source }),
    }
    let pool = pool_with(options, settings);
    migrate(&pool)
        .await
        .map_err(|source| DbError::Migrate { address, source })?;
    Ok(pool)
}

/// Opens one connection and closes it.
async fn connect_once(options: &PgConnectOptions, within: Duration) -> Result<(), sqlx::Error> {
    let connection = tokio::time::timeout(within, PgConnection::connect_with(options))
        .await
        .map_err(|_| no_answer(within))??;
    // The connection has answered what we asked; how it closes does not matter.
    let _ = connection.close().await;
    Ok(())
}

/// A connection attempt that timed out, as the I/O error it is.
fn no_answer(within: Duration) -> sqlx::Error {
    sqlx::Error::Io(io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "no answer within {} ms (--acquire-timeout-ms)",
            within.as_millis()
        ),
    ))
}

/// Creates the database, through the server's maintenance database (as `createdb` does).
async fn create_database(
    url: &str,
    address: &DatabaseAddress,
    within: Duration,
) -> Result<(), sqlx::Error> {
    match tokio::time::timeout(within, Postgres::create_database(url)).await {
        Err(_) => Err(no_answer(within)),
        Ok(Ok(())) => {
            tracing::info!(%address, "created the database");
            Ok(())
        }
        // Another process created it between our connect and our create.
        Ok(Err(sqlx::Error::Database(e))) if e.code().as_deref() == Some("42P04") => Ok(()),
        Ok(Err(e)) => Err(e),
    }
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
