//! `app bench`: load a running API with realistic events, wait until every accepted event
//! is stored, and measure the same write with COPY as the ceiling to compare against.
//!
//! 1. Generate the events and serialize the request bodies (before the clock starts).
//! 2. Send them: `--concurrency` requests at a time, each request once.
//! 3. Poll the database until every accepted batch is stored ([`wait`]).
//! 4. Read the accepted→stored latencies from the stored timestamps.
//! 5. COPY the same number of rows into a scratch copy of `events` ([`ceiling`]).
//!
//! Throughput figures are taken from this tool only, never from timed tests.

pub mod ceiling;
pub mod growth;
pub mod load;
pub mod report;
pub mod stats;
pub mod wait;

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sqlx::PgPool;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::auth::{KeyHash, Scope};
use crate::config::DatabaseSettings;
use crate::domain::{GameId, MAX_EVENTS_PER_BATCH};
use load::{IdKind, Workload};
use report::{CeilingReport, Errors, Report, StoredLatency};
use stats::Latencies;
use wait::{AcceptedSet, WaitPolicy};

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Base URL of the running API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// Events to send in all (up to 10 million, whose bodies are made before the clock
    /// starts; with --growth, any number).
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub events: u64,

    /// Events per request (1 to 1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=MAX_EVENTS_PER_BATCH as u64))]
    pub batch_size: u64,

    /// Requests in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub concurrency: u64,

    /// Distinct players the events come from.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub players: u32,

    /// Seed of the event generator (same seed, same events apart from ids and times).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Event and session ids: time-ordered (v7, as the README recommends) or random (v4,
    /// as many SDKs send).
    #[arg(long, value_enum, default_value = "v7")]
    pub ids: IdKind,

    /// Measure the storing rate as stored data grows: stream the events (made as they are
    /// sent, with time moving on) and report the rate per --window-secs against the events
    /// stored so far, instead of one figure for the run. No COPY ceiling.
    #[arg(long)]
    pub growth: bool,

    /// With --growth: the window each rate is measured over, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub window_secs: u64,

    /// With --growth: hold one REPEATABLE READ snapshot open from AT seconds into the run
    /// (as pg_dump or a long analytical query does) for --hold-snapshot-secs.
    #[arg(long, value_name = "AT", requires = "growth")]
    pub hold_snapshot_at: Option<u64>,

    /// How long the snapshot is held, in seconds.
    #[arg(long, default_value_t = 100, value_name = "SECS")]
    pub hold_snapshot_for: u64,

    /// Give up on a request after this many seconds (counted as a transport error).
    #[arg(long, default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// After the load, how long to wait for every accepted event to be stored.
    #[arg(long, default_value_t = 900)]
    pub wait_timeout_secs: u64,

    /// Give up waiting when no further batch has been stored for this long.
    #[arg(long, default_value_t = 120)]
    pub stall_timeout_secs: u64,

    /// Skip the COPY ceiling.
    #[arg(long)]
    pub no_ceiling: bool,

    /// The ingest key to send events with. Without one, the benchmark makes a key of the
    /// game `bench` in the database (as `app keys create` would).
    #[arg(long, env = "BENCH_INGEST_KEY", hide_env_values = true)]
    pub key: Option<String>,

    /// Also write every figure as one JSON object: to PATH, or to stdout without PATH (the
    /// text report then goes to stderr).
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "-")]
    pub json: Option<PathBuf>,

    /// The database the API and its workers use: polled for completion and for the
    /// stored timestamps, and where the ceiling's scratch table is created.
    #[command(flatten)]
    pub db: DatabaseSettings,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let batch_size = args.batch_size as usize;
    let concurrency = args.concurrency as usize;
    let pool = crate::db::pool(&args.db)?;
    let (key, game) = ingest_key(&pool, args.key.as_deref()).await?;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}")
            .parse()
            .context("the key is not a header value")?,
    );
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(args.request_timeout_secs))
        .pool_max_idle_per_host(concurrency)
        .tcp_nodelay(true)
        .build()?;
    let base = args.url.trim_end_matches('/').to_owned();
    check_ready(&client, &base).await?;
    sqlx::query("SELECT 1 FROM batches LIMIT 1")
        .execute(&pool)
        .await
        .context("cannot read the batches table at --database-url")?;
    if args.growth {
        let report = growth::run(&args, &pool, &client, &base, game).await?;
        return emit(report.to_text(), &report, args.json.as_deref());
    }

    eprintln!(
        "generating {} events in requests of {batch_size}…",
        args.events
    );
    let mut workload = Workload::generate(
        args.events as usize,
        batch_size,
        args.players,
        args.seed,
        OffsetDateTime::now_utc(),
        args.ids,
    );
    let bodies: Vec<(Vec<u8>, u32)> = std::mem::take(&mut workload.bodies)
        .into_iter()
        .zip(workload.bounds.windows(2))
        .map(|(b, w)| (b, (w[1] - w[0]) as u32))
        .collect();
    let requests = bodies.len() as u64;

    let bar = progress_bar(args.events, "sent");
    let started_at = OffsetDateTime::now_utc();
    let start = Instant::now();
    let mut load = load::drive(&client, &base, bodies, concurrency, &bar, start).await;
    bar.finish_and_clear();
    let accepted_events = load.accepted_events();
    eprintln!(
        "load done in {:.2} s; {accepted_events} events accepted; waiting until they are stored…",
        load.elapsed.as_secs_f64()
    );

    let accepted = AcceptedSet::new(std::mem::take(&mut load.accepted));
    let bar = progress_bar(accepted.total_events(), "stored");
    let policy = WaitPolicy {
        deadline: Duration::from_secs(args.wait_timeout_secs),
        stall: Duration::from_secs(args.stall_timeout_secs),
    };
    let stored_at = wait::until_stored(&pool, &accepted, policy, &bar).await;
    bar.finish_and_clear();
    let end_to_end = stored_at?.saturating_duration_since(start);
    let tally = wait::tally(&pool, &accepted).await?;
    wait::check_tally(&tally, accepted.ids().len(), accepted.total_events())
        .map_err(|e| anyhow::anyhow!("after the run: {e}"))?;
    let stored_latency = stored_latency(&pool, &accepted).await?;

    let ceiling = if args.no_ceiling || accepted_events == 0 {
        None
    } else {
        eprintln!("measuring the COPY ceiling with {accepted_events} rows…");
        let n = accepted_events as usize;
        // The first `n` events, cut into the same requests' batches.
        let bounds: Vec<usize> = workload
            .bounds
            .iter()
            .map(|&b| b.min(n))
            .take_while(|&b| b < n)
            .chain([n])
            .collect();
        let data = ceiling::copy_data(
            &workload.events[..n],
            &bounds,
            game,
            OffsetDateTime::now_utc(),
        );
        drop(workload);
        let c = ceiling::measure(&pool, &data, accepted_events).await?;
        Some(CeilingReport {
            rows: c.rows,
            seconds: c.elapsed.as_secs_f64(),
            events_per_sec: stats::per_second(c.rows, c.elapsed),
        })
    };

    let end_to_end_events_per_sec = stats::per_second(accepted_events, end_to_end);
    let report = Report {
        url: base,
        started_at: started_at.format(&Rfc3339)?,
        batch_size,
        concurrency,
        players: args.players,
        requests,
        events_sent: args.events,
        accepted_batches: accepted.ids().len() as u64,
        accepted_events,
        errors: Errors {
            by_status: load
                .by_status
                .iter()
                .filter(|&(&s, _)| s != 202)
                .map(|(&s, &n)| (s, n))
                .collect(),
            transport: load.transport_errors,
            samples: load.error_samples.clone(),
        },
        accept_seconds: load.elapsed.as_secs_f64(),
        accepted_events_per_sec: stats::per_second(accepted_events, load.elapsed),
        end_to_end_seconds: end_to_end.as_secs_f64(),
        end_to_end_events_per_sec,
        post_latency: Latencies::of(&mut load.latencies),
        end_to_end_latency: stored_latency,
        end_to_end_vs_ceiling: ceiling
            .as_ref()
            .and_then(|c| stats::ratio(end_to_end_events_per_sec, c.events_per_sec)),
        ceiling,
    };
    emit(report.to_text(), &report, args.json.as_deref())
}

/// The key to send with, and its game: `key`, or a new key of the game `bench`.
async fn ingest_key(pool: &PgPool, key: Option<&str>) -> anyhow::Result<(String, GameId)> {
    let key = match key {
        Some(key) => key.to_owned(),
        None => {
            let bench = "bench".parse().map_err(anyhow::Error::msg)?;
            let new = crate::store::games::create_key(pool, &bench, Scope::Ingest)
                .await
                .context("cannot make an ingest key for the game bench")?;
            new.key.reveal().to_owned()
        }
    };
    let game = crate::store::games::game_of_key(pool, &KeyHash::of(&key))
        .await?
        .context("the ingest key is unknown or revoked")?;
    Ok((key, game))
}

fn progress_bar(len: u64, what: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} events {what} ({{per_sec}})"
        ))
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar
}

async fn check_ready(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let url = format!("{base}/readyz");
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("the API is not reachable at {url}"))?;
    anyhow::ensure!(
        response.status().is_success(),
        "the API is not ready: GET {url} answered {}",
        response.status()
    );
    Ok(())
}

/// Percentiles of accepted→stored over the run's events, computed by the database.
async fn stored_latency(
    pool: &PgPool,
    accepted: &AcceptedSet,
) -> Result<Option<StoredLatency>, sqlx::Error> {
    let (events, quantiles, max): (i64, Option<Vec<f64>>, Option<f64>) = sqlx::query_as(
        "SELECT count(*),
                percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY d),
                max(d)
         FROM (SELECT extract(epoch FROM processed_at - received_at)::float8 * 1000 AS d
               FROM events WHERE batch_id = ANY($1)) AS t",
    )
    .bind(accepted.ids())
    .fetch_one(pool)
    .await?;
    Ok(match (quantiles.as_deref(), max) {
        (Some(&[p50, p95, p99]), Some(max)) => Some(StoredLatency {
            events,
            p50_ms: p50,
            p95_ms: p95,
            p99_ms: p99,
            max_ms: max,
        }),
        _ => None,
    })
}

/// Prints the text report, and the JSON one where asked.
fn emit(
    text: String,
    report: &impl serde::Serialize,
    json: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    match json {
        None => print!("{text}"),
        Some(path) if path.as_os_str() == "-" => {
            eprint!("{text}");
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, report)?;
            writeln!(out)?;
        }
        Some(path) => {
            print!("{text}");
            let mut bytes = serde_json::to_vec_pretty(report)?;
            bytes.push(b'\n');
            std::fs::write(path, bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        let mut all = vec!["app", "bench"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all)?.command {
            Command::Bench { args, .. } => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn defaults_and_the_json_flag_with_and_without_a_path() {
        let a = parse(&[]).unwrap();
        assert_eq!((a.events, a.batch_size, a.concurrency), (200_000, 100, 8));
        assert!(a.json.is_none());
        assert_eq!(parse(&["--json"]).unwrap().json, Some(PathBuf::from("-")));
        assert_eq!(
            parse(&["--json", "out.json"]).unwrap().json,
            Some(PathBuf::from("out.json"))
        );
    }

    #[test]
    fn batch_size_is_bounded_like_the_api() {
        assert!(parse(&["--batch-size", "1000"]).is_ok());
        assert!(parse(&["--batch-size", "1001"]).is_err());
        assert!(parse(&["--batch-size", "0"]).is_err());
        assert!(parse(&["--concurrency", "0"]).is_err());
    }
}
