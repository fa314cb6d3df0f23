//! Why the database could not be used, in terms of what a person can do about it: whether
//! waiting can help (the server is not up yet) or not (the server refused us), and what
//! to change. Start-up waits out the first kind and stops at once on the second.

use std::fmt;
use std::io;

use sqlx::migrate::MigrateError;
use sqlx::postgres::PgConnectOptions;

/// Where the app connects, for messages and logs: `user@host:port/database`, never the
/// password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseAddress {
    pub user: String,
    /// A host name or address, or the directory of a Unix socket.
    pub host: String,
    pub port: u16,
    pub database: String,
}

impl DatabaseAddress {
    pub fn of(options: &PgConnectOptions) -> Self {
        let host = match options.get_socket() {
            Some(socket) => socket.display().to_string(),
            None => options.get_host().to_owned(),
        };
        Self {
            user: options.get_username().to_owned(),
            host,
            port: options.get_port(),
            // sqlx connects to the database named like the user when the URL names none.
            database: options
                .get_database()
                .unwrap_or_else(|| options.get_username())
                .to_owned(),
        }
    }
}

impl fmt::Display for DatabaseAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}:{}/{}",
            self.user, self.host, self.port, self.database
        )
    }
}

/// What went wrong, as far as it decides what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Nothing answered: no server listens at the address (yet), the host is unknown or
    /// unreachable, or the connection timed out or broke.
    Unreachable,
    /// The server answered but cannot take us now: it is starting up or shutting down, or
    /// out of connections or resources.
    ServerNotReady,
    /// The server refused the user or its password (SQLSTATE 28P01, 28000).
    Authentication,
    /// The database does not exist (3D000), and was not created.
    UnknownDatabase,
    /// The user lacks a privilege (42501): to create the database, to connect to it, or
    /// to create the schema.
    InsufficientPrivilege,
    /// Anything else: a refusal that waiting will not change.
    Other,
}

impl Cause {
    /// Whether the failure can pass by itself, so that waiting and trying again can help.
    pub fn is_transient(self) -> bool {
        matches!(self, Cause::Unreachable | Cause::ServerNotReady)
    }

    /// `transient` or `permanent`, for messages.
    pub fn persistence(self) -> &'static str {
        if self.is_transient() {
            "transient"
        } else {
            "permanent"
        }
    }

    /// What the failure means, in a few words.
    pub fn meaning(self) -> &'static str {
        match self {
            Cause::Unreachable => "no PostgreSQL server answers at that address yet",
            Cause::ServerNotReady => {
                "the server is starting up, shutting down, or out of connections or resources"
            }
            Cause::Authentication => "the server refused this user or password",
            Cause::UnknownDatabase => "the database does not exist",
            Cause::InsufficientPrivilege => "the user lacks a privilege",
            Cause::Other => "the server refused the request",
        }
    }
}

/// Classifies an error of sqlx: by the SQLSTATE the server sent, else by the kind of
/// error (an I/O error means the server did not answer, or not to the end).
pub fn classify(error: &sqlx::Error) -> Cause {
    match error {
        sqlx::Error::Database(e) => e
            .code()
            .map_or(Cause::Other, |code| classify_sqlstate(&code)),
        sqlx::Error::Io(e) => classify_io(e),
        // No connection came free, or none could be opened, within the acquire timeout.
        sqlx::Error::PoolTimedOut => Cause::Unreachable,
        _ => Cause::Other,
    }
}

/// Classifies a SQLSTATE (https://www.postgresql.org/docs/current/errcodes-appendix.html).
pub fn classify_sqlstate(code: &str) -> Cause {
    match code {
        "28P01" | "28000" => Cause::Authentication,
        "3D000" => Cause::UnknownDatabase,
        "42501" => Cause::InsufficientPrivilege,
        // 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now (starting).
        "57P01" | "57P02" | "57P03" => Cause::ServerNotReady,
        // A lock the migrator met, or a conflict with another process migrating at once.
        "55P03" | "40001" | "40P01" => Cause::ServerNotReady,
        // Class 08: connection exceptions. Class 53: insufficient resources, such as
        // too_many_connections (53300), which clears as other clients disconnect.
        _ if code.starts_with("08") => Cause::Unreachable,
        _ if code.starts_with("53") => Cause::ServerNotReady,
        _ => Cause::Other,
    }
}

/// Classifies an I/O error of a connection. Every kind but a refused permission means
/// the server is not there (yet) or the network between us is not: refused, timed out,
/// reset, a host name that does not resolve (docker compose's DNS knows a service only
/// once its container runs), a Unix socket not created yet.
pub fn classify_io(error: &io::Error) -> Cause {
    match error.kind() {
        io::ErrorKind::PermissionDenied => Cause::Other,
        _ => Cause::Unreachable,
    }
}

/// A sqlx error as a person reads it: the server's message and SQLSTATE, or the operating
/// system's, without sqlx's "error returned from database:" prefixes.
pub fn describe(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(e) => match e.code() {
            Some(code) => format!("{} (SQLSTATE {code})", e.message()),
            None => e.message().to_owned(),
        },
        sqlx::Error::Io(e) => e.to_string(),
        sqlx::Error::PoolTimedOut => {
            "no connection within the acquire timeout (--acquire-timeout-ms)".to_owned()
        }
        other => other.to_string(),
    }
}

/// A migration error as a person reads it.
pub fn describe_migration(error: &MigrateError) -> String {
    match error {
        MigrateError::Execute(e) => describe(e),
        MigrateError::ExecuteMigration(e, version) => {
            format!("migration {version}: {}", describe(e))
        }
        other => other.to_string(),
    }
}

/// Classifies a migration error: a failed statement by its error, and a migration
/// history that does not match this binary's migrations as permanent.
pub fn classify_migration(error: &MigrateError) -> Cause {
    match error {
        MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => classify(e),
        _ => Cause::Other,
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::error::Error as StdError;

    use sqlx::error::{DatabaseError, ErrorKind};

    use super::*;

    /// A server error with a SQLSTATE, as sqlx hands it over.
    #[derive(Debug)]
    struct ServerError {
        code: &'static str,
        message: &'static str,
    }

    impl fmt::Display for ServerError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.message)
        }
    }

    impl StdError for ServerError {}

    impl DatabaseError for ServerError {
        fn message(&self) -> &str {
            self.message
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.code))
        }
        fn as_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn StdError + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn StdError + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> ErrorKind {
            ErrorKind::Other
        }
    }

    fn server_error(code: &'static str, message: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(ServerError { code, message }))
    }

    fn io_error(kind: io::ErrorKind) -> sqlx::Error {
        sqlx::Error::Io(io::Error::from(kind))
    }

    #[test]
    fn a_server_that_does_not_answer_is_transient() {
        for kind in [
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::TimedOut,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::UnexpectedEof,
            io::ErrorKind::HostUnreachable,
            io::ErrorKind::NetworkUnreachable,
            io::ErrorKind::NotFound,
        ] {
            assert_eq!(classify(&io_error(kind)), Cause::Unreachable, "{kind:?}");
        }
        // How tokio reports a host name that does not resolve.
        let unresolved = io::Error::other("failed to lookup address information");
        assert_eq!(classify(&sqlx::Error::Io(unresolved)), Cause::Unreachable);
        assert_eq!(classify(&sqlx::Error::PoolTimedOut), Cause::Unreachable);
        assert!(Cause::Unreachable.is_transient());
    }

    #[test]
    fn a_server_starting_stopping_or_full_is_transient() {
        for code in [
            "57P03", "57P01", "57P02", "53300", "53200", "08006", "08001",
        ] {
            let cause = classify(&server_error(code, "not now"));
            assert!(cause.is_transient(), "{code}: {cause:?}");
        }
    }

    #[test]
    fn a_refusal_is_permanent() {
        let cases = [
            ("28P01", Cause::Authentication),
            ("28000", Cause::Authentication),
            ("3D000", Cause::UnknownDatabase),
            ("42501", Cause::InsufficientPrivilege),
            ("42P01", Cause::Other),
            ("25006", Cause::Other),
        ];
        for (code, expected) in cases {
            let cause = classify(&server_error(code, "no"));
            assert_eq!(cause, expected, "{code}");
            assert!(!cause.is_transient(), "{code}");
            assert_eq!(cause.persistence(), "permanent");
        }
        assert_eq!(
            classify(&io_error(io::ErrorKind::PermissionDenied)),
            Cause::Other
        );
        assert_eq!(
            classify(&sqlx::Error::Protocol("not PostgreSQL".into())),
            Cause::Other
        );
    }

    #[test]
    fn migration_errors_are_classified_by_their_statement() {
        let broken_connection = MigrateError::Execute(io_error(io::ErrorKind::ConnectionReset));
        assert_eq!(classify_migration(&broken_connection), Cause::Unreachable);
        let no_privilege = MigrateError::ExecuteMigration(
            server_error("42501", "permission denied for schema public"),
            7,
        );
        assert_eq!(
            classify_migration(&no_privilege),
            Cause::InsufficientPrivilege
        );
        assert_eq!(
            describe_migration(&no_privilege),
            "migration 7: permission denied for schema public (SQLSTATE 42501)"
        );
        // A database migrated by a newer binary stays so, however long we wait.
        assert_eq!(
            classify_migration(&MigrateError::VersionMissing(99)),
            Cause::Other
        );
    }

    #[test]
    fn messages_name_the_server_message_and_sqlstate() {
        let error = server_error("28000", "role \"nobody\" does not exist");
        assert_eq!(
            describe(&error),
            "role \"nobody\" does not exist (SQLSTATE 28000)"
        );
    }

    #[test]
    fn the_address_names_user_host_port_and_database_but_never_the_password() {
        let options: PgConnectOptions = "postgres://ann:s3cret@db.example:6543/game_events"
            .parse()
            .unwrap();
        let address = DatabaseAddress::of(&options);
        assert_eq!(address.to_string(), "ann@db.example:6543/game_events");

        // No database in the URL: PostgreSQL's default, the user's name.
        let options: PgConnectOptions = "postgres://bob:pw@localhost".parse().unwrap();
        assert_eq!(
            DatabaseAddress::of(&options).to_string(),
            "bob@localhost:5432/bob"
        );
    }
}
