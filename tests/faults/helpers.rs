//! The machinery of the fault tests: fresh databases, throwaway PostgreSQL clusters, child
//! processes of the real binary, HTTP, polling and event builders.
//!
//! Every resource is a guard that cleans up in `Drop` (children are killed, databases
//! dropped, clusters stopped and deleted), so a failing test leaves nothing behind. When a
//! test panics, each child prints the tail of its log, which is where the cause usually is.

use std::collections::HashSet;
use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use app::auth::Scope;
use app::config::DatabaseSettings;
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio::time::Instant;
use uuid::Uuid;

use crate::common::drop_database_blocking;
pub use crate::common::{assert_references_hold, custom_event, server_url, wait_for};

/// The binary under test.
pub const APP: &str = env!("CARGO_BIN_EXE_app");

/// A port nobody listens on right now. Another process could take it before we bind it;
/// the callers retry or fail loudly.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port()
}

/// A scratch directory, deleted on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(what: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("app-faults-{what}-{}", Uuid::new_v4().simple()));
        fs::create_dir_all(&path).expect("create a scratch directory");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------
// Databases

/// A fresh, migrated database, dropped (WITH FORCE) on drop.
pub struct TestDb {
    pub url: String,
    pub pool: PgPool,
    server: String,
    name: String,
}

/// What a request must not change when it is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub batches: i64,
    pub jobs: i64,
    pub events: i64,
}

/// One row of `batches`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BatchRow {
    pub status: String,
    pub accepted: i32,
    pub inserted: Option<i32>,
    pub duplicates: Option<i32>,
    pub attempts: i32,
    pub last_error: Option<String>,
}

impl TestDb {
    pub async fn create() -> Self {
        Self::create_on(&server_url()).await
    }

    pub async fn create_on(server: &str) -> Self {
        let name = format!("faults_{}", Uuid::new_v4().simple());
        let url = format!("{server}/{name}");
        let settings = DatabaseSettings {
            database_url: url.clone(),
            max_connections: 4,
            acquire_timeout_ms: 5_000,
        };
        app::startup::prepare_database(&settings, crate::common::DATABASE_WAIT)
            .await
            .expect("create and migrate the test database")
            .close()
            .await;
        // A pool of the test's own, named apart from the service's sessions
        // (application_name 'game-events'), so tests can tell them apart.
        let options: PgConnectOptions = url.parse().unwrap();
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options.application_name("fault-tests"))
            .await
            .expect("connect to the test database");
        Self {
            url,
            pool,
            server: server.to_owned(),
            name,
        }
    }

    pub async fn scalar(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub async fn counts(&self) -> Counts {
        Counts {
            batches: self.scalar("SELECT count(*) FROM batches").await,
            jobs: self.jobs().await,
            events: self.scalar("SELECT count(*) FROM events").await,
        }
    }

    /// Queue jobs, not counting sqlxmq's nil-uuid sentinel row.
    pub async fn jobs(&self) -> i64 {
        self.scalar("SELECT count(*) FROM mq_msgs WHERE id <> uuid_nil()")
            .await
    }

    pub async fn batch(&self, batch_id: Uuid) -> BatchRow {
        sqlx::query_as(
            "SELECT status, accepted, inserted, duplicates, attempts, last_error
             FROM batches WHERE batch_id = $1",
        )
        .bind(batch_id)
        .fetch_one(&self.pool)
        .await
        .unwrap_or_else(|e| panic!("batch {batch_id}: {e}"))
    }

    pub async fn wait_for_status(
        &self,
        batch_id: Uuid,
        status: &str,
        within: Duration,
    ) -> BatchRow {
        wait_for(
            within,
            &format!("batch {batch_id} to be {status}"),
            || async {
                let row = self.batch(batch_id).await;
                (row.status == status).then_some(row)
            },
        )
        .await
    }

    /// Waits until no batch is queued or processing.
    pub async fn wait_until_drained(&self, within: Duration) {
        wait_for(within, "every batch to be completed or failed", || async {
            let left = self
                .scalar("SELECT count(*) FROM batches WHERE status IN ('queued', 'processing')")
                .await;
            (left == 0).then_some(())
        })
        .await;
    }

    /// The invariants of exactly-once storage, given what the API accepted: every batch
    /// completed, every accepted event stored exactly once, each batch's counts matching
    /// the events it stored, the queue empty. Requests whose outcome the client could not
    /// know (a 503 or a dropped connection during an outage: the commit may have happened)
    /// may or may not have been stored, but if they were, then also exactly once.
    pub async fn assert_stored_exactly_once(&self, ledger: &Ledger) {
        let not_completed: Vec<(Uuid, String, i32, Option<String>)> = sqlx::query_as(
            "SELECT batch_id, status, attempts, last_error FROM batches WHERE status <> 'completed'",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap();
        assert!(
            not_completed.is_empty(),
            "batches not completed: {not_completed:?}"
        );
        let batches: HashSet<Uuid> = sqlx::query_scalar("SELECT batch_id FROM batches")
            .fetch_all(&self.pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
        let accepted: HashSet<Uuid> = ledger.batches.iter().copied().collect();
        assert_eq!(accepted.len(), ledger.batches.len(), "batch ids are unique");
        assert!(accepted.is_subset(&batches), "accepted batches are missing");
        assert!(
            batches.len() - accepted.len() <= ledger.unsure_requests,
            "{} batches the API never accepted, but only {} requests had an unknown outcome",
            batches.len() - accepted.len(),
            ledger.unsure_requests
        );
        let stored: Vec<Uuid> = sqlx::query_scalar("SELECT event_id FROM events")
            .fetch_all(&self.pool)
            .await
            .unwrap();
        // Workers skip PostgreSQL's per-row foreign-key checks: check the keys here.
        assert_references_hold(&mut self.pool.acquire().await.unwrap()).await;
        let stored_set: HashSet<Uuid> = stored.iter().copied().collect();
        assert_eq!(stored.len(), stored_set.len());
        let missing = ledger.distinct.difference(&stored_set).count();
        assert_eq!(missing, 0, "{missing} accepted events are not stored");
        let unexplained = stored_set
            .difference(&ledger.distinct)
            .filter(|id| !ledger.unsure.contains(id))
            .count();
        assert_eq!(
            unexplained, 0,
            "{unexplained} stored events were never sent"
        );
        // Each batch's own counts agree with the events it stored.
        // (batch_id, accepted, inserted, duplicates, events it stored)
        type Counted = (Uuid, i32, Option<i32>, Option<i32>, i64);
        let mismatched: Vec<Counted> = sqlx::query_as(
            // One pass over events (there is no index on events.batch_id: a correlated
            // count per batch would read all events once per batch).
            "SELECT b.batch_id, b.accepted, b.inserted, b.duplicates, coalesce(e.stored, 0)
             FROM batches b
             LEFT JOIN (SELECT batch_id, count(*) AS stored FROM events GROUP BY batch_id) e
                    USING (batch_id)
             WHERE b.inserted IS DISTINCT FROM coalesce(e.stored, 0)::int
                OR b.inserted + b.duplicates <> b.accepted",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap();
        assert!(
            mismatched.is_empty(),
            "batches whose counts disagree: {mismatched:?}"
        );
        let accepted_events: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(accepted), 0) FROM batches WHERE batch_id = ANY($1)",
        )
        .bind(&ledger.batches)
        .fetch_one(&self.pool)
        .await
        .unwrap();
        assert_eq!(
            accepted_events, ledger.sent as i64,
            "sum(accepted) of the accepted batches"
        );
        if ledger.unsure_requests == 0 {
            assert_eq!(
                stored.len(),
                ledger.distinct.len(),
                "events stored == distinct accepted ids"
            );
            let inserted = self
                .scalar("SELECT coalesce(sum(inserted), 0) FROM batches")
                .await;
            assert_eq!(inserted, ledger.distinct.len() as i64, "sum(inserted)");
        }
        assert_eq!(self.jobs().await, 0, "no job left in the queue");
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        drop_database_blocking(&self.server, &self.name);
    }
}

// ---------------------------------------------------------------------------------------
// Child processes

/// A child process of the binary under test, its output in a log file. Killed (SIGKILL)
/// on drop if it is still running.
pub struct Proc {
    pub name: String,
    child: Child,
    log: PathBuf,
    _dir: TempDir,
    exit: Option<ExitStatus>,
}

impl Proc {
    pub fn spawn(name: &str, database_url: &str, args: &[&str]) -> Self {
        let dir = TempDir::new(name);
        let log = dir.path().join("output.log");
        let out = File::create(&log).expect("create a log file");
        let err = out.try_clone().unwrap();
        let child = Command::new(APP)
            .args(args)
            .env("DATABASE_URL", database_url)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {APP} {args:?}: {e}"));
        Self {
            name: name.to_owned(),
            child,
            log,
            _dir: dir,
            exit: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) has no memory effects; the pid is our own child, not yet reaped.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.pid());
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
    }

    /// Whether it has exited (and how), without waiting.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("try_wait");
        }
        self.exit
    }

    /// Waits for it to exit, at most `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Panics, with its log, if it has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.exited() {
            panic!("{} exited ({status}):\n{}", self.name, self.log_tail(40));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until its log contains `text`; panics if it exits first.
    pub async fn wait_for_log(&mut self, text: &str, within: Duration) {
        let what = format!("{} to log {text:?}", self.name);
        wait_for(within, &what, || {
            let found = self.log().contains(text);
            self.assert_running();
            async move { found.then_some(()) }
        })
        .await;
    }

    /// A line of /proc/PID/status, in KiB (VmRSS: resident memory now; VmHWM: its peak).
    pub fn memory_kib(&self, field: &str) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let was_running = self.exited().is_none();
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- {} (pid {}, {}) log tail -----\n{}\n-----",
                self.name,
                self.pid(),
                if was_running {
                    "killed by the test's cleanup"
                } else {
                    "had exited"
                },
                self.log_tail(60)
            );
        }
    }
}

/// Spawns `app work` against `database_url` and waits until it is running.
pub async fn spawn_worker(name: &str, database_url: &str, args: &[&str]) -> Proc {
    let mut all = vec!["work"];
    all.extend_from_slice(args);
    let mut worker = Proc::spawn(name, database_url, &all);
    worker
        .wait_for_log("worker started", Duration::from_secs(30))
        .await;
    worker
}

/// A child process serving the API (`app serve` or `app run`).
pub struct Server {
    pub proc: Proc,
    pub addr: SocketAddr,
    /// Sends `ingest_key` with every request.
    pub http: reqwest::Client,
    /// Keys of the game `faults`.
    pub ingest_key: String,
    pub read_key: String,
}

/// Makes an ingest key and a read key of the game `faults` (made if missing).
async fn create_keys(database_url: &str) -> (String, String) {
    let settings = DatabaseSettings {
        database_url: database_url.to_owned(),
        max_connections: 1,
        acquire_timeout_ms: 5_000,
    };
    let pool = app::db::pool(&settings).unwrap();
    let game = "faults".parse().unwrap();
    let mut keys = Vec::new();
    for scope in [Scope::Ingest, Scope::Read] {
        let new = app::store::games::create_key(&pool, &game, scope)
            .await
            .expect("create a key");
        keys.push(new.key.reveal().to_owned());
    }
    pool.close().await;
    let read = keys.pop().unwrap();
    (keys.pop().unwrap(), read)
}

impl Server {
    /// Spawns `app <command> --bind 127.0.0.1:<free port> <args>` and waits until it answers
    /// /healthz.
    pub async fn spawn(command: &str, database_url: &str, args: &[&str]) -> Self {
        let port = free_port();
        let bind = format!("127.0.0.1:{port}");
        let mut all = vec![command, "--bind", &bind];
        all.extend_from_slice(args);
        let (ingest_key, read_key) = create_keys(database_url).await;
        let mut server = Self {
            proc: Proc::spawn(command, database_url, &all),
            addr: bind.parse().unwrap(),
            http: http_client(&ingest_key),
            ingest_key,
            read_key,
        };
        let healthz = server.url("/healthz");
        let http = server.http.clone();
        wait_for(
            Duration::from_secs(30),
            "the server to answer /healthz",
            || {
                server.proc.assert_running();
                let request = http.get(&healthz).timeout(Duration::from_secs(2)).send();
                async move { request.await.ok().filter(|r| r.status() == 200).map(|_| ()) }
            },
        )
        .await;
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn post(&self, body: &Value) -> reqwest::Result<reqwest::Response> {
        self.http
            .post(self.url("/v1/events"))
            .json(body)
            .send()
            .await
    }

    /// Posts a batch that must be accepted; returns its id.
    pub async fn ingest(&self, body: &Value) -> Uuid {
        let response = self.post(body).await.expect("POST /v1/events");
        accepted_batch_id(response).await
    }
}

/// A client that sends `key` with every request (a request's own Authorization wins).
pub fn http_client(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        // No request may hang a test.
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The batch id of a 202, or a panic with the response.
pub async fn accepted_batch_id(response: reqwest::Response) -> Uuid {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert_eq!(status, 202, "not accepted: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    body["batch_id"].as_str().unwrap().parse().unwrap()
}

// ---------------------------------------------------------------------------------------
// A throwaway PostgreSQL cluster

/// A PostgreSQL cluster of its own (initdb + pg_ctl on a free port), so a test can stop
/// and start the database without disturbing the others. Stopped and deleted on drop.
pub struct Cluster {
    dir: TempDir,
    bin: PathBuf,
    pub port: u16,
}

impl Cluster {
    /// A cluster that trusts every local connection.
    pub fn init() -> Self {
        Self::init_with_auth(&["--auth=trust"], None)
    }

    /// A cluster whose user `postgres` must give `password` (SCRAM), also over 127.0.0.1.
    pub fn init_with_password(password: &str) -> Self {
        Self::init_with_auth(&["--auth=scram-sha-256"], Some(password))
    }

    fn init_with_auth(auth: &[&str], password: Option<&str>) -> Self {
        let bin = postgres_bin_dir();
        let dir = TempDir::new("cluster");
        // initdb and pg_ctl refuse to run as root: run them as the postgres user then.
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown the cluster directory to postgres");
        }
        let data = dir.path().join("data");
        let mut initdb = pg_command(&bin, "initdb");
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C"])
            .args(auth);
        if let Some(password) = password {
            // Readable by the postgres user that runs initdb when we are root.
            let file = dir.path().join("password");
            fs::write(&file, password).expect("write the password file");
            initdb.arg(format!("--pwfile={}", file.display()));
        }
        let output = initdb.output().expect("run initdb");
        assert!(
            output.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut cluster = Self { dir, bin, port: 0 };
        cluster.start_on_a_free_port();
        cluster
    }

    fn start_on_a_free_port(&mut self) {
        for _ in 0..3 {
            self.port = free_port();
            if self.try_start() {
                return;
            }
        }
        panic!("cannot start the cluster:\n{}", self.log());
    }

    fn try_start(&self) -> bool {
        let options = format!(
            // No fsync: a stop, even -m immediate, is not an OS crash, so what was written
            // survives. (synchronous_commit stays on: off could lose acknowledged commits.)
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        pg_command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("postgres.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts it again, on the same port.
    pub fn start(&self) {
        assert!(self.try_start(), "restart the cluster:\n{}", self.log());
    }

    /// `pg_ctl stop -m <mode>` (smart, fast or immediate).
    pub fn stop(&self, mode: &str) {
        let status = pg_command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-w", "-t", "60", "-m", mode, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run pg_ctl stop");
        assert!(status.success(), "pg_ctl stop -m {mode}:\n{}", self.log());
    }

    /// The server URL, without a database.
    pub fn server_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = pg_command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-w", "-t", "30", "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // The TempDir is deleted after this.
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn pg_command(bin: &Path, program: &str) -> Command {
    let path = bin.join(program);
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(path);
        command
    } else {
        Command::new(path)
    }
}

/// Where initdb and pg_ctl are: see [`pg_program`].
fn postgres_bin_dir() -> PathBuf {
    pg_program("initdb")
        .parent()
        .expect("a program is in a directory")
        .to_path_buf()
}

/// PostgreSQL's program `name` (initdb, pg_ctl, pg_dump ...): in $PG_BIN, else in
/// `pg_config --bindir`, else in the newest /usr/lib/postgresql/<version>/bin that has it.
pub fn pg_program(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return PathBuf::from(dir).join(name);
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()).join(name);
        if output.status.success() && path.exists() {
            return path;
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin").join(name)))
        })
        .filter(|(_, path)| path.exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, path)| path)
        .unwrap_or_else(|| panic!("no PostgreSQL program {name} found: set PG_BIN"))
}

// ---------------------------------------------------------------------------------------
// Events

/// A batch of `n` new custom events over a few players and sessions; returns the body and
/// its event ids.
pub fn new_batch(n: usize) -> (Value, Vec<Uuid>) {
    let session = Uuid::now_v7();
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    let events: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| custom_event(*id, &format!("player-{}", i % 7), session))
        .collect();
    (json!({ "events": events }), ids)
}

// ---------------------------------------------------------------------------------------
// Traffic

/// What the API accepted, as a client saw it.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Batches answered 202.
    pub batches: Vec<Uuid>,
    /// Event ids in them.
    pub distinct: HashSet<Uuid>,
    /// Events in them, resends counted.
    pub sent: usize,
    /// Requests whose outcome the client cannot know (503, connection lost).
    pub unsure_requests: usize,
    /// Event ids in those.
    pub unsure: HashSet<Uuid>,
}

impl Ledger {
    pub fn accepted(&mut self, batch_id: Uuid, ids: &[Uuid]) {
        self.batches.push(batch_id);
        self.distinct.extend(ids);
        self.sent += ids.len();
    }

    pub fn unsure(&mut self, ids: &[Uuid]) {
        self.unsure_requests += 1;
        self.unsure.extend(ids);
    }

    pub fn merge(&mut self, other: Ledger) {
        self.batches.extend(other.batches);
        self.distinct.extend(other.distinct);
        self.sent += other.sent;
        self.unsure_requests += other.unsure_requests;
        self.unsure.extend(other.unsure);
    }
}

#[derive(Debug, Clone)]
pub struct TrafficOptions {
    pub events_per_batch: usize,
    /// Every n-th request is invalid (and must be refused with a 4xx).
    pub invalid_every: Option<usize>,
    /// Whether a 503 or a lost connection is expected (a database outage).
    pub outage_expected: bool,
    /// Pause between requests.
    pub pause: Duration,
    /// A hard stop, whatever `stop` says.
    pub deadline: Instant,
}

/// What one client saw.
#[derive(Debug, Default)]
pub struct Traffic {
    pub ledger: Ledger,
    pub statuses: std::collections::BTreeMap<u16, usize>,
    pub transport_errors: usize,
    /// Responses no client should ever get.
    pub unexpected: Vec<String>,
}

impl Traffic {
    pub fn merge(&mut self, other: Traffic) {
        self.ledger.merge(other.ledger);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.transport_errors += other.transport_errors;
        self.unexpected.extend(other.unexpected);
    }
}

/// A client that posts batches until `stop` is set (or its deadline passes). One batch in
/// three resends five events of the batch before, so duplicates cross batches.
pub fn spawn_client(
    http: reqwest::Client,
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    options: TrafficOptions,
) -> tokio::task::JoinHandle<Traffic> {
    tokio::spawn(async move {
        let mut traffic = Traffic::default();
        let mut previous: Vec<Value> = Vec::new();
        let session = Uuid::now_v7();
        for n in 1usize.. {
            if stop.load(std::sync::atomic::Ordering::Relaxed) || Instant::now() >= options.deadline
            {
                break;
            }
            let invalid = options.invalid_every.is_some_and(|every| n % every == 0);
            let mut events: Vec<Value> = (0..options.events_per_batch)
                .map(|i| custom_event(Uuid::now_v7(), &format!("player-{}", (n + i) % 11), session))
                .collect();
            let fresh = events.clone();
            if n % 3 == 0 {
                events.extend(previous.iter().take(5).cloned());
            }
            previous = fresh;
            if invalid {
                // Alternate between a few kinds of refusal.
                match n / options.invalid_every.unwrap() % 3 {
                    0 => events[0]["player_id"] = json!("not an id"),
                    1 => events[0]["colour"] = json!("red"),
                    _ => events.push(events[0].clone()),
                }
            }
            let ids: Vec<Uuid> = events
                .iter()
                .map(|e| e["event_id"].as_str().unwrap().parse().unwrap())
                .collect();
            match http
                .post(&url)
                .json(&json!({ "events": events }))
                .send()
                .await
            {
                Ok(response) => {
                    let status = response.status().as_u16();
                    *traffic.statuses.entry(status).or_default() += 1;
                    let retry_after = response.headers().contains_key("retry-after");
                    let text = response.text().await.unwrap_or_default();
                    match status {
                        202 if !invalid => {
                            let body: Value = serde_json::from_str(&text).unwrap();
                            let batch_id = body["batch_id"].as_str().unwrap().parse().unwrap();
                            traffic.ledger.accepted(batch_id, &ids);
                        }
                        422 if invalid => {}
                        503 if options.outage_expected && retry_after => {
                            traffic.ledger.unsure(&ids)
                        }
                        _ => {
                            let shown: String = text.chars().take(300).collect();
                            traffic
                                .unexpected
                                .push(format!("{status} (invalid: {invalid}): {shown}"));
                        }
                    }
                }
                Err(e) => {
                    traffic.transport_errors += 1;
                    if options.outage_expected {
                        traffic.ledger.unsure(&ids);
                    } else {
                        traffic.unexpected.push(format!("transport error: {e}"));
                    }
                }
            }
            if !options.pause.is_zero() {
                tokio::time::sleep(options.pause).await;
            }
        }
        traffic
    })
}
