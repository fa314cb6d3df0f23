//! `app bench --growth`: the storing rate as stored data grows.
//!
//! The standard scenarios measure an empty database. Here events are generated while
//! they are sent (any number: 20 million events would not fit in memory as bodies), with
//! time moving on as in a live game, and every `--window-secs` the run samples how many
//! events are stored, the WAL written and the buffer traffic. The report is the curve:
//! the storing rate per window against the events stored so far, and its ratio to the
//! rate at the start.
//!
//! `--hold-snapshot-at` also holds one REPEATABLE READ snapshot open for a while during
//! the run, as `pg_dump` or a long analytical query does, and reports the rate while it
//! is held against the rate just before.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use sqlx::{Connection, PgPool};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::load::{Generator, RequestBody};
use super::BenchArgs;
use crate::domain::GameId;

/// Sampled at the end of each window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the first request was sent.
    pub at_secs: f64,
    /// Events stored so far (the `inserted` of the run's completed batches).
    pub stored: u64,
    /// Events the API accepted so far.
    pub accepted: u64,
    /// Bytes of WAL written since the start.
    pub wal_bytes: u64,
    /// Buffers written by backends and the background writer, and by checkpoints, since
    /// the start (pg_stat_bgwriter); and checkpoints.
    pub buffers_backend: i64,
    pub buffers_clean: i64,
    pub buffers_checkpoint: i64,
    pub checkpoints: i64,
    /// Blocks read from outside shared buffers in this database since the start.
    pub blocks_read: i64,
}

/// One window of the curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Window {
    pub end_secs: f64,
    /// Events stored at the start of the window.
    pub stored_before: u64,
    pub stored_per_sec: f64,
    pub wal_bytes_per_event: Option<f64>,
    pub buffers_written_per_sec: f64,
    pub blocks_read_per_sec: f64,
    pub checkpoints: i64,
    /// Whether the held snapshot was open during (part of) this window.
    pub snapshot_held: bool,
    /// Whether requests were still being sent at the end of the window. The windows
    /// after the last request only drain the queue: they are left out of the rates
    /// read off the curve.
    pub under_load: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct GrowthReport {
    pub ids: String,
    pub batch_size: usize,
    pub concurrency: usize,
    pub players: u32,
    pub window_secs: u64,
    pub accepted_events: u64,
    pub stored_events: u64,
    pub errors: u64,
    pub seconds: f64,
    pub windows: Vec<Window>,
    /// The mean rate of the windows that start before 1 million events are stored (the
    /// first window, warming up, left out).
    pub rate_at_start: Option<f64>,
    /// The mean rate of the windows that start within half a million events of 10 and
    /// of 20 million stored, and their ratio to the rate at the start.
    pub rate_at_10m: Option<f64>,
    pub ratio_at_10m: Option<f64>,
    pub rate_at_20m: Option<f64>,
    pub ratio_at_20m: Option<f64>,
    pub snapshot: Option<SnapshotReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SnapshotReport {
    pub held_from_secs: f64,
    pub held_secs: f64,
    /// The rate over the 30 s before the snapshot was taken.
    pub rate_before: Option<f64>,
    /// The rate over the last 30 s it was held.
    pub rate_last_30s: Option<f64>,
    pub ratio: Option<f64>,
}

/// The rate between two samples.
fn window(a: &Sample, b: &Sample, snapshot_held: bool, under_load: bool) -> Window {
    let secs = (b.at_secs - a.at_secs).max(1e-9);
    let stored = b.stored.saturating_sub(a.stored);
    let written = (b.buffers_backend - a.buffers_backend)
        + (b.buffers_clean - a.buffers_clean)
        + (b.buffers_checkpoint - a.buffers_checkpoint);
    Window {
        end_secs: b.at_secs,
        stored_before: a.stored,
        stored_per_sec: stored as f64 / secs,
        wal_bytes_per_event: (stored > 0)
            .then(|| b.wal_bytes.saturating_sub(a.wal_bytes) as f64 / stored as f64),
        buffers_written_per_sec: written as f64 / secs,
        blocks_read_per_sec: (b.blocks_read - a.blocks_read) as f64 / secs,
        checkpoints: b.checkpoints - a.checkpoints,
        snapshot_held,
        under_load,
    }
}

/// The mean storing rate over the samples within `[from, to]` seconds.
fn rate_between(samples: &[Sample], from: f64, to: f64) -> Option<f64> {
    let first = samples.iter().find(|s| s.at_secs >= from)?;
    let last = samples.iter().rev().find(|s| s.at_secs <= to)?;
    (last.at_secs > first.at_secs)
        .then(|| (last.stored - first.stored) as f64 / (last.at_secs - first.at_secs))
}

/// The mean rate of the windows that start with `around ± half` events stored.
fn rate_around(windows: &[Window], around: u64, half: u64) -> Option<f64> {
    let near: Vec<f64> = windows
        .iter()
        .filter(|w| w.stored_before.abs_diff(around) <= half && w.under_load && !w.snapshot_held)
        .map(|w| w.stored_per_sec)
        .collect();
    (!near.is_empty()).then(|| near.iter().sum::<f64>() / near.len() as f64)
}

/// The rate on a nearly empty database: the mean of the windows that start within the
/// first million events stored, the first window left out (connections and caches warm
/// up in it). A machine that stores more than that in its first window has only its
/// second window to go by.
fn rate_at_start(windows: &[Window]) -> Option<f64> {
    let measured = |w: &&Window| w.under_load && !w.snapshot_held;
    let after_first = || windows.iter().skip(1).filter(measured);
    let start: Vec<f64> = after_first()
        .filter(|w| w.stored_before < 1_000_000)
        .map(|w| w.stored_per_sec)
        .collect();
    if start.is_empty() {
        return after_first().next().map(|w| w.stored_per_sec);
    }
    Some(start.iter().sum::<f64>() / start.len() as f64)
}

/// The figures read off the curve.
#[derive(Debug, Clone)]
pub struct Summary {
    pub rate_at_start: Option<f64>,
    pub rate_at_10m: Option<f64>,
    pub rate_at_20m: Option<f64>,
    pub snapshot: Option<SnapshotReport>,
}

/// Reads the curve; `snapshot` is when the snapshot was taken and how long it was held.
pub fn summarize(samples: &[Sample], windows: &[Window], snapshot: Option<(f64, f64)>) -> Summary {
    let rate_at_start = rate_at_start(windows);
    let rate_at_10m = rate_around(windows, 10_000_000, 500_000);
    let rate_at_20m = rate_around(windows, 20_000_000, 500_000);
    let snapshot = snapshot.map(|(from, held)| {
        let rate_before = rate_between(samples, from - 30.0, from);
        let rate_last_30s = rate_between(samples, from + held - 30.0, from + held);
        SnapshotReport {
            held_from_secs: from,
            held_secs: held,
            rate_before,
            rate_last_30s,
            ratio: rate_before.zip(rate_last_30s).map(|(b, l)| l / b),
        }
    });
    Summary {
        rate_at_start,
        rate_at_10m,
        rate_at_20m,
        snapshot,
    }
}

async fn sample(pool: &PgPool, game: GameId, start: Instant) -> Result<Sample, sqlx::Error> {
    let at_secs = start.elapsed().as_secs_f64();
    let row: (i64, i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT coalesce(sum(inserted), 0)::bigint FROM batches
                 WHERE game_id = $1 AND status = 'completed'),
                pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint,
                buffers_backend, buffers_clean, buffers_checkpoint,
                checkpoints_timed + checkpoints_req,
                (SELECT blks_read FROM pg_stat_database WHERE datname = current_database())
         FROM pg_stat_bgwriter",
    )
    .bind(game.0)
    .fetch_one(pool)
    .await?;
    Ok(Sample {
        at_secs,
        stored: row.0 as u64,
        accepted: 0,
        wal_bytes: row.1 as u64,
        buffers_backend: row.2,
        buffers_clean: row.3,
        buffers_checkpoint: row.4,
        checkpoints: row.5,
        blocks_read: row.6,
    })
}

/// Counters since `base`, so that the samples start at zero.
fn since(base: &Sample, s: Sample) -> Sample {
    Sample {
        wal_bytes: s.wal_bytes - base.wal_bytes,
        buffers_backend: s.buffers_backend - base.buffers_backend,
        buffers_clean: s.buffers_clean - base.buffers_clean,
        buffers_checkpoint: s.buffers_checkpoint - base.buffers_checkpoint,
        checkpoints: s.checkpoints - base.checkpoints,
        blocks_read: s.blocks_read - base.blocks_read,
        ..s
    }
}

/// What the senders share.
#[derive(Default)]
struct Sent {
    accepted_events: AtomicU64,
    errors: AtomicU64,
    accepted: Mutex<Vec<(Uuid, u32)>>,
    error_sample: Mutex<Option<String>>,
}

pub async fn run(
    args: &BenchArgs,
    pool: &PgPool,
    client: &reqwest::Client,
    base: &str,
    game: GameId,
) -> anyhow::Result<GrowthReport> {
    let batch_size = args.batch_size as usize;
    let concurrency = args.concurrency as usize;
    let total = args.events;
    let (bodies, receiver) = mpsc::channel::<(Vec<u8>, u32)>(concurrency * 4);
    // Generated on a thread of its own, as they are sent, with time moving on.
    let (seed, players, ids) = (args.seed, args.players, args.ids);
    let generator = std::thread::spawn(move || {
        let mut generator = Generator::new(seed, players, OffsetDateTime::now_utc(), ids);
        let mut events = Vec::with_capacity(batch_size);
        let mut generated = 0u64;
        while generated < total {
            let n = (batch_size as u64).min(total - generated) as usize;
            let now = OffsetDateTime::now_utc();
            generator.set_now(now);
            events.clear();
            generator.device_flush(n, &mut events);
            let body = serde_json::to_vec(&RequestBody {
                sent_at: now,
                events: &events,
            })
            .expect("the generated events serialize");
            if bodies.blocking_send((body, n as u32)).is_err() {
                break;
            }
            generated += n as u64;
        }
    });

    let endpoint = format!("{base}/v1/events");
    let sent = Arc::new(Sent::default());
    let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
    let start = Instant::now();
    let base_sample = sample(pool, game, start).await?;
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, endpoint, sent, bodies) = (
            client.clone(),
            endpoint.clone(),
            sent.clone(),
            receiver.clone(),
        );
        senders.spawn(async move {
            loop {
                let Some((body, events)) = bodies.lock().await.recv().await else {
                    break;
                };
                let outcome = async {
                    let response = client
                        .post(endpoint.as_str())
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body)
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    let status = response.status().as_u16();
                    let text = response.text().await.map_err(|e| e.to_string())?;
                    if status != 202 {
                        return Err(format!(
                            "{status}: {}",
                            text.chars().take(300).collect::<String>()
                        ));
                    }
                    let accepted: serde_json::Value =
                        serde_json::from_str(&text).map_err(|e| e.to_string())?;
                    accepted["batch_id"]
                        .as_str()
                        .and_then(|id| id.parse::<Uuid>().ok())
                        .ok_or_else(|| format!("202 without a batch id: {text}"))
                }
                .await;
                match outcome {
                    Ok(batch_id) => {
                        sent.accepted_events
                            .fetch_add(u64::from(events), Ordering::Relaxed);
                        sent.accepted
                            .lock()
                            .expect("not poisoned")
                            .push((batch_id, events));
                    }
                    Err(error) => {
                        sent.errors.fetch_add(1, Ordering::Relaxed);
                        sent.error_sample
                            .lock()
                            .expect("not poisoned")
                            .get_or_insert(error);
                    }
                }
            }
        });
    }

    // The load ends when the generator has made every body and the senders have sent
    // them all.
    let load = tokio::spawn(async move { while senders.join_next().await.is_some() {} });

    // The held snapshot, if asked for.
    let held = Arc::new(AtomicBool::new(false));
    let snapshot = args.hold_snapshot_at.map(|at| {
        let (url, held, hold_for) = (
            args.db.database_url.clone(),
            held.clone(),
            Duration::from_secs(args.hold_snapshot_for),
        );
        tokio::spawn(async move {
            tokio::time::sleep_until((start + Duration::from_secs(at)).into()).await;
            let mut conn = sqlx::PgConnection::connect(&url)
                .await
                .context("cannot connect to hold a snapshot")?;
            let mut tx = conn.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *tx)
                .await?;
            // The first query takes the snapshot, as pg_dump's does.
            sqlx::query("SELECT count(*) FROM games")
                .execute(&mut *tx)
                .await?;
            let taken = start.elapsed().as_secs_f64();
            held.store(true, Ordering::SeqCst);
            eprintln!("snapshot taken at {taken:.0} s; holding it for {hold_for:?}");
            tokio::time::sleep(hold_for).await;
            tx.commit().await?;
            held.store(false, Ordering::SeqCst);
            eprintln!(
                "snapshot released at {:.0} s",
                start.elapsed().as_secs_f64()
            );
            anyhow::Ok((taken, hold_for.as_secs_f64()))
        })
    });

    // Sample every window until everything sent is stored.
    let every = Duration::from_secs(args.window_secs.max(1));
    let mut samples = vec![since(&base_sample, base_sample)];
    let mut windows = Vec::new();
    let mut held_in_window = false;
    let mut next = start + every;
    let stall = Duration::from_secs(args.stall_timeout_secs);
    let mut last_progress = Instant::now();
    loop {
        while Instant::now() < next {
            tokio::time::sleep(Duration::from_millis(200)).await;
            held_in_window |= held.load(Ordering::SeqCst);
        }
        next += every;
        let mut s = since(&base_sample, sample(pool, game, start).await?);
        s.accepted = sent.accepted_events.load(Ordering::Relaxed);
        let previous = *samples.last().expect("the first sample");
        let w = window(&previous, &s, held_in_window, !load.is_finished());
        held_in_window = held.load(Ordering::SeqCst);
        eprintln!(
            "{:>6.0} s  stored {:>11}  {:>8.0} events/s  WAL {:>6} B/event  writes {:>6.0}/s  reads {:>6.0}/s{}{}",
            s.at_secs,
            s.stored,
            w.stored_per_sec,
            w.wal_bytes_per_event.map_or("-".to_owned(), |b| format!("{b:.0}")),
            w.buffers_written_per_sec,
            w.blocks_read_per_sec,
            if w.checkpoints > 0 { "  checkpoint" } else { "" },
            if w.snapshot_held { "  (snapshot held)" } else { "" },
        );
        if s.stored > previous.stored {
            last_progress = Instant::now();
        }
        samples.push(s);
        windows.push(w);
        if load.is_finished() && s.stored >= s.accepted {
            break;
        }
        if last_progress.elapsed() > stall {
            anyhow::bail!(
                "no event stored for {stall:?}: are workers running against this database?"
            );
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    if generator.join().is_err() {
        anyhow::bail!("the event generator panicked");
    }
    let snapshot = match snapshot {
        Some(task) => Some(task.await.context("the snapshot holder panicked")??),
        None => None,
    };
    let errors = sent.errors.load(Ordering::Relaxed);
    if let Some(error) = sent.error_sample.lock().expect("not poisoned").take() {
        eprintln!("{errors} request(s) failed, for example: {error}");
    }
    let last = *samples.last().expect("samples");
    let Summary {
        rate_at_start,
        rate_at_10m,
        rate_at_20m,
        snapshot,
    } = summarize(&samples, &windows, snapshot);
    let ratio = |r: Option<f64>| r.zip(rate_at_start).map(|(r, s)| r / s);
    Ok(GrowthReport {
        ids: format!("{ids:?}").to_lowercase(),
        batch_size,
        concurrency,
        players,
        window_secs: args.window_secs,
        accepted_events: sent.accepted_events.load(Ordering::Relaxed),
        stored_events: last.stored,
        errors,
        seconds,
        rate_at_start,
        ratio_at_10m: ratio(rate_at_10m),
        rate_at_10m,
        ratio_at_20m: ratio(rate_at_20m),
        rate_at_20m,
        windows,
        snapshot,
    })
}

impl GrowthReport {
    pub fn to_text(&self) -> String {
        let rate = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{r:.0} events/s"));
        let ratio = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{:.2}", r));
        let mut text = format!(
            "{} events stored in {:.0} s ({} ids, batches of {}, {} at a time, {} players); {} errors\n\
             rate at the start: {}\n\
             rate at 10M stored: {} ({} of the start)\n\
             rate at 20M stored: {} ({} of the start)",
            self.stored_events,
            self.seconds,
            self.ids,
            self.batch_size,
            self.concurrency,
            self.players,
            self.errors,
            rate(self.rate_at_start),
            rate(self.rate_at_10m),
            ratio(self.ratio_at_10m),
            rate(self.rate_at_20m),
            ratio(self.ratio_at_20m),
        );
        if let Some(s) = &self.snapshot {
            text.push_str(&format!(
                "\nsnapshot held from {:.0} s for {:.0} s: {} before, {} in its last 30 s ({} of before)",
                s.held_from_secs,
                s.held_secs,
                rate(s.rate_before),
                rate(s.rate_last_30s),
                ratio(s.ratio)
            ));
        }
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_secs: f64, stored: u64) -> Sample {
        Sample {
            at_secs,
            stored,
            ..Default::default()
        }
    }

    #[test]
    fn windows_and_the_rates_of_the_curve() {
        // 10 s windows: 30k/s until 11M stored, then 24k/s until the last request at
        // 20.3M, then a queue draining at 1k/s, which is not the storing rate at 20M.
        let mut samples = vec![sample(0.0, 0)];
        let mut under_load = vec![];
        let mut stored = 0;
        for i in 1..=100 {
            let loaded = stored < 20_300_000;
            stored += match stored {
                _ if !loaded => 10_000,
                ..11_000_000 => 300_000,
                _ => 240_000,
            };
            samples.push(sample(i as f64 * 10.0, stored));
            under_load.push(loaded);
        }
        let windows: Vec<Window> = samples
            .windows(2)
            .zip(under_load)
            .map(|(w, loaded)| window(&w[0], &w[1], false, loaded))
            .collect();
        let summary = summarize(&samples, &windows, None);
        assert_eq!(summary.rate_at_start, Some(30_000.0));
        assert_eq!(summary.rate_at_10m, Some(30_000.0));
        assert_eq!(summary.rate_at_20m, Some(24_000.0));
    }

    #[test]
    fn a_first_window_past_a_million_leaves_the_second_as_the_start() {
        // 1.2M events in each of the first two 10 s windows, 0.9M in the third.
        let samples: Vec<Sample> = [0, 1_200_000, 2_400_000, 3_300_000]
            .iter()
            .enumerate()
            .map(|(i, &stored)| sample(i as f64 * 10.0, stored))
            .collect();
        let windows: Vec<Window> = samples
            .windows(2)
            .map(|w| window(&w[0], &w[1], false, true))
            .collect();
        let summary = summarize(&samples, &windows, None);
        assert_eq!(summary.rate_at_start, Some(120_000.0));
    }

    #[test]
    fn the_snapshot_rate_compares_its_last_30_s_with_the_30_s_before() {
        let mut samples = vec![sample(0.0, 0)];
        for i in 1..=30u64 {
            // 10k/s until 100 s, then 5k/s.
            let t = i * 10;
            let stored = if t <= 100 {
                t * 10_000
            } else {
                1_000_000 + (t - 100) * 5_000
            };
            samples.push(sample(t as f64, stored));
        }
        let snapshot = summarize(&samples, &[], Some((100.0, 100.0)))
            .snapshot
            .unwrap();
        assert_eq!(snapshot.rate_before, Some(10_000.0));
        assert_eq!(snapshot.rate_last_30s, Some(5_000.0));
        assert_eq!(snapshot.ratio, Some(0.5));
    }
}
