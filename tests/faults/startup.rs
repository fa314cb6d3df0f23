//! Starting against a database that is not there, refuses us, or comes up late, and on
//! an address in use: each command stops with a message that names what it tried (never
//! the password), says whether waiting could help and what to do, and exits non-zero.
//! The services wait for a database that is not up yet, up to --database-wait-secs; the
//! administrative commands try once.

use std::net::TcpListener;
use std::process::ExitStatus;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::time::Instant;

use crate::helpers::*;

/// In every URL with a password, so that the tests can check it is never shown.
const PASSWORD: &str = "pw-never-shown-4711";

/// Room for a loaded machine to start the process and print, beyond what is promised.
const MARGIN: Duration = Duration::from_secs(8);

/// Runs `app <args>` to its end; returns how it exited, its output, and how long it took.
/// Panics if it runs longer than `within`.
async fn run_to_exit(
    database_url: &str,
    args: &[&str],
    within: Duration,
) -> (ExitStatus, String, Duration) {
    let started = Instant::now();
    let mut proc = Proc::spawn(args[0], database_url, args);
    let status = proc.wait_exit(within).await;
    let elapsed = started.elapsed();
    let output = proc.log();
    let status = status.unwrap_or_else(|| {
        panic!(
            "`app {}` still runs after {within:?}:\n{output}",
            args.join(" ")
        )
    });
    (status, output, elapsed)
}

/// A URL of a port where nothing listens (nothing did a moment ago).
fn dead_database_url() -> (String, String) {
    let port = free_port();
    (
        format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/game_events"),
        format!("postgres@127.0.0.1:{port}/game_events"),
    )
}

fn assert_in(output: &str, expected: &[&str]) {
    for text in expected {
        assert!(
            output.contains(text),
            "{text:?} is not in the output:\n{output}"
        );
    }
    assert!(
        !output.contains(PASSWORD),
        "the password is shown:\n{output}"
    );
}

#[tokio::test]
async fn a_service_waits_for_a_database_that_is_not_there_then_gives_up() {
    let (url, address) = dead_database_url();
    let bind = format!("127.0.0.1:{}", free_port());
    let wait = Duration::from_secs(2);
    let args = ["run", "--bind", &bind, "--database-wait-secs", "2"];
    let (status, output, elapsed) = run_to_exit(&url, &args, wait + MARGIN).await;

    assert!(!status.success(), "{status}:\n{output}");
    assert!(
        elapsed >= wait,
        "gave up after {elapsed:?}, before its wait:\n{output}"
    );
    assert_in(
        &output,
        &[
            &format!("error: cannot connect to the database {address}: Connection refused"),
            "This is transient",
            "Gave up after 2 s",
            "--database-wait-secs",
            "Start PostgreSQL",
            "docker compose up -d db",
        ],
    );
    // One line per try, with growing pauses: 250, 500, 1000 ms, then the rest of the wait.
    let retries = output.matches("waiting for the database").count();
    assert!(
        (2..=6).contains(&retries),
        "{retries} retries logged:\n{output}"
    );
    assert!(!output.contains("Stack backtrace"), "{output}");
}

#[tokio::test]
async fn a_service_stops_at_once_for_a_user_the_server_does_not_know() {
    let server: PgConnectOptions = server_url().parse().expect("TEST_DATABASE_SERVER");
    let user = format!("no_such_user_{}", uuid::Uuid::new_v4().simple());
    let url = format!(
        "postgres://{user}:{PASSWORD}@{}:{}/game_events",
        server.get_host(),
        server.get_port()
    );
    let bind = format!("127.0.0.1:{}", free_port());
    // A minute of waiting allowed: only a failure classified as permanent ends it sooner.
    let args = ["run", "--bind", &bind, "--database-wait-secs", "60"];
    let (status, output, elapsed) = run_to_exit(&url, &args, MARGIN).await;

    assert!(!status.success(), "{status}:\n{output}");
    // With trust authentication the server says the role does not exist (28000); with
    // password authentication, that the password is wrong (28P01).
    assert_in(
        &output,
        &[
            &format!("error: cannot connect to the database {user}@"),
            "(SQLSTATE 28",
            "This is permanent",
            "Check the user",
        ],
    );
    assert!(
        !output.contains("waiting for the database"),
        "it waited:\n{output}"
    );
    eprintln!("an unknown user: stopped after {elapsed:?}");
}

#[tokio::test]
async fn a_service_stops_at_once_for_a_wrong_password() {
    let cluster = Cluster::init_with_password("the-right-one");
    let url = |password: &str| {
        format!(
            "postgres://postgres:{password}@127.0.0.1:{}/game_events",
            cluster.port
        )
    };
    let bind = format!("127.0.0.1:{}", free_port());
    let args = ["run", "--bind", &bind, "--database-wait-secs", "60"];
    let (status, output, _) = run_to_exit(&url(PASSWORD), &args, MARGIN).await;

    assert!(!status.success(), "{status}:\n{output}");
    assert_in(
        &output,
        &[
            &format!(
                "cannot connect to the database postgres@127.0.0.1:{}/game_events",
                cluster.port
            ),
            "(SQLSTATE 28P01)",
            "This is permanent",
            "Check the user (postgres) and the password",
        ],
    );
    assert!(
        !output.contains("waiting for the database"),
        "it waited:\n{output}"
    );

    // The same server with the right password: the failure above was the password's.
    let (status, output, _) =
        run_to_exit(&url("the-right-one"), &["migrate"], Duration::from_secs(60)).await;
    assert!(status.success(), "{status}:\n{output}");
    assert!(output.contains("the database is up to date"), "{output}");
}

#[tokio::test]
async fn a_service_stops_at_once_when_its_user_may_not_create_the_database() {
    let cluster = Cluster::init();
    let mut admin = PgConnection::connect(&format!("{}/postgres", cluster.server_url()))
        .await
        .expect("connect to the cluster");
    sqlx::query("CREATE ROLE game_events_app LOGIN NOCREATEDB")
        .execute(&mut admin)
        .await
        .unwrap();
    let address = format!("game_events_app@127.0.0.1:{}/game_events", cluster.port);
    let url = format!(
        "postgres://game_events_app:{PASSWORD}@127.0.0.1:{}/game_events",
        cluster.port
    );
    let bind = format!("127.0.0.1:{}", free_port());
    let args = ["run", "--bind", &bind, "--database-wait-secs", "60"];
    let (status, output, _) = run_to_exit(&url, &args, MARGIN).await;

    assert!(!status.success(), "{status}:\n{output}");
    assert_in(
        &output,
        &[
            &format!("error: cannot create the database {address}: permission denied"),
            "(SQLSTATE 42501)",
            "This is permanent",
            &format!(
                "createdb -h 127.0.0.1 -p {} -U postgres -O game_events_app game_events",
                cluster.port
            ),
        ],
    );
    assert!(
        !output.contains("waiting for the database"),
        "it waited:\n{output}"
    );

    // What the advice says (createdb's SQL) is enough: the app migrates the database.
    sqlx::query("CREATE DATABASE game_events OWNER game_events_app")
        .execute(&mut admin)
        .await
        .unwrap();
    let (status, output, _) = run_to_exit(&url, &["migrate"], Duration::from_secs(60)).await;
    assert!(status.success(), "{status}:\n{output}");
}

#[tokio::test]
async fn a_service_started_before_its_database_waits_for_it() {
    let cluster = Cluster::init();
    cluster.stop("fast");
    let url = format!("postgres://postgres@127.0.0.1:{}/game_events", cluster.port);
    let bind = format!("127.0.0.1:{}", free_port());
    let mut app = Proc::spawn(
        "run",
        &url,
        &["run", "--bind", &bind, "--database-wait-secs", "60"],
    );
    app.wait_for_log("waiting for the database", Duration::from_secs(30))
        .await;
    // Meanwhile its address refuses connections, as a process not started yet would,
    // rather than leaving them unanswered in a listen queue.
    let refused = std::net::TcpStream::connect(&bind).map_err(|e| e.kind());
    assert_eq!(refused.err(), Some(std::io::ErrorKind::ConnectionRefused));
    cluster.start();

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let readyz = format!("http://{bind}/readyz");
    wait_for(Duration::from_secs(60), "the app to be ready", || {
        app.assert_running();
        let request = http.get(&readyz).send();
        async move { request.await.ok().filter(|r| r.status() == 200).map(|_| ()) }
    })
    .await;
    // The cluster had no database game_events: the app made it once it could connect.
    assert!(app.log().contains("created the database"), "{}", app.log());
}

#[tokio::test]
async fn administrative_commands_against_a_dead_database_fail_at_once() {
    let (url, address) = dead_database_url();
    for args in [
        &["failed", "list"][..],
        &["keys", "list"],
        &["games", "list"],
        &["migrate"],
    ] {
        let (status, output, elapsed) = run_to_exit(&url, args, MARGIN).await;
        assert!(!status.success(), "{args:?}: {status}:\n{output}");
        assert_in(
            &output,
            &[
                &format!("error: cannot connect to the database {address}"),
                "This is transient",
                "this command does not wait",
                "docker compose up -d db",
            ],
        );
        eprintln!("{args:?} against a dead database: exited after {elapsed:?}");
    }
}

#[tokio::test]
async fn administrative_commands_give_up_on_a_server_that_never_answers() {
    // The kernel completes the handshake for the backlog, but nothing ever answers the
    // client's first message: the case of a host that drops packets, or a hung server.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let url = format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/game_events");
    let args = ["keys", "list", "--acquire-timeout-ms", "1000"];
    let (status, output, elapsed) = run_to_exit(&url, &args, Duration::from_secs(1) + MARGIN).await;

    assert!(!status.success(), "{status}:\n{output}");
    assert_in(
        &output,
        &[
            &format!("cannot connect to the database postgres@127.0.0.1:{port}/game_events"),
            "no answer within 1000 ms (--acquire-timeout-ms)",
            "This is transient",
        ],
    );
    assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
    drop(silent);
}

#[tokio::test]
async fn an_address_in_use_is_reported_at_once_with_the_flag_to_change_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let bind = taken.local_addr().unwrap().to_string();
    // The database is not even there: the address is checked before the wait for it.
    let (url, _) = dead_database_url();
    let args = ["run", "--bind", &bind, "--database-wait-secs", "60"];
    let (status, output, _) = run_to_exit(&url, &args, MARGIN).await;

    assert!(!status.success(), "{status}:\n{output}");
    assert_in(
        &output,
        &[
            &format!("error: cannot listen on {bind}: Address already in use"),
            "--bind (BIND)",
        ],
    );
    drop(taken);
}
